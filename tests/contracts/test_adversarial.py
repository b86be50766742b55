"""Attacker contracts and hostile callers gain nothing and block nobody (in-process EVM)."""

from __future__ import annotations

from typing import Any

import pytest

from market.cid import cid_digest
from market.errors import ChainError, ContractRevert
from tests.conftest import Market
from tests.contracts.helpers import (
    MODEL,
    RECEIPT,
    SHORT,
    STAKE,
    Update,
    advance_to,
    assert_conserved,
    close_commits,
    commit,
    create,
    cumulative,
    deploy,
    play_round,
    post,
    prove,
    reveal,
    schedule,
    seal,
    settle_after_deadline,
    update,
)


def contract_trainer(m: Market, name: str, task_id: int, round_: int = 0, c: Any = None) -> tuple[Any, Update]:
    """Deploy (or reuse) a trainer contract, join ``task_id`` with the stake and commit for ``round_``."""
    if c is None:
        c = deploy(m, name, m.contract.address)
    stake = m.contract.task(task_id).stake
    m.chain.transact(m.outsider, c.functions.join(task_id), value=stake)
    upd = update(task_id, round_, 99)
    m.chain.transact(m.outsider, c.functions.commit(task_id, round_, upd.hash(c.address, task_id, round_)))
    return c, upd


def contract_reveal(m: Market, c: Any, task_id: int, round_: int, upd: Update) -> None:
    m.chain.transact(m.outsider, c.functions.reveal(task_id, round_, cid_digest(upd.cid), upd.commitment, upd.salt))


def two_trainer_round(m: Market, name: str, bps: list[int], c: Any = None) -> tuple[int, Any]:
    """A one-round task with a stake, a contract trainer and trainers[0]; both commit (the task is full, so
    reveals open at once), both reveal, the aggregator posts ``bps`` (contract first, by join order)."""
    task_id = create(m, rounds=1, reward=10**18, max_trainers=2, stake_wei=STAKE)
    c, upd = contract_trainer(m, name, task_id, c=c)
    m.contract.join(m.trainers[0], task_id)
    honest = commit(m, task_id, 0, m.trainers[0])
    contract_reveal(m, c, task_id, 0, upd)
    reveal(m, task_id, 0, m.trainers[0], honest)
    post(m, task_id, 0, bps)
    return task_id, c


def test_reentrant_withdraw_gains_nothing(market: Market) -> None:
    """The receive hook re-enters withdrawTo and withdraw of the same task (refused: the seat was emptied
    before the transfer) and withdrawTo of another task (paid what that task owes, once)."""
    t1, attacker = two_trainer_round(market, "ReentrantTrainer", [5000, 5000])
    t2, _ = two_trainer_round(market, "ReentrantTrainer", [2000, 8000], c=attacker)
    owed1, owed2 = market.contract.owed(t1, attacker.address), market.contract.owed(t2, attacker.address)
    assert (owed1, owed2) == (5 * 10**17 + STAKE, 2 * 10**17 + STAKE)
    before = market.chain.balance(market.contract.address)

    market.chain.transact(market.outsider, attacker.functions.attack(t1, t2))

    assert market.chain.balance(attacker.address) == owed1 + owed2  # each task paid exactly once
    assert market.chain.balance(market.contract.address) == before - owed1 - owed2
    assert attacker.functions.reentryAttempts().call() == 3
    assert attacker.functions.reentrySucceeded().call() is False
    assert attacker.functions.otherTaskPaid().call() is True
    assert market.contract.owed(t1, attacker.address) == market.contract.owed(t2, attacker.address) == 0
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.outsider, attacker.functions.attack(t1, t2))
    assert exc.value.name == "MarketNothingToWithdraw"
    assert market.contract.withdraw(market.trainers[0], t1) == 5 * 10**17 + STAKE  # the honest trainer is unaffected
    for task_id in (t1, t2):
        assert_conserved(market, task_id)


