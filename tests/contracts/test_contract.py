"""The escrow contract's rules, on the in-process EVM: roles, stakes, the fixed schedule, commit–reveal,
the round seed, crediting, liveness and withdrawals."""

from __future__ import annotations

import pytest
from web3.logs import DISCARD

from market.chain.contract import ZERO_ADDRESS
from market.errors import ContractRevert, UnknownTaskError
from tests.conftest import Market
from tests.contracts.helpers import (
    MODEL,
    RECEIPT,
    SHORT,
    SPEC,
    STAKE,
    Update,
    advance_to,
    assert_conserved,
    close_commits,
    commit,
    create,
    cumulative,
    deploy,
    drawn,
    equal_bps,
    expected_seed,
    join_all,
    mock_verifier,
    play_round,
    post,
    prove,
    register,
    reveal,
    revert_name,
    schedule,
    seal,
    settle_after_deadline,
    update,
)


# ---------------------------------------------------------------- create
def test_create_task_escrows_the_reward_and_fixes_the_schedule(market: Market) -> None:
    task_id = create(market, reward=5 * 10**17, submit_window=100, reveal_window=40, result_window=70)

    t = market.contract.task(task_id)
    opens, submit, reveal_dl, result, final = market.contract.schedule(task_id)

    assert (t.reward, t.escrow, t.rounds, t.current_round) == (5 * 10**17, 5 * 10**17, 2, 0)
    assert market.chain.balance(market.contract.address) == 5 * 10**17
    assert t.spec_cid == SPEC
    assert t.period == 100 + 40 + 70 + 40  # the availability window (as long as the reveal window) ends it
    assert t.results_end_offset == 210
    assert (opens, submit, reveal_dl, result, final) == (t.start_at, t.start_at + 100, t.start_at + 140,
                                                          t.start_at + 210, t.start_at + 210)
    assert t.opens_at(1) == t.start_at + 250


def test_a_backup_aggregator_adds_a_second_result_window(market: Market) -> None:
    register(market, market.outsider)  # a panel of one and a backup: two members to draw from
    task_id = create(market, backup=True, submit_window=100, reveal_window=40, result_window=70)

    t = market.contract.task(task_id)
    assert (t.has_backup, t.panel, t.quorum, t.fee_bps) == (True, 1, 1, 0)
    _, _, reveal_dl, result, final = market.contract.schedule(task_id)

    assert t.period == 100 + 40 + 2 * 70 + 40
    assert (result - reveal_dl, final - result) == (70, 70)
    assert t.opens_at(1) - final == 40  # the availability window follows the backup's


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"rounds": 0}, "MarketBadRounds"),
        ({"rounds": 10_001}, "MarketBadRounds"),
        ({"reward": 0}, "MarketRewardTooSmall"),
        ({"reward": 2, "rounds": 3}, "MarketRewardTooSmall"),
        ({"max_trainers": 0}, "MarketBadMaxTrainers"),
        ({"max_trainers": 257}, "MarketBadMaxTrainers"),
        ({"submit_window": 59}, "MarketBadWindows"),
        ({"reveal_window": 29}, "MarketBadWindows"),
        ({"result_window": 59}, "MarketBadWindows"),
        ({"submit_window": 30 * 86400 + 1}, "MarketBadWindows"),
        ({"empty_rounds_to_reclaim": 10_001}, "MarketBadRounds"),
        ({"panel": 0}, "MarketBadPanel"),
        ({"panel": 8, "quorum": 5}, "MarketBadPanel"),  # at most 7
        ({"panel": 2, "quorum": 1}, "MarketBadPanel"),  # not more than half
        ({"panel": 3, "quorum": 4}, "MarketBadPanel"),  # more than the panel
        ({"panel": 1, "quorum": 0}, "MarketBadPanel"),
        ({"fee_bps": 5001}, "MarketBadFee"),
        ({"panel": 2}, "MarketFewAggregators"),  # the fixture's registry has one member
        ({"backup": True}, "MarketFewAggregators"),  # a backup is a second member
    ],
)
def test_create_task_rejects_bad_parameters(market: Market, kw: dict[str, int], error: str) -> None:
    with pytest.raises(ContractRevert) as exc:
        create(market, **kw)
    assert revert_name(exc) == error


def test_minimum_windows_are_accepted(market: Market) -> None:
    task_id = create(market, **SHORT)
    assert market.contract.task(task_id).period == 60 + 30 + 60 + 30


def test_the_largest_panel_and_fee_are_accepted(market: Market) -> None:
    register(market, *market.trainers[:5], market.outsider)  # seven members
    task_id = create(market, panel=7, quorum=4, fee_bps=5000)
    t = market.contract.task(task_id)
    assert (t.panel, t.quorum, t.fee_bps, t.has_backup) == (7, 4, 5000, False)


def test_create_task_names_the_members_it_needs(market: Market) -> None:
    register(market, market.outsider)
    with pytest.raises(ContractRevert) as exc:
        create(market, panel=3, backup=True)
    assert revert_name(exc) == "MarketFewAggregators"
    assert "needs 4 registered aggregators; the registry has 2" in str(exc.value)
    register(market, *market.trainers[:2])
    assert market.contract.task(create(market, panel=3, backup=True)).has_backup


