"""The owner's money commands (`market task reclaim | refunds | settle`), the round's phase in `market task
status`, `market verify` on a round that does not exist, and `--help` with defaults and units (issue 12, rows
3, 6, 11, 14), and issue 14's stakes, per-task withdrawals, commit-reveal phases and K empty rounds. In-process on the py-evm chain (the CLI's chain connection patched to it), plus one run of the
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
from tests.app.chain_steps import close_commits, commit, open_round, past_windows, prove_available, reveal
from tests.conftest import MARKET, ROOT, Market

ETH = 10**18


@pytest.fixture
def cli(market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(args) -> (exit code, stdout, stderr)`` with the CLI's chain being the in-process one."""
    import market_app.cli.roles as roles_cli
    import market_app.cli.task as task_cli

    monkeypatch.setattr(task_cli, "_contract", lambda args: market.contract)
    monkeypatch.setattr(roles_cli, "_contract", lambda args: market.contract)
    monkeypatch.chdir(tmp_path)
    for name, acct in (("owner", market.owner), ("outsider", market.outsider), ("trainer", market.trainers[0]),
                       ("trainer1", market.trainers[1])):
        (tmp_path / f"{name}.key").write_text(acct.key.hex() + "\n")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def create(m: Market, rounds: int = 2, reward: int = ETH, max_trainers: int = 3, window: int = 100,
           result_window: int | None = None, reveal_window: int = 50, stake: int = 0, empty_rounds: int = 0) -> int:
    task_id, _ = m.contract.create_task(
        m.owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"), validation_commitment=b"\x11" * 32,
        rounds=rounds, reward_wei=reward, max_trainers=max_trainers,
        submit_window=window, reveal_window=reveal_window, result_window=window if result_window is None else result_window,
        stake_wei=stake, empty_rounds_to_reclaim=empty_rounds,
    )
    return task_id


def submit(m: Market, task_id: int, n: int, reveal_n: int | None = None) -> list[tuple[Any, bytes]]:
    """The first ``n`` trainers commit to the current round; the first ``reveal_n`` (default all) reveal.
    Returns the (trainer, update bytes) revealed, to prove available when no result comes."""
    open_round(m.contract, task_id)
    blobs = [bytes([m.contract.task(task_id).current_round, i]) for i in range(n)]
    for t, b in zip(m.trainers[:n], blobs):
        commit(m.contract, t, task_id, compute_cid(b))
    close_commits(m.contract, task_id)
    revealed = list(zip(m.trainers[:n], blobs))[: n if reveal_n is None else reveal_n]
    for t, b in revealed:
        reveal(m.contract, t, task_id, compute_cid(b))
    return revealed


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------- reclaim + refunds
def test_reclaim_needs_the_tasks_empty_rounds_in_a_row(cli: Any, market: Market) -> None:
    never = create(market, rounds=3, reward=3 * ETH)
    code, _, err = cli("task", "reclaim", str(never), "--key-file", "owner.key")
    assert code != 0 and "created with --empty-rounds-to-reclaim 0: the owner never reclaims early" in one_line(err)
    assert "MarketNotAbandoned" in err

    t = create(market, rounds=4, reward=4 * ETH, empty_rounds=2)
    code, _, err = cli("task", "reclaim", str(t), "--key-file", "owner.key")
    assert code != 0 and "only after 2 empty rounds in a row (nothing revealed), 0 so far" in one_line(err)
    for r in (0, 1):  # two rounds in which nobody commits, each refunded (its own pool only) when settled
        close_commits(market.contract, t)
        code, out, _ = cli("task", "settle", str(t), "--round", str(r), "--key-file", "outsider.key")
        assert code == 0 and f"round {r} settled: nothing was revealed, that round's pool of 1.000000 ETH" in out
    code, _, err = cli("task", "reclaim", str(t), "--key-file", "outsider.key")
    assert code != 0 and "only the task's owner may do this" in one_line(err)

    code, out, _ = cli("task", "reclaim", str(t), "--key-file", "owner.key")
    assert code == 0
    assert out.strip() == (f"task {t}: reclaimed 2.000000 ETH ({2 * ETH} wei) of unused rounds after 2 empty rounds in a "
                           f"row; the task is finished; withdraw it with `market task refunds {t}`")

    before = market.chain.balance(market.owner.address)
    code, out, _ = cli("task", "refunds", str(t), "--key-file", "owner.key")
    assert code == 0
    assert out.strip() == f"task {t}: withdrew 4.000000 ETH ({4 * ETH} wei) of refunds to {market.owner.address}"
    assert market.chain.balance(market.owner.address) > before + 4 * ETH - 10**16  # minus gas
    code, _, err = cli("task", "refunds", str(t), "--key-file", "owner.key")
    assert code != 0 and "nothing to withdraw" in one_line(err)


