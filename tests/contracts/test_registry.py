"""The aggregator registry and the panel rules (in-process EVM): bonds, the draw as of a round's seal block,
votes and the quorum, the fee split among the agreeing voters, penalties (outvoted, silent when late, silent in
the fallback) credited to the trainers, exits and the exit delay, a member penalised out of the draw.

The fixture's registry holds ``m.aggregator`` alone; tests with a panel above one register more members (the
outsider and the last trainers), so the task's trainers are always the first ones."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

from market.chain.compile import load_artifact
from market.chain.contract import MarketContract, result_hash, vote_commitment
from market.chain.registry import DEV_EXIT_DELAY, DEV_MIN_BOND, DEV_PENALTY
from market.cid import compute_cid
from market.errors import ContractRevert
from tests.conftest import Market
from tests.contracts.helpers import (
    MODEL,
    RECEIPT,
    QUORUM_SHORT,
    SHORT,
    STAKE,
    advance_to,
    assert_conserved,
    commit_votes,
    create,
    cumulative,
    drawn,
    join_all,
    mock_verifier,
    play_round,
    post,
    prove,
    register,
    revert_name,
    schedule,
    seal,
    seed,
    settle_after_deadline,
)


def members(m: Market, n: int) -> list[LocalAccount]:
    """``n`` registered aggregators, the fixture's first: the outsider then the last trainers join it (so a
    task's trainers are ``m.trainers[:5 - (n - 2)]``)."""
    extra = [m.outsider, m.trainers[4], m.trainers[3]][: n - 1]
    register(m, *extra)
    return [m.aggregator, *extra]


def vote(m: Market, task_id: int, round_: int, bps: list[int], sender: LocalAccount, **kw: Any) -> dict[str, Any] | None:
    """``sender`` posts ``bps`` (one vote); the settlement, or None when the quorum is not reached yet."""
    return m.contract.settlement_if_any(post(m, task_id, round_, bps, sender=sender, **kw))


def _mine(m: Market, n: int) -> None:
    m.chain.w3.provider.ethereum_tester.mine_blocks(n)  # type: ignore[attr-defined]


def exit_delay(m: Market) -> int:
    return int(m.chain.call(m.contract.registry.c.functions.exitDelay()))


def bond(m: Market, who: LocalAccount) -> int:
    entry = m.contract.registry.member(who.address)
    assert entry is not None
    return entry.bond


# ------------------------------------------------------------------ bonds
def test_a_registration_below_the_minimum_bond_is_refused(market: Market) -> None:
    reg = market.contract.registry
    assert (reg.min_bond(), reg.penalty(), reg.market()) == (DEV_MIN_BOND, DEV_PENALTY, market.contract.address)
    for value in (0, DEV_MIN_BOND - 1):
        with pytest.raises(ContractRevert) as exc:
            reg.register(market.outsider, value)
        assert revert_name(exc) == "RegistryBondTooLow"
    assert not reg.is_active(market.outsider.address) and reg.member(market.outsider.address) is None
    assert reg.active_count() == 1
    first = bond(market, market.aggregator)
    assert first >= DEV_MIN_BOND

    reg.register(market.outsider, DEV_MIN_BOND)
    reg.register(market.outsider, 5)  # a member in the draw adds to its bond (any amount)

    assert reg.is_active(market.outsider.address) and reg.active_count() == 2
    assert [(e.account, e.bond, e.active) for e in reg.members()] == \
        [(market.aggregator.address, first, True), (market.outsider.address, DEV_MIN_BOND + 5, True)]
    assert market.chain.balance(reg.address) == first + DEV_MIN_BOND + 5


@pytest.mark.parametrize("args", [("zero_market",), ("min_bond", 0), ("penalty", 0), ("penalty", DEV_MIN_BOND + 1)])
def test_a_registry_with_a_bad_configuration_is_refused(market: Market, args: tuple[Any, ...]) -> None:
    config = {"market": market.contract.address, "min_bond": DEV_MIN_BOND, "penalty": DEV_PENALTY}
    if args[0] == "zero_market":
        config["market"] = "0x" + "00" * 20
    else:
        config[args[0]] = args[1]
    art = load_artifact("AggregatorRegistry")
    factory = market.chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    ctor = factory.constructor(config["market"], config["min_bond"], config["penalty"], DEV_EXIT_DELAY)
    with pytest.raises(ContractRevert) as exc:
        market.chain.transact(market.owner, ctor)
    assert revert_name(exc) == "RegistryBadConfig"


def _some_args(m: Market, inputs: list[dict[str, Any]]) -> list[Any]:
    """Plausible arguments for a function's ABI inputs (numbers 1, the outsider's address, a non-zero word)."""
    value = {"uint256": 1, "address": m.outsider.address, "bytes32": b"\x01" * 32, "address[]": [m.outsider.address],
             "bool": True}
    return [value[i["type"]] for i in inputs]


def test_only_the_market_records_votes_and_penalties(market: Market) -> None:
    reg = market.contract.registry
    abi = {i["name"]: i for i in reg.c.abi if i["type"] == "function"}
    for name in ("commitVote", "vote", "penalise"):
        call = getattr(reg.c.functions, name)(*_some_args(market, abi[name]["inputs"]))
        with pytest.raises(ContractRevert) as exc:
            market.chain.transact(market.outsider, call)
        assert revert_name(exc) == "RegistryNotMarket"
    with pytest.raises(ContractRevert) as exc2:
        reg.withdraw_credit(market.outsider)
    assert revert_name(exc2) == "RegistryNothingToWithdraw"


