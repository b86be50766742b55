"""The split a proof task's circuit proves is the one the default rule pays (aggregator/provable.py).

The circuit values each slot by cyclic-permutation Shapley over the published utilities and splits the pool over
max(value, 0) of the sketch rule's survivors (equally among them all when no value is positive). The aggregator
publishes an additive game (``market.zk.statement.with_prior``) whose values are the targets: each slot's cumulative
value under the task's valuation, 0 for an update the model's rule flagged.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.provable import _carry
from market.payout import to_basis_points
from market.zk import statement as zs


@st.composite
def tables(draw: st.DrawFn) -> tuple[int, list[int], list[int], list[int]]:
    n = draw(st.integers(2, 9))
    perm = draw(st.permutations(list(range(n))))
    util = draw(st.lists(st.integers(0, zs.UTIL_SCALE), min_size=2 + n * (n - 1), max_size=2 + n * (n - 1)))
    carry = draw(st.lists(st.integers(-(10**6), 10**6), min_size=n, max_size=n))
    return n, list(perm), util, carry


@settings(max_examples=300, deadline=None)
@given(tables())
def test_the_carried_game_adds_exactly_the_carry_to_each_slots_value(case: tuple[int, list[int], list[int], list[int]]) -> None:
    n, perm, util, carry = case
    try:
        out, carried = zs.with_prior(n, perm, util, carry)
    except ValueError as exc:  # only when the result cannot fit the circuit's utilities
        assert "bits" in str(exc)
        return
    assert all(0 <= u < 1 << zs.UTIL_BITS for u in out)
    before, after = zs.slot_values(n, perm, util), zs.slot_values(n, perm, out)
    assert [b + c for b, c in zip(before, carried)] == after
    rem = sum(carry) % n
    assert sum(c - k for c, k in zip(carry, carried)) == rem and all(0 <= c - k <= 1 for c, k in zip(carry, carried))


def _proven(n: int, perm: list[int], paid: list[bool], target: list[int]) -> list[int]:
    util, values = _carry(n, perm, paid, target)
    assert all(0 <= u < 1 << zs.UTIL_BITS for u in util) and zs.slot_values(n, perm, util) == values
    return values


def _split(n: int, perm: list[int], paid: list[bool], target: list[int]) -> list[int]:
    return to_basis_points(_proven(n, perm, paid, target), [True] * n)  # every slot a sketch survivor (sketch_f 0)


@settings(max_examples=300, deadline=None)
@given(tables(), st.data())
def test_the_proven_split_is_the_targets_split_and_a_flagged_update_gets_nothing(
        case: tuple[int, list[int], list[int], list[int]], data: st.DataObject) -> None:
    n, perm, _, _ = case
    paid = data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(any))
    target = [data.draw(st.integers(-(10**9), 10**9)) if ok else 0 for ok in paid]
    values = _proven(n, perm, paid, target)
    bps = to_basis_points(values, [True] * n)
    assert sum(bps) == 10_000
    assert all(b == 0 for b, ok in zip(bps, paid) if not ok)
    if any(t > 0 for t, ok in zip(target, paid) if ok):
        want = to_basis_points([float(t) if ok else 0.0 for t, ok in zip(target, paid)], paid)
        assert all(v > 0 for v, t, ok in zip(values, target, paid) if ok and t > 0)  # whoever is owed pay gets some
        # the targets are halved until the carried utilities fit: the split to within a unit of the halved values
        unit = 10_000 / sum(v for v, ok in zip(values, paid) if ok and v > 0)
        assert all(abs(a - b) <= 2 + unit for a, b in zip(bps, want)), (bps, want, values, target)
    else:  # no player's value positive: the equal split among the players, as the default rule pays
        assert bps == to_basis_points([0.0] * n, paid)


@pytest.mark.parametrize("case", ["no_value_positive", "targets_halved"])
def test_attacker_pass_cases_a_flagged_update_is_not_paid(case: str) -> None:
    """Hand-built inputs of the attacker pass: a flagged update with a large positive value of its own once drew
    a third of the pool by the circuit's equal split (honest values -6, -6), or 5 % when the carries were halved."""
    rng = random.Random(7)
    n = 3 if case == "no_value_positive" else 4
    perm = list(range(n))
    rng.shuffle(perm)
    paid = [True] * (n - 1) + [False]
    target = [-6, -6, 0] if case == "no_value_positive" else [10**12, 3 * 10**11, 7 * 10**11, 0]
    bps = _split(n, perm, paid, target)
    assert bps[-1] == 0 and sum(bps) == 10_000
    if case == "no_value_positive":
        assert bps == [5000, 5000, 0]
