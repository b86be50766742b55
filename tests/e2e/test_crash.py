"""Crash safety with real processes on Anvil: SIGKILL at the worst moments, then restart.

The kill comes from a fault-injection point (``MARKET_FAILPOINT``, see market/failpoints.py):
the process dies by SIGKILL with no cleanup, exactly as in a power cut.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from market.chain.client import Chain
from market.chain.contract import MarketContract
from tests.app.test_cli import run

KILLED = -signal.SIGKILL


def _setup(cwd: Path, info: dict, trainers: int = 2) -> tuple[Path, MarketContract]:  # type: ignore[type-arg]
    keys = Path(info["accounts"][0]["key_file"]).parent  # the devnet's key files (absolute paths)
    agg = next(a["address"] for a in info["accounts"] if a["role"] == "aggregator")
    run(["data", "split", "--trainers", str(trainers), "--out", "data"], cwd)
    run(["task", "create", "--key-file", str(keys / "owner.key"), "--aggregator", agg,
         "--validation", "data/validation.npz", "--rounds", "1", "--max-trainers", str(trainers)], cwd)
    for i in range(1, trainers + 1):
        run(["trainer", "join", "1", "--key-file", str(keys / f"trainer-{i}.key")], cwd)
    return keys, MarketContract(Chain.connect(info["rpc"]), info["contract"])


def _train(cwd: Path, keys: Path, i: int, failpoint: str | None = None):  # type: ignore[no-untyped-def]
    return run(["trainer", "run", "1", "--once", "--key-file", str(keys / f"trainer-{i}.key"),
                "--data", f"data/trainer-{i}.npz"], cwd, check=failpoint is None,
               extra_env={"MARKET_FAILPOINT": failpoint} if failpoint else None)


def test_trainer_killed_mid_round_submits_exactly_once(devnet: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    cwd, info = devnet
    keys, market = _setup(cwd, info)

    killed = _train(cwd, keys, 1, "trainer_after_upload")  # update stored, not committed
    assert killed.returncode == KILLED
    assert market.submitters(1) == []
    _train(cwd, keys, 1)  # restart: trains again (same bytes, same CID) and commits
    killed_after = _train(cwd, keys, 2, "trainer_after_submit")  # committed, then killed
    assert killed_after.returncode == KILLED
    again = _train(cwd, keys, 2)  # restart: sees its submission and does nothing

    subs = market.submissions(1, 0)
    assert sorted(s.trainer for s in subs) == sorted(market.submitters(1))
    assert len(subs) == 2
    assert "already submitted" in again.stdout


def test_aggregator_killed_before_posting_resumes_and_posts_once(devnet: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    cwd, info = devnet
    keys, market = _setup(cwd, info)
    for i in (1, 2):
        _train(cwd, keys, i)
    agg = ["aggregator", "run", "1", "--once", "--key-file", str(keys / "aggregator.key"),
           "--validation", "data/validation.npz"]

    killed = run(agg, cwd, check=False, extra_env={"MARKET_FAILPOINT": "aggregator_before_post"})
    assert killed.returncode == KILLED
    assert market.task(1).current_round == 0  # nothing posted
    store = Path(info["store_dir"])  # the devnet's store, which every command uses by default
    stored_before = set(store.iterdir())
    run(agg, cwd)  # restart: recomputes from chain + store and posts
    again = run(agg, cwd, check=False)  # a third start finds the task finished

    settled = market.settlements(1)
    assert [s["round"] for s in settled] == [0]  # posted exactly once
    receipt_cid = market.round_info(1, 0).receipt_cid
    assert (store / receipt_cid) in stored_before  # same receipt the killed run wrote
    assert "finished" in again.stdout or "finished" in again.stderr
    receipt = json.loads((store / receipt_cid).read_bytes())
    assert sum(receipt["bps_vector"]) == 10_000