# --------------------------------------------------------------- the draw
def test_the_draw_never_returns_the_owner_a_later_registration_or_a_member_that_had_left(market: Market) -> None:
    """draw(seed, atBlock, k, exclude): members registered by ``atBlock`` and not gone before it, never ``exclude``."""
    reg = market.contract.registry
    x, y, z = market.trainers[:3]
    register(market, market.owner)
    r_x = reg.register(x)["blockNumber"]
    r_y = reg.register(y)["blockNumber"]
    left_x = reg.exit(x)["blockNumber"]
    r_z = reg.register(z)["blockNumber"]
    agg, owner = market.aggregator.address, market.owner.address
    expected = {r_x: {agg, x.address}, r_y: {agg, x.address, y.address}, left_x: {agg, x.address, y.address},
                r_z: {agg, y.address, z.address}}  # x left at left_x: still in a draw as of that block, not after

    for at_block, eligible in expected.items():
        for i in range(10):  # each k=16 draw tries 64 entries per missing seat: slow on py-evm
            seed = keccak(i.to_bytes(4, "big") + at_block.to_bytes(4, "big"))
            one = reg.draw(seed, at_block, 1, owner)
            assert len(one) == 1 and one[0] in eligible, (at_block, one)
            everyone = reg.draw(seed, at_block, 16, owner)
            assert set(everyone) == eligible and len(everyone) == len(eligible)  # distinct, all of them
    assert owner in reg.draw(b"\x05" * 32, r_z, 16, "0x" + "00" * 20)  # registered: drawn for others' tasks


def test_a_round_draws_as_of_its_seal_block(market: Market) -> None:
    """A member that left before the round was sealed is not drawn, nor one that registered after: a backup task
    whose second member left has no backup that round (and the late registrant cannot post)."""
    register(market, market.outsider)
    task_id = create(market, rounds=2, max_trainers=1, backup=True, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    market.contract.registry.exit(market.outsider)
    play_round(market, task_id, 0, [a])  # sealed by the only reveal
    late = market.trainers[4]
    register(market, late)

    assert drawn(market, task_id) == ([market.aggregator], None)
    advance_to(market, schedule(market, task_id)["result"])  # the backup window: still only the panel member
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [10_000], sender=late)
    assert revert_name(exc) == "MarketNotAggregator"
    post(market, task_id, 0, [10_000], sender=market.aggregator)

    play_round(market, task_id, 1, [a])  # round 1 is sealed after `late` registered: it is drawn now
    (primary,), backup = drawn(market, task_id)
    assert {primary, backup} == {market.aggregator, late}


def test_every_member_in_the_draw_is_equally_likely(market: Market) -> None:
    """Entries [aggregator, x (left), y]: were a draw to start at a uniform entry and probe forward, a start at x
    would go on to y, and y would be drawn 2/3 of the time (a member could buy odds by registering throwaway
    accounts just before itself and letting them leave). Each member in the draw must be as likely as the other."""
    reg = market.contract.registry
    x, y = market.trainers[:2]
    register(market, x, y)
    at = reg.exit(x)["blockNumber"] + 1
    _mine(market, 1)
    picks = [reg.draw(keccak(i.to_bytes(4, "big")), at, 1, market.owner.address)[0] for i in range(600)]
    share = picks.count(y.address) / len(picks)
    assert abs(share - 0.5) < 0.08, f"y drawn {share:.0%} of the time with one bond of two"


# ------------------------------------------------------- votes and quorum
def test_a_second_identical_vote_settles_and_the_dissenters_penalty_is_burned(market: Market) -> None:
    """panel 3, quorum 2: a vote alone settles nothing; a dissenting vote neither; the second vote for the same
    result settles the round: the fee to the two that agreed, the dissenter's penalty burned. Credited to the paid
    trainers (as before), it rewarded whoever made an honest member the dissenter: a trainer serving its update to
    the other members only, or a colluding majority paying its own trainers."""
    members(market, 3)
    task_id = create(market, rounds=1, reward=10_000, max_trainers=3, stake_wei=STAKE, panel=3, quorum=2, fee_bps=1000,
                     **QUORUM_SHORT)
    a, b, c = market.trainers[:3]
    join_all(market, task_id, [a, b, c])
    play_round(market, task_id, 0, [a, b, c])
    panel, backup = drawn(market, task_id)
    assert backup is None and len(panel) == 3
    p1, p2, p3 = panel
    reg = market.contract.registry
    commit_votes(market, task_id, 0, {p1: [6000, 4000, 0], p2: [5000, 5000, 0], p3: [6000, 4000, 0]})

    assert vote(market, task_id, 0, [6000, 4000, 0], p1) is None
    assert reg.vote_of(task_id, 0, p1.address) != b"\x00" * 32
    with pytest.raises(ContractRevert) as exc:  # one vote each
        post(market, task_id, 0, [6000, 4000, 0], sender=p1)
    assert revert_name(exc) == "RegistryAlreadyVoted"
    assert vote(market, task_id, 0, [5000, 5000, 0], p2) is None  # the dissent
    assert market.contract.task(task_id).current_round == 0
    bonds = {p.address: bond(market, p) for p in panel}

    settled = vote(market, task_id, 0, [6000, 4000, 0], p3)

    assert settled is not None and settled["settlement"] == "result"
    penalty = reg.penalty()
    assert settled["penalties"] == {p2.address: penalty}
    assert settled["fee"] == 1000
    assert [market.contract.seat(task_id, p.address).earned for p in (p1, p2, p3)] == [500, 0, 500]
    assert [market.contract.owed(task_id, t.address) for t in (a, b)] == \
        [x + STAKE for x in cumulative(9000, [6000, 4000])]  # the pool less the fee, by the agreed basis points
    assert {p.address: bond(market, p) for p in panel} == {**bonds, p2.address: bonds[p2.address] - penalty}
    assert [reg.credit(t.address) for t in (a, b, c)] == [0, 0, 0]
    assert reg.burned() == penalty
    assert market.contract.task(task_id).fees == 1000
    assert market.contract.withdraw(p1, task_id) == 500  # the fee is withdrawn from the market
    assert_conserved(market, task_id)


