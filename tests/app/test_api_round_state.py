"""The API's round phase (issue 12, row 6; issue 14): `round_state` on a task and `phase` on its rounds follow the
chain's state and clock through every phase of the fixed schedule: waiting, open (commit), reveal (commits closed
by the deadline or once the task's full trainer count committed), closed (reveals closed: all revealed, or the
deadline), backup (the backup aggregator's window), settleable, settled. The existing `status` fields keep their
meaning; the round shows its commitments and reveals, and a stake lost by a committer that did not reveal."""

from __future__ import annotations

from pathlib import Path

from market.cid import compute_cid
from market.store.local import LocalStore
from market_app.api.reads import MarketReader
from tests.app.chain_steps import close_commits, commit, open_round, past_windows, prove_available, reveal
from tests.conftest import Market

STAKE = 10**16


def create(m: Market, max_trainers: int, rounds: int = 1, backup: bool = False, stake: int = 0) -> int:
    task_id, _ = m.contract.create_task(
        m.owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"), validation_commitment=b"\x11" * 32,
        rounds=rounds, reward_wei=10**18, max_trainers=max_trainers,
        submit_window=100, reveal_window=50, result_window=100, stake_wei=stake, backup=backup,
    )
    return task_id


def cid(i: int) -> str:
    return compute_cid(bytes([i]))


def phases(reader: MarketReader, task_id: int) -> tuple[str, str, str, str]:
    detail = reader.task_detail(task_id)
    round0 = reader.rounds(task_id).rounds[0]
    assert reader.overview(task_id).task.round_state == detail.round_state  # one state, however it is read
    assert round0.phase == reader.round(task_id, 0).phase
    return detail.round_state, detail.round_state_text, round0.phase, round0.status


