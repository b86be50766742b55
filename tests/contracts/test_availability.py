"""Issue 14, a market its own parties cannot cheat (in-process EVM): the availability window that ends each
round and ``proveAvailable``; a fallback that pays only updates proved available; pools nobody earned
(``carryPool``) and lost stakes nobody was paid (``carry``) carried to the next paid round, and at the task's
end (or ``reclaimUnused``) the pool back to the owner and the stakes to the trainers still holding one (those a
round paid since they took their seat first; the owner only when nobody holds one); the verifier allowlist
(kinds: a task's verifier, a contract a verifier calls). The money identity holds to the wei after each."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract.contract import ContractConstructor
from web3.logs import DISCARD

from market.chain.client import revert_data
from market.chain.compile import load_artifact
from market.chain.contract import ZERO_ADDRESS, MarketContract, round_state
from market.chain.registry import DEV_EXIT_DELAY, DEV_MIN_BOND, DEV_PENALTY, create_address
from market.cid import cid_digest
from market.errors import ConfigError, ContractRevert
from tests.conftest import Market
from tests.contracts.helpers import (
    SHORT,
    SPEC,
    STAKE,
    VALC,
    Update,
    advance_to,
    allow_code,
    assert_conserved,
    close_commits,
    create,
    cumulative,
    deploy,
    join_all,
    mock_verifier,
    play_round,
    post,
    prove,
    register,
    revert_name,
    schedule,
    settle_after_deadline,
    update,
)

# getTask's TaskView: period, by position
T_PERIOD = [c["name"] for c in next(i for i in load_artifact("ContributionMarket")["abi"] if i.get("name") == "getTask")
            ["outputs"][0]["components"]].index("period")


def prove_now(m: Market, task_id: int, round_: int, trainer: LocalAccount, upd: Update) -> Any:
    """``proveAvailable`` at the chain's current time (no waiting for the window)."""
    return m.contract.prove_available(trainer, task_id, round_, upd.commitment, upd.salt, upd.blob)


def earned(m: Market, task_id: int, trainers: list[LocalAccount]) -> list[int]:
    return [m.contract.seat(task_id, t.address).earned for t in trainers]


def credited_events(m: Market, receipt: Any) -> list[tuple[int, str, int]]:
    """(round, trainer, amount) of every ``TrainerCredited`` of a receipt."""
    evs = m.contract.c.events.TrainerCredited().process_receipt(receipt, errors=DISCARD)
    return [(int(e["args"]["round"]), e["args"]["trainer"], int(e["args"]["amount"])) for e in evs]


def revert_args(m: Market, call: Any, sender: LocalAccount, value: int = 0) -> tuple[str, tuple[Any, ...]]:
    """The market's custom error ``call`` reverts with, and its decoded arguments (a raw call or, for a
    constructor, a gas estimate: not a transaction)."""
    try:
        params = {"from": sender.address, "value": value}
        call.estimate_gas(params) if isinstance(call, ContractConstructor) else call.call(params)
    except Exception as exc:  # noqa: BLE001 -- whatever web3 raises, the revert data decides
        data = revert_data(exc)
    else:
        raise AssertionError("the call did not revert")
    assert data is not None
    for item in m.contract.c.abi:
        if item["type"] != "error":
            continue
        types = [i["type"] for i in item["inputs"]]
        if keccak(text=f"{item['name']}({','.join(types)})")[:4] == data[:4]:
            values = abi_decode(types, data[4:])
            return item["name"], tuple(Web3.to_checksum_address(v) if t == "address" else v
                                       for v, t in zip(values, types))
    raise AssertionError(f"unknown revert data 0x{data.hex()}")


def create_call(m: Market, verifier: str, contract: MarketContract | None = None) -> Any:
    """The ``createTask`` call ``create`` sends for a one-round proof task naming ``verifier`` (reward 1000)."""
    # (spec, model, validation, verifier, feeBps, panel, quorum, backup, rounds, windows, maxTrainers, k, stake)
    params = (cid_digest(SPEC), cid_digest(SPEC), VALC, Web3.to_checksum_address(verifier), 0, 1, 1, False,
              1, 60, 30, 60, 3, 0, 0)
    return (contract or m.contract).c.functions.createTask(params, ZERO_ADDRESS, 1000)


def round_verifier(m: Market, *components: str) -> Any:
    """A RoundVerifier whose Groth16 verifiers (its ``components``) are ``components``, one per round size."""
    return deploy(m, "RoundVerifier", 4, list(range(1, len(components) + 1)), list(components))