def test_reclaim_refused_while_a_round_has_commitments(cli: Any, market: Market) -> None:
    t = create(market, rounds=3, empty_rounds=1)
    close_commits(market.contract, t)
    market.contract.settle_without_result(market.outsider, t)  # round 0 empty: streak 1
    open_round(market.contract, t)
    commit(market.contract, market.trainers[0], t, compute_cid(b"u"))
    code, _, err = cli("task", "reclaim", str(t), "--key-file", "owner.key")
    assert code != 0 and "round 1 has commitments: it must be settled first" in one_line(err)


# --------------------------------------------------------------------------- settle
def test_settle_a_silent_aggregators_round(cli: Any, market: Market) -> None:
    t = create(market, rounds=2, reward=ETH)
    revealed = submit(market, t, 2)

    code, _, err = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code != 0 and "the round is not over until unix time" in one_line(err)
    code, _, err = cli("task", "settle", str(t), "--round", "5", "--key-file", "outsider.key")
    assert code != 0 and f"task {t} has rounds 0..1: round 5 does not exist" in one_line(err)
    code, _, err = cli("task", "settle", str(t), "--round", "1", "--key-file", "outsider.key")
    assert code != 0 and f"round 1 of task {t} has not opened yet: round 0 is current" in one_line(err)

    prove_available(market.contract, t, revealed)
    code, _, err = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code != 0 and "the round is not over until unix time" in one_line(err)  # the availability window
    past_windows(market.contract, t)
    code, out, _ = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code == 0
    half = ETH // 2
    assert out.strip() == (f"task {t} round 0 settled without a result: 0.500000 ETH ({half} wei) split equally "
                           "among the 2 of 2 revealed updates proved available")
    assert market.contract.owed(t, market.trainers[0].address) == half // 2

    code, _, err = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code != 0
    assert f"round 0 of task {t} is already settled (fallback); the current round is 1: `market task settle {t} --round 1`" \
        in one_line(err)

    open_round(market.contract, t)  # round 1: nobody commits; refundable once its commit window is over
    code, _, err = cli("task", "settle", str(t), "--round", "1", "--key-file", "owner.key")
    assert code != 0 and "the round's reveal window is still open until unix time" in one_line(err)
    close_commits(market.contract, t)
    code, out, _ = cli("task", "settle", str(t), "--round", "1", "--key-file", "owner.key")
    assert code == 0
    assert out.strip() == (f"task {t} round 1 settled: nothing was revealed, that round's pool of 0.500000 ETH ({half} wei) "
                           f"refunded to the owner (withdraw with `market task refunds {t}`)")
    code, _, err = cli("task", "settle", str(t), "--round", "1", "--key-file", "owner.key")
    assert code != 0 and "the task has finished: every round is settled" in one_line(err)


def test_settle_gives_the_stakes_of_committers_that_did_not_reveal_to_those_that_did(cli: Any, market: Market) -> None:
    stake = ETH // 10
    t = create(market, rounds=1, reward=ETH, stake=stake)
    revealed = submit(market, t, 3, reveal_n=2)  # trainer 2 commits and never reveals
    prove_available(market.contract, t, revealed)
    past_windows(market.contract, t)
    code, out, _ = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code == 0
    assert out.strip() == (f"task {t} round 0 settled without a result: 1.100000 ETH ({ETH + stake} wei) split equally "
                           f"among the 2 of 2 revealed updates proved available (with 0.100000 ETH ({stake} wei) of "
                           "stakes lost by committers that did not reveal)")
    # the task finished: each revealer is owed half of the pool and the lost stake, plus its own stake back
    assert market.contract.owed(t, market.trainers[0].address) == (ETH + stake) // 2 + stake
    assert market.contract.owed(t, market.trainers[2].address) == 0


def test_an_empty_round_refund_carries_the_lost_stakes_on(cli: Any, market: Market) -> None:
    stake = ETH // 10
    t = create(market, rounds=2, reward=2 * ETH, stake=stake)
    submit(market, t, 1, reveal_n=0)  # the only committer does not reveal
    market.chain.advance_to(market.contract.schedule(t)[2])  # the reveal deadline
    code, out, _ = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code == 0
    assert out.strip() == (f"task {t} round 0 settled: nothing was revealed, that round's pool of 1.000000 ETH ({ETH} wei) "
                           f"refunded to the owner (withdraw with `market task refunds {t}`); 0.100000 ETH ({stake} wei) "
                           "of stakes lost by committers that did not reveal goes to the next round's paid trainers")


