"""Cheaters against the rules this part of the protocol decides pay with: when a round closes, and who settles it.

Each test lets the cheater try on the in-process chain with the real contract, asserts it gains nothing,
that the honest trainers are paid what the honest run pays them, and that the money adds up to the wei.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from market.chain.contract import commit_hash
from market.cid import compute_cid
from market.errors import ContractRevert
from tests.conftest import Market

SPEC = compute_cid(b"spec")
REWARD = 3 * 10**18
COMMITMENT = b"\x00" * 32


def _task(m: Market, max_trainers: int = 3, window: int = 600, **kw: int) -> int:
    task_id, _ = m.contract.create_task(m.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=b"\x11" * 32,
                                        rounds=1, reward_wei=REWARD,
                                        max_trainers=max_trainers, submit_window=window, result_window=window, **kw)
    return task_id


def _salt(i: int) -> bytes:
    return keccak(b"salt" + bytes([i]))


def _commit(m: Market, task_id: int, i: int) -> None:
    cid = compute_cid(bytes([i]))
    m.contract.commit(m.trainers[i], task_id, 0, commit_hash(cid, COMMITMENT, _salt(i), m.trainers[i].address, task_id, 0))


def _reveal(m: Market, task_id: int, i: int) -> None:
    m.contract.reveal(m.trainers[i], task_id, 0, compute_cid(bytes([i])), COMMITMENT, _salt(i))


def _balanced(m: Market, task_id: int) -> None:
    info = m.contract.task(task_id)
    assert info.escrow + info.credited + info.refunded == info.reward


def test_first_trainer_and_a_colluding_aggregator_cannot_close_the_round_early_and_take_the_pool(market: Market) -> None:
    m = market
    task_id = _task(m)
    m.contract.join(m.trainers[0], task_id)
    _commit(m, task_id, 0)  # the cheater joins first and is alone: "everyone who joined" has committed

    with pytest.raises(ContractRevert, match="MarketRevealNotOpen"):  # it cannot reveal while others may still commit
        _reveal(m, task_id, 0)
    with pytest.raises(ContractRevert, match="MarketNothingRevealed"):  # the grab: a result while others may still come
        m.contract.post_result(m.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [10_000],
                               seed=b"\x01" * 32)
    with pytest.raises(ContractRevert, match="MarketNothingRevealed|MarketRevealOpen"):  # nor can anyone seal it early
        m.contract.seal(m.outsider, task_id)
    with pytest.raises(ContractRevert):  # nor force the fallback early
        m.contract.settle_without_result(m.outsider, task_id)

    for i in (1, 2):  # the honest trainers arrive later and still get into round 0
        m.contract.join(m.trainers[i], task_id)
        _commit(m, task_id, i)  # the third is the full trainer count: now the commits close, with everyone in them
    for i in range(3):
        _reveal(m, task_id, i)  # the last reveal seals the round
    assert m.contract.task(task_id).seal_block
    m.contract.post_result(m.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [3334, 3333, 3333],
                           seed=m.contract.round_seed(task_id))

    credited = m.contract.credited(task_id, 0)
    assert credited[m.trainers[0].address] == REWARD * 3334 // 10_000 < REWARD  # its share, not the pool
    assert credited[m.trainers[1].address] == credited[m.trainers[2].address] == REWARD * 3333 // 10_000
    _balanced(m, task_id)


def test_the_last_revealer_cannot_keep_the_reveals_open_to_pick_the_seed(market: Market) -> None:
    """Revealing closes the window as soon as every committer revealed, and a seed is only readable once the
    round is sealed: nobody in the round can wait for a block hash it likes and then post with it."""
    m = market
    task_id = _task(m)
    for i in range(3):
        m.contract.join(m.trainers[i], task_id)
        _commit(m, task_id, i)
    for i in range(2):
        _reveal(m, task_id, i)
    with pytest.raises(ContractRevert, match="MarketRevealOpen"):  # two revealed, one still may: not sealable yet
        m.contract.seal(m.outsider, task_id)
    with pytest.raises(ContractRevert, match="MarketRevealOpen"):  # nor postable
        m.contract.post_result(m.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [5000, 5000],
                               seed=b"\x01" * 32)
    _reveal(m, task_id, 2)
    info = m.contract.task(task_id)
    assert info.seal_block  # sealed by the last reveal
    with pytest.raises(ContractRevert, match="MarketRevealClosed"):
        _reveal(m, task_id, 2)
    with pytest.raises(ContractRevert, match="MarketWrongSeed"):  # a seed of the poster's choosing is refused
        m.contract.post_result(m.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [3334, 3333, 3333],
                               seed=b"\x01" * 32)
    m.contract.post_result(m.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [3334, 3333, 3333],
                           seed=m.contract.round_seed(task_id))
    _balanced(m, task_id)


def test_an_owner_cannot_reclaim_a_round_while_late_joiners_may_still_submit(market: Market) -> None:
    m = market
    task_id = _task(m, empty_rounds_to_reclaim=1)
    m.contract.join(m.trainers[0], task_id)
    _commit(m, task_id, 0)

    for attempt in (lambda: m.contract.reclaim_unused(m.owner, task_id),
                    lambda: m.contract.settle_without_result(m.owner, task_id)):
        with pytest.raises(ContractRevert):
            attempt()

    m.contract.join(m.trainers[1], task_id)  # a trainer who arrives later still gets into round 0
    _commit(m, task_id, 1)
    assert m.contract.task(task_id).committed_count == 2
    assert m.contract.task(task_id).escrow == REWARD  # nothing left the escrow
    _balanced(m, task_id)
