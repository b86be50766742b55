"""Ganache 7 (npm ``ganache``) runs the same contract as Anvil: one shanghai build, no transient storage.

The end-to-end round on Ganache is ``tests/e2e/test_simulate.py::test_sign_flip_attacker_is_excluded_and_unpaid[ganache]``;
these check what differs between nodes: how a revert arrives, and that the process is gone afterwards.
"""

from __future__ import annotations

import subprocess
from typing import Iterator

import pytest

from market.chain.client import Chain
from market.cid import compute_cid
from market.chain.compile import load_artifact
from market.chain.devchain import GanacheProcess
from market.errors import ContractRevert
from tests.conftest import Market, _market


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
    task_id, _ = m.contract.create_task(m.owner, spec_cid=compute_cid(b"s"), initial_model_cid=compute_cid(b"s"),
                                        validation_commitment=b"\x00" * 32, aggregator=m.aggregator.address,
                                        rounds=1, reward_wei=10**15, submit_window=60)
    m.contract.join(m.trainers[0], task_id)

    with pytest.raises(ContractRevert) as stranger:
        m.contract.post_result(m.outsider, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [10000])
    m.chain.advance_time(61)
    with pytest.raises(ContractRevert) as late:
        m.contract.submit_update(m.trainers[0], task_id, 0, compute_cid(b"u"), b"\x00" * 32)

    assert stranger.value.name == "MarketNotAggregator"
    assert late.value.name == "MarketSubmissionClosed"
    assert "\n" not in str(late.value)


def test_ganache_process_is_gone_after_the_context_exits() -> None:
    with GanacheProcess(accounts=2) as proc:
        pid = proc.proc.pid  # type: ignore[union-attr]
        assert Chain.connect(proc.rpc_url).chain_id == 1337
    out = subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True, text=True).stdout.strip()
    assert out in ("", "Z")