def test_a_trainer_that_cannot_receive_eth_withdraws_to_another_address(market: Market) -> None:
    task_id, refuser = two_trainer_round(market, "RevertingTrainer", [4000, 6000])
    with pytest.raises(ChainError):
        market.chain.transact(market.outsider, refuser.functions.pull(task_id))
    assert market.contract.withdraw(market.trainers[0], task_id) == 6 * 10**17 + STAKE  # blocks nobody
    owed = market.contract.owed(task_id, refuser.address)
    assert owed == 4 * 10**17 + STAKE  # still owed, nothing lost
    safe = market.trainers[4].address
    before = market.chain.balance(safe)

    market.chain.transact(market.outsider, refuser.functions.pullTo(task_id, safe))

    assert market.chain.balance(safe) == before + owed
    assert market.contract.owed(task_id, refuser.address) == 0
    assert market.chain.balance(market.contract.address) == 0


def test_owner_cannot_pull_escrow_back_while_trainers_work(market: Market) -> None:
    task_id = create(market, rounds=2, stake_wei=STAKE, empty_rounds_to_reclaim=1)
    market.contract.join(market.trainers[0], task_id)
    commit(market, task_id, 0, market.trainers[0])

    for attempt in (lambda: market.contract.reclaim_unused(market.owner, task_id),
                    lambda: market.contract.withdraw(market.owner, task_id),
                    lambda: market.contract.withdraw_refund(market.owner, task_id),
                    lambda: market.contract.leave(market.trainers[0], task_id)):
        with pytest.raises(ContractRevert):
            attempt()
    assert market.contract.task(task_id).escrow == 10**18
    assert market.chain.balance(market.contract.address) == 10**18 + STAKE