def test_the_fee_is_split_among_the_agreeing_voters_by_the_wei(market: Market) -> None:
    """A 2001-wei pool at 50 %: a fee of 1000 wei among three agreeing voters, by cumulative rounding in panel
    order (333, 333, 334); the trainers get the other 1001."""
    members(market, 3)
    task_id = create(market, rounds=1, reward=2001, max_trainers=2, panel=3, quorum=3, fee_bps=5000, **QUORUM_SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    panel, _ = drawn(market, task_id)
    commit_votes(market, task_id, 0, {p: [3000, 7000] for p in panel})
    for p in panel[:2]:
        assert vote(market, task_id, 0, [3000, 7000], p) is None

    receipt = post(market, task_id, 0, [3000, 7000], sender=panel[2])

    fees = market.contract.c.events.FeeCredited().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["aggregator"], int(e["args"]["amount"])) for e in fees] == \
        list(zip([p.address for p in panel], [333, 333, 334]))
    assert [market.contract.owed(task_id, p.address) for p in panel] == [333, 333, 334]
    assert [market.contract.owed(task_id, t.address) for t in (a, b)] == cumulative(1001, [3000, 7000])
    t = market.contract.task(task_id)
    assert (t.fees, t.credited, t.refunded, t.escrow) == (1000, 1001, 0, 0)
    assert market.contract.settlement(receipt)["penalties"] == {}
    assert_conserved(market, task_id)


def test_a_result_that_pays_nobody_still_pays_the_fee_and_carries_the_rest(market: Market) -> None:
    """A proof task whose verifier accepts an all-lost result: the panel earns its fee, the pool less the fee
    carries over to the next round, the lost stakes too."""
    verifier = mock_verifier(market)
    task_id = create(market, rounds=2, reward=2000, max_trainers=1, stake_wei=STAKE, fee_bps=2500,
                     verifier=verifier.address, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])

    receipt = post(market, task_id, 0, [0], lost_mask=1, proof=b"\x01")

    assert market.contract.settlement(receipt)["fee"] == 250
    t = market.contract.task(task_id)
    assert (t.fees, t.carry_pool, t.carry, t.credited) == (250, 750, STAKE, 0)
    assert market.contract.owed(task_id, market.aggregator.address) == 250
    assert_conserved(market, task_id)


def test_the_fallback_pays_no_fee(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1000, max_trainers=1, fee_bps=5000, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])
    prove(market, task_id, 0, a, ups[a.address])

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    assert (settled["fee"], settled["credited"]) == (0, 1000)
    assert market.contract.task(task_id).fees == 0
    assert_conserved(market, task_id)