def test_a_last_empty_round_refunds_the_stakes_nobody_can_be_paid(cli: Any, market: Market) -> None:
    stake = ETH // 10
    t = create(market, rounds=1, reward=ETH, stake=stake)
    submit(market, t, 1, reveal_n=0)
    market.chain.advance_to(market.contract.schedule(t)[2])
    code, out, _ = cli("task", "settle", str(t), "--round", "0", "--key-file", "outsider.key")
    assert code == 0
    assert out.strip() == (f"task {t} round 0 settled: nothing was revealed, that round's pool of 1.000000 ETH ({ETH} wei) "
                           f"refunded to the owner (withdraw with `market task refunds {t}`); 0.100000 ETH ({stake} wei) "
                           "more refunded (the task ended: pools carried over unearned, and lost stakes when no trainer "
                           "a round paid holds a stake)")


# ---------------------------------------------------------------------- trainer money
def test_withdraw_per_task_to_another_address_and_leave(cli: Any, market: Market) -> None:
    stake = ETH // 10
    tasks = []
    for rounds, task_stake in ((1, 0), (2, stake)):  # each created when the one before is settled: the clock moves
        t = create(market, rounds=rounds, reward=rounds * ETH, stake=task_stake)
        tasks.append(t)
        prove_available(market.contract, t, submit(market, t, 2))
        past_windows(market.contract, t)
        market.contract.settle_without_result(market.outsider, t)
    one, two = tasks
    me = market.trainers[0].address
    assert market.contract.owed(one, me) == ETH // 2 and market.contract.owed(two, me) == ETH // 2

    code, _, err = cli("trainer", "withdraw", "--task", str(two), "--key-file", "outsider.key")
    assert code != 0 and f"nothing to withdraw from task {two}" in one_line(err)
    to = market.outsider.address
    before = market.chain.balance(to)
    code, out, _ = cli("trainer", "withdraw", "--task", str(one), "--to", to, "--key-file", "trainer.key")
    assert code == 0 and out.strip() == f"task {one}: withdrew 0.500000 ETH ({ETH // 2} wei) to {to}"
    assert market.chain.balance(to) == before + ETH // 2 and market.contract.owed(two, me) == ETH // 2

    code, _, err = cli("trainer", "withdraw", "--task", str(one), "--key-file", "trainer.key")
    assert code != 0 and f"nothing to withdraw from task {one}" in one_line(err)

    code, out, _ = cli("trainer", "leave", "--task", str(two), "--key-file", "trainer.key")  # between rounds
    assert code == 0 and f"left task {two} and gave its seat up: its stake of 0.100000 ETH ({stake} wei) is withdrawable" in out
    code, out, _ = cli("trainer", "withdraw", "--key-file", "trainer.key")  # every joined task: only two owes
    assert code == 0 and out.strip() == f"task {two}: withdrew 0.600000 ETH ({ETH // 2 + stake} wei) to {me}"
    code, _, err = cli("trainer", "withdraw", "--key-file", "trainer.key")
    assert code != 0 and "nothing to withdraw: " in one_line(err) and "is owed nothing by the 2 tasks it joined" in err

    open_round(market.contract, two)
    commit(market.contract, market.trainers[1], two, compute_cid(b"x"))
    code, _, err = cli("trainer", "leave", "--task", str(two), "--key-file", "trainer1.key")
    assert code != 0 and "committed to the current round: leave after it settles" in one_line(err)
    code, out, _ = cli("trainer", "withdraw", "--task", str(two), "--key-file", "trainer1.key")  # round 0's credit
    assert code == 0 and out.strip() == f"task {two}: withdrew 0.500000 ETH ({ETH // 2} wei) to {market.trainers[1].address}"
    code, _, err = cli("trainer", "withdraw", "--task", str(two), "--key-file", "trainer1.key")
    assert code != 0 and "your stake of 0.100000 ETH comes back when the task ends or you" in one_line(err)


# --------------------------------------------------------------------------- status
def status_line(cli: Any, t: int) -> str:
    code, out, _ = cli("task", "status", str(t))
    assert code == 0
    return next(ln for ln in out.splitlines() if ln.startswith(("round ", "refunds")))