def test_the_owner_is_never_drawn_even_when_registered(market: Market) -> None:
    """The owner no longer names an aggregator; a registered owner is left out of its own tasks' draws (and is
    refused as a poster), round after round, whatever the seed."""
    register(market, market.owner)
    task_id = create(market, rounds=3, max_trainers=1, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    for r in range(3):
        play_round(market, task_id, r, [a])
        assert drawn(market, task_id) == ([market.aggregator], None)
        with pytest.raises(ContractRevert) as exc:
            post(market, task_id, r, [10_000], sender=market.owner)
        assert revert_name(exc) == "MarketNotAggregator"
        post(market, task_id, r, [10_000])


def test_the_panel_and_the_backup_are_different_members(market: Market) -> None:
    register(market, market.outsider)
    task_id = create(market, rounds=3, max_trainers=1, backup=True, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    for r in range(3):
        play_round(market, task_id, r, [a])
        (primary,), backup = drawn(market, task_id)
        assert {primary, backup} == {market.aggregator, market.outsider}
        post(market, task_id, r, [10_000], sender=primary)


def test_create_task_counts_no_registered_owner_toward_the_panel(market: Market) -> None:
    """Registry {aggregator, owner}: a panel of one and a backup needs two members other than the owner; the
    draw leaves the owner out, so only one can ever be drawn (no backup, and with ``panel=2, quorum=2`` no
    result could ever be accepted: every round would end in the fallback)."""
    register(market, market.owner)
    with pytest.raises(ContractRevert) as exc:
        create(market, panel=2, quorum=2)
    assert revert_name(exc) == "MarketFewAggregators"


def test_unknown_task_is_a_clear_error(market: Market) -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 42"):
        market.contract.task(42)


def test_a_verifier_without_code_is_refused(market: Market) -> None:
    with pytest.raises(ContractRevert) as exc:
        create(market, verifier=market.outsider.address)
    assert revert_name(exc) == "MarketBadVerifier"
    assert market.contract.task_count() == 0


@pytest.mark.parametrize("name, args", [("TestToken", ()), ("MockVerifier", (False, True))])
def test_a_verifier_not_implementing_the_interface_is_refused(market: Market, name: str, args: tuple) -> None:
    """A contract without ERC-165 (a token) and one that denies IRoundVerifier over ERC-165."""
    not_a_verifier = deploy(market, name, *args)
    with pytest.raises(ContractRevert) as exc:
        create(market, verifier=not_a_verifier.address)
    assert revert_name(exc) == "MarketBadVerifier"


def test_a_verifier_implementing_the_interface_is_accepted(market: Market) -> None:
    verifier = mock_verifier(market)  # its code hash allowed by the market's verifier admin
    task_id = create(market, verifier=verifier.address)
    assert market.contract.task(task_id).verifier == verifier.address


# ------------------------------------------------------------ join, stakes
def test_join_deposits_the_stake(market: Market) -> None:
    task_id = create(market, reward=10**18, stake_wei=STAKE)

    join_all(market, task_id, market.trainers[:2])

    t = market.contract.task(task_id)
    assert t.stakes_held == 2 * STAKE
    assert market.chain.balance(market.contract.address) == 10**18 + 2 * STAKE
    assert market.contract.seat(task_id, market.trainers[0].address).stake == STAKE
    assert market.contract.owed(task_id, market.trainers[0].address) == 0  # held, not owed while the task runs
    assert_conserved(market, task_id)


@pytest.mark.parametrize("value", [0, STAKE - 1, STAKE + 1])
def test_join_with_the_wrong_stake_reverts(market: Market, value: int) -> None:
    task_id = create(market, stake_wei=STAKE)
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.trainers[0], market.contract.c.functions.join(task_id), value=value)
    assert revert_name(exc) == "MarketWrongValue"
    assert market.contract.trainer_index(task_id, market.trainers[0].address) == 0


def test_join_without_a_stake_takes_no_value(market: Market) -> None:
    task_id = create(market)
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.trainers[0], market.contract.c.functions.join(task_id), value=1)
    assert revert_name(exc) == "MarketWrongValue"
    market.contract.join(market.trainers[0], task_id)
    assert market.contract.trainer_index(task_id, market.trainers[0].address) == 1


def test_join_twice_reverts(market: Market) -> None:
    task_id = create(market, stake_wei=STAKE)
    market.contract.join(market.trainers[0], task_id)
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.trainers[0], market.contract.c.functions.join(task_id), value=0)
    assert revert_name(exc) == "MarketAlreadyJoined"


@pytest.mark.parametrize("role", ["owner", "aggregator", "backup"])
def test_owner_and_aggregators_cannot_join_as_trainers(market: Market, role: str) -> None:
    """Neither the owner nor any account registered as an aggregator (it could be drawn to judge the task)."""
    register(market, market.outsider)
    task_id = create(market, backup=True)
    account = {"owner": market.owner, "aggregator": market.aggregator, "backup": market.outsider}[role]
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(account, task_id)
    assert revert_name(exc) == "MarketRoleConflict"


def test_an_aggregator_that_left_the_registry_may_join_as_a_trainer(market: Market) -> None:
    register(market, market.outsider)
    task_id = create(market)
    market.contract.registry.exit(market.outsider)
    market.contract.join(market.outsider, task_id)
    assert market.contract.is_trainer(task_id, market.outsider.address)


def test_a_trainer_that_registers_later_is_refused_as_its_tasks_aggregator(market: Market) -> None:
    """join refuses registered aggregators, but nothing stops a trainer from registering after it joined: it can
    then be drawn for its own task, where postResult refuses it (it holds a seat), so the round ends in the
    fallback and it is penalised as a silent member, to the provers."""
    a, b = market.trainers[:2]
    task_id = create(market, rounds=1, max_trainers=2, **SHORT)
    join_all(market, task_id, [a, b])
    register(market, a)
    market.contract.registry.exit(market.aggregator)  # a is the only member left: the panel of every round
    ups = play_round(market, task_id, 0, [a, b])
    assert drawn(market, task_id) == ([a], None)
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000], sender=a)
    assert revert_name(exc) == "MarketNotAggregator"
    for t in (a, b):
        prove(market, task_id, 0, t, ups[t.address])

    receipt = settle_after_deadline(market, task_id)

    penalty = market.contract.registry.penalty()
    assert market.contract.settlement(receipt)["penalties"] == {a.address: penalty}
    assert [market.contract.registry.credit(t.address) for t in (a, b)] == cumulative(penalty, [1, 1])


def test_join_past_the_limit_reverts(market: Market) -> None:
    task_id = create(market, max_trainers=2)
    join_all(market, task_id, market.trainers[:2])
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(market.trainers[2], task_id)
    assert revert_name(exc) == "MarketTaskFull"


def test_a_lost_stake_gives_the_seat_up_and_joining_again_takes_a_seat(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=2, stake_wei=STAKE, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b], revealers=[a])  # b does not reveal
    post(market, task_id, 0, [10_000])
    seat = market.contract.seat(task_id, b.address)
    assert (seat.index, seat.stake) == (0, 0)  # seat freed with the stake
    advance_to(market, market.contract.task(task_id).opens_at(1))

    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 1, b)
    assert revert_name(exc) == "MarketNotJoined"
    market.contract.join(b, task_id)  # the full stake again: the freed seat 2
    commit(market, task_id, 1, b)

    seat = market.contract.seat(task_id, b.address)
    assert (seat.index, seat.stake, seat.committed_round) == (2, STAKE, 1)
    assert market.contract.task(task_id).trainer_count == 2
    assert_conserved(market, task_id)


def test_a_lost_seat_goes_to_the_next_joiner_when_the_task_is_full(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=2, stake_wei=STAKE, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b])
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(c, task_id)
    assert revert_name(exc) == "MarketTaskFull"
    play_round(market, task_id, 0, [a, b])
    post(market, task_id, 0, [10_000, 0], lost_mask=0b10)  # b's update invalid: stake and seat lost

    market.contract.join(c, task_id)

    assert market.contract.trainer_index(task_id, c.address) == 2
    assert market.contract.trainer_index(task_id, b.address) == 0
    with pytest.raises(ContractRevert) as exc2:  # full again
        market.contract.join(b, task_id)
    assert revert_name(exc2) == "MarketTaskFull"
    ups = play_round(market, task_id, 1, [a, c])
    receipt = post(market, task_id, 1, [4000, 6000])
    assert market.contract.settlement(receipt)["settlement"] == "result"
    assert [s.trainer for s in market.contract.submissions(task_id, 1)] == [a.address, c.address]
    assert {s.cid for s in market.contract.submissions(task_id, 1)} == {u.cid for u in ups.values()}
    assert_conserved(market, task_id)


