"""How often a round reads the chain: one ``getTask`` per trainer round, two per aggregator round.

Each role reads a round once (:meth:`market.chain.contract.MarketContract.round_snapshot`) and passes
it along; the counts below are the JSON-RPC requests the real roles send on the in-process chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aggregator.service import Aggregator
from market.data import digits_splits
from market_app.api.reads import MarketReader
from simulator.environment import open_environment
from simulator.simulate import SimulateConfig, post_task
from tests.support.rounds import play_round
from tests.support.rpc_count import GET_TASK, count_requests
from trainer_node.node import TrainerNode

N = 4


@pytest.fixture
def running(tmp_path: Path) -> Any:
    cfg = SimulateConfig(trainers=N, rounds=3, chain="tester")
    splits = digits_splits(N, "iid", 0)
    with open_environment(chain="tester", n_accounts=N + 2, store="local", store_dir=str(tmp_path / "store")) as env:
        task_id, _ = post_task(env, env.accounts[0], cfg, splits.validation, 10**18)
        nodes = [TrainerNode(env.contract, env.store, a, s) for a, s in zip(env.accounts[2:], splits.trainers)]
        for node in nodes:
            node.join(task_id)
        yield env, task_id, nodes, Aggregator(env.contract, env.store, env.accounts[1], splits.validation)


def test_a_trainer_round_reads_the_task_once(running: Any) -> None:
    env, task_id, nodes, _agg = running

    with count_requests(env.chain.w3) as seen:
        res = nodes[0].run_round(task_id)

    assert res.cid is not None
    assert seen[f"eth_call:{GET_TASK}"] == 1, dict(seen)
    assert seen["eth_getLogs"] == 0, dict(seen)


def test_an_aggregator_round_reads_the_task_twice_and_the_logs_three_times(running: Any) -> None:
    env, task_id, nodes, agg = running
    for r in range(2):  # the second round also reads the first round's receipt (cumulative values)
        play_round(env, nodes, task_id=task_id)  # commit, reveal (the last reveal seals the round)

        with count_requests(env.chain.w3) as seen:
            posted = agg.run_round(task_id)

        assert posted.round == r and sum(posted.bps) == 10_000
        # once for the snapshot, once right before posting (a settled round must not be posted into)
        assert seen[f"eth_call:{GET_TASK}"] == 2, dict(seen)
        # settled rounds, joins, the round's submissions; from the second round on also every round's reveals and
        # joins, once (an earlier receipt's submitters must be the ones revealed: aggregator.ledger)
        assert seen["eth_getLogs"] == (3 if r == 0 else 5), dict(seen)


def chain_reads(seen: dict[str, int]) -> int:
    """Requests that read chain state (web3's own bookkeeping, eth_chainId and eth_accounts, left out)."""
    return sum(v for k, v in seen.items() if k.startswith(("eth_call", "eth_getLogs", "eth_getBlock", "eth_blockNumber")))


def test_the_dashboard_overview_reads_do_not_grow_with_rounds(running: Any) -> None:
    env, task_id, nodes, agg = running
    counts = []
    for r in range(3):
        play_round(env, nodes, agg, task_id=task_id)
        reader = MarketReader(env.contract, env.store)  # no cache carried over
        with count_requests(env.chain.w3) as seen:
            overview = reader.overview(task_id)
        counts.append((chain_reads(seen), seen[f"eth_call:{GET_TASK}"], seen["eth_getLogs"]))
        assert [v.status for v in overview.rounds[: r + 1]] == ["result"] * (r + 1)

    # a fixed number of reads plus a few per trainer (owed, its seat: the stake held), however many rounds have
    # settled; the event logs are one query per kind of event (joins, settlements, commitments, reveals, credits,
    # stakes lost and returned, withdrawals), whatever the number of rounds
    reads = [c[0] for c in counts]
    assert max(reads) - min(reads) <= 1, counts  # the open task also reads its deadlines
    assert all(c[1] == 1 for c in counts), counts
    assert len({c[2] for c in counts}) == 1 and counts[0][2] <= 5 + N, counts
    assert max(reads) <= 12 + 3 * N, counts
