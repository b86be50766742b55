"""When a round's windows close (issue 12, row 2; issue 14): commits close at their deadline, or early only
once the task's full trainer count (``maxTrainers``) has committed, never because the few trainers who
joined so far have; reveals close at their deadline or once every committer revealed; the round's phase
as every reader derives it (``round_state`` with ``Chain.clock``); a mined revert decoded."""

from __future__ import annotations

import time

import pytest

from market.chain.client import Chain
from market.chain.contract import round_state
from market.chain.devchain import AnvilProcess
from market.errors import ContractRevert
from tests.conftest import Market, _market
from tests.contracts.helpers import (
    SHORT,
    advance_to,
    close_commits,
    commit,
    create,
    cumulative,
    drawn,
    play_round,
    post,
    register,
    reveal,
    schedule,
)


def phase(m: Market, task_id: int) -> str:
    return round_state(m.contract.task(task_id), m.chain.clock()).phase


def test_the_first_trainers_to_join_cannot_close_commits_early(market: Market) -> None:
    """Row 2: two of three possible trainers joined and committed; the third can still join and commit."""
    task_id = create(market, max_trainers=3, submit_window=1000)
    ups = {}
    for t in market.trainers[:2]:
        market.contract.join(t, task_id)
        ups[t.address] = commit(market, task_id, 0, t)

    with pytest.raises(ContractRevert) as exc:  # everyone joined has committed, but the task is not full
        reveal(market, task_id, 0, market.trainers[0], ups[market.trainers[0].address])
    assert exc.value.name == "MarketRevealNotOpen"
    assert phase(market, task_id) == "open"

    late = market.trainers[2]
    market.contract.join(late, task_id)  # a late arrival still gets into round 0
    ups[late.address] = commit(market, task_id, 0, late)
    assert phase(market, task_id) == "reveal"  # full: commits close before the deadline
    for t in market.trainers[:3]:
        reveal(market, task_id, 0, t, ups[t.address])
    post(market, task_id, 0, [3000, 3000, 4000])
    assert market.contract.owed(task_id, late.address) == cumulative(10**18 // 2, [3000, 3000, 4000])[2]


def test_reveals_open_early_once_max_trainers_committed(market: Market) -> None:
    task_id = create(market, max_trainers=2, submit_window=1000)
    a, b = market.trainers[:2]
    for t in (a, b):
        market.contract.join(t, task_id)
    ua = commit(market, task_id, 0, a)
    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, a, ua)
    assert exc.value.name == "MarketRevealNotOpen"
    ub = commit(market, task_id, 0, b)

    reveal(market, task_id, 0, a, ua)
    reveal(market, task_id, 0, b, ub)  # the last reveal seals the round
    post(market, task_id, 0, [5000, 5000])

    assert market.contract.task(task_id).current_round == 1
    assert market.chain.clock() < schedule(market, task_id)["opens"]  # round 1 still opens on schedule