def test_a_left_seat_is_reused_before_a_new_one(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=3, stake_wei=STAKE)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b])
    market.contract.leave(a, task_id)
    assert market.contract.trainer_index(task_id, a.address) == 0

    market.contract.join(c, task_id)  # takes a's seat 1, not a new seat 3
    market.contract.join(a, task_id)  # the freed stack is empty: a new seat

    assert [market.contract.trainer_index(task_id, x.address) for x in (a, b, c)] == [3, 2, 1]
    assert market.contract.task(task_id).trainer_count == 3
    assert_conserved(market, task_id)


# ------------------------------------------------------------------ commit
def test_commit_without_joining_reverts(market: Market) -> None:
    task_id = create(market)
    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 0, market.outsider, update(task_id, 0, 9))
    assert revert_name(exc) == "MarketNotJoined"


def test_late_commit_reverts_with_the_deadline(market: Market) -> None:
    task_id = create(market, **SHORT)
    join_all(market, task_id, market.trainers[:1])
    close_commits(market, task_id)
    with pytest.raises(ContractRevert, match="too late: submissions for this round closed") as exc:
        commit(market, task_id, 0, market.trainers[0])
    assert revert_name(exc) == "MarketSubmissionClosed"


def test_second_commit_in_a_round_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id, market.trainers[:1])
    commit(market, task_id, 0, market.trainers[0])
    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 0, market.trainers[0], update(task_id, 0, 7))
    assert revert_name(exc) == "MarketAlreadySubmitted"


def test_commit_for_another_round_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id, market.trainers[:1])
    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 1, market.trainers[0])
    assert revert_name(exc) == "MarketWrongRound"


def test_zero_commit_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id, market.trainers[:1])
    with pytest.raises(ContractRevert) as exc:
        market.contract.commit(market.trainers[0], task_id, 0, b"\x00" * 32)
    assert revert_name(exc) == "MarketZeroCid"


# ------------------------------------------------------------------ reveal
def test_reveal_before_commits_close_reverts(market: Market) -> None:
    task_id = create(market, max_trainers=3)
    join_all(market, task_id, market.trainers[:2])
    ups = [commit(market, task_id, 0, t) for t in market.trainers[:2]]  # two of three: commits stay open
    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, market.trainers[0], ups[0])
    assert revert_name(exc) == "MarketRevealNotOpen"
    close_commits(market, task_id)
    reveal(market, task_id, 0, market.trainers[0], ups[0])


def test_reveal_after_its_deadline_reverts(market: Market) -> None:
    task_id = create(market, **SHORT)
    join_all(market, task_id, market.trainers[:1])
    upd = commit(market, task_id, 0, market.trainers[0])
    advance_to(market, schedule(market, task_id)["reveal"])
    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, market.trainers[0], upd)
    assert revert_name(exc) == "MarketRevealClosed"


def test_reveal_without_a_commit_reverts(market: Market) -> None:
    task_id = create(market, max_trainers=3)
    join_all(market, task_id, market.trainers[:2])
    commit(market, task_id, 0, market.trainers[0])
    close_commits(market, task_id)
    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, market.trainers[1], update(task_id, 0, 1))
    assert revert_name(exc) == "MarketNotCommitted"


def test_reveal_twice_reverts(market: Market) -> None:
    task_id = create(market, max_trainers=3)
    join_all(market, task_id, market.trainers[:2])
    ups = [commit(market, task_id, 0, t) for t in market.trainers[:2]]
    close_commits(market, task_id)
    reveal(market, task_id, 0, market.trainers[0], ups[0])
    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, market.trainers[0], ups[0])
    assert revert_name(exc) == "MarketAlreadyRevealed"


@pytest.mark.parametrize("field", ["cid", "commitment", "salt", "trainer", "task", "round"])
def test_a_reveal_not_matching_the_commit_reverts(market: Market, field: str) -> None:
    """MarketBadReveal whichever input of the hash differs (the trainer, task and round are bound too)."""
    task_id = create(market, max_trainers=1)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    good = update(task_id, 0, 0)
    other = update(task_id, 0, 1)
    committed = {
        "cid": Update(other.cid, good.commitment, good.salt).hash(trainer.address, task_id, 0),
        "commitment": Update(good.cid, other.commitment, good.salt).hash(trainer.address, task_id, 0),
        "salt": Update(good.cid, good.commitment, other.salt).hash(trainer.address, task_id, 0),
        "trainer": good.hash(market.trainers[1].address, task_id, 0),
        "task": good.hash(trainer.address, task_id + 1, 0),
        "round": good.hash(trainer.address, task_id, 1),
    }[field]
    market.contract.commit(trainer, task_id, 0, committed)  # the only seat: commits close at once

    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, trainer, good)

    assert revert_name(exc) == "MarketBadReveal"
    assert market.contract.task(task_id).submitted_count == 0


def test_revealed_submissions_are_read_back_and_match_the_digest(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id, market.trainers[:3])
    ups = play_round(market, task_id, 0, market.trainers[:3])

    subs = market.contract.submissions(task_id, 0)
    commits = market.contract.commitments(task_id, 0)

    assert [s.trainer for s in subs] == [t.address for t in market.trainers[:3]]
    assert [(s.cid, s.commitment) for s in subs] == [(ups[t.address].cid, ups[t.address].commitment)
                                                     for t in market.trainers[:3]]
    assert commits == {t.address: ups[t.address].hash(t.address, task_id, 0) for t in market.trainers[:3]}
    assert market.contract.submitters(task_id) == [t.address for t in market.trainers[:3]]


# ------------------------------------------------------------- seal, seed
def test_the_last_reveal_seals_the_round(market: Market) -> None:
    task_id = create(market, max_trainers=2)
    join_all(market, task_id, market.trainers[:2])
    ups = [commit(market, task_id, 0, t) for t in market.trainers[:2]]  # full: commits close, reveals open
    reveal(market, task_id, 0, market.trainers[0], ups[0])
    assert market.contract.task(task_id).seal_block == 0

    receipt = reveal(market, task_id, 0, market.trainers[1], ups[1])

    (ev,) = market.contract.c.events.RoundSealed().process_receipt(receipt, errors=DISCARD)
    assert market.contract.task(task_id).seal_block == receipt["blockNumber"] == ev["args"]["sealBlock"]
    seal_receipt = market.contract.seal(market.outsider, task_id)  # on a sealed round: keeps the seed
    (kept,) = market.contract.c.events.SeedKept().process_receipt(seal_receipt, errors=DISCARD)
    assert kept["args"]["seed"] == expected_seed(market, task_id, 0, receipt["blockNumber"])
    assert market.contract.task(task_id).seal_block == receipt["blockNumber"]
    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(market.outsider, task_id)
    assert revert_name(exc) == "MarketAlreadySealed"


