"""The same contract behaviour on a real Anvil process (errors arrive by a different path)."""

from __future__ import annotations

import subprocess

import pytest

from market.cid import compute_cid
from market.chain.devchain import AnvilProcess
from market.errors import ContractRevert
from tests.conftest import Market


def test_anvil_late_submission_reverts_with_custom_error(anvil_market: Market) -> None:
    m = anvil_market
    task_id, _ = m.contract.create_task(m.owner, spec_cid=compute_cid(b"s"), initial_model_cid=compute_cid(b"s"), validation_commitment=b"\x00" * 32,
                                        aggregator=m.aggregator.address, rounds=1, reward_wei=10**15, submit_window=60)
    m.contract.join(m.trainers[0], task_id)
    m.chain.advance_time(61)

    with pytest.raises(ContractRevert) as exc:
        m.contract.submit_update(m.trainers[0], task_id, 0, compute_cid(b"u"), b"\x00" * 32)

    assert exc.value.name == "MarketSubmissionClosed"
    assert "\n" not in str(exc.value)


def test_anvil_result_from_a_stranger_reverts(anvil_market: Market) -> None:
    m = anvil_market
    task_id, _ = m.contract.create_task(m.owner, spec_cid=compute_cid(b"s"), initial_model_cid=compute_cid(b"s"), validation_commitment=b"\x00" * 32,
                                        aggregator=m.aggregator.address, rounds=1, reward_wei=10**15)
    m.contract.join(m.trainers[0], task_id)
    m.contract.submit_update(m.trainers[0], task_id, 0, compute_cid(b"u"), b"\x00" * 32)

    with pytest.raises(ContractRevert) as exc:
        m.contract.post_result(m.outsider, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [10000])

    assert exc.value.name == "MarketNotAggregator"


def test_anvil_process_is_gone_after_the_context_exits() -> None:
    with AnvilProcess(accounts=2) as proc:
        pid = proc.proc.pid  # type: ignore[union-attr]
        assert proc.proc.poll() is None  # type: ignore[union-attr]
    out = subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True, text=True).stdout.strip()
    assert out in ("", "Z")
