"""Ganache 7 (npm ``ganache``) runs the same contract as Anvil: one shanghai build, no transient storage.

The end-to-end round on Ganache is ``tests/e2e/test_simulate.py::test_sign_flip_attacker_is_excluded_and_unpaid[ganache]``;
these check what differs between nodes: how a revert arrives, that a commit–reveal round with its seed
settles, and that the process is gone afterwards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from market.chain.client import Chain
from market.chain.compile import load_artifact
from market.chain.devchain import GanacheProcess
from market.errors import ContractRevert
from tests.conftest import Market, _market
from tests.contracts.helpers import STAKE, close_commits, commit, create, expected_seed, play_round, post


@pytest.fixture(scope="module")
def ganache() -> Iterator[GanacheProcess]:
    proc = GanacheProcess(accounts=10)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def ganache_market(ganache: GanacheProcess) -> Market:
    return _market(Chain.connect(ganache.rpc_url))


def test_the_contract_is_built_for_a_pre_cancun_evm() -> None:
    art = load_artifact("ContributionMarket")

    assert art["evmVersion"] == "shanghai"


def test_ganache_is_the_node_and_reverts_arrive_as_custom_errors(ganache_market: Market) -> None:
    m = ganache_market
    assert m.chain.w3.client_version.startswith("Ganache/v7.")
    task_id = create(m, rounds=1, reward=10**15, max_trainers=2, submit_window=60)
    m.contract.join(m.trainers[0], task_id)
    m.contract.join(m.trainers[1], task_id)
    play_round(m, task_id, 0, m.trainers[:1])

    with pytest.raises(ContractRevert) as stranger:
        post(m, task_id, 0, [10000], sender=m.outsider)
    close_commits(m, task_id)
    with pytest.raises(ContractRevert) as late:
        commit(m, task_id, 0, m.trainers[1])

    assert stranger.value.name == "MarketNotAggregator"
    assert late.value.name == "MarketSubmissionClosed"
    assert "\n" not in str(late.value)


def test_ganache_settles_a_commit_reveal_round_with_its_seed(ganache_market: Market) -> None:
    m = ganache_market
    task_id = create(m, rounds=1, reward=10**15, max_trainers=2, stake_wei=STAKE)
    for t in m.trainers[:2]:
        m.contract.join(t, task_id)
    play_round(m, task_id, 0, m.trainers[:2])
    seal_block = m.contract.task(task_id).seal_block

    post(m, task_id, 0, [4000, 6000])

    assert m.contract.round_info(task_id, 0).seed == expected_seed(m, task_id, 0, seal_block)
    assert m.contract.withdraw(m.trainers[1], task_id) == 6 * 10**14 + STAKE


def test_ganache_process_is_gone_after_the_context_exits() -> None:
    with GanacheProcess(accounts=2) as proc:
        pid = proc.proc.pid  # type: ignore[union-attr]
        assert Chain.connect(proc.rpc_url).chain_id == 1337
    out = subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True, text=True).stdout.strip()
    assert out in ("", "Z")
