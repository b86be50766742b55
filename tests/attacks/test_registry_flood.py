"""A flood of dead registry entries must not make the draw expensive (issue 15, B1).

Every commitment, vote and settlement of a round draws its panel again (``AggregatorRegistry.draw``, a view the
market calls). The draw took seats at random entries of the member list and walked forward past entries that
could not be drawn. An attacker that registered a few hundred throwaway members (one minimum bond each,
refundable) and left with all of them filled the list with dead entries: each seat then missed its 64 random
tries about as often as not and walked the whole list, so every call that draws paid for it, round after round,
and the withdrawn entries stayed dead until someone registered into them. Measured on the old draw: 4 members
and 200 dead entries took a panel of 4 from ~95k to ~960k gas here; `bench/gas.py` measured a panel of 3 and its
backup at 148k with 3 members and 4.7M once 1,000 throwaway members had registered and left.

The draw must cost about the same whatever lies dead in the list, stay uniform over the members in the draw,
and still never return a member that had left, the owner, or one registered after the round's block.
"""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from market.chain.compile import load_artifact
from market.chain.devchain import dev_accounts
from tests.conftest import Market
from tests.contracts.helpers import advance_to, register

DEAD = 240  # throwaway entries (the list holds at most 1,024): they fill bitmap word 0 and reach into word 1
SEEDS = 12
MARGIN = 25_000  # gas a draw may grow by, whatever lies dead in the list


def _draw_gas(m: Market, at_block: int, k: int = 4) -> tuple[int, list[set[str]]]:
    """The most gas a draw of ``k`` as of ``at_block`` takes over SEEDS seeds, and what each drew."""
    reg = m.contract.registry
    worst, picks = 0, []
    for i in range(SEEDS):
        seed = keccak(b"flood" + i.to_bytes(4, "big"))
        fn = reg.c.functions.draw(seed, at_block, k, m.owner.address)
        worst = max(worst, int(fn.estimate_gas({"from": m.outsider.address})))
        picks.append(set(reg.draw(seed, at_block, k, m.owner.address)))
    return worst, picks


def _throwaways(m: Market, n: int) -> list[LocalAccount]:
    accts = dev_accounts(10 + n)[10:]
    m.chain.fund(accts, 2 * m.contract.registry.min_bond())
    return accts


def _block(m: Market) -> int:
    """A block after every transaction so far (one is mined: a member that left in a block is still drawn as of it)."""
    m.chain.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
    return int(m.chain.w3.eth.block_number)


def test_a_flood_of_dead_entries_does_not_make_the_draw_expensive(market: Market) -> None:
    m = market
    honest = [m.outsider, m.trainers[4], m.trainers[3]]
    register(m, *honest)
    live = {m.aggregator.address, *(a.address for a in honest)}
    base, picks = _draw_gas(m, _block(m))
    assert all(p == live for p in picks)

    # the attacker registers DEAD throwaway members (one a block, so every entry's word changes each block), then
    # leaves with all but two (one per bitmap word), which leave after the round's block: the draw as of that block
    # must search each word's history for the changes since (an attacker pass: bisecting the whole history made
    # such a draw read ~10 checkpoints per word)
    sybils = _throwaways(m, DEAD)
    register(m, *sybils)
    stay = [sybils[0], sybils[-1]]  # entries 4 and 4 + DEAD - 1: words 0 and 1
    for s in sybils:
        if s not in stay:
            m.contract.registry.exit(s)
    at = _block(m)
    for s in stay:
        m.contract.registry.exit(s)
    after_exits = _block(m)

    flooded, picks = _draw_gas(m, at)
    eligible = live | {s.address for s in stay}
    assert all(len(p) == 4 and p <= eligible for p in picks), "the draw returned a member that had left"
    assert flooded <= base + MARGIN, f"a draw costs {flooded:,} gas with {DEAD} dead entries, {base:,} without"
    flooded, picks = _draw_gas(m, after_exits)
    assert all(p == live for p in picks), "the draw returned a member that had left"
    assert flooded <= base + MARGIN, f"a draw costs {flooded:,} gas with {DEAD} dead entries, {base:,} without"

    # a round drawn while the sybils were still in sees them; the same draw is the same later
    while_in = at - (DEAD - 2) - 1  # a block when every sybil was registered and none had left
    seed = keccak(b"while-in")
    first = m.contract.registry.draw(seed, while_in, 4, m.owner.address)
    assert len(first) == 4 and set(first) - live, "a draw as of a block when the sybils were in never drew one"

    # the bonds come back after the exit delay and the entries stay dead until someone registers into them
    delay = int(m.chain.call(m.contract.registry.c.functions.exitDelay()))
    advance_to(m, int(m.chain.w3.eth.get_block("latest")["timestamp"]) + delay + 1)
    for s in sybils:
        m.contract.registry.withdraw_bond(s)
    withdrawn, picks = _draw_gas(m, _block(m))
    assert all(p == live for p in picks)
    assert withdrawn <= base + MARGIN, f"a draw costs {withdrawn:,} gas with {DEAD} withdrawn entries, {base:,} without"