# -------------------------------------------------------------- penalties
def test_a_silent_panel_member_is_penalised_when_the_backup_settles_the_round(market: Market) -> None:
    """panel 2, quorum 2, with a backup: one panel member votes in its window, the other stays silent; in the
    backup window the backup's identical vote settles the round. The silent member pays the paid trainers; the
    fee goes to the two voters."""
    members(market, 3)
    task_id = create(market, rounds=1, reward=1000, max_trainers=2, panel=2, quorum=2, backup=True, fee_bps=1000,
                     **QUORUM_SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    (p1, p2), backup = drawn(market, task_id)
    assert backup is not None
    with pytest.raises(ContractRevert) as exc:  # not in the panel's window
        post(market, task_id, 0, [10_000, 0], sender=backup)
    assert revert_name(exc) == "MarketNotAggregator"
    commit_votes(market, task_id, 0, {p1: [10_000, 0], backup: [10_000, 0]})  # the backup commits in the panel's window
    advance_to(market, schedule(market, task_id)["votes"])  # p2 committed nothing: the votes open at 7/8
    assert vote(market, task_id, 0, [10_000, 0], p1) is None
    advance_to(market, schedule(market, task_id)["result"])

    settled = vote(market, task_id, 0, [10_000, 0], backup)

    penalty = market.contract.registry.penalty()
    assert settled is not None and settled["penalties"] == {p2.address: penalty}
    assert [market.contract.registry.credit(t.address) for t in (a, b)] == [penalty, 0]  # b was paid 0 bps
    assert [market.contract.owed(task_id, p.address) for p in (p1, p2, backup)] == [50, 0, 50]
    assert market.contract.owed(task_id, a.address) == 900
    assert_conserved(market, task_id)


@pytest.mark.parametrize("provers", [2, 0])
def test_the_fallback_penalises_the_silent_drawn_members_to_the_provers(market: Market, provers: int) -> None:
    """panel 3, quorum 2, backup: two panel members disagree, the third and the backup stay silent. No result:
    the fallback penalises the silent two (not the voters) to the trainers that proved their update available;
    with nobody proved, the penalties are taken all the same and burned (attack A11: before, they were not taken,
    so a silent panel lost nothing when it also kept the trainers from being paid)."""
    members(market, 4)
    task_id = create(market, rounds=1, reward=1000, max_trainers=2, panel=3, quorum=2, backup=True, **QUORUM_SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    ups = play_round(market, task_id, 0, [a, b])
    (p1, p2, p3), backup = drawn(market, task_id)
    assert backup is not None
    commit_votes(market, task_id, 0, {p1: [10_000, 0]})
    commit_votes(market, task_id, 0, {p2: [0, 10_000]})
    advance_to(market, schedule(market, task_id)["votes"])
    assert vote(market, task_id, 0, [10_000, 0], p1) is None
    assert vote(market, task_id, 0, [0, 10_000], p2) is None
    for t in (a, b)[:provers]:
        prove(market, task_id, 0, t, ups[t.address])
    bonds = {p.address: bond(market, p) for p in (p1, p2, p3, backup)}

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    penalty = market.contract.registry.penalty()
    reg = market.contract.registry
    assert settled["settlement"] == "fallback"
    if provers:
        assert settled["penalties"] == {p3.address: penalty, backup.address: penalty}
        assert [reg.credit(t.address) for t in (a, b)] == cumulative(2 * penalty, [1, 1])
        assert settled["penalties_burned"] == 0 and reg.burned() == 0
    else:
        assert settled["penalties"] == {p3.address: penalty, backup.address: penalty}
        assert settled["penalties_burned"] == 2 * penalty and reg.burned() == 2 * penalty
        assert [reg.credit(t.address) for t in (a, b)] == [0, 0]
    bonds[p3.address] -= penalty
    bonds[backup.address] -= penalty
    assert {p.address: bond(market, p) for p in (p1, p2, p3, backup)} == bonds
    held = sum(e.bond for e in reg.members()) + sum(reg.credit(t.address) for t in (a, b)) + reg.burned()
    assert market.chain.balance(reg.address) == held  # bonds, credits and burned penalties: not a wei more or less
    assert_conserved(market, task_id)


@pytest.mark.parametrize("panel", [1, 3])
def test_a_silent_member_of_a_result_that_pays_nobody_loses_its_penalty_burned(market: Market, panel: int) -> None:
    """The members drawn that stayed silent through the panel's window are fined even when the result decided in the
    backup window pays nobody: the penalty is burned (second attacker pass: the first fix spared them too)."""
    members(market, panel + 1)
    quorum = 1 if panel == 1 else 2
    task_id = create(market, rounds=1, reward=1000, max_trainers=1, panel=panel, quorum=quorum, backup=True, **QUORUM_SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])
    drawn_panel, backup = drawn(market, task_id)
    assert backup is not None
    reg = market.contract.registry
    voters = drawn_panel[:quorum - 1]  # with a quorum of 2, one panel member votes all-lost; the rest stay silent
    silent = [p for p in drawn_panel if p not in voters]
    commit_votes(market, task_id, 0, {p: [0] for p in [*voters, backup] if quorum > 1}, lost_mask=1)
    advance_to(market, schedule(market, task_id)["votes"])
    for p in voters:
        assert vote(market, task_id, 0, [0], p, lost_mask=1) is None
    bonds = {p.address: bond(market, p) for p in [*drawn_panel, backup]}
    advance_to(market, schedule(market, task_id)["result"])  # the panel's window is over

    settled = vote(market, task_id, 0, [0], backup, lost_mask=1)

    penalty = reg.penalty()
    assert settled is not None and settled["credited"] == 0
    assert settled["penalties"] == {p.address: penalty for p in silent}
    assert settled["penalties_burned"] == penalty * len(silent) == reg.burned()
    assert {p.address: bond(market, p) for p in [*drawn_panel, backup]} == \
        {**bonds, **{p.address: bonds[p.address] - penalty for p in silent}}
    assert_conserved(market, task_id)


def test_a_result_that_pays_nobody_fines_no_dissenter(market: Market) -> None:
    """Panel 3, quorum 2: two members post an all-lost result, the third a result that pays. Nobody is paid, so
    the dissenter is not fined: a trainer that serves its update's bytes only to one member makes that honest member
    the dissenter of an all-lost majority, and a penalty there would cost it bond for free (attacker pass, attack 3).
    A cheating dissenter escapes its penalty in that one case (left open: attack A11's decided case); silent members
    are still fined (the test above)."""
    members(market, 3)
    task_id = create(market, rounds=1, reward=1000, max_trainers=2, panel=3, quorum=2, **QUORUM_SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    play_round(market, task_id, 0, [a, b])
    (p1, p2, p3), _ = drawn(market, task_id)
    reg = market.contract.registry
    bonds = {p.address: bond(market, p) for p in (p1, p2, p3)}
    commit_votes(market, task_id, 0, {p1: [0, 0], p3: [0, 0]}, lost_mask=3)
    commit_votes(market, task_id, 0, {p2: [10_000, 0]})
    assert vote(market, task_id, 0, [0, 0], p1, lost_mask=3) is None
    assert vote(market, task_id, 0, [10_000, 0], p2) is None

    settled = vote(market, task_id, 0, [0, 0], p3, lost_mask=3)

    assert settled is not None and settled["credited"] == 0
    assert settled["penalties"] == {} and settled["penalties_burned"] == 0 and reg.burned() == 0
    assert {p.address: bond(market, p) for p in (p1, p2, p3)} == bonds
    assert_conserved(market, task_id)


def test_a_member_penalised_below_the_minimum_bond_leaves_the_draw(market: Market) -> None:
    """The outsider holds exactly the minimum: one penalty takes it out of the draw (it keeps what is left,
    withdrawable after the exit delay); a member with a larger bond (the fixture's aggregator, topped up) stays in."""
    register(market, market.outsider)
    register(market, market.aggregator, bond=DEV_MIN_BOND)  # adds to its bond: at least twice the minimum
    kept = bond(market, market.aggregator) - DEV_PENALTY
    task_id = create(market, rounds=2, max_trainers=1, backup=True, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])
    prove(market, task_id, 0, a, ups[a.address])  # nobody posts: both drawn members are silent
    reg = market.contract.registry

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    penalty = reg.penalty()
    assert settled["penalties"] == {market.aggregator.address: penalty, market.outsider.address: penalty}
    gone = reg.member(market.outsider.address)
    assert gone is not None and not gone.active and gone.bond == DEV_MIN_BOND - penalty
    assert reg.is_active(market.aggregator.address) and bond(market, market.aggregator) == kept
    assert reg.active_count() == 1
    with pytest.raises(ContractRevert) as exc:  # a backup task now needs a second member
        create(market, backup=True)
    assert revert_name(exc) == "MarketFewAggregators"

    play_round(market, task_id, 1, [a])
    assert drawn(market, task_id) == ([market.aggregator], None)
    advance_to(market, schedule(market, task_id)["result"])
    with pytest.raises(ContractRevert) as exc2:
        post(market, task_id, 1, [10_000], sender=market.outsider)
    assert revert_name(exc2) == "MarketNotAggregator"
    post(market, task_id, 1, [10_000], sender=market.aggregator)

    advance_to(market, market.chain.w3.eth.get_block(gone.left_block)["timestamp"] + exit_delay(market))
    assert reg.withdraw_bond(market.outsider) == DEV_MIN_BOND - penalty


# ------------------------------------------------------------------- exit
def test_two_rounds_must_fit_in_the_exit_delay(market: Market) -> None:
    """A member's bond stays at stake (and its entry is not reused) for any round it may be drawn for: a market
    whose registry lets bonds go after 360 s takes rounds of at most 180 s."""
    short = MarketContract.deploy(market.chain, market.owner, exit_delay=360)
    short.registry.register(market.aggregator)
    m = replace(market, contract=short)
    assert create(m, rounds=1, **SHORT) == 1  # 60 + 2 * 30 + 60 = 180 s
    with pytest.raises(ContractRevert) as exc:
        create(m, rounds=1, **{**SHORT, "result_window": 61})
    assert revert_name(exc) == "MarketRoundTooLong"
    assert "181" in str(exc.value) and "360" in str(exc.value)


def test_a_bond_is_withdrawn_only_exit_delay_after_leaving(market: Market) -> None:
    reg = market.contract.registry
    o = market.outsider
    register(market, o)
    with pytest.raises(ContractRevert) as exc:
        reg.withdraw_bond(o)
    assert revert_name(exc) == "RegistryStillIn"

    left = reg.exit(o)
    assert not reg.is_active(o.address) and reg.active_count() == 1
    with pytest.raises(ContractRevert) as exc2:
        reg.exit(o)
    assert revert_name(exc2) == "RegistryAlreadyLeft"
    until = market.chain.w3.eth.get_block(left["blockNumber"])["timestamp"] + exit_delay(market)
    for moment in (market.chain.clock(), until - 1):
        advance_to(market, moment)
        with pytest.raises(ContractRevert) as exc3:
            reg.withdraw_bond(o)
        assert revert_name(exc3) == "RegistryExitPending" and str(until) in str(exc3.value)
    with pytest.raises(ContractRevert) as exc4:  # nor register again while the bond is still held
        reg.register(o)
    assert revert_name(exc4) == "RegistryExitPending"
    advance_to(market, until)
    before = market.chain.balance(reg.address)

    assert reg.withdraw_bond(o) == DEV_MIN_BOND

    assert market.chain.balance(reg.address) == before - DEV_MIN_BOND
    with pytest.raises(ContractRevert) as exc5:
        reg.withdraw_bond(o)
    assert revert_name(exc5) == "RegistryNotMember"  # its entry was freed with the bond
    reg.register(o)  # a new entry
    entries = [e.account for e in reg.members()]
    assert entries.count(o.address) == 1 and market.aggregator.address in entries  # the withdrawn entry is reused
    assert reg.is_active(o.address) and reg.active_count() == 2 and bond(market, o) == DEV_MIN_BOND


def test_a_member_that_left_still_answers_for_the_round_it_was_drawn_for(market: Market) -> None:
    """Drawn, then gone before its window: still penalised (within the exit delay)."""
    task_id = create(market, rounds=1, max_trainers=1, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])
    seal(market, task_id)
    market.contract.registry.exit(market.aggregator)
    prove(market, task_id, 0, a, ups[a.address])

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    assert settled["penalties"] == {market.aggregator.address: market.contract.registry.penalty()}