def test_seal_waits_for_the_reveal_deadline_then_anyone_may_call_it(market: Market) -> None:
    task_id = create(market, **SHORT)
    join_all(market, task_id, market.trainers[:2])
    ups = [commit(market, task_id, 0, t) for t in market.trainers[:2]]
    close_commits(market, task_id)
    reveal(market, task_id, 0, market.trainers[0], ups[0])  # the second never reveals
    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(market.outsider, task_id)
    assert revert_name(exc) == "MarketRevealOpen"
    advance_to(market, schedule(market, task_id)["reveal"])

    receipt = market.contract.seal(market.outsider, task_id)

    assert market.contract.task(task_id).seal_block == receipt["blockNumber"]
    market.contract.seal(market.outsider, task_id)  # the next block keeps the seed
    with pytest.raises(ContractRevert) as exc2:
        market.contract.seal(market.outsider, task_id)
    assert revert_name(exc2) == "MarketAlreadySealed"


def test_seal_with_nothing_revealed_reverts(market: Market) -> None:
    task_id = create(market, **SHORT)
    join_all(market, task_id, market.trainers[:1])
    commit(market, task_id, 0, market.trainers[0])
    advance_to(market, schedule(market, task_id)["reveal"])
    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(market.outsider, task_id)
    assert revert_name(exc) == "MarketNothingRevealed"


def test_the_round_seed_is_the_seal_blocks_hash(market: Market) -> None:
    task_id = create(market, max_trainers=1)
    join_all(market, task_id, market.trainers[:1])
    play_round(market, task_id, 0, market.trainers[:1])
    seal_block = market.contract.task(task_id).seal_block

    assert market.contract.round_seed(task_id) == expected_seed(market, task_id, 0, seal_block)


def test_a_result_with_the_wrong_seed_reverts(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=1, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    play_round(market, task_id, 0, [trainer])
    seed0 = market.contract.round_seed(task_id)
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [10_000], seed_=b"\x01" * 32)
    assert revert_name(exc) == "MarketWrongSeed"
    post(market, task_id, 0, [10_000], seed_=seed0)
    play_round(market, task_id, 1, [trainer])

    with pytest.raises(ContractRevert) as exc2:  # round 0's seed does not settle round 1
        post(market, task_id, 1, [10_000], seed_=seed0)
    assert revert_name(exc2) == "MarketWrongSeed"


def _mine(m: Market, n: int) -> None:
    m.chain.w3.provider.ethereum_tester.mine_blocks(n)  # type: ignore[attr-defined]


def test_a_kept_seed_outlives_the_seal_blocks_hash(market: Market) -> None:
    task_id = create(market, rounds=1, max_trainers=1, submit_window=60, reveal_window=30, result_window=3600)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    play_round(market, task_id, 0, [trainer])
    seed0 = market.contract.round_seed(task_id)
    market.contract.seal(market.outsider, task_id)  # keep it

    _mine(market, 257)

    assert market.contract.round_seed(task_id) == seed0
    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(market.outsider, task_id)
    assert revert_name(exc) == "MarketAlreadySealed"
    post(market, task_id, 0, [10_000], seed_=seed0)
    assert market.contract.round_info(task_id, 0).settlement == "result"


def test_an_expired_unkept_seed_is_refused_and_the_round_is_sealed_again(market: Market) -> None:
    from market.chain.contract import SeedExpired

    task_id = create(market, rounds=1, max_trainers=1, submit_window=60, reveal_window=30, result_window=3600)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    play_round(market, task_id, 0, [trainer])
    first = market.contract.task(task_id).seal_block
    seed0 = market.contract.round_seed(task_id)

    _mine(market, 257)

    with pytest.raises(SeedExpired):
        market.contract.round_seed(task_id)
    with pytest.raises(ContractRevert) as exc:  # neither the old seed nor keccak(0, ...) settles it
        post(market, task_id, 0, [10_000], seed_=seed0)
    assert revert_name(exc) == "MarketSeedExpired"
    stale = expected_seed(market, task_id, 0, first)  # what the old seed was, off chain
    with pytest.raises(ContractRevert) as exc2:
        post(market, task_id, 0, [10_000], seed_=stale)
    assert revert_name(exc2) == "MarketSeedExpired"

    receipt = market.contract.seal(market.outsider, task_id)  # re-sealed at this block

    (ev,) = market.contract.c.events.RoundSealed().process_receipt(receipt, errors=DISCARD)
    assert ev["args"]["sealBlock"] == receipt["blockNumber"] == market.contract.task(task_id).seal_block > first
    new_seed = market.contract.round_seed(task_id)
    assert new_seed == expected_seed(market, task_id, 0, receipt["blockNumber"]) != seed0
    post(market, task_id, 0, [10_000], seed_=new_seed)
    assert market.contract.round_info(task_id, 0).settlement == "result"


def test_a_result_before_the_round_is_sealed_reverts(market: Market) -> None:
    task_id = create(market, **SHORT)
    join_all(market, task_id, market.trainers[:2])
    ups = [commit(market, task_id, 0, t) for t in market.trainers[:2]]
    close_commits(market, task_id)
    reveal(market, task_id, 0, market.trainers[0], ups[0])
    call = market.contract.c.functions.postResult(task_id, 0, (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 0), [10_000], b"")
    with pytest.raises(ContractRevert) as exc:  # one committer may still reveal
        market.chain.transact(market.aggregator, call)
    assert revert_name(exc) == "MarketRevealOpen"
    advance_to(market, schedule(market, task_id)["reveal"])
    with pytest.raises(ContractRevert) as exc2:  # over, but nobody sealed it yet
        market.chain.transact(market.aggregator, call)
    assert revert_name(exc2) == "MarketRevealOpen"

    seal(market, task_id, market.aggregator)  # the aggregator may seal it itself
    post(market, task_id, 0, [10_000])

    assert market.contract.task(task_id).current_round == 1


# ---------------------------------------------------------------- result
def test_result_credits_by_cumulative_rounding_with_nothing_left_for_the_owner(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1_000_003)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])

    post(market, task_id, 0, [3333, 3333, 3334])

    owed = [market.contract.owed(task_id, t.address) for t in market.trainers[:3]]
    assert owed == [333_300, 333_301, 333_402] == cumulative(1_000_003, [3333, 3333, 3334])
    assert sum(owed) == 1_000_003
    assert market.contract.task(task_id).refunded == 0
    assert market.contract.task(task_id).finished
    assert_conserved(market, task_id)


