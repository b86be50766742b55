"""Robust rules on points whose answers can be worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aggregator.robust import (
    AdaptiveClip,
    CenteredClipping,
    CenteredClippingDrop,
    Clip,
    CoordinateMedian,
    GeometricMedian,
    Krum,
    Mean,
    MultiKrum,
    NearestNeighborMixing,
    TrimmedMean,
    effective_f,
    get_rule,
    max_f,
    pairwise_sq_distances,
)
from market.errors import ConfigError


def _points(*xs: float) -> torch.Tensor:
    return torch.tensor([[x, 0.0] for x in xs])


def _col(*xs: float) -> torch.Tensor:
    return torch.tensor([[x] for x in xs], dtype=torch.float64)


# --- distances ----------------------------------------------------------------------------------


def test_pairwise_distances_match_the_definition() -> None:
    v = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])

    d2 = pairwise_sq_distances(v)

    assert d2.dtype == torch.float64
    assert d2.tolist() == [[0.0, 25.0, 2.0], [25.0, 0.0, 13.0], [2.0, 13.0, 0.0]]


# --- Multi-Krum and Krum ------------------------------------------------------------------------


def test_multikrum_scores_sum_over_the_n_minus_f_minus_1_nearest_by_default() -> None:
    # n=5, f=1: three nearest neighbours each (ByzFL's convention). 0: 1+4+9, 1: 1+1+4, 2: 1+1+4, 3: 1+4+9.
    decision = MultiKrum(f=1)(_points(0, 1, 2, 3, 100))

    assert decision.scores == (14.0, 6.0, 6.0, 14.0, 97.0**2 + 98.0**2 + 99.0**2)


def test_multikrum_neighbours_n_minus_f_minus_2_gives_blanchards_scores() -> None:
    decision = MultiKrum(f=1, neighbours=2)(_points(0, 1, 2, 3, 100))

    assert decision.scores == (5.0, 2.0, 2.0, 5.0, 97.0**2 + 98.0**2)


def test_multikrum_drops_the_obvious_outlier_and_averages_the_rest() -> None:
    decision = MultiKrum(f=1)(_points(0, 1, 100, 2, 3))

    assert decision.selected == (0, 1, 3, 4) and decision.excluded == (2,)
    assert decision.aggregate is not None and decision.aggregate.tolist() == [1.5, 0.0]
    assert decision.reweight and decision.rule == "multikrum" and decision.f == 1


def test_multikrum_catches_a_flipped_update_among_similar_ones() -> None:
    honest = torch.tensor([[1.0, 1.0], [1.2, 0.9], [0.9, 1.1], [1.1, 1.0], [1.0, 0.8]])
    vectors = torch.cat([honest, -3 * honest[:1]])

    decision = MultiKrum(f=1)(vectors)

    assert 5 not in decision.selected and len(decision.selected) == 5


def test_ties_are_broken_by_the_lower_index() -> None:
    # scores 14, 6, 6, 6, 14: keeping m=1 must pick index 1, the first of the three tied.
    decision = MultiKrum(f=1, m=1)(_points(0, 1, 2, 3, 4))

    assert decision.selected == (1,)


def test_krum_applies_the_single_best_update_and_pays_the_n_minus_f_most_central() -> None:
    decision = Krum(f=1)(_points(0, 1, 2, 3, 100))

    assert decision.aggregate is not None and decision.aggregate.tolist() == [1.0, 0.0]  # index 1 wins the tie
    assert decision.selected == (0, 1, 2, 3) and not decision.reweight


@pytest.mark.parametrize("rule", [MultiKrum, Krum])
def test_krum_precondition_n_greater_than_2f_plus_2(rule: Any) -> None:
    with pytest.raises(ConfigError, match=rf"{rule.name} needs n > 2f \+ 2 \(got n=4, f=1\)"):
        rule(f=1)(_points(0, 1, 2, 3))


def test_m_above_n_minus_f_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="m must be at most"):
        MultiKrum(f=1, m=5)(_points(0, 1, 2, 3, 4))


def test_neighbours_beyond_n_minus_1_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neighbours"):
        MultiKrum(f=1, neighbours=5)(_points(0, 1, 2, 3, 4))


@pytest.mark.parametrize("f", [-1, 1.5, True])
@pytest.mark.parametrize("rule", [MultiKrum, Krum, CoordinateMedian, TrimmedMean, GeometricMedian, CenteredClipping])
def test_f_must_be_a_non_negative_integer(rule: type, f: object) -> None:
    with pytest.raises(ConfigError, match="f must be a non-negative integer"):
        rule(f=f)


def test_mean_keeps_everyone() -> None:
    decision = Mean()(_points(0, 1, 100))

    assert decision.selected == (0, 1, 2) and decision.rule == "mean" and decision.reweight


# --- coordinate-wise rules ----------------------------------------------------------------------


def test_median_of_an_odd_count_is_the_middle_value_per_coordinate() -> None:
    x = torch.tensor([[1.0, 30.0], [2.0, 10.0], [100.0, 20.0]])

    decision = CoordinateMedian(f=1)(x)

    assert decision.aggregate is not None and decision.aggregate.tolist() == [2.0, 20.0]
    assert not decision.reweight


def test_median_of_an_even_count_averages_the_two_middle_values() -> None:
    decision = CoordinateMedian(f=1)(_col(4, 1, 3, 100))

    assert decision.aggregate is not None and decision.aggregate.tolist() == [3.5]


def test_median_flags_a_far_input_pointing_away_and_records_how_often_each_value_was_used() -> None:
    decision = CoordinateMedian(f=1)(_col(1, 2, 3, 4, -100))  # median 2

    assert decision.excluded == (4,) and decision.scores == (1.0, 0.0, 1.0, 2.0, 102.0)
    assert decision.details["kept_fraction"] == (0.0, 1.0, 0.0, 0.0, 0.0)


def test_an_input_pointing_against_the_others_is_flagged_at_any_distance() -> None:
    # ipm-like: minus the others' mean, from inside their spread
    decision = CenteredClippingDrop(f=1, L=1)(torch.tensor([[1.0, 0.2], [1.1, -0.1], [0.9, 0.0], [1.0, 0.1], [-1.0, 0.0]]))

    assert decision.excluded == (4,) and decision.details["dropped"][4] == 1.0


def test_a_far_input_pointing_the_aggregates_way_is_no_evidence() -> None:
    # 100 is far from the median 3, but goes the same way (more data, more steps): not an outlier
    assert CoordinateMedian(f=1)(_col(1, 2, 3, 4, 100)).excluded == ()
    assert CenteredClippingDrop(f=1, L=1)(_col(1, 2, 3, 10, 40)).excluded == ()


def test_median_with_ties_keeps_the_tied_value() -> None:
    decision = CoordinateMedian(f=1)(_col(5, 5, 5, 0, 9))

    assert decision.aggregate is not None and decision.aggregate.tolist() == [5.0]
    assert decision.details["kept_fraction"] == (1.0, 1.0, 1.0, 0.0, 0.0)


def test_trimmed_mean_drops_f_from_each_end_per_coordinate() -> None:
    x = torch.tensor([[0.0, 7.0], [1.0, -50.0], [2.0, 8.0], [3.0, 9.0], [100.0, 10.0]])

    decision = TrimmedMean(f=1)(x)

    assert decision.aggregate is not None and decision.aggregate.tolist() == [2.0, 8.0]  # (1+2+3)/3, (7+8+9)/3
    assert decision.details["kept_fraction"] == (0.5, 0.5, 1.0, 1.0, 0.0)


def test_trimmed_mean_with_f_zero_is_the_mean() -> None:
    decision = TrimmedMean(f=0)(_col(1, 2, 6))

    assert decision.aggregate is not None and decision.aggregate.tolist() == [3.0] and decision.excluded == ()


@pytest.mark.parametrize("rule", [CoordinateMedian, TrimmedMean, GeometricMedian, CenteredClipping])
def test_honest_majority_precondition(rule: Any) -> None:
    with pytest.raises(ConfigError, match=rf"{rule.name} needs n > 2f \(got n=4, f=2\)"):
        rule(f=2)(_points(0, 1, 2, 3))


# --- geometric median and centered clipping -----------------------------------------------------


def test_geometric_median_of_a_symmetric_cross_is_its_centre() -> None:
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]], dtype=torch.float64) + 5.0

    decision = GeometricMedian(f=1, T=50)(x)

    assert decision.aggregate is not None and torch.allclose(decision.aggregate, torch.tensor([5.0, 5.0], dtype=torch.float64))


def test_geometric_median_resists_one_far_point_and_flags_it() -> None:
    decision = GeometricMedian(f=1, T=100)(_col(0, 1, 2, 3, -1000))

    assert decision.aggregate is not None and 0.0 <= float(decision.aggregate[0]) <= 2.1
    assert decision.excluded == (4,) and decision.details["weight"][4] < 0.01


def test_geometric_median_one_step_from_zero_weights_by_inverse_distance() -> None:
    # from z=0: weights 1/|x| = 1/2 and 1/4 (nu=0.1 does not bite): z = (1/2*2 + 1/4*4) / (3/4) = 8/3
    decision = GeometricMedian(f=0, T=1)(_col(2, 4))

    assert decision.aggregate is not None and decision.aggregate.tolist() == pytest.approx([8 / 3])


def test_centered_clipping_one_step_clips_long_differences_to_tau() -> None:
    # from v=0 with tau=1: [4,0] is clipped to [1,0], [0,0] stays; v = mean = [0.5, 0]
    decision = CenteredClipping(f=0, tau=1.0, L=1)(torch.tensor([[4.0, 0.0], [0.0, 0.0]]))

    assert decision.aggregate is not None and decision.aggregate.tolist() == [0.5, 0.0]
    assert decision.details["clip"] == (0.25, 1.0)


def test_centered_clipping_default_radius_is_the_median_distance() -> None:
    # from 0, distances 1, 2, 3, 10, 40; tau = 3: clip 10 -> 3 and -40 -> -3; v = (1+2+3+3-3)/5 = 1.2
    decision = CenteredClipping(f=1, L=1)(_col(1, 2, 3, 10, -40))

    assert decision.aggregate is not None and decision.aggregate.tolist() == pytest.approx([1.2])
    assert decision.excluded == (4,)


def test_ccdrop_drops_a_gross_outlier_and_recentres_on_the_rest() -> None:
    # cc from 0 (tau 3) gives 1.2; distances to it .2 .8 1.8 8.8 41.2, median 1.8: -40 is > 2.5 * 1.8 away and
    # points against the others, so it is dropped (10 is far too, but goes their way) and cc restarts over
    # 1, 2, 3, 10: tau = median(1, 2, 3, 10) = 2 -> (1 + 2 + 2 + 2) / 4 = 1.75
    decision = get_rule("ccdrop", 1, L=1)(_col(1, 2, 3, 10, -40))

    assert decision.aggregate is not None and decision.aggregate.tolist() == pytest.approx([1.75])
    assert decision.excluded == (4,) and decision.details["dropped"] == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert decision.details["weight"][4] == 0.0 and decision.rule == "ccdrop" and not decision.reweight


def test_ccdrop_keeps_a_moderately_far_input_clipped_like_cc() -> None:
    # the farthest (5, at 2.6 from cc's 2.4) is within 2.5 * median = 3.5: nothing dropped, the aggregate is cc's
    points = _col(1, 2, 3, 4, 5)
    decision = CenteredClippingDrop(f=1, L=1)(points)
    plain = CenteredClipping(f=1, L=1)(points)

    assert decision.aggregate is not None and plain.aggregate is not None
    assert decision.aggregate.tolist() == pytest.approx(plain.aggregate.tolist())
    assert decision.aggregate.tolist() == pytest.approx([2.4])
    # no input is far by evidence: nobody is an outlier (no quota of f)
    assert decision.excluded == plain.excluded == () and decision.details["dropped"] == (0.0,) * 5
    assert decision.details["weight"][4] > 0


def test_ccdrop_drops_at_most_f_and_only_past_the_threshold() -> None:
    # the far inputs point away from the rest (orthogonal, cosine ~0): evidence only past the drop ratio
    points = torch.tensor([[1.0, 0, 0], [2, 0, 0], [3, 0, 0], [0, 60, 0], [0, 0, 80]], dtype=torch.float64)

    assert CenteredClippingDrop(f=1, L=1)(points).details["dropped"] == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert CenteredClippingDrop(f=2, L=1)(points).details["dropped"] == (0.0, 0.0, 0.0, 1.0, 1.0)
    assert CenteredClippingDrop(f=2, L=1, drop=1000.0)(points).details["dropped"] == (0.0,) * 5


@pytest.mark.parametrize(("rule", "params"), [(GeometricMedian, {"nu": 0.0}), (GeometricMedian, {"T": 0}),
                                              (CenteredClipping, {"tau": -1.0}), (CenteredClipping, {"L": 0}),
                                              (CenteredClippingDrop, {"drop": 0.0})])
def test_iterative_rules_validate_their_parameters(rule: type, params: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        rule(1, **params)


# --- pre-aggregation ----------------------------------------------------------------------------


def test_nnm_replaces_each_point_by_the_mean_of_its_n_minus_f_nearest() -> None:
    mixed, _ = NearestNeighborMixing(f=1)(_col(0, 1, 2, 10))

    assert mixed.flatten().tolist() == pytest.approx([1.0, 1.0, 1.0, 13 / 3])


def test_clip_scales_only_vectors_longer_than_c() -> None:
    out, details = Clip(c=2.5)(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))

    assert out.tolist() == [[1.5, 2.0], [1.0, 0.0]] and details["factor"] == (0.5, 1.0)


def test_arc_clips_the_largest_to_the_next_norm() -> None:
    # n=5, f=1: floor(2/5 * 4) = 1 vector clipped, to the second-largest norm (4)
    out, details = AdaptiveClip(f=1)(_col(1, 2, 3, 4, -8))

    assert out.flatten().tolist() == [1.0, 2.0, 3.0, 4.0, -4.0] and details["factor"] == (1.0, 1.0, 1.0, 1.0, 0.5)


def test_clipping_in_place_scales_the_rows_of_its_argument() -> None:
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])

    out, _ = Clip(c=2.5)(x, inplace=True)

    assert out is x and x.tolist() == [[1.5, 2.0], [1.0, 0.0]]


def test_a_pipeline_never_overwrites_the_callers_matrix() -> None:
    x = _col(1, 2, 3, 4, -8)

    get_rule("arc+clip+cwtm", 1, clip={"c": 1.0})(x)

    assert x.flatten().tolist() == [1.0, 2.0, 3.0, 4.0, -8.0]


def test_composition_runs_the_pre_steps_then_the_rule() -> None:
    rule = get_rule("nnm+cwtm", 1)

    # nnm with k = n - f = 4: rows 13/4, 13/4, 13/4, 6, 6 -> trimmed mean of (13/4, 13/4, 6) = 25/6
    decision = rule(_col(0, 1, 2, 10, 11))

    assert decision.rule == "nnm+cwtm" and not decision.reweight
    assert decision.aggregate is not None and decision.aggregate.tolist() == pytest.approx([25 / 6])


def test_a_pipeline_of_mean_after_a_step_uses_the_rules_aggregate() -> None:
    decision = get_rule("clip+mean", 0, clip={"c": 1.0})(_col(0.5, 4))

    assert decision.aggregate is not None and decision.aggregate.tolist() == [0.75]
    assert not decision.reweight and decision.details["clip.factor"] == (1.0, 0.25)


# --- registry -----------------------------------------------------------------------------------


def test_rules_are_chosen_by_name_with_params() -> None:
    rule = get_rule("multikrum", 1, m=2)

    assert isinstance(rule, MultiKrum) and rule.f == 1 and rule.m == 2


def test_unknown_rule_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="multikrum"):
        get_rule("median", 1)


@pytest.mark.parametrize("name", ["nnm", "nnm+", "xyz+cwtm", "cwtm+nnm", ""])
def test_bad_compositions_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError):
        get_rule(name, 1)


def test_a_pre_step_alone_says_how_to_compose_it() -> None:
    with pytest.raises(ConfigError, match="pre-aggregation step.*nnm\\+cwtm"):
        get_rule("nnm", 1)


def test_unknown_rule_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad parameters"):
        get_rule("multikrum", 1, k=3)


def test_f_in_params_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="robust.f"):
        get_rule("cwtm", 1, f=2)


def test_pre_step_parameters_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="must be an object"):
        get_rule("clip+cwtm", 1, clip=3.0)


@pytest.mark.parametrize(("n", "f", "expected"), [(6, 1, 1), (5, 1, 1), (4, 1, 0), (8, 3, 2), (9, 3, 3), (2, 0, 0), (0, 2, 0)])
def test_effective_f_is_the_largest_f_the_round_supports(n: int, f: int, expected: int) -> None:
    assert effective_f(n, f) == expected


@pytest.mark.parametrize(("rule", "n", "f", "expected"), [
    ("cwmed", 4, 2, 1), ("cwtm", 5, 2, 2), ("geomed", 3, 2, 1), ("cc", 2, 1, 0),
    ("nnm+cwtm", 5, 3, 2), ("nnm+multikrum", 5, 2, 1), ("clip+mean", 3, 2, 2),
])
def test_effective_f_follows_the_strictest_step(rule: str, n: int, f: int, expected: int) -> None:
    assert effective_f(n, f, rule) == expected


def test_max_f_is_negative_when_even_f_zero_cannot_run() -> None:
    assert max_f("krum", 2) == -1 and max_f("cwmed", 1) == 0
