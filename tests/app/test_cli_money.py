"""The owner's money commands (`market task reclaim | refunds | settle`), the round's phase in `market task
status`, `market verify` on a round that does not exist, and `--help` with defaults and units (issue 12, rows
3, 6, 11, 14). In-process on the py-evm chain (the CLI's chain connection patched to it), plus one run of the
real console script against Anvil, whose latest block stops moving while nobody transacts."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from market.cid import compute_cid
from market_app.cli.main import main
from tests.conftest import MARKET, ROOT, Market

ETH = 10**18


@pytest.fixture
def cli(market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(args) -> (exit code, stdout, stderr)`` with the CLI's chain being the in-process one."""
    import market_app.cli.task as task_cli

    monkeypatch.setattr(task_cli, "_contract", lambda args: market.contract)
    monkeypatch.chdir(tmp_path)
    for name, acct in (("owner", market.owner), ("outsider", market.outsider), ("trainer", market.trainers[0])):
        (tmp_path / f"{name}.key").write_text(acct.key.hex() + "\n")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def create(m: Market, rounds: int = 2, reward: int = ETH, max_trainers: int = 3, window: int = 100,
           result_window: int | None = None) -> int:
    task_id, _ = m.contract.create_task(
        m.owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"), validation_commitment=b"\x11" * 32,
        aggregator=m.aggregator.address, rounds=rounds, reward_wei=reward, max_trainers=max_trainers,
        submit_window=window, result_window=window if result_window is None else result_window,
    )
    return task_id


def submit(m: Market, task_id: int, n: int, round_: int = 0) -> None:
    for i, t in enumerate(m.trainers[:n]):
        if not m.contract.is_trainer(task_id, t.address):
            m.contract.join(t, task_id)
        m.contract.submit_update(t, task_id, round_, compute_cid(bytes([round_, i])), b"\x01" * 32)


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------- reclaim + refunds
def test_reclaim_then_withdraw_refunds(cli: Any, market: Market) -> None:
    t = create(market, rounds=3, reward=3 * ETH)

    code, _, err = cli("task", "reclaim", str(t), "--key-file", "owner.key")
    assert code != 0 and "submissions are still open until unix time" in one_line(err) and "MarketSubmissionsOpen" in err
    market.chain.advance_time(101)
    code, _, err = cli("task", "reclaim", str(t), "--key-file", "outsider.key")
    assert code != 0 and "only the task's owner may do this" in one_line(err)

    code, out, _ = cli("task", "reclaim", str(t), "--key-file", "owner.key")
    assert code == 0
    assert out.strip() == (f"task {t}: reclaimed 3.000000 ETH ({3 * ETH} wei) of unused rounds; the task is finished; "
                           f"withdraw it with `market task refunds {t}`")

    before = market.chain.balance(market.owner.address)
    code, out, _ = cli("task", "refunds", str(t), "--key-file", "owner.key")
    assert code == 0
    assert out.strip() == f"task {t}: withdrew 3.000000 ETH ({3 * ETH} wei) of refunds to {market.owner.address}"
    assert market.chain.balance(market.owner.address) > before + 3 * ETH - 10**16  # minus gas
    code, _, err = cli("task", "refunds", str(t), "--key-file", "owner.key")
    assert code != 0 and "nothing to withdraw" in one_line(err)


def test_reclaim_refused_while_a_round_has_submissions(cli: Any, market: Market) -> None:
    t = create(market)
    submit(market, t, 1)
    market.chain.advance_time(101)
    code, _, err = cli("task", "reclaim", str(t), "--key-file", "owner.key")
    assert code != 0 and "round 0 has submissions: settle it instead of reclaiming" in one_line(err)


# --------------------------------------------------------------------------- settle
def test_settle_a_silent_aggregators_round(cli: Any, market: Market) -> None:
    t = create(market, rounds=2, reward=ETH)
    submit(market, t, 2)

    code, _, err = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code != 0 and "the aggregator may still post until unix time" in one_line(err)
    code, _, err = cli("task", "settle", str(t), "--round", "5", "--key-file", "outsider.key")
    assert code != 0 and f"task {t} has rounds 0..1: round 5 does not exist" in one_line(err)
    code, _, err = cli("task", "settle", str(t), "--round", "1", "--key-file", "outsider.key")
    assert code != 0 and f"round 1 of task {t} has not opened yet: round 0 is current" in one_line(err)

    market.chain.advance_time(201)
    code, out, _ = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code == 0
    half = ETH // 2
    assert out.strip() == (f"task {t} round 0 settled without a result: 0.500000 ETH ({half} wei) split equally "
                           "among 2 submitters")
    assert market.contract.owed(market.trainers[0].address) == half // 2

    code, _, err = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code != 0
    assert f"round 0 of task {t} is already settled (fallback); the current round is 1: `market task settle {t} --round 1`" \
        in one_line(err)

    market.chain.advance_time(201)  # round 1: nobody submitted
    code, out, _ = cli("task", "settle", str(t), "--round", "1", "--key-file", "owner.key")
    assert code == 0
    assert out.strip() == (f"task {t} round 1 settled: nobody submitted, 0.500000 ETH ({half} wei) refunded to the owner "
                           f"(withdraw with `market task refunds {t}`)")
    code, _, err = cli("task", "settle", str(t), "--round", "1", "--key-file", "owner.key")
    assert code != 0 and "the task has finished: every round is settled" in one_line(err)


