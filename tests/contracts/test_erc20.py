"""ERC-20 rewards through SafeERC20: plain, false-returning and fee-on-transfer tokens."""

from __future__ import annotations

from typing import Any

import pytest

from market.cid import compute_cid
from market.chain.compile import load_artifact
from market.errors import ContractRevert
from tests.conftest import Market

SPEC = compute_cid(b"spec")


def token(m: Market, name: str, amount: int) -> Any:
    art = load_artifact(name)
    address = m.chain.deploy(m.owner, art)
    c = m.chain.w3.eth.contract(address=address, abi=art["abi"])
    m.chain.decoder.add(art["abi"])
    m.chain.transact(m.owner, c.functions.mint(m.owner.address, amount))
    m.chain.transact(m.owner, c.functions.approve(m.contract.address, amount))
    return c


def create(m: Market, tok: Any, amount: int, rounds: int = 1) -> int:
    task_id, _ = m.contract.create_task(m.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=b"\x00" * 32,
                                        aggregator=m.aggregator.address, rounds=rounds, reward_wei=amount,
                                        max_trainers=2, token=tok.address)
    return task_id


def run_round(m: Market, task_id: int, bps: list[int]) -> None:
    for i, t in enumerate(m.trainers[: len(bps)]):
        m.contract.join(t, task_id)
        m.contract.submit_update(t, task_id, 0, compute_cid(bytes([i])), b"\x00" * 32)
    m.contract.post_result(m.aggregator, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), bps)


def test_plain_erc20_reward_is_escrowed_credited_and_withdrawn(market: Market) -> None:
    tok = token(market, "TestToken", 1_000_001)
    task_id = create(market, tok, 1_000_001)
    assert tok.functions.balanceOf(market.contract.address).call() == 1_000_001

    run_round(market, task_id, [7000, 3000])
    paid = market.contract.withdraw(market.trainers[0], tok.address)
    refund = market.contract.withdraw_refund(market.owner, task_id)

    assert paid == 700_000  # floor(1_000_001 * 0.7)
    assert tok.functions.balanceOf(market.trainers[0].address).call() == 700_000
    assert refund == 1_000_001 - 700_000 - 300_000
    assert market.contract.owed(market.trainers[1].address, tok.address) == 300_000
    assert market.contract.owed(market.trainers[1].address) == 0  # nothing in ETH


def test_token_returning_false_is_refused(market: Market) -> None:
    tok = token(market, "FalseReturnToken", 1000)
    with pytest.raises(ContractRevert) as exc:
        create(market, tok, 1000)
    assert exc.value.name == "SafeERC20FailedOperation"
    assert market.contract.task_count() == 0


def test_fee_on_transfer_token_escrows_what_arrived(market: Market) -> None:
    tok = token(market, "FeeOnTransferToken", 10_000)
    task_id = create(market, tok, 10_000)

    t = market.contract.task(task_id)

    assert t.reward == t.escrow == 9_900  # 1% burnt on the way in
    assert tok.functions.balanceOf(market.contract.address).call() == 9_900
    run_round(market, task_id, [5000, 5000])
    for tr in market.trainers[:2]:
        assert market.contract.withdraw(tr, tok.address) == 4_950
    assert tok.functions.balanceOf(market.contract.address).call() == 0


def test_eth_sent_with_a_token_reward_reverts(market: Market) -> None:
    tok = token(market, "TestToken", 100)
    call = market.contract.c.functions.createTask(
        (b"\x01" * 32, b"\x01" * 32, b"\x00" * 32, market.aggregator.address, "0x" + "00" * 20, 1, 100, 100, 2),
        tok.address, 100,
    )
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.owner, call, value=5)
    assert exc.value.name == "MarketWrongValue"
