"""When a round closes (issue 12, row 2): at its submission deadline, or early only once the task's full
trainer count (``maxTrainers``) has submitted, never because the few trainers who joined so far have; the
round's phase as every reader derives it (``round_state`` with ``Chain.clock``); a mined revert decoded."""

from __future__ import annotations

import time

import pytest

from aggregator.service import Aggregator
from market.chain.contract import round_state
from market.cid import compute_cid
from market.errors import ContractRevert
from market.chain.client import Chain
from market.chain.devchain import AnvilProcess
from tests.conftest import Market, _market

SPEC = compute_cid(b"spec")


def create(m: Market, max_trainers: int, rounds: int = 2, **kw: int) -> int:
    task_id, _ = m.contract.create_task(
        m.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=b"\x11" * 32,
        aggregator=m.aggregator.address, rounds=rounds, reward_wei=10**18, max_trainers=max_trainers, **kw,
    )
    return task_id


def submit(m: Market, task_id: int, i: int, round_: int = 0) -> None:
    m.contract.submit_update(m.trainers[i], task_id, round_, compute_cid(bytes([round_, i])), b"\x01" * 32)


def post(m: Market, task_id: int, bps: list[int], round_: int = 0) -> None:
    m.contract.post_result(m.aggregator, task_id, round_, compute_cid(b"model"), compute_cid(b"receipt"), bps)


def test_the_first_trainers_to_join_cannot_close_a_round_early(market: Market) -> None:
    """Row 2: two of three possible trainers joined and submitted; the third can still join and submit."""
    task_id = create(market, max_trainers=3, submit_window=1000)
    for i in range(2):
        market.contract.join(market.trainers[i], task_id)
        submit(market, task_id, i)

    with pytest.raises(ContractRevert) as exc:  # everyone joined has submitted, but the task is not full
        post(market, task_id, [5000, 5000])
    assert exc.value.name == "MarketSubmissionsOpen"
    assert not Aggregator(market.contract, None, market.aggregator, None).submissions_closed(task_id)  # type: ignore[arg-type]

    market.contract.join(market.trainers[2], task_id)  # a late arrival still gets into round 0
    submit(market, task_id, 2)
    assert Aggregator(market.contract, None, market.aggregator, None).submissions_closed(task_id)  # type: ignore[arg-type]
    post(market, task_id, [3000, 3000, 4000])  # full: closes before the deadline
    assert market.contract.owed(market.trainers[2].address) == (10**18 // 2) * 4000 // 10_000  # 40 % of round 0's pool


def test_a_round_closes_early_once_max_trainers_submitted(market: Market) -> None:
    task_id = create(market, max_trainers=2, submit_window=1000)
    for i in range(2):
        market.contract.join(market.trainers[i], task_id)
    submit(market, task_id, 0)
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, [10000])
    assert exc.value.name == "MarketSubmissionsOpen"
    submit(market, task_id, 1)

    post(market, task_id, [5000, 5000])

    assert market.contract.task(task_id).current_round == 1


def test_a_round_with_fewer_than_max_trainers_closes_at_its_deadline(market: Market) -> None:
    task_id = create(market, max_trainers=5, submit_window=100)
    market.contract.join(market.trainers[0], task_id)
    submit(market, task_id, 0)
    agg = Aggregator(market.contract, None, market.aggregator, None)  # type: ignore[arg-type]
    assert not agg.submissions_closed(task_id)
    market.chain.advance_time(101)
    assert agg.submissions_closed(task_id)

    post(market, task_id, [10000])

    assert market.contract.owed(market.trainers[0].address) == 5 * 10**17


def test_round_state_follows_the_contract_through_every_phase(market: Market) -> None:
    task_id = create(market, max_trainers=2, rounds=1, submit_window=100, result_window=100)
    market.contract.join(market.trainers[0], task_id)

    def state() -> str:
        return round_state(market.contract.task(task_id), market.chain.clock()).phase

    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "open" and 0 < s.seconds_left <= 100  # type: ignore[operator]
    assert s.text().startswith("submissions open (closes in ")
    submit(market, task_id, 0)
    assert state() == "open"  # one of two possible trainers submitted
    market.chain.advance_time(101)
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "closed" and s.text().startswith("submissions closed, waiting for the aggregator's result")
    market.contract.join(market.trainers[1], task_id)
    with pytest.raises(ContractRevert) as exc:  # the contract agrees: too late to submit
        submit(market, task_id, 1)
    assert exc.value.name == "MarketSubmissionClosed"
    market.chain.advance_time(100)
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "settleable" and f"market task settle {task_id} --round 0" in s.text()
    market.contract.settle_without_result(market.outsider, task_id)
    assert state() == "settled"


def test_round_state_closes_early_only_when_full(market: Market) -> None:
    task_id = create(market, max_trainers=2, submit_window=1000)
    for i in range(2):
        market.contract.join(market.trainers[i], task_id)
    submit(market, task_id, 0)
    assert round_state(market.contract.task(task_id), market.chain.clock()).phase == "open"
    submit(market, task_id, 1)
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "closed" and s.closed_early


def test_clock_moves_on_while_an_idle_anvil_mines_nothing() -> None:
    """Row 6: Anvil's latest block keeps its timestamp while nobody transacts; the phase must not freeze.

    A fresh Anvil of its own: the session's shared one has had its clock moved ahead by other tests
    (evm_increaseTime), and this test waits on the wall clock."""
    with AnvilProcess(accounts=8) as proc:
        _idle_anvil_clock(_market(Chain.connect(proc.rpc_url)))


def _idle_anvil_clock(m: Market) -> None:
    task_id = create(m, max_trainers=4, submit_window=2)
    m.contract.join(m.trainers[0], task_id)
    deadline = m.contract.deadlines(task_id)[0]
    while int(time.time()) < deadline + 1:
        time.sleep(0.25)

    assert m.chain.now() < deadline  # the latest block did not move ...
    assert m.chain.clock() >= deadline  # ... the clock did
    assert round_state(m.contract.task(task_id), m.chain.clock()).phase == "closed"
    assert Aggregator(m.contract, None, m.aggregator, None).submissions_closed(task_id)  # type: ignore[arg-type]


def test_a_mined_revert_is_decoded_not_just_reported(anvil_market: Market) -> None:
    """Row 7: a transaction that is mined and reverts (gas given, so no estimate caught it) names its error."""
    m = anvil_market
    task_id = create(m, max_trainers=4, submit_window=60)
    m.contract.join(m.trainers[0], task_id)
    m.chain.advance_time(61)
    call = m.contract.c.functions.submitUpdate(task_id, 0, b"\x01" * 32, b"\x00" * 32)

    with pytest.raises(ContractRevert) as exc:
        m.chain.transact(m.trainers[0], call, gas=200_000)

    assert exc.value.name == "MarketSubmissionClosed"
    assert "too late: submissions for this round closed at unix time" in str(exc.value)
    assert "\n" not in str(exc.value)
