"""The same contract behaviour on a real Anvil process (errors arrive by a different path, blocks carry
real hashes, time moves with the wall clock)."""

from __future__ import annotations

import subprocess

import pytest

from market.chain.devchain import AnvilProcess
from market.errors import ContractRevert
from tests.conftest import Market
from tests.contracts.helpers import (
    SHORT,
    STAKE,
    assert_conserved,
    close_commits,
    commit,
    create,
    cumulative,
    expected_seed,
    logs,
    play_round,
    post,
)


def test_anvil_late_commit_reverts_with_custom_error(anvil_market: Market) -> None:
    m = anvil_market
    task_id = create(m, rounds=1, reward=10**15, **SHORT)
    m.contract.join(m.trainers[0], task_id)
    close_commits(m, task_id)

    with pytest.raises(ContractRevert) as exc:
        commit(m, task_id, 0, m.trainers[0])

    assert exc.value.name == "MarketSubmissionClosed"
    assert "\n" not in str(exc.value)


def test_anvil_result_from_a_stranger_reverts(anvil_market: Market) -> None:
    m = anvil_market
    task_id = create(m, rounds=1, reward=10**15, max_trainers=1)
    m.contract.join(m.trainers[0], task_id)
    play_round(m, task_id, 0, m.trainers[:1])

    with pytest.raises(ContractRevert) as exc:
        post(m, task_id, 0, [10000], sender=m.outsider)

    assert exc.value.name == "MarketNotAggregator"


def test_anvil_full_round_with_stakes_and_the_seal_blocks_hash(anvil_market: Market) -> None:
    """Commit, reveal (one trainer stays silent), seal after the deadline, the seed from the seal block's real
    hash, the result, withdrawals to zero."""
    m = anvil_market
    task_id = create(m, rounds=1, reward=10**15, max_trainers=3, stake_wei=STAKE, **SHORT)
    a, b, c = m.trainers[:3]
    for t in (a, b, c):
        m.contract.join(t, task_id)
    play_round(m, task_id, 0, [a, b, c], revealers=[a, b])
    post(m, task_id, 0, [2500, 7500])  # seals first: c never revealed

    info = m.contract.task(task_id)
    seed = m.contract.round_info(task_id, 0).seed
    assert info.finished
    assert seed == expected_seed(m, task_id, 0, _seal_block(m, task_id)) != b"\x00" * 32
    shares = cumulative(10**15 + STAKE, [2500, 7500])
    assert [m.contract.withdraw(t, task_id) for t in (a, b)] == [shares[0] + STAKE, shares[1] + STAKE]
    assert m.contract.owed(task_id, c.address) == 0
    assert m.chain.balance(m.contract.address) == 0
    assert_conserved(m, task_id)


def _seal_block(m: Market, task_id: int) -> int:
    (ev,) = logs(m, "RoundSealed", task_id)
    return int(ev["args"]["sealBlock"])


def test_anvil_process_is_gone_after_the_context_exits() -> None:
    with AnvilProcess(accounts=2) as proc:
        pid = proc.proc.pid  # type: ignore[union-attr]
        assert proc.proc.poll() is None  # type: ignore[union-attr]
    out = subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True, text=True).stdout.strip()
    assert out in ("", "Z")