def test_commits_from_fewer_than_max_trainers_close_at_the_deadline(market: Market) -> None:
    task_id = create(market, max_trainers=5, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    upd = commit(market, task_id, 0, trainer)
    assert phase(market, task_id) == "open"
    close_commits(market, task_id)
    assert phase(market, task_id) == "reveal"

    reveal(market, task_id, 0, trainer, upd)
    post(market, task_id, 0, [10_000])

    assert market.contract.owed(task_id, trainer.address) == 5 * 10**17


def test_round_state_follows_the_contract_through_every_phase(market: Market) -> None:
    register(market, market.outsider)  # a second aggregator: a panel of one and a backup each round
    task_id = create(market, max_trainers=2, rounds=2, backup=True, **SHORT)
    a, b = market.trainers[:2]
    market.contract.join(a, task_id)

    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "open" and 0 < s.seconds_left <= 60  # type: ignore[operator]
    assert s.text().startswith("submissions open (closes in ")
    ua = commit(market, task_id, 0, a)
    assert phase(market, task_id) == "open"  # one of two possible trainers committed
    close_commits(market, task_id)
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "reveal" and s.text().startswith("submissions closed, 1 committed; reveals open")
    market.contract.join(b, task_id)
    with pytest.raises(ContractRevert) as exc:  # the contract agrees: too late to commit
        commit(market, task_id, 0, b)
    assert exc.value.name == "MarketSubmissionClosed"
    reveal(market, task_id, 0, a, ua)  # every committer revealed: sealed
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "closed" and s.text().startswith("reveals closed, waiting for the aggregator's result")
    (primary,), _ = drawn(market, task_id)
    post(market, task_id, 0, [10_000], sender=primary)  # early: round 1 still waits for its time
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert (s.round, s.phase) == (1, "waiting") and s.text().startswith("round opens in ")

    ups = play_round(market, task_id, 1, [a, b])
    assert phase(market, task_id) == "closed"
    advance_to(market, schedule(market, task_id)["result"])
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "backup" and s.text().startswith("the aggregator missed its window")
    with pytest.raises(ContractRevert) as exc2:  # the contract agrees: not yet the availability window
        market.contract.prove_available(a, task_id, 1, ups[a.address].commitment, ups[a.address].salt,
                                        ups[a.address].blob)
    assert exc2.value.name == "MarketNotAvailabilityWindow"
    when = schedule(market, task_id)
    advance_to(market, when["final"])
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "availability" and s.text().startswith("no result came: revealed trainers prove")
    assert (s.final_deadline, s.round_end) == (when["final"], when["end"])
    assert 0 < s.seconds_left <= SHORT["reveal_window"]  # type: ignore[operator]
    market.contract.prove_available(a, task_id, 1, ups[a.address].commitment, ups[a.address].salt,
                                    ups[a.address].blob)  # the contract agrees: the window is open
    with pytest.raises(ContractRevert) as exc3:  # ... and it is not settleable yet
        market.contract.settle_without_result(market.outsider, task_id)
    assert exc3.value.name == "MarketResultWindowOpen"
    advance_to(market, when["end"])
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "settleable" and f"market task settle {task_id} --round 1" in s.text()
    receipt = market.contract.settle_without_result(market.outsider, task_id)
    assert phase(market, task_id) == "settled"
    penalty = market.contract.registry.penalty()  # both drawn aggregators stayed silent: a, who proved, gets both
    assert market.contract.settlement(receipt)["penalties"] == {market.aggregator.address: penalty,
                                                                 market.outsider.address: penalty}
    assert market.contract.registry.credit(a.address) == 2 * penalty


def test_round_state_of_commits_never_revealed_is_settleable_after_the_reveal_window(market: Market) -> None:
    task_id = create(market, max_trainers=2, **SHORT)
    market.contract.join(market.trainers[0], task_id)
    commit(market, task_id, 0, market.trainers[0])
    close_commits(market, task_id)
    assert phase(market, task_id) == "reveal"
    advance_to(market, schedule(market, task_id)["reveal"])
    assert phase(market, task_id) == "settleable"
    market.contract.settle_without_result(market.outsider, task_id)  # the contract agrees
    assert market.contract.round_info(task_id, 0).settlement == "refunded"


def test_round_state_of_a_round_nobody_committed_to_is_settleable_once_commits_close(market: Market) -> None:
    task_id = create(market, max_trainers=2, **SHORT)
    close_commits(market, task_id)
    assert phase(market, task_id) == "settleable"
    market.contract.settle_without_result(market.outsider, task_id)
    assert market.contract.round_info(task_id, 0).settlement == "refunded"


def test_round_state_closes_early_only_when_full(market: Market) -> None:
    task_id = create(market, max_trainers=2, submit_window=1000)
    for t in market.trainers[:2]:
        market.contract.join(t, task_id)
    commit(market, task_id, 0, market.trainers[0])
    assert phase(market, task_id) == "open"
    commit(market, task_id, 0, market.trainers[1])
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert s.phase == "reveal" and s.closed_early


@pytest.mark.slow
def test_clock_moves_on_while_an_idle_anvil_mines_nothing() -> None:
    """Row 6: Anvil's latest block keeps its timestamp while nobody transacts; the phase must not freeze.

    A fresh Anvil of its own: the session's shared one has had its clock moved ahead by other tests
    (evm_increaseTime), and this test waits on the wall clock -- for the shortest commit window a task
    may have (60 s), hence ``slow``."""
    with AnvilProcess(accounts=8) as proc:
        _idle_anvil_clock(_market(Chain.connect(proc.rpc_url)))


def _idle_anvil_clock(m: Market) -> None:
    task_id = create(m, max_trainers=4, **SHORT)
    m.contract.join(m.trainers[0], task_id)
    commit(m, task_id, 0, m.trainers[0])
    deadline = m.contract.deadlines(task_id)[0]
    while int(time.time()) < deadline + 1:
        time.sleep(0.5)

    assert m.chain.now() < deadline  # the latest block did not move ...
    assert m.chain.clock() >= deadline  # ... the clock did
    assert phase(m, task_id) == "reveal"


def test_a_mined_revert_is_decoded_not_just_reported(anvil_market: Market) -> None:
    """Row 7: a transaction that is mined and reverts (gas given, so no estimate caught it) names its error."""
    m = anvil_market
    task_id = create(m, max_trainers=4, **SHORT)
    m.contract.join(m.trainers[0], task_id)
    m.chain.advance_time(61)
    call = m.contract.c.functions.commit(task_id, 0, b"\x01" * 32)

    with pytest.raises(ContractRevert) as exc:
        m.chain.transact(m.trainers[0], call, gas=200_000)

    assert exc.value.name == "MarketSubmissionClosed"
    assert "too late: submissions for this round closed at unix time" in str(exc.value)
    assert "\n" not in str(exc.value)
