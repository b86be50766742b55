"""Basis points: clipped, normalised, Hamilton-rounded, always exactly 10,000 (or all 0)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.payout import contribution_shares, to_basis_points


def test_values_are_normalised_and_negatives_clipped() -> None:
    assert to_basis_points([3.0, 1.0, -2.0, 1.0], [True] * 4) == [6000, 2000, 0, 2000]


def test_leftover_points_go_to_the_largest_remainders() -> None:
    # quotas 1428.57, 2857.14, 5714.29: floors sum to 9999, the .57 remainder gets the last point
    assert to_basis_points([1.0, 2.0, 4.0], [True] * 3) == [1429, 2857, 5714]


def test_equal_remainders_go_to_the_lower_index() -> None:
    assert to_basis_points([1.0, 1.0, 1.0], [True] * 3) == [3334, 3333, 3333]


def test_ineligible_trainers_get_nothing() -> None:
    assert to_basis_points([5.0, 5.0], [True, False]) == [10000, 0]


def test_if_no_eligible_value_is_positive_the_eligible_split_equally() -> None:
    assert to_basis_points([-1.0, 0.0, 5.0], [True, True, False]) == [5000, 5000, 0]


def test_if_nobody_is_eligible_everyone_gets_zero() -> None:
    assert to_basis_points([1.0, 2.0], [False, False]) == [0, 0]


def test_shares_are_the_normalised_clipped_values() -> None:
    assert contribution_shares([3.0, -1.0, 1.0, 9.0], [True, True, True, False]) == [0.75, 0.0, 0.25, 0.0]


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError):
        to_basis_points([1.0, 2.0], [True])


def test_non_finite_values_are_an_error() -> None:
    with pytest.raises(ValueError):
        to_basis_points([float("nan"), 1.0], [True, True])


_rows = st.lists(
    st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.booleans()),
    min_size=1,
    max_size=40,
)


@given(_rows)
def test_points_sum_to_exactly_10000_or_all_zero(rows: list[tuple[float, bool]]) -> None:
    values, eligible = [v for v, _ in rows], [e for _, e in rows]

    bps = to_basis_points(values, eligible)

    assert sum(bps) == (10_000 if any(eligible) else 0)
    assert all(b >= 0 for b in bps)
    assert all(b == 0 for b, e in zip(bps, eligible) if not e)


@given(_rows)
def test_points_are_within_one_of_the_exact_quota(rows: list[tuple[float, bool]]) -> None:
    values, eligible = [v for v, _ in rows], [e for _, e in rows]

    bps = to_basis_points(values, eligible)
    shares = contribution_shares(values, eligible)

    assert all(abs(Fraction(b) - Fraction(s) * 10_000) < 1 + 1e-9 for b, s in zip(bps, shares))


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=12))
def test_more_value_never_gets_fewer_points(values: list[float]) -> None:
    bps = to_basis_points(values, [True] * len(values))

    order = sorted(range(len(values)), key=lambda i: values[i])
    assert all(bps[a] <= bps[b] + (1 if values[a] == values[b] else 0) for a, b in zip(order, order[1:]))


# --- cumulative values and shares across rounds -----------------------------------------------

from market.payout import cumulative_shares, cumulative_values  # noqa: E402


def test_cumulative_values_sum_each_trainers_rounds() -> None:
    assert cumulative_values({"a": 0.5, "b": 0.25}, {"b": 0.25, "c": 0.125}) == {"a": 0.5, "b": 0.5, "c": 0.125}


def test_a_negative_round_counts_against_earlier_positive_ones() -> None:
    """Signed sums: a free rider's lucky +0.02 is cancelled by the -0.03 it cost in another round."""
    after = cumulative_values(cumulative_values({}, {"honest": 0.4, "rider": -0.03}), {"honest": 0.01, "rider": 0.02})

    assert after["rider"] == pytest.approx(-0.01)
    assert cumulative_shares(after) == {"honest": 1.0, "rider": 0.0}


def test_cumulative_shares_clip_the_sum_not_each_round() -> None:
    rounds = [{"a": 0.3, "b": -0.1}, {"a": 0.1, "b": 0.2}]  # clipping each round first would give b 0.2 of 0.6
    total: dict[str, float] = {}
    for r in rounds:
        total = cumulative_values(total, r)

    assert cumulative_shares(total) == pytest.approx({"a": 0.8, "b": 0.2})


def test_if_no_cumulative_value_is_positive_everyone_shares_equally() -> None:
    assert cumulative_shares({"a": -1.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}


def test_non_finite_cumulative_values_are_an_error() -> None:
    with pytest.raises(ValueError):
        cumulative_values({"a": 1.0}, {"a": float("inf")})