def test_a_late_fallback_blames_no_member_that_was_not_drawn(market: Market) -> None:
    """Three members, a panel of one. The drawn member leaves at once, and nobody settles the round until after the
    exit delay: the member takes its bond back, a newcomer registers into its freed entry, then the fallback would
    draw the round's panel again. The newcomer registered after the seal, so that draw would skip its entry and land
    on one of the two others, never on the panel: a fallback settled a period late or more blames nobody (so the
    member that left escapes, the price of not blaming an innocent)."""
    register(market, market.outsider, market.trainers[4])
    task_id = create(market, rounds=1, max_trainers=1, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])
    market.contract.seal(a, task_id)  # keeps the seed: the fallback can still draw the panel, however late
    (leaver,), _ = drawn(market, task_id)
    others = {market.aggregator.address, market.outsider.address, market.trainers[4].address} - {leaver.address}
    reg = market.contract.registry
    left = reg.exit(leaver)
    prove(market, task_id, 0, a, ups[a.address])
    advance_to(market, market.chain.w3.eth.get_block(left["blockNumber"])["timestamp"] + exit_delay(market))
    reg.withdraw_bond(leaver)
    register(market, market.trainers[3])  # takes the freed entry
    assert market.chain.clock() > schedule(market, task_id)["end"]  # the round is long over, not yet settled
    bonds = {o: reg.member(o).bond for o in others}  # type: ignore[union-attr]

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    assert settled["penalties"] == {}
    assert {o: reg.member(o).bond for o in others} == bonds  # type: ignore[union-attr]
    assert settled["settlement"] == "fallback" and market.contract.owed(task_id, a.address) == 10**18


# ----------------------------------------------------- seal and the panel
def test_an_early_vote_is_not_penalised_when_the_seal_blocks_hash_expires(market: Market) -> None:
    """Three members, panel 3, quorum 2: p1 votes at once; the others take longer than 256 blocks and nobody
    called seal in between. Were the round sealed again, another seed would draw the panel and p1's vote (cast
    with the old seed) would count against the result the others agree on: the first vote keeps the seed, so the
    round cannot be sealed again, and p1 shares the fee with p2 instead of losing its bond."""
    members(market, 3)
    task_id = create(market, rounds=1, reward=1000, max_trainers=1, panel=3, quorum=2, fee_bps=1000,
                     submit_window=60, reveal_window=30, result_window=3600)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])
    (p1, _, _), _ = drawn(market, task_id)
    commit_votes(market, task_id, 0, {p1: [10_000]})
    _mine(market, 257)
    with pytest.raises(ContractRevert) as exc:  # the first commitment kept the seed
        market.contract.seal(a, task_id)
    assert revert_name(exc) == "MarketAlreadySealed"
    p2 = next(p for p in drawn(market, task_id)[0] if p != p1)
    commit_votes(market, task_id, 0, {p2: [10_000]})
    advance_to(market, schedule(market, task_id)["votes"])  # the third member committed nothing
    assert vote(market, task_id, 0, [10_000], p1) is None

    (p3,) = [p for p in drawn(market, task_id)[0] if p not in (p1, p2)]

    settled = vote(market, task_id, 0, [10_000], p2)  # the second identical vote: decided

    assert settled is not None  # p1 is not fined; the member that never committed is
    assert settled["penalties"] == {p3.address: market.contract.registry.penalty()}
    assert [market.contract.owed(task_id, p.address) for p in (p1, p2)] == [50, 50]  # the fee, shared