# --------------------------------------------------------------------------- status
def status_line(cli: Any, t: int) -> str:
    code, out, _ = cli("task", "status", str(t))
    assert code == 0
    return next(ln for ln in out.splitlines() if ln.startswith(("round ", "refunds")))


def test_status_shows_each_phase_of_a_round(cli: Any, market: Market) -> None:
    t = create(market, rounds=1, max_trainers=2, window=100)
    line = status_line(cli, t)
    assert re.fullmatch(r"round 0: 0 of at most 2 submitted; submissions open \(closes in (9\d|100) s\)", line), line

    submit(market, t, 1)
    assert "submissions open" in status_line(cli, t)  # one of two: the round stays open
    submit_second = market.trainers[1]
    market.contract.join(submit_second, t)
    market.contract.submit_update(submit_second, t, 0, compute_cid(b"second"), b"\x01" * 32)
    line = status_line(cli, t)
    assert re.fullmatch(r"round 0: 2 of at most 2 submitted; submissions closed, waiting for the aggregator's result "
                        r"\(window ends in (19\d|200) s\) \(closed early: the task's full trainer count submitted\)", line), line

    market.chain.advance_time(201)
    line = status_line(cli, t)
    assert line == f"round 0: 2 of at most 2 submitted; result window over: anyone may settle with `market task settle {t} --round 0`"

    market.contract.settle_without_result(market.outsider, t)
    code, out, _ = cli("task", "status", str(t))
    assert f"task {t}: finished;" in out and "round 0: settled" in out


# --------------------------------------------------------------------------- verify
def test_verify_a_round_the_task_does_not_have(cli: Any, market: Market, tmp_path: Path) -> None:
    t = create(market, rounds=3)
    code, _, err = cli("verify", "--task", str(t), "--round", "7", "--store-dir", str(tmp_path / "store"))
    assert code != 0 and f"task {t} has rounds 0..2: round 7 does not exist" in one_line(err)
    code, _, err = cli("verify", "--task", str(t), "--round", "0", "--store-dir", str(tmp_path / "store"))
    assert code != 0 and f"round 0 of task {t} is not settled yet: submissions open" in one_line(err)


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("argv, expected", [
    (["task", "create"], ["--rounds N", "(default 3)", "--max-trainers N", "(default 64)", "--submit-window SECONDS",
                          "(default 3600)", "trainers must join", "early only when --max-trainers"]),
    (["trainer"], ["before the round you want closes", "closes early only when the task's max-trainers"]),
    (["trainer", "run"], ["--timeout SECONDS", "(default 3600)", "--seed N", "(default 0)"]),
    (["aggregator", "run"], ["--timeout SECONDS", "(default 7200)"]),
    (["task", "settle"], ["--round R", "result window"]),
    (["simulate"], ["--rounds N", "(default 3)", "--trainers N", "(default 6)"]),
    (["demo"], ["(default 5)"]),
])
def test_help_shows_defaults_and_units(argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for piece in expected:
        assert piece in text, (piece, text)


def test_simulate_help_defaults_match_the_config() -> None:
    from market_app.cli.simulate import SIMULATE_DEFAULTS
    from simulator.simulate import SimulateConfig

    assert {k: SimulateConfig.model_fields[k].default for k in SIMULATE_DEFAULTS} == SIMULATE_DEFAULTS


# ------------------------------------------------------------- the console script on Anvil
def test_status_on_an_idle_anvil_does_not_freeze(tmp_path: Path) -> None:
    """Row 6: after the deadline, with no block mined since, status says closed (not `closes in N s`).

    A fresh Anvil of its own: other tests move the shared one's clock ahead (evm_increaseTime), and
    this test waits on the wall clock."""
    from market.chain.client import Chain
    from market.chain.devchain import AnvilProcess
    from tests.conftest import _market

    with AnvilProcess(accounts=8) as proc:
        _idle_status(_market(Chain.connect(proc.rpc_url)), tmp_path)


def _idle_status(m: Market, tmp_path: Path) -> None:
    t = create(m, rounds=1, max_trainers=4, window=2, result_window=600)
    m.contract.join(m.trainers[0], t)
    m.contract.submit_update(m.trainers[0], t, 0, compute_cid(b"u"), b"\x01" * 32)
    deadline = m.contract.deadlines(t)[0]
    while time.time() < deadline + 1:
        time.sleep(0.2)
    assert m.chain.now() < deadline  # nothing was mined since: the latest block is before the deadline

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    chain = ["--rpc", m.chain.w3.provider.endpoint_uri, "--contract", m.contract.address]  # type: ignore[attr-defined]
    proc = subprocess.run(MARKET + ["task", "status", str(t), *chain], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "round 0: 1 of at most 4 submitted; submissions closed, waiting for the aggregator's result" in proc.stdout

    (tmp_path / "owner.key").write_text(m.owner.key.hex())
    proc = subprocess.run(MARKET + ["task", "reclaim", str(t), *chain, "--key-file", "owner.key"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: round 0 has submissions: settle it instead of reclaiming [MarketRoundHasSubmissions]"
