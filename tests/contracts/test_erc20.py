"""ERC-20 rewards and stakes through SafeERC20: plain, false-returning and fee-on-transfer tokens; a
token must be a contract."""

from __future__ import annotations

from typing import Any

import pytest

from market.chain.compile import load_artifact
from market.errors import ContractRevert
from tests.conftest import Market
from tests.contracts.helpers import (
    SHORT,
    SPEC,
    assert_conserved,
    commit,
    cumulative,
    play_round,
    post,
    prove,
    reveal,
    settle_after_deadline,
)
from tests.contracts.helpers import (
    create as create_task,
)


def token(m: Market, name: str, amount: int) -> Any:
    """Deploy token ``name``, mint ``amount`` to the owner and approve the market for it."""
    art = load_artifact(name)
    address = m.chain.deploy(m.owner, art)
    c = m.chain.w3.eth.contract(address=address, abi=art["abi"])
    m.chain.decoder.add(art["abi"])
    m.chain.transact(m.owner, c.functions.mint(m.owner.address, amount))
    m.chain.transact(m.owner, c.functions.approve(m.contract.address, amount))
    return c


def fund(m: Market, tok: Any, trainer: Any, amount: int) -> None:
    """Give ``trainer`` ``amount`` of ``tok`` and approve the market to pull it (the stake)."""
    m.chain.transact(m.owner, tok.functions.mint(trainer.address, amount))
    m.chain.transact(trainer, tok.functions.approve(m.contract.address, amount))


def create(m: Market, tok: Any, amount: int, rounds: int = 1, **kw: Any) -> int:
    """A task of ``rounds`` rounds for two trainers paying ``amount`` of ``tok``."""
    return create_task(m, rounds=rounds, reward=amount, max_trainers=2, token=tok.address, **kw)


def run_round(m: Market, task_id: int, bps: list[int]) -> None:
    """``len(bps)`` trainers join, commit, reveal; the aggregator posts ``bps`` (two fill the task, so the
    round closes without waiting for its deadlines)."""
    trainers = m.trainers[: len(bps)]
    for t in trainers:
        m.contract.join(t, task_id)
    round_ = m.contract.task(task_id).current_round
    play_round(m, task_id, round_, trainers)
    post(m, task_id, round_, bps)


def balance(tok: Any, address: str) -> int:
    return int(tok.functions.balanceOf(address).call())


def test_plain_erc20_reward_is_escrowed_credited_and_withdrawn(market: Market) -> None:
    tok = token(market, "TestToken", 1_000_001)
    task_id = create(market, tok, 1_000_001)
    assert balance(tok, market.contract.address) == 1_000_001

    run_round(market, task_id, [7000, 3000])
    paid = market.contract.withdraw(market.trainers[0], task_id)

    assert paid == 700_000  # floor(1_000_001 * 0.7)
    assert balance(tok, market.trainers[0].address) == 700_000
    assert market.contract.owed(task_id, market.trainers[1].address) == 300_001  # the remainder: a trainer's
    assert market.contract.task(task_id).refunded == 0
    assert market.chain.balance(market.contract.address) == 0  # nothing in ETH


def test_token_stakes_are_pulled_lost_to_the_honest_and_given_back(market: Market) -> None:
    stake = 5_000
    tok = token(market, "TestToken", 1_000)
    task_id = create(market, tok, 1_000, stake_wei=stake, **SHORT)
    honest, silent = market.trainers[:2]
    for t in (honest, silent):
        fund(market, tok, t, stake)
        market.contract.join(t, task_id)
    assert balance(tok, market.contract.address) == 1_000 + 2 * stake
    assert balance(tok, silent.address) == 0

    play_round(market, task_id, 0, [honest, silent], revealers=[honest])
    post(market, task_id, 0, [10_000])

    assert market.contract.withdraw(honest, task_id) == 1_000 + stake + stake  # pool, silent's stake, own stake
    assert balance(tok, honest.address) == 1_000 + 2 * stake
    assert market.contract.owed(task_id, silent.address) == 0
    assert balance(tok, market.contract.address) == 0
    assert_conserved(market, task_id)