def test_status_shows_each_phase_of_a_round(cli: Any, market: Market) -> None:
    t = create(market, rounds=1, max_trainers=2, window=100)
    line = status_line(cli, t)
    assert re.fullmatch(r"round 0: open: 0 committed, 0 revealed \(at most 2\); submissions open \(closes in (9\d|100) s\)",
                        line), line

    open_round(market.contract, t)
    commit(market.contract, market.trainers[0], t, compute_cid(b"first"))
    assert "submissions open" in status_line(cli, t)  # one of two: the round stays open
    commit(market.contract, market.trainers[1], t, compute_cid(b"second"))
    line = status_line(cli, t)
    assert re.fullmatch(r"round 0: reveal: 2 committed, 0 revealed \(at most 2\); submissions closed, 2 committed; reveals "
                        r"open \(close in \d+ s\) \(commits closed early: the task's full trainer count committed\)", line), line
    reveal(market.contract, market.trainers[0], t, compute_cid(b"first"))
    reveal(market.contract, market.trainers[1], t, compute_cid(b"second"))
    line = status_line(cli, t)
    assert line.startswith("round 0: closed: 2 committed, 2 revealed (at most 2); reveals closed, waiting for the aggregator's"), line

    past_windows(market.contract, t)
    line = status_line(cli, t)
    assert line == (f"round 0: settleable: 2 committed, 2 revealed (at most 2); anyone may settle it with "
                    f"`market task settle {t} --round 0`")

    market.contract.settle_without_result(market.outsider, t)
    code, out, _ = cli("task", "status", str(t))
    assert f"task {t}: finished;" in out and "round 0: settled" in out


