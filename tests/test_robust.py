"""Robust rules: Multi-Krum on points whose scores can be worked out by hand."""

from __future__ import annotations

import pytest
import torch

from aggregator.robust import Mean, MultiKrum, effective_f, get_rule, pairwise_sq_distances
from market.errors import ConfigError


def _points(*xs: float) -> torch.Tensor:
    return torch.tensor([[x, 0.0] for x in xs])


def test_pairwise_distances_match_the_definition() -> None:
    v = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])

    d2 = pairwise_sq_distances(v)

    assert d2.dtype == torch.float64
    assert d2.tolist() == [[0.0, 25.0, 2.0], [25.0, 0.0, 13.0], [2.0, 13.0, 0.0]]


def test_multikrum_scores_are_sums_over_the_n_minus_f_minus_2_nearest() -> None:
    # n=5, f=1: two nearest neighbours each. 0: 1+4, 1: 1+1, 2: 1+1, 3: 1+4, 100: 97^2+98^2.
    decision = MultiKrum(f=1)(_points(0, 1, 2, 3, 100))

    assert decision.scores == (5.0, 2.0, 2.0, 5.0, 97.0**2 + 98.0**2)


def test_multikrum_drops_the_obvious_outlier() -> None:
    decision = MultiKrum(f=1)(_points(0, 1, 100, 2, 3))

    assert decision.selected == (0, 1, 3, 4) and decision.rule == "multikrum" and decision.f == 1


def test_multikrum_catches_a_flipped_update_among_similar_ones() -> None:
    honest = torch.tensor([[1.0, 1.0], [1.2, 0.9], [0.9, 1.1], [1.1, 1.0], [1.0, 0.8]])
    vectors = torch.cat([honest, -3 * honest[:1]])

    decision = MultiKrum(f=1)(vectors)

    assert 5 not in decision.selected and len(decision.selected) == 5


def test_ties_are_broken_by_the_lower_index() -> None:
    # scores 5, 2, 2, 2, 5: keeping m=1 must pick index 1, the first of the three tied.
    decision = MultiKrum(f=1, m=1)(_points(0, 1, 2, 3, 4))

    assert decision.selected == (1,)


def test_precondition_n_greater_than_2f_plus_2() -> None:
    with pytest.raises(ConfigError, match=r"multikrum needs n > 2f \+ 2 \(got n=4, f=1\)"):
        MultiKrum(f=1)(_points(0, 1, 2, 3))


def test_m_above_n_minus_f_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="m must be at most"):
        MultiKrum(f=1, m=5)(_points(0, 1, 2, 3, 4))


@pytest.mark.parametrize("f", [-1, 1.5, True])
def test_f_must_be_a_non_negative_integer(f: object) -> None:
    with pytest.raises(ConfigError):
        MultiKrum(f=f)  # type: ignore[arg-type]


def test_mean_keeps_everyone() -> None:
    decision = Mean()(_points(0, 1, 100))

    assert decision.selected == (0, 1, 2) and decision.rule == "mean"


def test_rules_are_chosen_by_name_with_params() -> None:
    rule = get_rule("multikrum", 1, m=2)

    assert isinstance(rule, MultiKrum) and rule.f == 1 and rule.m == 2


def test_unknown_rule_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="multikrum"):
        get_rule("median", 1)


def test_unknown_rule_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad parameters"):
        get_rule("multikrum", 1, k=3)


@pytest.mark.parametrize(("n", "f", "expected"), [(6, 1, 1), (5, 1, 1), (4, 1, 0), (8, 3, 2), (9, 3, 3), (2, 0, 0), (0, 2, 0)])
def test_effective_f_is_the_largest_f_the_round_supports(n: int, f: int, expected: int) -> None:
    assert effective_f(n, f) == expected