# ------------------------------------------------------------- the schedule
@pytest.mark.parametrize("backup", [False, True])
def test_the_period_ends_with_an_availability_window_as_long_as_the_reveal_window(market: Market, backup: bool) -> None:
    if backup:
        register(market, market.outsider)  # the backup is drawn from the registry: it needs a second member
    kw = {"backup": True} if backup else {}
    task_id = create(market, rounds=2, submit_window=100, reveal_window=40, result_window=70, **kw)
    info = market.contract.task(task_id)
    when = schedule(market, task_id)
    results = 70 * (2 if backup else 1)

    raw_period = market.chain.call(market.contract.c.functions.getTask(task_id))[T_PERIOD]
    assert raw_period == info.period == 100 + 40 + results + 40  # the contract's period is the wrapper's
    assert when["final"] - when["opens"] == info.results_end_offset == 100 + 40 + results
    assert when["end"] - when["final"] == 40
    close_commits(market, task_id)
    market.contract.settle_without_result(market.outsider, task_id)  # round 0: nothing committed

    assert schedule(market, task_id)["opens"] == info.opens_at(1) == info.start_at + raw_period
    s = round_state(market.contract.task(task_id), market.chain.clock())
    assert (s.round, s.phase, s.opens_at) == (1, "waiting", info.start_at + raw_period)
    market.contract.join(market.trainers[0], task_id)
    with pytest.raises(ContractRevert) as exc:  # not before its availability window closed
        market.contract.commit(market.trainers[0], task_id, 1, b"\x01" * 32)
    assert revert_name(exc) == "MarketRoundNotOpen"
    assert f"opens at unix time {info.start_at + raw_period}" in str(exc.value)
    advance_to(market, info.opens_at(1))
    market.contract.commit(market.trainers[0], task_id, 1, b"\x01" * 32)
    assert_conserved(market, task_id)


