"""Crash safety with real processes on Anvil: SIGKILL at the worst moments, then restart.

The kill comes from a fault-injection point (``MARKET_FAILPOINT``, see market/failpoints.py):
the process dies by SIGKILL with no cleanup, exactly as in a power cut. Two trainers fill the task's
seats, so the commits close as soon as both committed and the reveals as soon as both revealed: no
window has to run out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from market.chain.client import Chain
from market.chain.contract import MarketContract
from tests.app.test_cli import run
from tests.conftest import MARKET, clean_env

KILLED = -signal.SIGKILL
STAKE_WEI = 10**16


def _setup(cwd: Path, info: dict, trainers: int = 2) -> tuple[Path, MarketContract]:  # type: ignore[type-arg]
    keys = Path(info["accounts"][0]["key_file"]).parent  # the devnet's key files (absolute paths)
    run(["data", "split", "--trainers", str(trainers), "--out", "data"], cwd)
    run(["task", "create", "--key-file", str(keys / "owner.key"), "--validation", "data/validation.npz", "--rounds", "1", "--max-trainers", str(trainers), "--stake", "0.01"], cwd)
    for i in range(1, trainers + 1):
        run(["trainer", "join", "1", "--key-file", str(keys / f"trainer-{i}.key")], cwd)
    return keys, MarketContract(Chain.connect(info["rpc"]), info["contract"])


def _args(keys: Path, i: int) -> list[str]:
    return ["trainer", "run", "1", "--once", "--key-file", str(keys / f"trainer-{i}.key"), "--data", f"data/trainer-{i}.npz"]


def _train(cwd: Path, keys: Path, i: int, failpoint: str | None = None):  # type: ignore[no-untyped-def]
    return run(_args(keys, i), cwd, check=failpoint is None,
               extra_env={"MARKET_FAILPOINT": failpoint} if failpoint else None)


def _start(cwd: Path, keys: Path, i: int) -> subprocess.Popen[str]:
    """``trainer run --once`` in the background: it commits, then waits for the commits to close and reveals."""
    return subprocess.Popen(MARKET + _args(keys, i), cwd=cwd, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{out}\n{err}"
    return out


def _until(pred, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_trainer_killed_between_commit_and_reveal_reveals_after_a_restart(devnet: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    cwd, info = devnet
    keys, market = _setup(cwd, info)
    store = Path(info["store_dir"])
    trainer = {i: next(a["address"] for a in info["accounts"] if a["key_file"].endswith(f"trainer-{i}.key")) for i in (1, 2)}

    first = _start(cwd, keys, 1)  # trains, commits, waits for the commits to close
    _until(lambda: trainer[1] in market.commitments(1, 0))
    stored = set(store.iterdir())
    killed = _train(cwd, keys, 2, "trainer_after_submit")  # committed (the commits close), nothing uploaded, then killed
    assert killed.returncode == KILLED
    assert set(market.commitments(1, 0)) == set(trainer.values())
    assert "round 0: revealed " in _finish(first)  # the other node goes on: it uploads and reveals
    assert market.submitters(1) == [trainer[1]] and market.task(1).seal_block == 0  # trainer 2 has not revealed
    assert len(set(store.iterdir()) - stored) == 1  # only the revealed update was published

    # restarted: retrains (deterministic), finds its commitment, uploads, and is killed again before revealing
    killed_again = _train(cwd, keys, 2, "trainer_after_upload")
    assert killed_again.returncode == KILLED
    assert market.submitters(1) == [trainer[1]]
    again = _train(cwd, keys, 2)  # restarted once more: the same bytes, the same CID; it reveals
    third = _train(cwd, keys, 2)  # a fourth start finds nothing to do

    assert "round 0: revealed " in again.stdout and "committed to" not in again.stdout + killed_again.stdout
    assert "already revealed this round; nothing to do" in third.stdout
    subs = market.submissions(1, 0)
    assert sorted(s.trainer for s in subs) == sorted(market.submitters(1)) == sorted(trainer.values())
    assert len(set(store.iterdir()) - stored) == 2 and {s.cid for s in subs} <= {p.name for p in store.iterdir()}
    commits = market._logs("UpdateCommitted", 0, taskId=1)
    assert sorted(e["args"]["trainer"] for e in commits) == sorted(trainer.values())  # one commitment each
    assert market.task(1).seal_block != 0  # the restarted node's reveal was the last: it sealed the round
    assert market.stakes_lost(1) == {}  # nobody lost its stake to the crash
    assert {s.trainer: market.seat(1, s.trainer).stake for s in subs} == {a: STAKE_WEI for a in trainer.values()}


def test_aggregator_killed_before_posting_resumes_and_posts_once(devnet: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    cwd, info = devnet
    keys, market = _setup(cwd, info)
    for proc in [_start(cwd, keys, i) for i in (1, 2)]:  # both commit, then both reveal (the last seals)
        _finish(proc)
    assert market.task(1).seal_block != 0
    agg = ["aggregator", "run", "1", "--once", "--key-file", str(keys / "aggregator.key"),
           "--validation", "data/validation.npz"]

    killed = run(agg, cwd, check=False, extra_env={"MARKET_FAILPOINT": "aggregator_before_post"})
    assert killed.returncode == KILLED
    assert market.task(1).current_round == 0  # nothing posted
    store = Path(info["store_dir"])  # the devnet's store, which every command uses by default
    stored_before = set(store.iterdir())
    run(agg, cwd)  # restart: recomputes from chain + store (the same seed) and posts
    again = run(agg, cwd, check=False)  # a third start finds the task finished

    settled = market.settlements(1)
    assert [s["round"] for s in settled] == [0]  # posted exactly once
    receipt_cid = market.round_info(1, 0).receipt_cid
    assert (store / receipt_cid) in stored_before  # same receipt the killed run wrote
    assert "finished" in again.stdout or "finished" in again.stderr
    receipt = json.loads((store / receipt_cid).read_bytes())
    assert sum(receipt["bps_vector"]) == 10_000
    assert receipt["round_seed"] == "0x" + market.round_info(1, 0).seed.hex()
