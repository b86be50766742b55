"""A panel of three in separate processes on Anvil: `market devnet --aggregators 3`, an owner that asks for
`--panel 3`, three `market aggregator run` processes and two trainer nodes. Each drawn member computes the
round, commits to its result, waits until the other members have committed to theirs, and posts; two
identical results settle the round. No member loses bond, and the fee goes to the members whose votes
settled it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from market.chain.client import Chain
from market.chain.contract import MarketContract, vote_commitment
from market.chain.registry import DEV_BOND
from tests.app.test_cli import run
from tests.conftest import MARKET, clean_env


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(MARKET + args, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 400) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{out}\n{err}"
    return out


@pytest.mark.devnet_args("--aggregators", "3")
def test_three_aggregator_processes_commit_then_vote_and_settle_the_round(devnet: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    cwd, info = devnet
    keys = Path(info["accounts"][0]["key_file"]).parent
    run(["data", "split", "--trainers", "2", "--out", "data"], cwd)
    run(["task", "create", "--key-file", str(keys / "owner.key"), "--validation", "data/validation.npz", "--rounds", "1",
         "--max-trainers", "2", "--panel", "3", "--fee-bps", "100"], cwd)
    market = MarketContract(Chain.connect(info["rpc"]), info["contract"])
    assert (market.task(1).panel, market.task(1).quorum) == (3, 2)
    aggregators = ["aggregator", "aggregator-2", "aggregator-3"]
    address = {a["role"]: a["address"] for a in info["accounts"]}
    procs = [_start(["aggregator", "run", "1", "--once", "--key-file", str(keys / f"{name}.key"),
                     "--validation", "data/validation.npz"], cwd) for name in aggregators]
    trainers = [_start(["trainer", "run", "1", "--once", "--key-file", str(keys / f"trainer-{i}.key"),
                        "--data", f"data/trainer-{i}.npz"], cwd) for i in (1, 2)]
    for proc in trainers:
        _finish(proc)
    outs = {name: _finish(proc) for name, proc in zip(aggregators, procs)}

    assert [s["round"] for s in market.settlements(1)] == [0]
    assert market.task(1).finished
    votes = market.votes(1, 0)
    assert len(votes) >= 2 and len(set(votes.values())) == 1, votes  # identical results only
    for member, result in votes.items():  # each vote opened the commitment its member made before any vote was seen
        assert market.registry.vote_commitment_of(1, 0, member) == vote_commitment(result, member)
    assert all("Traceback" not in out for out in outs.values())
    fee = market.task(1).fees
    assert fee > 0 and sum(market.owed(1, address[name]) for name in aggregators) == fee
    assert all(market.registry.member(address[name]).bond == DEV_BOND for name in aggregators)  # type: ignore[union-attr]