@pytest.mark.parametrize("settle", ["result", "fallback"])
def test_a_pool_of_4_wei_among_5_trainers_goes_to_the_trainers(market: Market, settle: str) -> None:
    task_id = create(market, rounds=1, reward=4, max_trainers=5, **SHORT)
    join_all(market, task_id, market.trainers[:5])
    ups = play_round(market, task_id, 0, market.trainers[:5])

    if settle == "result":
        post(market, task_id, 0, equal_bps(5))
    else:
        for t in market.trainers[:5]:  # the fallback pays only updates proved available
            prove(market, task_id, 0, t, ups[t.address])
        settle_after_deadline(market, task_id)

    owed = [market.contract.owed(task_id, t.address) for t in market.trainers[:5]]
    assert sum(owed) == 4 and owed == cumulative(4, [1] * 5)
    t = market.contract.task(task_id)
    assert (t.refunded, t.credited, t.escrow) == (0, 4, 0)
    assert_conserved(market, task_id)


def test_result_from_anyone_but_the_aggregator_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])
    for sender in (market.owner, market.trainers[0], market.outsider):
        with pytest.raises(ContractRevert) as exc:
            post(market, task_id, 0, [10_000, 0, 0], sender=sender)
        assert revert_name(exc) == "MarketNotAggregator"


def test_result_posted_twice_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])
    seed = market.contract.round_seed(task_id)
    post(market, task_id, 0, [5000, 5000, 0], seed_=seed)
    with pytest.raises(ContractRevert) as exc:
        market.contract.post_result(market.aggregator, task_id, 0, MODEL, RECEIPT, [5000, 5000, 0], seed=seed)
    assert revert_name(exc) == "MarketWrongRound"


@pytest.mark.parametrize("bps, error", [([5000, 4000, 0], "MarketBadBasisPoints"), ([5000, 5000], "MarketWrongLength"),
                                        ([0, 0, 0], "MarketBadBasisPoints")])
def test_result_with_bad_basis_points_reverts(market: Market, bps: list[int], error: str) -> None:
    """Including all zeros: without a verifier nothing can prove that every revealed update was invalid."""
    task_id = create(market)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, bps)
    assert revert_name(exc) == error
    assert market.contract.task(task_id).current_round == 0


def test_result_after_its_window_reverts(market: Market) -> None:
    task_id = create(market, **SHORT)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])
    advance_to(market, schedule(market, task_id)["result"])
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000, 0])
    assert revert_name(exc) == "MarketResultWindowClosed"


def test_a_non_revealer_loses_its_stake_to_the_paid_trainers(market: Market) -> None:
    task_id = create(market, rounds=1, reward=10**18, stake_wei=STAKE)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    play_round(market, task_id, 0, [a, b, c], revealers=[a, b])

    receipt = post(market, task_id, 0, [7000, 3000])

    assert market.contract.settlement(receipt)["stakes_lost"] == STAKE
    assert market.contract.stakes_lost(task_id) == {c.address: {0: STAKE}}
    shares = cumulative(10**18 + STAKE, [7000, 3000])
    assert [market.contract.seat(task_id, t.address).earned for t in (a, b, c)] == [*shares, 0]
    assert [market.contract.owed(task_id, t.address) for t in (a, b, c)] == [shares[0] + STAKE, shares[1] + STAKE, 0]
    assert market.contract.task(task_id).refunded == 0
    assert_conserved(market, task_id)


def test_an_update_marked_lost_loses_its_stake_and_an_unpaid_honest_one_keeps_it(market: Market) -> None:
    task_id = create(market, rounds=1, reward=10**18, max_trainers=4, stake_wei=STAKE)
    join_all(market, task_id, market.trainers[:4])
    play_round(market, task_id, 0, market.trainers[:4])

    post(market, task_id, 0, [6000, 4000, 0, 0], lost_mask=0b0100)  # the third is invalid; the fourth just unpaid

    shares = cumulative(10**18 + STAKE, [6000, 4000])
    stakes = [market.contract.seat(task_id, t.address).stake for t in market.trainers[:4]]
    assert stakes == [STAKE, STAKE, 0, STAKE]
    assert [market.contract.owed(task_id, t.address) for t in market.trainers[:4]] == \
        [shares[0] + STAKE, shares[1] + STAKE, 0, STAKE]
    assert_conserved(market, task_id)


def test_a_lost_update_cannot_also_be_paid(market: Market) -> None:
    task_id = create(market, stake_wei=STAKE)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000, 0], lost_mask=0b001)
    assert revert_name(exc) == "MarketPaidAndLost"
    with pytest.raises(ContractRevert) as exc2:  # a bit past the revealed updates
        post(market, task_id, 0, [5000, 5000, 0], lost_mask=0b1000)
    assert revert_name(exc2) == "MarketWrongLength"