def test_no_new_panel_once_the_result_windows_are_over(market: Market) -> None:
    """The aggregator is drawn and stays silent; it leaves the registry and the outsider registers after the
    seal. Nobody kept the seed; 256 blocks later, in the availability window, sealing the round again (a new seed,
    a new panel that never had a window to post in) is refused. The fallback then has no seed, so it blames
    nobody: neither the outsider, never drawn, nor the silent aggregator (nobody kept the seed in time)."""
    task_id = create(market, rounds=1, max_trainers=1, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])  # sealed by the only reveal; nobody keeps the seed
    market.contract.registry.exit(market.aggregator)
    register(market, market.outsider)
    prove(market, task_id, 0, a, ups[a.address])  # the result windows are over
    _mine(market, 257)
    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(a, task_id)
    assert revert_name(exc) == "MarketResultWindowClosed"

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    assert settled["penalties"] == {}


def test_a_round_sealed_again_draws_from_the_members_of_its_first_seal(market: Market) -> None:
    """Within the result windows an expired, unkept seed is replaced by sealing again: another seed, but the
    panel is still drawn from the members in the draw at the first seal (a member that registered in between
    cannot be drawn)."""
    register(market, market.outsider)
    task_id = create(market, rounds=1, max_trainers=1, backup=True, submit_window=60, reveal_window=30,
                     result_window=3600)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])
    first = market.contract.task(task_id).seal_block
    market.contract.registry.exit(market.outsider)  # still in the draw as of the first seal
    late = market.trainers[4]
    register(market, late)
    _mine(market, 257)
    market.contract.seal(a, task_id)  # sealed again: a new seed
    assert market.contract.task(task_id).seal_block > first

    (primary,), backup = drawn(market, task_id)

    assert {primary, backup} == {market.aggregator, market.outsider}
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [10_000], sender=late)
    assert revert_name(exc) == "MarketNotAggregator"
    post(market, task_id, 0, [10_000], sender=primary)


def test_the_fallback_of_a_proof_task_blames_nobody(market: Market) -> None:
    """With a verifier, a panel may be unable to post (no proof backs a round with no valid update): the fallback
    penalises no silent member there."""
    verifier = mock_verifier(market)
    task_id = create(market, rounds=1, max_trainers=1, verifier=verifier.address, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    ups = play_round(market, task_id, 0, [a])
    market.contract.seal(a, task_id)  # the seed is kept: the panel could be blamed
    prove(market, task_id, 0, a, ups[a.address])

    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    assert (settled["settlement"], settled["penalties"]) == ("fallback", {})


def test_identical_means_the_same_model_seed_lost_mask_and_pay(market: Market) -> None:
    """A vote is the hash of what the panel must agree on (the model, the seed, the lost mask, the basis points),
    not of the receipt (each member posts its own): the same basis points with another model are another result,
    whose poster is outvoted; the same result with another receipt agrees."""
    members(market, 3)
    task_id = create(market, rounds=1, max_trainers=1, panel=3, quorum=2, **QUORUM_SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])
    p1, p2, p3 = drawn(market, task_id)[0]
    seed = market.contract.round_seed(task_id)
    commit_votes(market, task_id, 0, {p1: [10_000], p3: [10_000]})
    commit_votes(market, task_id, 0, {p2: [10_000]}, model=compute_cid(b"another model"))
    assert vote(market, task_id, 0, [10_000], p1) is None
    other = market.contract.post_result(p2, task_id, 0, compute_cid(b"another model"), RECEIPT, [10_000], seed=seed)
    assert market.contract.settlement_if_any(other) is None

    own_receipt = market.contract.post_result(p3, task_id, 0, MODEL, compute_cid(b"p3's receipt"), [10_000], seed=seed)
    settled = market.contract.settlement_if_any(own_receipt)

    assert settled is not None and settled["penalties"] == {p2.address: market.contract.registry.penalty()}
    assert market.contract.task(task_id).latest_model_cid == MODEL