def test_status_shows_the_schedule_and_the_stake(cli: Any, market: Market) -> None:
    t = create(market, rounds=2, window=100, stake=ETH // 100, empty_rounds=3)
    info = market.contract.task(t)
    code, out, _ = cli("task", "status", str(t))
    assert code == 0
    assert (f"schedule: round r opens at unix {info.start_at} + r x 300 s; each round: commit 100 s, reveal 50 s, "
            "result 100 s, availability 50 s (only when no result came)") in out
    assert "stake 0.010000 ETH per trainer (0.000000 held); the owner may reclaim after 3 empty rounds in a row (0 so far)" in out
    opens, submit_dl, reveal_dl, result_dl, final = market.contract.schedule(t)
    assert (f"round 0 times (unix): opens {opens}, commits close {submit_dl}, reveals close {reveal_dl}, result window "
            f"closes {result_dl}; next round opens {info.opens_at(1)}") in out and final == result_dl


def test_status_of_a_quorum_task_says_when_its_members_commit_and_vote(cli: Any, market: Market) -> None:
    from tests.contracts.helpers import register

    register(market, market.outsider, market.trainers[4])  # three aggregators
    t, _ = market.contract.create_task(
        market.owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"),
        validation_commitment=b"\x11" * 32, rounds=1, reward_wei=ETH, max_trainers=2, submit_window=100,
        reveal_window=50, result_window=800, panel=3, quorum=2)
    code, out, _ = cli("task", "status", str(t))
    _opens, _submit, reveal_dl, result_dl, _final = market.contract.schedule(t)

    assert code == 0 and "a panel of 3 drawn from the registry each round, 2 identical results settle it" in out
    assert (f"result window closes {result_dl} (the drawn members commit to their results until {reveal_dl + 600}; "
            f"votes once all have, or from {reveal_dl + 700})") in out


# --------------------------------------------------------------------------- verify
def test_verify_a_round_the_task_does_not_have(cli: Any, market: Market, tmp_path: Path) -> None:
    t = create(market, rounds=3)
    code, _, err = cli("verify", "--task", str(t), "--round", "7", "--store-dir", str(tmp_path / "store"))
    assert code != 0 and f"task {t} has rounds 0..2: round 7 does not exist" in one_line(err)
    code, _, err = cli("verify", "--task", str(t), "--round", "0", "--store-dir", str(tmp_path / "store"))
    assert code != 0 and f"round 0 of task {t} is not settled yet: submissions open" in one_line(err)
    code, _, err = cli("verify", "--task", str(t), "--store-dir", str(tmp_path / "store"))
    assert code != 0 and f"task {t}: no round was settled by a posted result yet" in one_line(err)


# ----------------------------------------------------------------------------- help
@pytest.mark.parametrize("argv, expected", [
    (["task", "create"], ["--rounds N", "(default 3)", "--max-trainers N", "(default 64)", "--submit-window SECONDS",
                          "(default 3600)", "--reveal-window SECONDS", "(default 600)", "--stake ETH", "(default 0)",
                          "--panel K", "--quorum Q", "--fee-bps BPS", "--backup", "drawn from the market's registry",
                          "--empty-rounds-to-reclaim K", "trainers must join",
                          "early only when --max-trainers", "at least 60 s (commit), 30 s (reveal) and 60 s (result; 480 s "
                          "with a quorum above one)"]),
    (["trainer"], ["before the round you want closes", "closes early only when the task's max-trainers", "stake"]),
    (["trainer", "withdraw"], ["--task N", "--to ADDRESS", "every task you joined"]),
    (["trainer", "leave"], ["--task N", "between rounds"]),
    (["task", "reclaim"], ["--empty-rounds-to-reclaim", "empty rounds in a row"]),
    (["verify"], ["calldata", "previous model", "needs no validation set", "--round R"]),
    (["trainer", "run"], ["--timeout SECONDS", "(default 3600)", "--seed N", "(default 0)"]),
    (["aggregator", "run"], ["--timeout SECONDS", "(default 7200)"]),
    (["aggregator", "register"], ["--bond ETH", "loses the registry's penalty"]),
    (["task", "settle"], ["--round R", "result window"]),
    (["simulate"], ["--rounds N", "(default 3)", "--trainers N", "(default 6)", "--stake ETH"]),
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
    """Row 6: after the commit deadline, with no block mined since, status says the reveals are open (not
    `closes in N s`).

    A fresh Anvil of its own: other tests move the shared one's clock ahead, and this test waits on the wall
    clock -- through the shortest commit window the contract allows (60 s) -- since it is about the wall clock."""
    from market.chain.client import Chain
    from market.chain.devchain import AnvilProcess
    from tests.conftest import _market

    with AnvilProcess(accounts=8) as proc:
        _idle_status(_market(Chain.connect(proc.rpc_url)), tmp_path)


def _idle_status(m: Market, tmp_path: Path) -> None:
    t = create(m, rounds=1, max_trainers=4, window=60, result_window=600)
    commit(m.contract, m.trainers[0], t, compute_cid(b"u"))
    deadline = m.contract.deadlines(t)[0]
    while time.time() < deadline + 1:
        time.sleep(0.2)
    assert m.chain.now() < deadline  # nothing was mined since: the latest block is before the deadline

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    chain = ["--rpc", m.chain.w3.provider.endpoint_uri, "--contract", m.contract.address]  # type: ignore[attr-defined]
    proc = subprocess.run(MARKET + ["task", "status", str(t), *chain], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "round 0: reveal: 1 committed, 0 revealed (at most 4); submissions closed, 1 committed; reveals open" in proc.stdout

    (tmp_path / "owner.key").write_text(m.owner.key.hex())
    proc = subprocess.run(MARKET + ["task", "reclaim", str(t), *chain, "--key-file", "owner.key"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"error: task {t} was created with --empty-rounds-to-reclaim 0: the owner never "
                                          "reclaims early")


@pytest.mark.parametrize(("panel", "proof", "drawable", "window", "backup", "want", "why"), [
    (None, False, 3, 3600, False, 3, None),  # any task: three, two of which must agree before anything is credited
    (None, True, 5, 480, True, 3, None),     # a proof task too: the proof binds neither the utilities nor the rejections
    (None, True, 2, 3600, False, 1, "the registry holds 2 aggregators"),  # too few: one, and the owner is told
    (None, False, 3, 3600, True, 1, "the registry holds 3 aggregators"),  # ... counting the backup it asked for
    (None, False, 5, 479, False, 1, "a result window of 479 s"),  # ... or a quorum would have no time to vote
    (1, False, 5, 3600, False, 1, "asked for"),  # what the owner asks for, told what it means
    (2, True, 5, 60, False, 2, None),        # what the owner asks for, whatever the task
])
def test_a_tasks_default_panel_is_three_when_the_registry_holds_three(
        panel: int | None, proof: bool, drawable: int, window: int, backup: bool, want: int, why: str | None) -> None:
    from owner.task import default_panel

    got, note = default_panel(panel, proof, drawable, window, backup)

    assert got == want and (note is None) == (why is None)
    if note:
        assert note.startswith(f"note: a panel of one ({why}") and "alone decides" in note and "a panel of 3 needs" in note
        assert ("does not bind" in note) == proof