def test_after_a_flood_every_member_is_still_equally_likely(market: Market) -> None:
    """Dead entries around a member must not change its odds (a draw that walks forward from a dead entry would
    hand the dead entries' odds to the member after them)."""
    m = market
    register(m, m.outsider)
    sybils = _throwaways(m, 40)
    register(m, *sybils[:20])
    register(m, m.trainers[4])  # behind 20 entries that will be dead
    register(m, *sybils[20:])
    for s in sybils:
        m.contract.registry.exit(s)
    at = _block(m)
    reg = m.contract.registry
    picks = [reg.draw(keccak(b"odds" + i.to_bytes(4, "big")), at, 1, m.owner.address)[0] for i in range(450)]
    for who in (m.aggregator, m.outsider, m.trainers[4]):
        share = picks.count(who.address) / len(picks)
        assert abs(share - 1 / 3) < 0.08, f"{who.address} drawn {share:.0%} of the time with one bond of three"


@pytest.mark.parametrize("k", [1, 3, 16])
def test_a_draw_returns_every_member_in_it_and_nobody_else(market: Market, k: int) -> None:
    """k seats out of the members in the draw as of a block: min(k, members) distinct ones, never the owner (also a
    member), one that left before the block, or one registered after it."""
    m = market
    register(m, m.owner, m.outsider, m.trainers[4])
    left = m.contract.registry.exit(m.trainers[4])["blockNumber"]
    m.chain.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]
    at = left + 1
    assert m.contract.registry.register(m.trainers[3])["blockNumber"] > at
    eligible = {m.aggregator.address, m.outsider.address}
    for i in range(8):
        got = m.contract.registry.draw(keccak(b"k" + i.to_bytes(4, "big")), at, k, m.owner.address)
        assert len(got) == len(set(got)) == min(k, 2) and set(got) <= eligible


def test_a_member_penalised_to_nothing_frees_its_entry_and_can_register_again(market: Market) -> None:
    """A member that left and was then penalised down to a zero bond could neither withdraw (nothing to withdraw)
    nor register again (its exit pending for good), and its entry was never freed: one bond per entry filled the
    1,024-entry list for good (attacker pass). Its withdrawal now frees the entry, with nothing to send."""
    m = market
    art = load_artifact("AggregatorRegistry")
    address = m.chain.deploy(m.owner, art, m.owner.address, 10, 10, 100)  # the owner's key stands in for the market
    reg = m.chain.w3.eth.contract(address=address, abi=art["abi"])
    x = m.outsider
    m.chain.transact(x, reg.functions.register(), value=10)
    m.chain.transact(x, reg.functions.exit())
    m.chain.transact(m.owner, reg.functions.penalise(1, 0, [x.address], [m.trainers[0].address]))
    assert reg.functions.memberAt(0).call()[3] == 0  # the bond is gone
    advance_to(m, int(m.chain.w3.eth.get_block("latest")["timestamp"]) + 101)

    receipt = m.chain.transact(x, reg.functions.withdrawBond())
    assert [int(e["args"]["amount"]) for e in reg.events.BondWithdrawn().process_receipt(receipt)] == [0]
    assert reg.functions.entryOf(x.address).call() == 0
    m.chain.transact(m.trainers[1], reg.functions.register(), value=10)  # takes the freed entry
    assert reg.functions.memberCount().call() == 1 and reg.functions.entryOf(m.trainers[1].address).call() == 1
    m.chain.transact(x, reg.functions.register(), value=10)  # and x may register again
    assert reg.functions.isActive(x.address).call()