@pytest.mark.parametrize("race", ["result_settles_first", "window_closes_first"])
def test_a_trainer_node_keeping_the_seed_survives_a_race(market: Market, race: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`TrainerNode.keep_seed` (which `run` calls once the reveals close) reads the task, then seals. A result that
    settles the round, or the end of the windows, landing in between made the seal revert and stopped the node
    (attacker pass, attack 4): it is best effort now and says False."""
    from types import SimpleNamespace

    from trainer_node.node import TrainerNode

    task_id = create(market, rounds=2, reward=1000, max_trainers=1, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])  # the only reveal seals the round; nobody kept the seed yet
    if race == "window_closes_first":
        advance_to(market, schedule(market, task_id)["final"] - 5)
    real_seal = market.contract.seal

    def raced_seal(caller: LocalAccount, tid: int) -> Any:  # another transaction is mined just before the node's
        if race == "result_settles_first":
            post(market, task_id, 0, [10_000], sender=market.aggregator)  # a panel of one: the round settles
        else:
            advance_to(market, schedule(market, task_id)["final"])
        return real_seal(caller, tid)

    monkeypatch.setattr(market.contract, "seal", raced_seal)
    node = SimpleNamespace(contract=market.contract, account=a)  # keep_seed uses only these two

    assert TrainerNode.keep_seed(node, task_id) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("prover", [False, True])
def test_a_round_nobody_sealed_in_time_gets_no_panel_and_blames_nobody(market: Market, prover: bool) -> None:
    """A trainer coalition leaves the round unsealed (one committer never reveals) and seals it once the windows are
    over: the panel drawn then never had a window, yet the fallback fined it as silent, the penalty burned or
    credited to the coalition's prover (attacker pass, attack 1). A first seal now needs half the panel's result
    window left; past that the round settles by the fallback and blames nobody."""
    register(market, market.outsider)
    task_id = create(market, rounds=1, reward=1000, max_trainers=2, panel=1, backup=True, **SHORT)
    a, b = market.trainers[:2]
    join_all(market, task_id, [a, b])
    ups = play_round(market, task_id, 0, [a, b], revealers=[a])
    assert market.contract.task(task_id).seal_block == 0
    sch = schedule(market, task_id)
    reg = market.contract.registry
    bonds = {p.address: bond(market, p) for p in (market.aggregator, market.outsider)}
    info = market.contract.task(task_id)
    last_seal = sch["reveal"] + info.result_window // 2
    advance_to(market, last_seal)

    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(a, task_id)
    assert revert_name(exc) == "MarketResultWindowClosed"
    if prover:
        prove(market, task_id, 0, a, ups[a.address])
    settled = market.contract.settlement(settle_after_deadline(market, task_id))

    assert settled["settlement"] == "fallback" and settled["penalties"] == {} and settled["penalties_burned"] == 0
    assert {p.address: bond(market, p) for p in (market.aggregator, market.outsider)} == bonds
    assert reg.credit(a.address) == 0 and reg.burned() == 0
    assert_conserved(market, task_id)


def test_an_expired_seed_is_not_sealed_again_once_half_the_window_is_gone(market: Market) -> None:
    """Nobody kept the seed and its block's hash is gone: sealing again draws a new panel. At the end of the backup
    window that panel could not post and was fined (attacker pass, attack 2); a new seal now needs half the panel's
    result window left."""
    register(market, market.outsider, market.trainers[4])
    task_id = create(market, rounds=1, reward=1000, max_trainers=1, panel=1, backup=True, **SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])  # the only reveal seals the round
    _mine(market, 257)
    sch = schedule(market, task_id)
    info = market.contract.task(task_id)
    advance_to(market, sch["reveal"] + info.result_window // 2)

    with pytest.raises(ContractRevert) as exc:
        market.contract.seal(a, task_id)

    assert revert_name(exc) == "MarketResultWindowClosed"


# ------------------------------------------------- votes committed before they are seen (attack A5)
def _quorum_task(market: Market, **kw: Any) -> tuple[int, list[LocalAccount], LocalAccount | None]:
    members(market, 4 if kw.get("backup") else 3)
    task_id = create(market, rounds=1, reward=1000, max_trainers=1, panel=3, quorum=2, fee_bps=1000, **{**QUORUM_SHORT, **kw})
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])
    panel, backup = drawn(market, task_id)
    return task_id, panel, backup


def test_a_vote_waits_until_every_member_committed_or_commitments_close(market: Market) -> None:
    """A panel member's vote is taken only once every member of the panel committed to its result, or once
    votes open at seven eighths of the panel's window: before, no member could see another's result."""
    task_id, (p1, p2, p3), _ = _quorum_task(market)
    commit_votes(market, task_id, 0, {p1: [10_000], p2: [10_000]})
    with pytest.raises(ContractRevert) as exc:
        vote(market, task_id, 0, [10_000], p1)
    assert revert_name(exc) == "RegistryCommitsOpen"
    commit_votes(market, task_id, 0, {p3: [10_000]})  # the last commitment opens the votes at once

    assert vote(market, task_id, 0, [10_000], p1) is None
    assert vote(market, task_id, 0, [10_000], p2) is not None


def test_a_member_posts_only_the_result_it_committed_to(market: Market) -> None:
    """Once committed, a member cannot change its result (say, to the one another member posted first), nor commit
    again; a member that committed to nothing cannot post once the commitments close."""
    task_id, (p1, p2, p3), _ = _quorum_task(market)
    commit_votes(market, task_id, 0, {p1: [10_000], p2: [10_000]}, model=compute_cid(b"p2 changes its mind"))
    with pytest.raises(ContractRevert) as exc:
        commit_votes(market, task_id, 0, {p1: [10_000]})
    assert revert_name(exc) == "RegistryAlreadyCommitted"
    advance_to(market, schedule(market, task_id)["votes"])
    with pytest.raises(ContractRevert) as exc:
        commit_votes(market, task_id, 0, {p3: [10_000]})
    assert revert_name(exc) == "MarketVoteCommitsClosed"

    for member in (p1, p3):  # p1 committed to another model, p3 to nothing
        with pytest.raises(ContractRevert) as exc:
            vote(market, task_id, 0, [10_000], member)
        assert revert_name(exc) == "RegistryVoteNotCommitted"
    assert market.contract.task(task_id).current_round == 0


def test_the_backup_commits_in_the_panels_window_too(market: Market) -> None:
    """Every drawn member commits before any vote is seen, the backup too (attacker pass: a backup that posted without
    a commitment copied the one vote the panel posted, for half the fee): commitments come from the drawn members
    only, in the panel's window; the backup posts the result it committed to in its own window, and one that
    committed to nothing cannot post there."""
    task_id, (p1, p2, p3), backup = _quorum_task(market, backup=True)
    assert backup is not None
    for who in (market.owner, market.trainers[0]):
        with pytest.raises(ContractRevert) as exc:
            commit_votes(market, task_id, 0, {who: [10_000]})
        assert revert_name(exc) == "MarketNotAggregator"
    commit_votes(market, task_id, 0, {p1: [10_000], p2: [10_000], p3: [10_000]})
    with pytest.raises(ContractRevert) as exc:  # the backup has not committed: no vote yet
        vote(market, task_id, 0, [10_000], p1)
    assert revert_name(exc) == "RegistryCommitsOpen"
    advance_to(market, schedule(market, task_id)["votes"])
    assert vote(market, task_id, 0, [10_000], p1) is None
    advance_to(market, schedule(market, task_id)["result"])
    with pytest.raises(ContractRevert) as exc:  # it saw p1's vote, but committed to nothing in time
        vote(market, task_id, 0, [10_000], backup)
    assert revert_name(exc) == "RegistryVoteNotCommitted"

    settled = vote(market, task_id, 0, [10_000], p2)  # a panel member that committed may still vote, late

    penalty = market.contract.registry.penalty()
    assert settled is not None  # p3 committed and never voted, the backup never committed
    assert settled["penalties"] == {p3.address: penalty, backup.address: penalty}
    assert_conserved(market, task_id)


def test_a_backup_that_committed_settles_the_round_in_its_window(market: Market) -> None:
    task_id, (p1, p2, p3), backup = _quorum_task(market, backup=True)
    assert backup is not None
    commit_votes(market, task_id, 0, {p1: [10_000], backup: [10_000]})
    advance_to(market, schedule(market, task_id)["votes"])
    assert vote(market, task_id, 0, [10_000], p1) is None
    with pytest.raises(ContractRevert) as exc:  # the backup posts only in its own window
        vote(market, task_id, 0, [10_000], backup)
    assert revert_name(exc) == "MarketNotAggregator"
    advance_to(market, schedule(market, task_id)["result"])

    settled = vote(market, task_id, 0, [10_000], backup)

    penalty = market.contract.registry.penalty()
    assert settled is not None and settled["penalties"] == {p2.address: penalty, p3.address: penalty}
    assert_conserved(market, task_id)


def test_a_commitment_is_bound_to_its_round_and_keeps_the_seed(market: Market) -> None:
    """A commitment names its round (a late transaction cannot land in the next one) and keeps the round's seed, so
    the round cannot be sealed again under the committed members."""
    task_id, (p1, _, _), _ = _quorum_task(market)
    s = seed(market, task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.commit_vote(p1, task_id, 1, MODEL, [10_000], seed=s)
    assert revert_name(exc) == "MarketWrongRound"
    assert not market.contract.seed_kept(task_id, 0)
    commit_votes(market, task_id, 0, {p1: [10_000]})
    assert market.contract.seed_kept(task_id, 0)
    assert market.contract.registry.vote_commitment_of(task_id, 0, p1.address) == \
        vote_commitment(result_hash(MODEL, s, 0, [10_000]), p1.address)


def test_between_the_commitments_close_and_the_votes_open_neither_is_taken(market: Market) -> None:
    """From six eighths of the panel's window no commitment is taken, and until seven eighths no vote unless every
    drawn member committed: a vote sent a little early (a clock running ahead) cannot be seen, pending, by a member
    that then still commits to it (attacker pass: with one instant for both, that copy went through)."""
    task_id, (p1, p2, p3), _ = _quorum_task(market)
    commit_votes(market, task_id, 0, {p1: [10_000], p2: [10_000]})
    advance_to(market, schedule(market, task_id)["commits"])
    with pytest.raises(ContractRevert) as exc:
        vote(market, task_id, 0, [10_000], p1)
    assert revert_name(exc) == "RegistryCommitsOpen"
    with pytest.raises(ContractRevert) as exc:
        commit_votes(market, task_id, 0, {p3: [10_000]})
    assert revert_name(exc) == "MarketVoteCommitsClosed"
    advance_to(market, schedule(market, task_id)["votes"])

    assert vote(market, task_id, 0, [10_000], p1) is None
    assert vote(market, task_id, 0, [10_000], p2) is not None


@pytest.mark.parametrize("panel", [1, 3])
def test_registering_after_the_seal_does_not_draw_the_round_again(market: Market, panel: int) -> None:
    """A draw is as of the round's seal block, and so is who it takes its seats among. Before, the seats were
    taken modulo the list's length now: anyone (an owner with a bonded second key, a member left off the panel)
    could register throwaway members after the seal until the draw came out as it liked, and have a panel that
    had committed replaced mid-round (attacker pass: 57 refundable bonds moved a colluder onto a panel of 3)."""
    members(market, 4)
    task_id = create(market, rounds=1, reward=1000, max_trainers=1, panel=panel, quorum=panel // 2 + 1, backup=True,
                     **QUORUM_SHORT)
    a = market.trainers[0]
    market.contract.join(a, task_id)
    play_round(market, task_id, 0, [a])
    seal(market, task_id)
    before = market.contract.panel(task_id)
    for fresh in market.trainers[1:3]:  # registrations after the seal, some in later blocks
        register(market, fresh)
        _mine(market, 3)

    assert market.contract.panel(task_id) == before


def test_a_quorum_needs_a_result_window_of_eight_minutes(market: Market) -> None:
    """A quorum's window has four phases; at 60 s an eighth is shorter than a 12 s chain's blocks, and a silent member
    could leave the honest majority no block to vote in before the window ends, then have it fined in the fallback
    (attacker pass). The contract takes 480 s at least for a quorum above one (60 s for a panel of one)."""
    members(market, 3)
    with pytest.raises(ContractRevert) as exc:
        create(market, rounds=1, panel=3, quorum=2, **{**SHORT, "result_window": 479})
    assert revert_name(exc) == "MarketBadWindows"
    assert create(market, rounds=1, panel=3, quorum=2, **QUORUM_SHORT) > 0
    assert create(market, rounds=1, panel=3, quorum=3, **QUORUM_SHORT) > 0
    assert create(market, rounds=1, panel=1, **SHORT) > 0

    from market.errors import ConfigError
    from owner.task import task_request

    with pytest.raises(ConfigError, match="too short for a quorum of 2"):
        task_request(validation_commitment=b"\x01" * 32, reward_wei=1, panel=3, result_window=479)


@pytest.mark.parametrize("who", ["backup", "panel_member"])
def test_a_drawn_member_that_never_commits_is_fined_when_the_round_is_decided(market: Market, who: str) -> None:
    """A drawn member without a commitment holds every vote back to seven eighths of the window; once the others
    decide the round without it, it answers as silent (attacker pass: a silent backup did this for free)."""
    task_id, (p1, p2, p3), backup = _quorum_task(market, backup=True)
    assert backup is not None
    absent = backup if who == "backup" else p3
    commit_votes(market, task_id, 0, {m: [10_000] for m in (p1, p2, p3, backup) if m is not absent})
    with pytest.raises(ContractRevert) as exc:
        vote(market, task_id, 0, [10_000], p1)
    assert revert_name(exc) == "RegistryCommitsOpen"
    advance_to(market, schedule(market, task_id)["votes"])
    assert vote(market, task_id, 0, [10_000], p1) is None

    settled = vote(market, task_id, 0, [10_000], p2)

    assert settled is not None and settled["penalties"] == {absent.address: market.contract.registry.penalty()}
    assert_conserved(market, task_id)