# ------------------------------------------------------------ proveAvailable
def test_prove_available_marks_the_seat_and_names_the_updates_cid(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1000, max_trainers=2, stake_wei=STAKE, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    ups = play_round(market, task_id, 0, [a, b])
    assert market.contract.seat(task_id, a.address).available_round == -1

    receipt = prove(market, task_id, 0, a, ups[a.address])

    (ev,) = market.contract.c.events.UpdateAvailable().process_receipt(receipt, errors=DISCARD)
    assert (ev["args"]["taskId"], ev["args"]["round"], ev["args"]["trainer"]) == (task_id, 0, a.address)
    assert bytes(ev["args"]["cid"]) == cid_digest(ups[a.address].cid) == hashlib.sha256(ups[a.address].blob).digest()
    assert [market.contract.seat(task_id, t.address).available_round for t in (a, b)] == [0, -1]
    assert market.contract.available(task_id, 0) == [a.address]
    t = market.contract.task(task_id)
    assert (t.credited, t.escrow, t.stakes_held) == (0, 1000, 2 * STAKE)  # proving moves no money
    assert_conserved(market, task_id)


@pytest.mark.parametrize("backup", [False, True])
def test_prove_available_before_the_last_result_window_ends_reverts(market: Market, backup: bool) -> None:
    if backup:
        register(market, market.outsider)  # the backup is drawn from the registry: it needs a second member
    kw = {"backup": True} if backup else {}
    task_id = create(market, rounds=1, max_trainers=2, **SHORT, **kw)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    ups = play_round(market, task_id, 0, [a, b])  # full: sealed at the last reveal, result window open
    when = schedule(market, task_id)
    too_early = [market.chain.clock(), when["result"] - 1] + ([when["result"], when["final"] - 1] if backup else [])

    for moment in too_early:
        advance_to(market, moment)
        with pytest.raises(ContractRevert) as exc:
            prove_now(market, task_id, 0, a, ups[a.address])
        assert revert_name(exc) == "MarketNotAvailabilityWindow"
        assert f"from unix time {when['final']}" in str(exc.value)
    assert market.contract.seat(task_id, a.address).available_round == -1
    advance_to(market, when["final"])

    prove_now(market, task_id, 0, a, ups[a.address])  # the window opens as the last result window closes

    assert market.contract.seat(task_id, a.address).available_round == 0


def test_prove_available_by_a_trainer_that_did_not_reveal_this_round_reverts(market: Market) -> None:
    task_id = create(market, rounds=2, max_trainers=4, stake_wei=STAKE, **SHORT)
    a, b, c, d = market.trainers[:4]
    join_all(market, task_id, [a, b, c, d])
    ups0 = play_round(market, task_id, 0, [a, b])
    post(market, task_id, 0, [5000, 5000])  # b revealed in round 0
    ups1 = play_round(market, task_id, 1, [a, b, c], revealers=[a])  # b and c commit and stay silent; d sits out
    advance_to(market, schedule(market, task_id)["final"])

    cases = [(b, ups0[b.address], 1), (b, ups1[b.address], 1), (c, ups1[c.address], 1), (d, update(task_id, 1, 3), 1),
             (market.outsider, ups1[a.address], 1)]
    for trainer, upd, round_ in cases:
        with pytest.raises(ContractRevert) as exc:
            prove_now(market, task_id, round_, trainer, upd)
        assert revert_name(exc) == "MarketNotRevealed", trainer.address
    with pytest.raises(ContractRevert) as exc2:  # nor is the round it did reveal in open to proofs any more
        prove_now(market, task_id, 0, b, ups0[b.address])
    assert revert_name(exc2) == "MarketWrongRound"
    prove_now(market, task_id, 1, a, ups1[a.address])
    assert [market.contract.seat(task_id, t.address).available_round for t in (a, b, c, d)] == [1, -1, -1, -1]


@pytest.mark.parametrize("what", ["other_trainers_bytes", "one_byte_more", "no_bytes", "wrong_salt",
                                  "wrong_commitment", "other_trainers_everything"])
def test_prove_available_with_anything_but_the_revealed_update_reverts(market: Market, what: str) -> None:
    task_id = create(market, rounds=1, max_trainers=2, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    ups = play_round(market, task_id, 0, [a, b])
    mine, theirs = ups[a.address], ups[b.address]
    wrong = {
        "other_trainers_bytes": replace(mine, blob=theirs.blob),
        "one_byte_more": replace(mine, blob=mine.blob + b"\x00"),
        "no_bytes": replace(mine, blob=b""),
        "wrong_salt": replace(mine, salt=theirs.salt),
        "wrong_commitment": replace(mine, commitment=theirs.commitment),
        "other_trainers_everything": theirs,  # b's update, posted by a: the commitment binds the trainer
    }[what]
    advance_to(market, schedule(market, task_id)["final"])

    with pytest.raises(ContractRevert) as exc:
        prove_now(market, task_id, 0, a, wrong)

    assert revert_name(exc) == "MarketNotTheUpdate"
    assert market.contract.seat(task_id, a.address).available_round == -1
    prove_now(market, task_id, 0, a, mine)
    assert market.contract.seat(task_id, a.address).available_round == 0


def test_prove_available_twice_reverts(market: Market) -> None:
    task_id = create(market, rounds=1, max_trainers=1, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])
    prove(market, task_id, 0, a, ups[a.address])

    with pytest.raises(ContractRevert) as exc:
        prove_now(market, task_id, 0, a, ups[a.address])

    assert revert_name(exc) == "MarketAlreadyAvailable"
    receipt = settle_after_deadline(market, task_id)
    assert market.contract.settlement(receipt)["trainers"] == 1  # counted once
    assert market.contract.owed(task_id, a.address) == 10**18


# -------------------------------------------------------------- the fallback
def test_the_fallback_pays_only_the_trainers_that_proved_their_updates(market: Market) -> None:
    """a and c prove, b revealed but does not: b is paid nothing and keeps its stake and seat; d never
    revealed: its stake goes to a and c."""
    task_id = create(market, rounds=2, reward=1000, max_trainers=4, stake_wei=STAKE, **SHORT)
    a, b, c, d = market.trainers[:4]
    join_all(market, task_id, [a, b, c, d])
    ups = play_round(market, task_id, 0, [a, b, c, d], revealers=[a, b, c])
    for t in (a, c):
        prove(market, task_id, 0, t, ups[t.address])
    end = schedule(market, task_id)["end"]
    with pytest.raises(ContractRevert) as exc:  # b may still prove until the availability window ends
        market.contract.settle_without_result(market.outsider, task_id)
    assert revert_name(exc) == "MarketResultWindowOpen" and str(end) in str(exc.value)

    receipt = settle_after_deadline(market, task_id)

    shares = cumulative(500 + STAKE, [1, 1])
    # d never revealed and nobody called seal: the round had no seed, so no panel was drawn and none is penalised
    assert market.contract.settlement(receipt) == {"round": 0, "settlement": "fallback", "credited": 500 + STAKE,
                                                   "refunded": 0, "trainers": 2, "stakes_lost": STAKE, "fee": 0,
                                                   "penalties": {}, "penalties_burned": 0}
    assert earned(market, task_id, [a, b, c, d]) == [shares[0], 0, shares[1], 0]
    assert [market.contract.seat(task_id, t.address).stake for t in (a, b, c, d)] == [STAKE, STAKE, STAKE, 0]
    assert market.contract.trainer_index(task_id, b.address) == 2  # b keeps its seat; d's is freed
    assert market.contract.trainer_index(task_id, d.address) == 0
    t = market.contract.task(task_id)
    assert (t.carry, t.carry_pool, t.refunded, t.stakes_held) == (0, 0, 0, 3 * STAKE)
    assert_conserved(market, task_id)

    play_round(market, task_id, 1, [a, b, c])  # b takes part again with the stake it kept
    post(market, task_id, 1, [2000, 5000, 3000])

    last = cumulative(500, [2000, 5000, 3000])
    assert [market.contract.owed(task_id, x.address) for x in (a, b, c, d)] == \
        [shares[0] + last[0] + STAKE, last[1] + STAKE, shares[1] + last[2] + STAKE, 0]
    assert market.contract.task(task_id).refunded == 0
    assert_conserved(market, task_id)


@pytest.mark.parametrize("next_round", ["result", "fallback"])
def test_a_fallback_with_no_update_proved_carries_the_pool_and_the_lost_stakes(market: Market, next_round: str) -> None:
    task_id = create(market, rounds=2, reward=1000, max_trainers=3, stake_wei=STAKE, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    play_round(market, task_id, 0, [a, b, c], revealers=[a, b])  # a and b reveal, prove nothing

    receipt = settle_after_deadline(market, task_id)

    assert market.contract.settlement(receipt) == {"round": 0, "settlement": "fallback", "credited": 0,
                                                   "refunded": 0, "trainers": 0, "stakes_lost": STAKE, "fee": 0,
                                                   "penalties": {}, "penalties_burned": 0}  # never sealed (c did not reveal): no panel
    t = market.contract.task(task_id)
    assert (t.carry_pool, t.carry, t.escrow, t.credited, t.refunded) == (500, STAKE, 500, 0, 0)
    assert earned(market, task_id, [a, b, c]) == [0, 0, 0]
    assert [market.contract.seat(task_id, x.address).stake for x in (a, b, c)] == [STAKE, STAKE, 0]
    assert_conserved(market, task_id)

    ups = play_round(market, task_id, 1, [a, b])
    if next_round == "result":
        post(market, task_id, 1, [3000, 7000])
        expected = cumulative(1000 + STAKE, [3000, 7000])
    else:
        prove(market, task_id, 1, b, ups[b.address])  # only b proves: a is paid nothing
        settle_after_deadline(market, task_id)
        expected = [0, 1000 + STAKE]

    assert earned(market, task_id, [a, b]) == expected  # both pools and c's stake, to the paid trainers
    t = market.contract.task(task_id)
    assert (t.carry_pool, t.carry, t.escrow, t.refunded, t.credited) == (0, 0, 0, 0, 1000 + STAKE)
    assert_conserved(market, task_id)


# ------------------------------------------------------------ the task's end
def test_a_last_round_nobody_earned_refunds_its_pool_and_pays_the_lost_stake_to_the_paid_stakeholders(
    market: Market,
) -> None:
    """Nobody proves in the last round: its pool goes back to the owner; c's lost stake to the trainers still
    holding a stake that a round paid (a and b, who revealed; d, who sat the round out), by cumulative
    rounding in join order; e holds a stake but no round ever paid it, so it gets none."""
    stake = 10**17 + 1
    task_id = create(market, rounds=2, reward=1000, max_trainers=5, stake_wei=stake, **SHORT)
    a, b, c, d, e = market.trainers[:5]
    join_all(market, task_id, [a, b, c, d, e])
    play_round(market, task_id, 0, [a, b, d])
    post(market, task_id, 0, [3000, 3000, 4000])
    round0 = cumulative(500, [3000, 3000, 4000])
    play_round(market, task_id, 1, [a, b, c], revealers=[a, b])

    receipt = settle_after_deadline(market, task_id)

    shares = cumulative(stake, [1, 1, 1])
    assert credited_events(market, receipt) == [(1, a.address, shares[0]), (1, b.address, shares[1]),
                                                (1, d.address, shares[2])]
    settled = market.contract.settlement(receipt)  # credited: the lost stake split at the task's end
    assert (settled["settlement"], settled["credited"], settled["refunded"]) == ("fallback", stake, 500)
    t = market.contract.task(task_id)
    assert t.finished
    assert (t.refunded, t.credited, t.carry, t.carry_pool, t.escrow) == (500, 500 + stake, 0, 0, 0)
    assert [market.contract.owed(task_id, x.address) for x in (a, b, c, d, e)] == \
        [round0[0] + shares[0] + stake, round0[1] + shares[1] + stake, 0, round0[2] + shares[2] + stake, stake]
    assert market.contract.withdraw_refund(market.owner, task_id) == 500
    assert_conserved(market, task_id)


@pytest.mark.parametrize("holder", ["left", "never_paid"])
def test_a_last_round_nobody_earned_with_no_paid_stakeholder(market: Market, holder: str) -> None:
    """Round 0: nobody proves (its pool and b's stake carried); the last round is empty. a, the only trainer
    left, was never paid: whether it still holds a stake or left, b's lost stake goes to the owner with both
    pools (a stakeholder no round paid gets no share: late sybils would take it, and b could buy it back)."""
    task_id = create(market, rounds=2, reward=1000, max_trainers=2, stake_wei=STAKE, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b], revealers=[a])
    settle_after_deadline(market, task_id)
    assert (market.contract.task(task_id).carry_pool, market.contract.task(task_id).carry) == (500, STAKE)
    if holder == "left":
        market.contract.leave(a, task_id)
    close_commits(market, task_id)

    receipt = market.contract.settle_without_result(market.outsider, task_id)  # the last round: empty

    settled = market.contract.settlement(receipt)
    t = market.contract.task(task_id)
    assert (t.carry, t.carry_pool, t.finished) == (0, 0, True)
    assert (settled["settlement"], settled["credited"], settled["refunded"]) == ("refunded", 0, 1000 + STAKE)
    assert credited_events(market, receipt) == []
    assert (t.refunded, t.credited) == (1000 + STAKE, 0)
    assert market.contract.owed(task_id, a.address) == STAKE  # its own stake (given back on leaving, or at the end)
    assert_conserved(market, task_id)


def test_an_all_lost_last_round_pays_the_lost_stakes_to_a_paid_trainer_that_sat_it_out(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000, max_trainers=3, stake_wei=STAKE, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    play_round(market, task_id, 0, [a, b, c])
    post(market, task_id, 0, [3000, 3000, 4000])
    round0 = cumulative(500, [3000, 3000, 4000])
    play_round(market, task_id, 1, [a, b])  # c sits the last round out

    receipt = post(market, task_id, 1, [0, 0], lost_mask=0b11)

    assert credited_events(market, receipt) == [(1, c.address, 2 * STAKE)]
    settled = market.contract.settlement(receipt)
    assert (settled["credited"], settled["refunded"]) == (2 * STAKE, 500)  # the pool back, not the stakes
    t = market.contract.task(task_id)
    assert (t.refunded, t.credited, t.carry, t.carry_pool) == (500, 500 + 2 * STAKE, 0, 0)
    assert [market.contract.owed(task_id, x.address) for x in (a, b, c)] == \
        [round0[0], round0[1], round0[2] + 3 * STAKE]
    assert_conserved(market, task_id)


def test_a_last_round_whose_committers_never_revealed_pays_their_stakes_to_the_paid_stakeholders(
    market: Market,
) -> None:
    task_id = create(market, rounds=2, reward=1000, max_trainers=2, stake_wei=STAKE, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    post(market, task_id, 0, [5000, 5000])
    play_round(market, task_id, 1, [a], revealers=[])  # b sits out, a never reveals
    advance_to(market, schedule(market, task_id)["reveal"])

    receipt = market.contract.settle_without_result(market.outsider, task_id)

    settled = market.contract.settlement(receipt)
    assert (settled["settlement"], settled["credited"], settled["refunded"]) == ("refunded", STAKE, 500)
    assert credited_events(market, receipt) == [(1, b.address, STAKE)]
    t = market.contract.task(task_id)
    assert (t.refunded, t.credited, t.carry, t.carry_pool) == (500, 500 + STAKE, 0, 0)
    assert [market.contract.owed(task_id, x.address) for x in (a, b)] == [250, 250 + 2 * STAKE]
    assert_conserved(market, task_id)


def test_a_trainer_that_took_a_seat_again_shares_no_lost_stake_before_a_round_pays_it(market: Market) -> None:
    """Everyone is paid in round 0; in round 1 a loses its stake and seat and joins again; in the last round
    b's lost stake goes to c, paid in round 0 and holding its stake, not to a (paid, but before its new seat)."""
    task_id = create(market, rounds=3, reward=900, max_trainers=3, stake_wei=STAKE, **SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    play_round(market, task_id, 0, [a, b, c])
    post(market, task_id, 0, [3000, 3000, 4000])
    round0 = cumulative(300, [3000, 3000, 4000])
    play_round(market, task_id, 1, [a, b], revealers=[b])
    post(market, task_id, 1, [10_000])  # a's stake goes to b, a's seat is freed
    market.contract.join(a, task_id)  # a new seat, a new stake
    play_round(market, task_id, 2, [b], revealers=[])
    advance_to(market, schedule(market, task_id)["reveal"])

    receipt = market.contract.settle_without_result(market.outsider, task_id)

    assert credited_events(market, receipt) == [(2, c.address, STAKE)]
    settled = market.contract.settlement(receipt)
    assert (settled["credited"], settled["refunded"]) == (STAKE, 300)
    t = market.contract.task(task_id)
    assert (t.refunded, t.carry, t.carry_pool) == (300, 0, 0)
    assert [market.contract.owed(task_id, x.address) for x in (a, b, c)] == \
        [round0[0] + STAKE, round0[1] + 300 + STAKE, round0[2] + 2 * STAKE]
    assert_conserved(market, task_id)


@pytest.mark.parametrize("holder", ["paid", "left", "never_paid"])
def test_reclaim_unused_refunds_the_carried_pool_and_pays_carried_stakes_to_the_stakeholders(
    market: Market, holder: str,
) -> None:
    """Round 0 pays a (or b); round 1: nobody proves, its pool and b's stake are carried; round 2 is empty;
    the owner reclaims: the escrow and the carried pool come back, b's lost stake goes to a while a holds a
    stake a round paid; to the owner once a left, or when no round paid a (b, paid, lost its seat)."""
    task_id = create(market, rounds=4, reward=1000, max_trainers=2, stake_wei=STAKE, empty_rounds_to_reclaim=1,
                     **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    post(market, task_id, 0, [0, 10_000] if holder == "never_paid" else [10_000, 0])
    play_round(market, task_id, 1, [a, b], revealers=[a])
    settle_after_deadline(market, task_id)
    assert (market.contract.task(task_id).carry_pool, market.contract.task(task_id).carry) == (250, STAKE)
    if holder == "left":
        market.contract.leave(a, task_id)
    close_commits(market, task_id)
    market.contract.settle_without_result(market.outsider, task_id)  # round 2: empty, its pool refunded

    receipt = market.contract.reclaim_unused(market.owner, task_id)

    t = market.contract.task(task_id)
    assert t.finished and (t.escrow, t.carry, t.carry_pool) == (0, 0, 0)
    if holder == "paid":
        assert market.contract.reclaimed(receipt) == 250 + 250
        assert credited_events(market, receipt) == [(3, a.address, STAKE)]  # the round the owner gave up at
        assert (t.refunded, t.credited) == (750, 250 + STAKE)
        owed = [250 + 2 * STAKE, 0]
    elif holder == "never_paid":
        assert market.contract.reclaimed(receipt) == 250 + 250 + STAKE
        assert credited_events(market, receipt) == []
        assert (t.refunded, t.credited) == (750 + STAKE, 250)
        owed = [STAKE, 250]
    else:
        assert market.contract.reclaimed(receipt) == 250 + 250 + STAKE
        assert credited_events(market, receipt) == []
        assert (t.refunded, t.credited) == (750 + STAKE, 250)
        owed = [250 + STAKE, 0]
    assert [market.contract.owed(task_id, x.address) for x in (a, b)] == owed
    assert_conserved(market, task_id)


# ------------------------------------------------------- the verifier allowlist
VERIFIER, COMPONENT = 1, 2  # verifierCodeKind


def test_a_verifier_whose_code_is_not_allowed_is_refused_until_the_admin_allows_it(market: Market) -> None:
    verifier = mock_verifier(market, allowed=False)
    code = market.contract.code_hash(verifier.address)
    assert code == keccak(bytes(market.chain.w3.eth.get_code(verifier.address)))
    assert market.contract.code_kind(code) == 0

    assert revert_args(market, create_call(market, verifier.address), market.owner, 1000) == \
        ("MarketVerifierNotAllowed", (verifier.address, code))
    with pytest.raises(ContractRevert) as exc:
        create(market, verifier=verifier.address)
    assert revert_name(exc) == "MarketVerifierNotAllowed"
    assert market.contract.task_count() == 0

    receipt = allow_code(market, verifier)

    (ev,) = market.contract.c.events.VerifierCodeAllowed().process_receipt(receipt, errors=DISCARD)
    assert (bytes(ev["args"]["codeHash"]), ev["args"]["kind"]) == (code, VERIFIER)
    assert market.contract.code_kind(code) == VERIFIER
    task_id = create(market, verifier=verifier.address)
    assert market.contract.task(task_id).verifier == verifier.address
    twin = deploy(market, "MockVerifier", True, False)  # other storage, the same code: allowed too
    assert create(market, verifier=twin.address) == task_id + 1
    assert_conserved(market, task_id)


def test_a_code_hash_is_allowed_as_one_kind_only(market: Market) -> None:
    """Allowed as a component (a contract a verifier calls), a verifier's code does not make it a verifier,
    and the admin cannot then allow it as a verifier too."""
    verifier = mock_verifier(market, allowed=False)
    code = market.contract.code_hash(verifier.address)
    allow_code(market, verifier, component=True)
    assert market.contract.code_kind(code) == COMPONENT

    assert revert_args(market, create_call(market, verifier.address), market.owner, 1000) == \
        ("MarketVerifierNotAllowed", (verifier.address, code))
    with pytest.raises(ContractRevert) as exc:
        allow_code(market, verifier)
    assert revert_name(exc) == "MarketCodeKindConflict"
    assert market.contract.code_kind(code) == COMPONENT


def test_allow_verifier_code_is_for_the_admin_only(market: Market) -> None:
    verifier = mock_verifier(market, allowed=False)
    code = market.contract.code_hash(verifier.address)
    assert market.contract.verifier_admin() == market.owner.address  # the deployer, by default
    for caller in (market.outsider, market.aggregator, market.trainers[0]):
        for lists in (([code], []), ([], [code])):
            with pytest.raises(ContractRevert) as exc:
                market.contract.allow_verifier_code(caller, *lists)
            assert revert_name(exc) == "MarketNotAdmin"
            assert caller.address in str(exc.value)
    assert market.contract.code_kind(code) == 0

    allow_code(market, verifier)
    again = allow_code(market, verifier)  # add-only and idempotent

    assert market.contract.c.events.VerifierCodeAllowed().process_receipt(again, errors=DISCARD) == ()
    assert market.contract.code_kind(code) == VERIFIER


@pytest.mark.parametrize("component", ["TestToken", "MockVerifier"])
def test_a_round_verifier_whose_component_is_not_allowed_is_refused(market: Market, component: str) -> None:
    part = deploy(market, component, *((True, True) if component == "MockVerifier" else ()))
    verifier = round_verifier(market, part.address)
    assert market.chain.call(verifier.functions.components()) == [part.address]
    allow_code(market, verifier)  # the verifier itself is allowed, its component is not
    part_code = market.contract.code_hash(part.address)

    assert revert_args(market, create_call(market, verifier.address), market.owner, 1000) == \
        ("MarketVerifierNotAllowed", (verifier.address, part_code))
    with pytest.raises(ContractRevert) as exc:
        create(market, verifier=verifier.address)
    assert revert_name(exc) == "MarketVerifierNotAllowed"

    allow_code(market, part, component=True)
    task_id = create(market, verifier=verifier.address)
    assert market.contract.task(task_id).verifier == verifier.address


def test_a_round_verifier_whose_component_is_allowed_only_as_a_verifier_is_refused(market: Market) -> None:
    part = mock_verifier(market)  # allowed as a task's verifier, not as a contract a verifier calls
    verifier = round_verifier(market, part.address)
    allow_code(market, verifier)

    assert revert_args(market, create_call(market, verifier.address), market.owner, 1000) == \
        ("MarketVerifierNotAllowed", (verifier.address, market.contract.code_hash(part.address)))


def test_a_round_verifier_with_a_component_that_has_no_code_is_refused(market: Market) -> None:
    verifier = round_verifier(market, market.outsider.address)  # an account, not a contract
    allow_code(market, verifier)
    market.contract.allow_verifier_code(market.owner, [], [keccak(b""), b"\x00" * 32])  # even "no code" allowed

    name, (who, _) = revert_args(market, create_call(market, verifier.address), market.owner, 1000)

    assert (name, who) == ("MarketVerifierNotAllowed", verifier.address)


@pytest.mark.parametrize("own", ["not_allowed", "allowed_as_a_component"])
def test_a_round_verifier_needs_its_own_code_allowed_as_a_verifier(market: Market, own: str) -> None:
    part = deploy(market, "TestToken")
    verifier = round_verifier(market, part.address)
    allow_code(market, part, component=True)
    if own == "allowed_as_a_component":
        allow_code(market, verifier, component=True)

    assert revert_args(market, create_call(market, verifier.address), market.owner, 1000) == \
        ("MarketVerifierNotAllowed", (verifier.address, market.contract.code_hash(verifier.address)))


def test_ensure_verifier_allowed_adds_the_missing_hashes_for_the_admin_only(market: Market) -> None:
    part = deploy(market, "TestToken")
    verifier = round_verifier(market, part.address)
    wanted = [market.contract.code_hash(verifier.address), market.contract.code_hash(part.address)]

    with pytest.raises(ConfigError, match="verifier admin"):
        market.contract.ensure_verifier_allowed(market.outsider, verifier.address)
    assert [market.contract.code_kind(h) for h in wanted] == [0, 0]

    assert market.contract.ensure_verifier_allowed(market.owner, verifier.address) == wanted
    assert [market.contract.code_kind(h) for h in wanted] == [VERIFIER, COMPONENT]
    assert market.contract.ensure_verifier_allowed(market.outsider, verifier.address) == []  # nothing missing now
    create(market, verifier=verifier.address)


def test_a_market_whose_admin_is_the_zero_address_has_a_fixed_list(market: Market) -> None:
    listed = deploy(market, "MockVerifier", True, True)
    token = deploy(market, "TestToken")
    rv = round_verifier(market, token.address)
    fixed = MarketContract.deploy(market.chain, market.owner, verifier_admin=ZERO_ADDRESS,
                                  verifiers=[market.contract.code_hash(listed.address), market.contract.code_hash(rv.address)],
                                  components=[market.contract.code_hash(token.address)])
    fixed.registry.register(market.aggregator)  # its own registry: a member to draw
    m = replace(market, contract=fixed)
    other = deploy(m, "FeeOnTransferToken")
    rv_other = round_verifier(m, other.address)  # the same code as rv, calling a contract not on the list
    assert fixed.verifier_admin() == ZERO_ADDRESS
    assert fixed.code_hash(rv_other.address) == fixed.code_hash(rv.address)

    for caller in (market.owner, market.outsider):  # not even the deployer may add to it
        with pytest.raises(ContractRevert) as exc:
            fixed.allow_verifier_code(caller, [], [fixed.code_hash(other.address)])
        assert revert_name(exc) == "MarketNotAdmin"

    for v in (listed, rv):
        assert fixed.task(create(m, verifier=v.address)).verifier == v.address
    assert revert_args(m, create_call(m, rv_other.address), market.owner, 1000) == \
        ("MarketVerifierNotAllowed", (rv_other.address, fixed.code_hash(other.address)))


def test_a_market_refuses_a_code_hash_listed_as_both_kinds_at_deployment(market: Market) -> None:
    code = market.contract.code_hash(deploy(market, "MockVerifier", True, True).address)
    art = load_artifact("ContributionMarket")
    factory = market.chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    # the market's registry first, knowing the address the market would get (the deployer's next CREATE)
    nonce = market.chain.w3.eth.get_transaction_count(market.owner.address, "pending")
    registry = market.chain.deploy(market.owner, load_artifact("AggregatorRegistry"),
                                   create_address(market.owner.address, nonce + 1), DEV_MIN_BOND, DEV_PENALTY,
                                   DEV_EXIT_DELAY)

    assert revert_args(market, factory.constructor(market.owner.address, [code], [code], registry), market.owner) == \
        ("MarketCodeKindConflict", (code,))
    one_kind = factory.constructor(market.owner.address, [code], [], registry)
    one_kind.estimate_gas({"from": market.owner.address})  # one kind: fine


def test_every_update_a_round_pays_counts_as_paid_even_when_its_share_rounds_to_0_wei(market: Market) -> None:
    """A 1-wei pool gives its wei to the last paid update by cumulative rounding; the other updates with basis
    points are still paid trainers, and share a stake lost later on equally (not the one that got the wei)."""
    task_id = create(market, rounds=2, reward=2, max_trainers=4, stake_wei=STAKE, **SHORT)
    h1, h2, x, v = market.trainers[:4]
    join_all(market, task_id, [h1, h2, x, v])
    play_round(market, task_id, 0, [h1, h2, x])
    post(market, task_id, 0, [5000, 4999, 1])
    assert [market.contract.seat(task_id, a.address).paid for a in (h1, h2, x, v)] == [True, True, True, False]
    assert market.contract.credited(task_id, 0) == {x.address: 1}
    play_round(market, task_id, 1, [v], revealers=[])  # v commits and never reveals: the last round is empty

    receipt = settle_after_deadline(market, task_id)

    assert credited_events(market, receipt) == [(1, a.address, share) for a, share in
                                                zip((h1, h2, x), cumulative(STAKE, [1, 1, 1]))]
    assert_conserved(market, task_id)