def test_eth_sent_with_a_token_stake_reverts(market: Market) -> None:
    tok = token(market, "TestToken", 1_000)
    task_id = create(market, tok, 1_000, stake_wei=10)
    fund(market, tok, market.trainers[0], 10)
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.trainers[0], market.contract.c.functions.join(task_id), value=10)
    assert exc.value.name == "MarketWrongValue"


def test_a_token_stake_without_allowance_reverts(market: Market) -> None:
    tok = token(market, "TestToken", 1_000)
    task_id = create(market, tok, 1_000, stake_wei=10)
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(market.trainers[0], task_id)
    assert exc.value.name == "ERC20InsufficientAllowance"
    assert market.contract.trainer_index(task_id, market.trainers[0].address) == 0


def test_token_returning_false_is_refused(market: Market) -> None:
    tok = token(market, "FalseReturnToken", 1000)
    with pytest.raises(ContractRevert) as exc:
        create(market, tok, 1000)
    assert exc.value.name == "SafeERC20FailedOperation"
    assert market.contract.task_count() == 0


def test_a_token_without_code_is_refused(market: Market) -> None:
    class NoCode:
        address = market.outsider.address

    with pytest.raises(ContractRevert) as exc:
        create(market, NoCode, 1000)
    assert exc.value.name == "MarketBadToken"
    assert market.contract.task_count() == 0


def test_fee_on_transfer_token_escrows_what_arrived(market: Market) -> None:
    tok = token(market, "FeeOnTransferToken", 10_000)
    task_id = create(market, tok, 10_000)

    t = market.contract.task(task_id)

    assert t.reward == t.escrow == 9_900  # 1% burnt on the way in
    assert balance(tok, market.contract.address) == 9_900
    run_round(market, task_id, [5000, 5000])
    for tr in market.trainers[:2]:
        assert market.contract.withdraw(tr, task_id) == 4_950
    assert balance(tok, market.contract.address) == 0


def test_a_fee_on_transfer_stake_is_refused(market: Market) -> None:
    """A stake must arrive whole: one short of it would let a trainer hold less than the task asks."""
    tok = token(market, "FeeOnTransferToken", 10_000)
    task_id = create(market, tok, 10_000, stake_wei=1_000)
    fund(market, tok, market.trainers[0], 1_000)
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(market.trainers[0], task_id)
    assert exc.value.name == "MarketWrongValue"


def test_eth_sent_with_a_token_reward_reverts(market: Market) -> None:
    tok = token(market, "TestToken", 100)
    zero = "0x" + "00" * 20
    # (spec, model, validation, verifier, feeBps, panel, quorum, backup, rounds, windows, maxTrainers, k, stake)
    params = (b"\x01" * 32, b"\x01" * 32, b"\x00" * 32, zero, 0, 1, 1, False,
              1, 100, 100, 100, 2, 0, 0)
    call = market.contract.c.functions.createTask(params, tok.address, 100)
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.owner, call, value=5)
    assert exc.value.name == "MarketWrongValue"


def test_a_token_fallback_pays_the_updates_proved_available(market: Market) -> None:
    tok = token(market, "TestToken", 1_001)
    task_id = create(market, tok, 1_001, **SHORT)
    a, b = market.trainers[:2]
    for t in (a, b):
        market.contract.join(t, task_id)
    ua, ub = commit(market, task_id, 0, a), commit(market, task_id, 0, b)
    reveal(market, task_id, 0, a, ua)
    reveal(market, task_id, 0, b, ub)
    prove(market, task_id, 0, a, ua)
    prove(market, task_id, 0, b, ub)

    settle_after_deadline(market, task_id)

    assert [market.contract.owed(task_id, t.address) for t in (a, b)] == cumulative(1_001, [1, 1])
    assert market.contract.task(task_id).spec_cid == SPEC
    assert_conserved(market, task_id)