def test_round_state_in_the_api(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    task_id = create(market, max_trainers=2)
    t0, t1 = market.trainers[:2]

    state, text, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("open", "open", "open") and text.startswith("submissions open (closes in ")

    commit(market.contract, t0, task_id, cid(0))
    assert phases(reader, task_id)[0] == "open"  # one of two possible trainers: still open
    commit(market.contract, t1, task_id, cid(1))
    state, text, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("reveal", "reveal", "open")  # status keeps its meaning: not settled
    assert text.startswith("submissions closed, 2 committed; reveals open (close in ")
    detail = reader.task_detail(task_id)
    assert (detail.committed_count, detail.revealed_count) == (2, 0)
    subs = reader.submissions(task_id, 0).submissions
    assert [(s.trainer, s.status, s.cid) for s in subs] == [(t0.address, "committed", None), (t1.address, "committed", None)]

    reveal(market.contract, t0, task_id, cid(0))
    reveal(market.contract, t1, task_id, cid(1))  # the last reveal seals the round
    state, text, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("closed", "closed", "open")
    assert text.startswith("reveals closed, waiting for the aggregator's result (window ends in ")
    subs = reader.submissions(task_id, 0).submissions
    assert [(s.status, s.cid) for s in subs] == [("revealed", cid(0)), ("revealed", cid(1))]
    assert all(s.commit_hash and s.commitment for s in subs)

    past_windows(market.contract, task_id)
    state, text, phase, _ = phases(reader, task_id)
    assert (state, phase) == ("settleable", "settleable") and "market task settle" in text

    market.contract.settle_without_result(market.outsider, task_id)
    state, _, phase, status = phases(reader, task_id)
    assert (state, phase, status) == ("settled", "settled", "fallback")


def test_waiting_and_backup_phases(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    market.contract.registry.register(market.outsider)  # a second registered aggregator: the backup
    task_id = create(market, max_trainers=1, rounds=2, backup=True)
    t0 = market.trainers[0]
    commit(market.contract, t0, task_id, cid(0))  # the only seat: commits close at once
    reveal(market.contract, t0, task_id, cid(0))
    info = market.contract.task(task_id)
    assert reader.task_detail(task_id).round_state == "closed"
    market.chain.advance_to(info.opens_at(0) + 100 + 50 + 100)  # the aggregator's window is over
    detail = reader.task_detail(task_id)
    assert detail.round_state == "backup" and "backup aggregator may post" in detail.round_state_text
    assert detail.backup is True and detail.period == 100 + 50 + 2 * 100 + 50
    market.chain.advance_to(info.opens_at(0) + 100 + 50 + 2 * 100)  # the backup's window is over too
    detail = reader.task_detail(task_id)
    assert detail.round_state == "availability" and "prove their updates available" in detail.round_state_text
    assert (detail.final_deadline, detail.round_end) == (info.opens_at(0) + 350, info.opens_at(1))


def test_an_empty_round_settled_early_leaves_the_next_one_waiting(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    task_id = create(market, max_trainers=2, rounds=2)
    close_commits(market.contract, task_id)  # nobody committed: the round can be refunded at once
    assert reader.task_detail(task_id).round_state == "settleable"
    market.contract.settle_without_result(market.outsider, task_id)
    detail = reader.task_detail(task_id)
    info = market.contract.task(task_id)
    # round 1 opens by the schedule, not when round 0 settled
    assert (detail.current_round, detail.round_state, detail.opens_at) == (1, "waiting", info.opens_at(1))
    assert detail.round_state_text.startswith("round opens in ")
    assert reader.round(task_id, 0).status == "refunded" and detail.empty_streak == 1


def test_deadline_closes_a_round_that_is_not_full(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    task_id = create(market, max_trainers=3)
    commit(market.contract, market.trainers[0], task_id, cid(0))
    detail = reader.task_detail(task_id)
    assert detail.round_state == "open"
    schedule = market.contract.schedule(task_id)
    assert (detail.opens_at, detail.submission_deadline, detail.reveal_deadline, detail.result_deadline,
            detail.final_deadline) == schedule
    close_commits(market.contract, task_id)
    assert reader.task_detail(task_id).round_state == "reveal"


def test_a_committer_that_does_not_reveal_shows_its_lost_stake(market: Market, tmp_path: Path) -> None:
    reader = MarketReader(market.contract, LocalStore(str(tmp_path / "store")))
    task_id = create(market, max_trainers=2, stake=STAKE)
    t0, t1 = market.trainers[:2]
    open_round(market.contract, task_id)
    commit(market.contract, t0, task_id, cid(0))
    commit(market.contract, t1, task_id, cid(1))
    reveal(market.contract, t0, task_id, cid(0))  # t1 never reveals
    assert reader.task_detail(task_id).stakes_held_wei == str(2 * STAKE)

    prove_available(market.contract, task_id, [(t0, bytes([0]))])
    past_windows(market.contract, task_id)
    market.contract.settle_without_result(market.outsider, task_id)  # t0 alone: the pool and t1's stake

    r0 = reader.round(task_id, 0)
    by = {t.address: t for t in r0.trainers}
    assert (by[t1.address].status, by[t1.address].stake_lost_wei) == ("not_revealed", str(STAKE))
    assert (by[t0.address].status, by[t0.address].credited_wei) == ("fallback", str(10**18 + STAKE))
    assert (r0.committed, r0.revealed, r0.stakes_lost_wei) == (2, 1, str(STAKE))
    assert [s.status for s in r0.submissions] == ["revealed", "not_revealed"]
    pay = {p.address: p for p in reader.payouts(task_id).trainers}
    # the task finished: t0 is owed its credit and its own stake back, t1 nothing
    assert pay[t0.address].owed_wei == str(10**18 + 2 * STAKE) and pay[t1.address].owed_wei == "0"
    assert pay[t1.address].stake_lost_wei == str(STAKE) and pay[t0.address].stake_wei == str(STAKE)
    market.contract.withdraw(t0, task_id)
    pay = {p.address: p for p in reader.payouts(task_id).trainers}
    assert (pay[t0.address].withdrawn_wei, pay[t0.address].owed_wei) == (str(10**18 + 2 * STAKE), "0")
    assert pay[t0.address].stake_returned_wei == str(STAKE)