def test_an_all_zero_result_with_a_proof_carries_the_pool_and_the_lost_stakes(market: Market) -> None:
    verifier = mock_verifier(market)
    task_id = create(market, rounds=2, reward=1000, stake_wei=STAKE, verifier=verifier.address, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    play_round(market, task_id, 0, [a, b, c], revealers=[a, b])

    post(market, task_id, 0, [0, 0], lost_mask=0b11)  # the proof says both revealed updates were invalid

    t = market.contract.task(task_id)
    assert (t.refunded, t.carry, t.carry_pool, t.credited) == (0, 3 * STAKE, 500, 0)  # nothing back to the owner
    assert_conserved(market, task_id)
    market.contract.join(a, task_id)
    market.contract.join(b, task_id)
    play_round(market, task_id, 1, [a, b])
    post(market, task_id, 1, [5000, 5000])

    assert [market.contract.seat(task_id, x.address).earned for x in (a, b)] == \
        cumulative(1000 + 3 * STAKE, [1, 1])
    assert market.contract.task(task_id).refunded == 0
    assert_conserved(market, task_id)


def test_an_all_lost_zero_result_without_a_verifier_carries_the_pool(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000, stake_wei=STAKE, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    with pytest.raises(ContractRevert) as exc:  # zero without marking every revealed update lost
        post(market, task_id, 0, [0, 0], lost_mask=0b01)
    assert revert_name(exc) == "MarketBadBasisPoints"

    receipt = post(market, task_id, 0, [0, 0], lost_mask=0b11)  # every revealed update is junk

    assert market.contract.settlement(receipt)["settlement"] == "result"
    t = market.contract.task(task_id)
    assert (t.refunded, t.carry, t.carry_pool, t.credited, t.stakes_held) == (0, 2 * STAKE, 500, 0, 0)
    assert_conserved(market, task_id)
    assert [market.contract.trainer_index(task_id, x.address) for x in (a, b)] == [0, 0]
    market.contract.join(c, task_id)  # takes a freed seat
    play_round(market, task_id, 1, [c])
    post(market, task_id, 1, [10_000])
    assert market.contract.seat(task_id, c.address).earned == 1000 + 2 * STAKE
    t = market.contract.task(task_id)
    assert (t.refunded, t.carry, t.carry_pool) == (0, 0, 0)
    assert_conserved(market, task_id)


def test_an_all_lost_last_round_refunds_the_carry_to_the_owner(market: Market) -> None:
    """A last round that pays nobody: its pool goes back to the owner, and the lost stake too, as no
    trainer holds a stake any more (see test_availability for a last round with a stakeholder left)."""
    task_id = create(market, rounds=1, reward=1000, stake_wei=STAKE, **SHORT)
    a = market.trainers[0]
    join_all(market, task_id, [a])
    play_round(market, task_id, 0, [a])
    receipt = post(market, task_id, 0, [0], lost_mask=0b1)
    t = market.contract.task(task_id)
    assert (t.refunded, t.carry, t.carry_pool, t.credited) == (1000 + STAKE, 0, 0, 0)
    assert market.contract.settlement(receipt)["refunded"] == 1000 + STAKE
    assert_conserved(market, task_id)


def test_a_result_whose_proof_does_not_verify_reverts(market: Market) -> None:
    verifier = mock_verifier(market, False)
    task_id = create(market, verifier=verifier.address)
    join_all(market, task_id, market.trainers[:1])
    play_round(market, task_id, 0, market.trainers[:1])
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [10_000], proof=b"\x00")
    assert revert_name(exc) == "MarketInvalidProof"


# ------------------------------------------------------------------ backup
@pytest.mark.parametrize("poster", ["backup", "panel"])
def test_the_backup_posts_only_after_the_aggregators_window(market: Market, poster: str) -> None:
    """The backup is refused in the panel's window; in the backup window both may post. When the backup settles
    the round, the panel member that stayed silent loses a penalty to the paid trainers."""
    register(market, market.outsider)
    task_id = create(market, rounds=1, max_trainers=2, backup=True, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    (primary,), backup = drawn(market, task_id)
    assert backup is not None
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000], sender=backup)
    assert revert_name(exc) == "MarketNotAggregator"
    advance_to(market, schedule(market, task_id)["result"])
    for outsider in (market.owner, a):  # still nobody but the drawn two
        with pytest.raises(ContractRevert) as exc2:
            post(market, task_id, 0, [5000, 5000], sender=outsider)
        assert revert_name(exc2) == "MarketNotAggregator"

    receipt = post(market, task_id, 0, [2500, 7500], sender=backup if poster == "backup" else primary)

    settled = market.contract.settlement(receipt)
    assert settled["settlement"] == "result"
    assert market.contract.owed(task_id, b.address) == cumulative(10**18, [2500, 7500])[1]
    penalty = market.contract.registry.penalty()
    if poster == "backup":  # the primary missed its window: its penalty to a and b (both paid)
        assert settled["penalties"] == {primary.address: penalty}
        assert [market.contract.registry.credit(t.address) for t in (a, b)] == cumulative(penalty, [1, 1])
    else:  # the primary was late but posted; a backup that had nothing to do is not blamed
        assert settled["penalties"] == {}
    assert_conserved(market, task_id)


