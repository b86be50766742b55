"""Attacker contracts and hostile callers gain nothing and block nobody (in-process EVM)."""

from __future__ import annotations

from typing import Any

import pytest

from market.cid import cid_digest, compute_cid
from market.chain.compile import load_artifact
from market.errors import ChainError, ContractRevert
from tests.conftest import Market

SPEC = compute_cid(b"spec")


def deploy(m: Market, name: str, *args: Any) -> Any:
    art = load_artifact(name)
    address = m.chain.deploy(m.outsider, art, *args)
    return m.chain.w3.eth.contract(address=address, abi=art["abi"])


def create(m: Market, rounds: int = 1, reward: int = 10**18, max_trainers: int = 4) -> int:
    task_id, _ = m.contract.create_task(m.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=b"\x00" * 32,
                                        aggregator=m.aggregator.address, rounds=rounds, reward_wei=reward,
                                        max_trainers=max_trainers)
    return task_id


def contract_trainer(m: Market, name: str, task_id: int, cid: bytes) -> Any:
    c = deploy(m, name, m.contract.address)
    m.chain.transact(m.outsider, c.functions.join(task_id))
    m.chain.transact(m.outsider, c.functions.submit(task_id, 0, cid_digest(compute_cid(cid)), b"\x00" * 32))
    return c


def test_reentrant_withdraw_gains_nothing(market: Market) -> None:
    task_id = create(market, max_trainers=2)  # both submit: the round closes without waiting for its deadline
    attacker = contract_trainer(market, "ReentrantTrainer", task_id, b"a")
    market.contract.join(market.trainers[0], task_id)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"b"), b"\x00" * 32)
    market.contract.post_result(market.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [5000, 5000])
    before = market.chain.balance(market.contract.address)

    market.chain.transact(market.outsider, attacker.functions.attack())

    assert market.chain.balance(attacker.address) == 5 * 10**17  # paid exactly once
    assert market.chain.balance(market.contract.address) == before - 5 * 10**17
    assert attacker.functions.reentryAttempts().call() == 1
    assert attacker.functions.reentrySucceeded().call() is False
    assert market.contract.owed(attacker.address) == 0
    assert market.contract.withdraw(market.trainers[0]) == 5 * 10**17  # the honest trainer is unaffected


def test_trainer_refusing_eth_blocks_nobody_else(market: Market) -> None:
    task_id = create(market, max_trainers=2)  # both submit: the round closes without waiting for its deadline
    refuser = contract_trainer(market, "RevertingTrainer", task_id, b"a")
    market.contract.join(market.trainers[0], task_id)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"b"), b"\x00" * 32)

    market.contract.post_result(market.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [4000, 6000])
    with pytest.raises(ChainError):
        market.chain.transact(market.outsider, refuser.functions.pull())

    assert market.contract.withdraw(market.trainers[0]) == 6 * 10**17
    assert market.contract.owed(refuser.address) == 4 * 10**17  # still owed, nothing lost


def test_owner_cannot_pull_escrow_back_while_trainers_work(market: Market) -> None:
    task_id = create(market, rounds=2)
    market.contract.join(market.trainers[0], task_id)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"b"), b"\x00" * 32)

    for attempt in (lambda: market.contract.reclaim_unused(market.owner, task_id),
                    lambda: market.contract.withdraw(market.owner),
                    lambda: market.contract.withdraw_refund(market.owner, task_id)):
        with pytest.raises(ContractRevert):
            attempt()
    assert market.contract.task(task_id).escrow == 10**18


def test_result_for_the_wrong_round_reverts(market: Market) -> None:
    task_id = create(market, rounds=2)
    market.contract.join(market.trainers[0], task_id)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"b"), b"\x00" * 32)
    with pytest.raises(ContractRevert) as exc:
        market.contract.post_result(market.aggregator, task_id, 1, compute_cid(b"m"), compute_cid(b"r"), [10000])
    assert exc.value.name == "MarketWrongRound"


def test_basis_points_for_a_non_submitter_cannot_be_posted(market: Market) -> None:
    task_id = create(market)
    for t in market.trainers[:2]:
        market.contract.join(t, task_id)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"b"), b"\x00" * 32)
    market.chain.advance_time(3601)  # window over, one of two joined submitted
    with pytest.raises(ContractRevert) as exc:  # a second entry would pay the joined non-submitter
        market.contract.post_result(market.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [5000, 5000])
    assert exc.value.name == "MarketWrongLength"
    market.contract.post_result(market.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [10000])
    assert market.contract.owed(market.trainers[1].address) == 0