def test_a_trainer_cannot_take_its_stake_out_mid_task(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=1, stake_wei=STAKE, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.withdraw(trainer, task_id)
    assert exc.value.name == "MarketNothingToWithdraw"
    play_round(market, task_id, 0, [trainer])
    post(market, task_id, 0, [10_000])
    assert market.contract.withdraw(trainer, task_id) == 5 * 10**17  # the credit only
    assert market.contract.seat(task_id, trainer.address).stake == STAKE


def test_result_for_the_wrong_round_reverts(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=1)
    market.contract.join(market.trainers[0], task_id)
    play_round(market, task_id, 0, market.trainers[:1])
    seed = market.contract.round_seed(task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.post_result(market.aggregator, task_id, 1, MODEL, RECEIPT, [10000], seed=seed)
    assert exc.value.name == "MarketWrongRound"


def test_basis_points_for_a_non_revealer_cannot_be_posted(market: Market) -> None:
    task_id = create(market, stake_wei=STAKE, **SHORT)
    a, b = market.trainers[:2]
    for t in (a, b):
        market.contract.join(t, task_id)
    play_round(market, task_id, 0, [a, b], revealers=[a])  # b committed, never revealed
    seal(market, task_id)
    with pytest.raises(ContractRevert) as exc:  # a second entry would pay the non-revealer
        post(market, task_id, 0, [5000, 5000])
    assert exc.value.name == "MarketWrongLength"

    post(market, task_id, 0, [10000])

    assert market.contract.seat(task_id, b.address).earned == 0
    assert market.contract.seat(task_id, b.address).stake == 0


def test_a_copied_commitment_cannot_be_revealed_by_the_copier(market: Market) -> None:
    """Row 1: a watcher copies the victim's commit (from the mempool) and, after the victim's reveal, its
    CID, commitment and salt. The hash binds the trainer: the copier's reveal fails and its stake pays
    the victim."""
    task_id = create(market, rounds=1, reward=10**18, max_trainers=2, stake_wei=STAKE)
    victim, copier = market.trainers[:2]
    for t in (victim, copier):
        market.contract.join(t, task_id)
    upd = commit(market, task_id, 0, victim)
    market.contract.commit(copier, task_id, 0, upd.hash(victim.address, task_id, 0))  # the same hash
    reveal(market, task_id, 0, victim, upd)

    with pytest.raises(ContractRevert) as exc:
        reveal(market, task_id, 0, copier, upd)

    assert exc.value.name == "MarketBadReveal"
    post(market, task_id, 0, [10_000])
    assert market.contract.owed(task_id, victim.address) == 10**18 + 2 * STAKE  # the pool and the copier's stake
    assert market.contract.owed(task_id, copier.address) == 0
    assert_conserved(market, task_id)


def test_a_copy_made_after_the_reveal_is_too_late(market: Market) -> None:
    task_id = create(market, rounds=1, reward=10**18, max_trainers=3, stake_wei=STAKE, **SHORT)
    victim, copier = market.trainers[:2]
    for t in (victim, copier):
        market.contract.join(t, task_id)
    upd = commit(market, task_id, 0, victim)
    close_commits(market, task_id)
    reveal(market, task_id, 0, victim, upd)  # the CID is public from here on

    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 0, copier, upd)
    with pytest.raises(ContractRevert) as exc2:
        reveal(market, task_id, 0, copier, upd)

    assert (exc.value.name, exc2.value.name) == ("MarketSubmissionClosed", "MarketNotCommitted")


def test_a_junk_commitment_blocks_nobody(market: Market) -> None:
    """Row 2: a griefer commits junk; the victim's reveal is unaffected and the griefer's stake pays it."""
    task_id = create(market, rounds=1, reward=10**18, max_trainers=3, stake_wei=STAKE, **SHORT)
    victim, griefer = market.trainers[:2]
    for t in (victim, griefer):
        market.contract.join(t, task_id)
    upd = commit(market, task_id, 0, victim)
    market.contract.commit(griefer, task_id, 0, b"\x42" * 32)
    close_commits(market, task_id)
    reveal(market, task_id, 0, victim, upd)

    post(market, task_id, 0, [10_000])

    assert market.contract.owed(task_id, victim.address) == 10**18 + 2 * STAKE
    assert market.contract.stakes_lost(task_id) == {griefer.address: {0: STAKE}}


def test_sybils_that_never_reveal_fund_the_honest_fallback(market: Market) -> None:
    """Row 5 with stakes: sybils commit and stay silent, the aggregator too; the honest trainers prove
    their updates available and the fallback pays them only, with the sybils' stakes on top."""
    task_id = create(market, rounds=1, reward=10**18, max_trainers=5, stake_wei=STAKE, **SHORT)
    honest, sybils = market.trainers[:2], market.trainers[2:5]
    for t in honest + sybils:
        market.contract.join(t, task_id)
    ups = play_round(market, task_id, 0, honest + sybils, revealers=honest)
    for t in honest:
        prove(market, task_id, 0, t, ups[t.address])

    settle_after_deadline(market, task_id)

    shares = cumulative(10**18 + 3 * STAKE, [1, 1])
    assert [market.contract.owed(task_id, t.address) for t in honest] == [s + STAKE for s in shares]
    assert [market.contract.owed(task_id, t.address) for t in sybils] == [0, 0, 0]
    assert market.contract.task(task_id).refunded == 0
    assert_conserved(market, task_id)


def test_the_aggregator_cannot_pick_its_own_seed(market: Market) -> None:
    """Row 11: the seed is the seal block's hash; a result computed with any other seed is refused."""
    task_id = create(market, rounds=1, max_trainers=2, **SHORT)
    for t in market.trainers[:2]:
        market.contract.join(t, task_id)
    play_round(market, task_id, 0, market.trainers[:2])
    for fake in (b"\x00" * 32, b"\xff" * 32):
        with pytest.raises(ContractRevert) as exc:
            post(market, task_id, 0, [5000, 5000], seed_=fake)
        assert exc.value.name == "MarketWrongSeed"


def test_the_aggregator_cannot_move_the_next_round(market: Market) -> None:
    """Row 9: posting early does not open round 1 early; round 1 opens on the schedule fixed at creation."""
    task_id = create(market, rounds=2, max_trainers=1, **SHORT)
    trainer = market.trainers[0]
    market.contract.join(trainer, task_id)
    opens_at_1 = market.contract.task(task_id).opens_at(1)
    play_round(market, task_id, 0, [trainer])
    post(market, task_id, 0, [10_000])
    assert schedule(market, task_id)["opens"] == opens_at_1
    with pytest.raises(ContractRevert) as exc:
        commit(market, task_id, 1, trainer)
    assert exc.value.name == "MarketRoundNotOpen"
    advance_to(market, opens_at_1)
    commit(market, task_id, 1, trainer)