def test_the_backup_window_ends_where_the_availability_window_begins(market: Market) -> None:
    """The backup's window closes at ``final``; the availability window follows, and only its end (the
    next round's opening) lets anyone settle the round by the fallback."""
    register(market, market.outsider)
    task_id = create(market, rounds=1, max_trainers=2, backup=True, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    ups = play_round(market, task_id, 0, [a, b])
    seal(market, task_id)
    (primary,), backup = drawn(market, task_id)
    when = schedule(market, task_id)
    assert when["end"] - when["final"] == SHORT["reveal_window"]
    advance_to(market, when["final"])
    for sender in (primary, backup):
        with pytest.raises(ContractRevert) as exc:
            post(market, task_id, 0, [5000, 5000], sender=sender)
        assert revert_name(exc) == "MarketResultWindowClosed"
    with pytest.raises(ContractRevert) as exc2:  # the availability window is still open
        market.contract.settle_without_result(market.trainers[0], task_id)
    assert revert_name(exc2) == "MarketResultWindowOpen"
    prove(market, task_id, 0, a, ups[a.address])
    advance_to(market, when["end"])

    receipt = market.contract.settle_without_result(market.trainers[0], task_id)

    assert market.contract.round_info(task_id, 0).settlement == "fallback"
    assert market.contract.settlement(receipt)["trainers"] == 1
    assert [market.contract.seat(task_id, x.address).earned for x in (a, b)] == [10**18, 0]
    penalty = market.contract.registry.penalty()  # both drawn members were silent: a, the only prover, gets both
    assert market.contract.settlement(receipt)["penalties"] == {primary.address: penalty, backup.address: penalty}
    assert [market.contract.registry.credit(x.address) for x in (a, b)] == [2 * penalty, 0]
    assert_conserved(market, task_id)


# -------------------------------------------------------------- liveness
def test_fallback_pays_only_revealed_updates_and_gives_them_the_non_revealers_stakes(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1000, stake_wei=STAKE, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    ups = play_round(market, task_id, 0, [a, b, c], revealers=[a, c])
    with pytest.raises(ContractRevert) as exc:
        market.contract.settle_without_result(market.trainers[0], task_id)
    assert revert_name(exc) == "MarketResultWindowOpen"
    for t in (a, c):
        prove(market, task_id, 0, t, ups[t.address])  # at the end of the result window
    with pytest.raises(ContractRevert) as exc2:  # the availability window is still open
        market.contract.settle_without_result(market.trainers[0], task_id)
    assert revert_name(exc2) == "MarketResultWindowOpen"

    receipt = settle_after_deadline(market, task_id)

    shares = cumulative(1000 + STAKE, [1, 1])
    assert [market.contract.seat(task_id, t.address).earned for t in (a, b, c)] == [shares[0], 0, shares[1]]
    assert market.contract.owed(task_id, b.address) == 0  # stake lost too
    assert market.contract.settlement(receipt) == {"round": 0, "settlement": "fallback", "credited": 1000 + STAKE,
                                                   "refunded": 0, "trainers": 2, "stakes_lost": STAKE, "fee": 0,
                                                   "penalties": {}, "penalties_burned": 0}  # never sealed (b did not reveal): no panel
    assert market.contract.task(task_id).refunded == 0
    assert_conserved(market, task_id)


def test_fallback_remainder_goes_to_the_trainers(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1000, **SHORT)
    join_all(market, task_id, market.trainers[:3])
    ups = play_round(market, task_id, 0, market.trainers[:3])
    for t in market.trainers[:3]:
        prove(market, task_id, 0, t, ups[t.address])

    settle_after_deadline(market, task_id)

    assert [market.contract.owed(task_id, t.address) for t in market.trainers[:3]] == [333, 333, 334]
    assert market.contract.task(task_id).refunded == 0
    assert_conserved(market, task_id)


def test_an_empty_round_refunds_only_its_pool(market: Market) -> None:
    task_id = create(market, rounds=3, reward=1000, **SHORT)
    join_all(market, task_id, market.trainers[:1])
    with pytest.raises(ContractRevert) as exc:  # commits are still open
        market.contract.settle_without_result(market.outsider, task_id)
    assert revert_name(exc) == "MarketRevealOpen"
    close_commits(market, task_id)

    receipt = market.contract.settle_without_result(market.outsider, task_id)

    t = market.contract.task(task_id)
    assert market.contract.settlement(receipt)["refunded"] == 333
    assert (t.refunded, t.escrow, t.current_round, t.finished) == (333, 667, 1, False)
    assert market.contract.round_info(task_id, 0).settlement == "refunded"
    assert_conserved(market, task_id)


def test_a_round_with_commits_but_no_reveals_refunds_its_pool_and_carries_the_stakes(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000, max_trainers=2, stake_wei=STAKE, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a], revealers=[])
    with pytest.raises(ContractRevert) as exc:  # a may still reveal
        market.contract.settle_without_result(market.outsider, task_id)
    assert revert_name(exc) == "MarketRevealOpen"
    advance_to(market, schedule(market, task_id)["reveal"])

    market.contract.settle_without_result(market.outsider, task_id)

    t = market.contract.task(task_id)
    assert (t.refunded, t.carry, t.stakes_held) == (500, STAKE, STAKE)
    play_round(market, task_id, 1, [b])
    post(market, task_id, 1, [10_000])
    assert market.contract.seat(task_id, b.address).earned == 500 + STAKE  # the lost stake went to a trainer
    assert market.contract.task(task_id).refunded == 500
    assert_conserved(market, task_id)


def test_reclaim_is_refused_until_k_empty_rounds_in_a_row(market: Market) -> None:
    task_id = create(market, rounds=5, reward=1000, stake_wei=STAKE, empty_rounds_to_reclaim=2, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)

    def reclaim_error() -> str:
        with pytest.raises(ContractRevert) as exc:
            market.contract.reclaim_unused(market.owner, task_id)
        return revert_name(exc)

    assert reclaim_error() == "MarketNotAbandoned"
    close_commits(market, task_id)
    market.contract.settle_without_result(market.outsider, task_id)  # empty round 0
    assert reclaim_error() == "MarketNotAbandoned"  # one is not enough
    play_round(market, task_id, 1, [trainer])
    post(market, task_id, 1, [10_000])  # a paid round resets the streak
    for r in (2, 3):
        advance_to(market, market.contract.task(task_id).opens_at(r))
        if r == 3:
            assert reclaim_error() == "MarketNotAbandoned"
        close_commits(market, task_id)
        market.contract.settle_without_result(market.outsider, task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.reclaim_unused(market.outsider, task_id)
    assert revert_name(exc) == "MarketNotOwner"

    receipt = market.contract.reclaim_unused(market.owner, task_id)

    t = market.contract.task(task_id)
    assert market.contract.reclaimed(receipt) == 200  # round 4's pool; rounds 0, 2, 3 were refunded one by one
    assert (t.escrow, t.refunded, t.finished) == (0, 800, True)
    assert market.contract.owed(task_id, trainer.address) == 200 + STAKE  # the stake comes back at the end
    assert market.contract.withdraw(trainer, task_id) == 200 + STAKE
    assert_conserved(market, task_id)


def test_reclaim_is_refused_forever_when_k_is_zero(market: Market) -> None:
    task_id = create(market, rounds=4, reward=1000, **SHORT)
    for r in range(3):
        advance_to(market, market.contract.task(task_id).opens_at(r))
        close_commits(market, task_id)
        market.contract.settle_without_result(market.outsider, task_id)
        with pytest.raises(ContractRevert) as exc:
            market.contract.reclaim_unused(market.owner, task_id)
        assert revert_name(exc) == "MarketNotAbandoned"
    assert market.contract.task(task_id).escrow == 250


def test_owner_cannot_reclaim_a_round_with_commitments(market: Market) -> None:
    task_id = create(market, rounds=3, empty_rounds_to_reclaim=1, **SHORT)
    market.contract.join(market.trainers[0], task_id)
    close_commits(market, task_id)
    market.contract.settle_without_result(market.outsider, task_id)
    advance_to(market, market.contract.task(task_id).opens_at(1))
    commit(market, task_id, 1, market.trainers[0])
    with pytest.raises(ContractRevert) as exc:
        market.contract.reclaim_unused(market.owner, task_id)
    assert revert_name(exc) == "MarketRoundHasSubmissions"


# -------------------------------------------------------------- schedule
def test_round_one_does_not_open_early_when_the_result_comes_early(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=2, **SHORT)
    join_all(market, task_id, market.trainers[:2])
    play_round(market, task_id, 0, market.trainers[:2])  # full: commits and reveals close at once
    post(market, task_id, 0, [5000, 5000])
    info = market.contract.task(task_id)
    assert info.current_round == 1 and market.chain.clock() < info.opens_at(1)

    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 1, market.trainers[0])
    assert revert_name(exc) == "MarketRoundNotOpen"
    assert f"opens at unix time {info.opens_at(1)}" in str(exc.value)

    advance_to(market, info.opens_at(1))
    commit(market, task_id, 1, market.trainers[0])


def test_a_late_settlement_does_not_move_the_next_round(market: Market) -> None:
    task_id = create(market, rounds=3, max_trainers=2, **SHORT)
    join_all(market, task_id, market.trainers[:2])
    info = market.contract.task(task_id)
    advance_to(market, info.opens_at(1) + 20)  # round 0 is settled only after round 1 opened
    market.contract.settle_without_result(market.outsider, task_id)

    assert schedule(market, task_id)["opens"] == info.opens_at(1)
    commit(market, task_id, 1, market.trainers[0])  # round 1's commit window is still open
    advance_to(market, info.opens_at(1) + 60)
    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 1, market.trainers[1])
    assert revert_name(exc) == "MarketSubmissionClosed"


