"""The API's round phase (issue 12, row 6): `round_state` on a task and `phase` on its rounds follow the chain's
state and clock: open, closed once the task's full trainer count submitted or the deadline passed, settleable
after the result window, settled. The existing `status` fields keep their meaning."""

from __future__ import annotations

from pathlib import Path

from market.cid import compute_cid
from market.store.local import LocalStore
from market_app.api.reads import MarketReader
from tests.conftest import Market


def create(m: Market, max_trainers: int) -> int:
    task_id, _ = m.contract.create_task(
        m.owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"), validation_commitment=b"\x11" * 32,
        aggregator=m.aggregator.address, rounds=1, reward_wei=10**18, max_trainers=max_trainers,
        submit_window=100, result_window=100,
    )
    return task_id


def submit(m: Market, task_id: int, i: int) -> None:
    m.contract.join(m.trainers[i], task_id)
    m.contract.submit_update(m.trainers[i], task_id, 0, compute_cid(bytes([i])), b"\x01" * 32)


def phases(reader: MarketReader, task_id: int) -> tuple[str, str, str, str]:
    detail = reader.task_detail(task_id)
    (round0,) = reader.rounds(task_id).rounds
    assert reader.overview(task_id).task.round_state == detail.round_state  # one state, however it is read
    assert round0.phase == reader.round(task_id, 0).phase
    return detail.round_state, detail.round_state_text, round0.phase, round0.status


def test_round_state_in_the_api(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    task_id = create(market, max_trainers=2)

    state, text, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("open", "open", "open") and text.startswith("submissions open (closes in ")

    submit(market, task_id, 0)
    assert phases(reader, task_id)[0] == "open"  # one of two possible trainers: still open
    submit(market, task_id, 1)
    state, text, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("closed", "closed", "open")  # status keeps its meaning: not settled
    assert text.startswith("submissions closed, waiting for the aggregator's result (window ends in ")

    market.chain.advance_time(201)
    state, text, phase, _ = phases(reader, task_id)
    assert (state, phase) == ("settleable", "settleable") and "market task settle" in text

    market.contract.settle_without_result(market.outsider, task_id)
    state, _, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("settled", "settled", "fallback")


def test_deadline_closes_a_round_that_is_not_full(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    task_id = create(market, max_trainers=3)
    submit(market, task_id, 0)
    detail = reader.task_detail(task_id)
    assert detail.round_state == "open"
    assert detail.submission_deadline is not None and detail.submission_deadline == market.contract.deadlines(task_id)[0]
    market.chain.advance_time(101)
    assert reader.task_detail(task_id).round_state == "closed"
