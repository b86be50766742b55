"""The `market` console script as users run it: separate processes, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.app.chain_steps import ClockDriver, commit
from tests.conftest import MARKET, clean_env


def run(args: list[str], cwd: Path, timeout: float = 300, check: bool = True,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_env(**(extra_env or {}))
    proc = subprocess.run(MARKET + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"market {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def play_rounds(cwd: Path, info: dict[str, object], shards: list[str], validation: str,
                task: int = 1) -> tuple[str, list[str], ClockDriver]:
    """Trainer nodes (``trainer-1.key`` … with ``shards``) and the aggregator as separate processes against the devnet
    until the task ends, the chain's clock moved to each round's opening rather than waited for. Every process must
    exit 0; returns the aggregator's output, each trainer's and the clock driver."""
    keys = Path(info["accounts"][0]["key_file"]).parent  # type: ignore[index]
    trainers = [
        subprocess.Popen(MARKET + ["trainer", "run", str(task), "--key-file", str(keys / f"trainer-{i}.key"),
                                   "--data", shard, "--timeout", "120"],
                         cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, shard in enumerate(shards, start=1)
    ]
    outs = []
    with ClockDriver(str(info["rpc"]), str(info["contract"]), task) as clock:
        agg = run(["aggregator", "run", str(task), "--key-file", str(keys / "aggregator.key"),
                   "--validation", validation, "--timeout", "120"], cwd, timeout=240)
        for p in trainers:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outs.append(out)
    return agg.stdout, outs, clock


def test_simulate_on_anvil_writes_the_report(tmp_path: Path) -> None:
    run(["simulate", "--trainers", "6", "--attackers", "1", "--attack", "sign_flip", "--rounds", "3", "--seed", "1",
         "--report", "r.json", "--quiet"], tmp_path)

    report = json.loads((tmp_path / "r.json").read_text())

    attacker = next(t["address"] for t in report["trainers"] if t["attack"] == "sign_flip")
    assert all(attacker in r["outliers"] and r["credited_wei"][attacker] == "0" for r in report["rounds"])
    assert all(sum(r["bps"].values()) == 10_000 for r in report["rounds"])
    assert report["final"]["accuracy"] >= 0.90
    fin = report["final"]
    assert sum(map(int, fin["withdrawn_wei"].values())) + int(fin["refunded_wei"]) + int(fin["escrow_left_wei"]) == int(report["reward_wei"])
    assert report["config"]["chain"] == "anvil" and report["rounds"][0]["gas"]["post_result"] > 0
    assert all((r["reveal"]["committed"], r["reveal"]["revealed"]) == (6, 6) for r in report["rounds"])
    assert report["rounds"][0]["gas"]["reveal"] > 0


def test_simulate_takes_an_example_task_its_data_schema_and_usual_model(tmp_path: Path) -> None:
    """`--task breast_cancer`: the task posted is the example's (30 features, 2 classes, logistic regression), its
    trainers train on its real data, and the sign-flipper is paid nothing."""
    run(["simulate", "--chain", "tester", "--task", "breast_cancer", "--trainers", "4", "--attackers", "1",
         "--rounds", "3", "--report", "r.json", "--quiet"], tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())

    assert report["config"]["task"] == "breast_cancer" and report["config"]["model"] is None
    attacker = next(t["address"] for t in report["trainers"] if t["attack"] == "sign_flip")
    assert all(r["credited_wei"][attacker] == "0" for r in report["rounds"])
    assert report["final"]["accuracy"] >= 0.85


def test_simulate_with_stakes_shows_the_reveal_phase_and_the_money_identity(tmp_path: Path) -> None:
    proc = run(["simulate", "--chain", "tester", "--trainers", "3", "--attackers", "1", "--rounds", "2", "--stake", "0.05",
                "--report", "r.json"], tmp_path)
    text = " ".join(proc.stdout.split())
    report = json.loads((tmp_path / "r.json").read_text())
    fin = report["final"]

    for r in report["rounds"]:
        seed = r["reveal"]["seed"]
        assert f"round {r['round']} · test accuracy" in text
        assert f"3 committed · 3 revealed · seed {seed[:10]}…" in text
    assert "revealed" in text and "reveal" in text
    assert fin["stake_wei"] == str(5 * 10**16) and fin["stakes_lost_wei"] == "0"  # the sign-flipper is valid, an outlier
    assert fin["stakes_returned_wei"] == str(3 * 5 * 10**16)
    withdrawn = sum(map(int, fin["withdrawn_wei"].values()))
    total = withdrawn + int(fin["refunded_wei"]) + int(fin["escrow_left_wei"])
    assert total == int(report["reward_wei"]) + int(fin["stakes_returned_wei"]) + int(fin["stakes_lost_wei"])
    assert (f"withdrawn + refunded + escrow left = {total} wei = reward {report['reward_wei']} + stakes returned "
            f"{fin['stakes_returned_wei']} + stakes lost 0 wei") in text


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--attack", "nope"], "unknown attack"),
        (["--partition", "dirichlet:-1"], "ALPHA must be a positive number"),
        (["--trainers", "3", "--attackers", "4"], "more than --trainers"),
        (["--reward", "abc"], "not a number of ETH"),
        (["--robust", "nope"], "nope"),
    ],
)
def test_bad_simulate_options_give_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = run(["simulate", "--chain", "tester", "--rounds", "1", "--quiet", *args], tmp_path, check=False)

    assert needle in one_line_error(proc)


def test_roles_as_separate_processes_against_a_devnet(devnet: tuple[Path, dict[str, object]]) -> None:
    cwd, info = devnet
    keys = Path(info["accounts"][0]["key_file"]).parent  # type: ignore[index]
    accounts = {a["role"]: a["address"] for a in info["accounts"]}  # type: ignore[index, union-attr]
    run(["data", "split", "--trainers", "3", "--out", "data"], cwd)
    out = run(["task", "create", "--key-file", str(keys / "owner.key"), "--validation", "data/validation.npz", "--rounds", "2", "--reward", "0.3", "--max-trainers", "3",
               "--stake", "0.01"], cwd).stdout
    assert "task 1 created" in out and "stake 0.010000 ETH per trainer" in out
    for i in (1, 2, 3):
        assert "with a stake of 0.010000 ETH" in run(["trainer", "join", "1", "--key-file", str(keys / f"trainer-{i}.key")], cwd).stdout
    agg, outs, clock = play_rounds(cwd, info, [f"data/trainer-{i}.npz" for i in (1, 2, 3)], "data/validation.npz")
    assert all(out.count("committed to") == 2 and out.count("revealed") == 2 for out in outs), outs
    assert clock.error is None and (1, "waiting") in clock.moves
    assert agg.count("posted model") == 2

    results = json.loads(run(["task", "results", "1", "--json"], cwd).stdout)
    assert [r["settlement"] for r in results["rounds"]] == ["result", "result"]
    assert all(sum(r["bps"].values()) == 10_000 for r in results["rounds"])
    assert all((r["committed"], r["revealed"]) == (3, 3) and r["seed"].startswith("0x") for r in results["rounds"])
    verified = run(["verify", "--task", "1"], cwd).stdout  # every round, checked against the chain
    assert "2 of 2 rounds verified" in verified and "FAIL" not in verified
    paid = run(["trainer", "withdraw", "--key-file", str(keys / "trainer-1.key")], cwd).stdout
    assert paid.startswith("task 1: withdrew")
    again = run(["trainer", "withdraw", "--key-file", str(keys / "trainer-1.key")], cwd, check=False)
    assert "nothing to withdraw" in one_line_error(again)


def test_unknown_task_and_late_submission_are_one_line_errors(devnet: tuple[Path, dict[str, object]]) -> None:
    from market.chain.client import Chain
    from market.chain.contract import MarketContract
    from market.chain.devchain import read_key_file
    from market.cid import compute_cid

    cwd, info = devnet
    keys = Path(info["accounts"][0]["key_file"]).parent  # type: ignore[index]
    accounts = {a["role"]: a["address"] for a in info["accounts"]}  # type: ignore[index, union-attr]

    assert "unknown task 7" in one_line_error(run(["task", "status", "7"], cwd, check=False))

    run(["data", "split", "--trainers", "2", "--out", "data"], cwd)
    run(["task", "create", "--key-file", str(keys / "owner.key"), "--validation", "data/validation.npz", "--rounds", "1", "--submit-window", "60", "--reveal-window", "30",
         "--result-window", "60"], cwd)
    run(["trainer", "join", "1", "--key-file", str(keys / "trainer-1.key")], cwd)
    contract = MarketContract(Chain.connect(str(info["rpc"])), str(info["contract"]))
    commit(contract, read_key_file(keys / "trainer-2.key"), 1, compute_cid(b"on time"))  # another trainer was on time
    contract.chain.advance_to(contract.schedule(1)[1])  # past the commit deadline: the round is in its reveal window
    late = run(["trainer", "run", "1", "--once", "--key-file", str(keys / "trainer-1.key"),
                "--data", "data/trainer-1.npz"], cwd, check=False)
    assert "too late" in one_line_error(late) and "MarketSubmissionClosed" in late.stderr

    bad_key = cwd / "bad.key"
    bad_key.write_text("not a key\n")
    err = one_line_error(run(["trainer", "withdraw", "--key-file", str(bad_key)], cwd, check=False))
    assert "does not hold a 32-byte hex private key" in err and "not a key" not in err