# ------------------------------------------------------------------ leave
def test_leaving_between_rounds_returns_the_stake(market: Market) -> None:
    task_id = create(market, rounds=2, stake_wei=STAKE)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)

    receipt = market.contract.leave(trainer, task_id)

    assert market.contract.c.events.StakeReturned().process_receipt(receipt, errors=DISCARD)[0]["args"]["amount"] == STAKE
    assert market.contract.owed(task_id, trainer.address) == STAKE
    before = market.chain.balance(market.contract.address)
    assert market.contract.withdraw(trainer, task_id) == STAKE
    assert market.chain.balance(market.contract.address) == before - STAKE
    assert market.contract.trainer_index(task_id, trainer.address) == 0  # the seat is given up
    with pytest.raises(ContractRevert) as exc:  # no seat, no commit
        commit(market, task_id, 0, trainer)
    assert revert_name(exc) == "MarketNotJoined"
    with pytest.raises(ContractRevert) as exc2:
        market.contract.leave(trainer, task_id)
    assert revert_name(exc2) == "MarketNotJoined"
    market.contract.join(trainer, task_id)  # back in with a fresh stake
    commit(market, task_id, 0, trainer)
    assert_conserved(market, task_id)


def test_leaving_while_committed_is_refused_until_the_round_settles(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=1, stake_wei=STAKE, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    play_round(market, task_id, 0, [trainer])
    with pytest.raises(ContractRevert) as exc:
        market.contract.leave(trainer, task_id)
    assert revert_name(exc) == "MarketCannotLeave"
    post(market, task_id, 0, [10_000])

    market.contract.leave(trainer, task_id)

    assert market.contract.owed(task_id, trainer.address) == 5 * 10**17 + STAKE


def test_leave_without_joining_reverts(market: Market) -> None:
    task_id = create(market)
    with pytest.raises(ContractRevert) as exc:
        market.contract.leave(market.outsider, task_id)
    assert revert_name(exc) == "MarketNotJoined"


# -------------------------------------------------------------- withdraw
def test_withdrawing_twice_pays_once(market: Market) -> None:
    task_id = create(market, rounds=1, reward=10**18)
    join_all(market, task_id, market.trainers[:3])
    play_round(market, task_id, 0, market.trainers[:3])
    post(market, task_id, 0, [10000, 0, 0])
    trainer = market.trainers[0]
    before = market.chain.balance(trainer.address)

    paid = market.contract.withdraw(trainer, task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.withdraw(trainer, task_id)

    assert paid == 10**18
    assert revert_name(exc) == "MarketNothingToWithdraw"
    assert 0 < market.chain.balance(trainer.address) - before <= 10**18
    assert market.chain.balance(market.contract.address) == 0


def test_withdraw_to_another_address(market: Market) -> None:
    task_id = create(market, rounds=1, reward=10**18, max_trainers=1, stake_wei=STAKE)
    trainer, recipient = market.trainers[0], market.trainers[4]
    market.contract.join(trainer, task_id)
    play_round(market, task_id, 0, [trainer])
    post(market, task_id, 0, [10_000])
    before = market.chain.balance(recipient.address)

    receipt = market.chain.transact(trainer, market.contract.c.functions.withdrawTo(task_id, recipient.address))

    (ev,) = market.contract.c.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    assert (ev["args"]["account"], ev["args"]["recipient"], ev["args"]["amount"]) == \
        (trainer.address, recipient.address, 10**18 + STAKE)
    assert market.chain.balance(recipient.address) == before + 10**18 + STAKE
    assert market.contract.owed(task_id, trainer.address) == 0
    with pytest.raises(ContractRevert) as exc:
        market.contract.withdraw(trainer, task_id, ZERO_ADDRESS)
    assert revert_name(exc) == "MarketZeroRecipient"


def test_the_stake_is_withdrawable_only_once_the_task_ends(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000, max_trainers=1, stake_wei=STAKE, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    play_round(market, task_id, 0, [trainer])
    post(market, task_id, 0, [10_000])

    assert market.contract.withdraw(trainer, task_id) == 500  # the credit, not the stake
    assert market.contract.seat(task_id, trainer.address).stake == STAKE
    play_round(market, task_id, 1, [trainer])
    post(market, task_id, 1, [10_000])
    assert market.contract.withdraw(trainer, task_id) == 500 + STAKE
    assert market.contract.task(task_id).stakes_held == 0
    assert market.chain.balance(market.contract.address) == 0


def test_withdraw_is_per_task(market: Market) -> None:
    t1 = create(market, rounds=1, reward=1000, max_trainers=1)
    t2 = create(market, rounds=1, reward=3000, max_trainers=1)
    trainer = market.trainers[0]
    for task_id in (t1, t2):
        market.contract.join(trainer, task_id)
        play_round(market, task_id, 0, [trainer])
        post(market, task_id, 0, [10_000])

    assert market.contract.withdraw(trainer, t1) == 1000
    assert market.contract.owed(task_id=t2, address=trainer.address) == 3000
    assert market.contract.withdraw(trainer, t2) == 3000


def test_the_owner_withdraws_refunds_only(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000, **SHORT)
    close_commits(market, task_id)
    market.contract.settle_without_result(market.outsider, task_id)

    assert market.contract.withdraw_refund(market.owner, task_id) == 500
    with pytest.raises(ContractRevert) as exc:
        market.contract.withdraw_refund(market.owner, task_id)
    assert revert_name(exc) == "MarketNothingToWithdraw"
    with pytest.raises(ContractRevert) as exc2:
        market.contract.withdraw_refund(market.outsider, task_id)
    assert revert_name(exc2) == "MarketNotOwner"


# ------------------------------------------------------------------ pools
def test_pools_add_up_to_the_reward(market: Market) -> None:
    task_id = create(market, rounds=3, reward=10)
    pools = [market.contract.round_pool(task_id, r) for r in range(3)]
    assert pools == [3, 3, 4]  # floor(10*(r+1)/3) - floor(10*r/3)


def test_round_pools_computed_off_chain_equal_the_contracts(market: Market) -> None:
    for reward, rounds in ((10**18, 3), (7, 5), (4, 4), (10**18 + 1, 7)):
        task_id = create(market, rounds=rounds, reward=reward)
        info = market.contract.task(task_id)

        pools = [info.round_pool(r) for r in range(rounds)]

        assert pools == [market.contract.round_pool(task_id, r) for r in range(rounds)]
        assert sum(pools) == reward


def test_a_settled_round_records_its_result(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=1)
    market.contract.join(market.trainers[0], task_id)
    play_round(market, task_id, 0, market.trainers[:1])
    seed = market.contract.round_seed(task_id)
    post(market, task_id, 0, [10_000], seed_=seed)

    info = market.contract.round_info(task_id, 0)

    assert (info.settlement, info.model_cid, info.receipt_cid, info.seed) == ("result", MODEL, RECEIPT, seed)
    assert market.contract.task(task_id).latest_model_cid == MODEL
