"""Coalition utility and Shapley estimators, on utilities whose values are known by hand."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable

import pytest
import torch

from aggregator.valuation.estimators import (
    EXACT_LIMIT,
    choose_valuation,
    estimate,
    exact_shapley,
    gtg_shapley,
    loo,
    predicted_exact_seconds,
    run_valuation,
    tmc_shapley,
)
from aggregator.valuation.utility import CoalitionUtility
from market.data import digits_splits
from market.errors import ConfigError
from market.models import accuracy, build_model, model_with_state, state_of
from market.spec import DataSchema, ModelSpec, TaskSpec, TrainingSpec, ValuationSpec
from market.tensors import flatten
from trainer_node.train import local_update


class Counting:
    """Wraps a utility function and records every call."""

    def __init__(self, fn: Callable[[frozenset[int]], float]) -> None:
        self.fn = fn
        self.calls: list[frozenset[int]] = []

    def __call__(self, coalition: frozenset[int]) -> float:
        self.calls.append(frozenset(coalition))
        return self.fn(frozenset(coalition))


def synergy(s: frozenset[int]) -> float:
    """Players 0 and 1 are worth 1 each plus 0.5 together; player 2 adds nothing. Shapley: 1.25, 1.25, 0."""
    return len(s & {0, 1}) + (0.5 if {0, 1} <= s else 0.0)


def lumpy(s: frozenset[int]) -> float:
    """A non-additive utility over 4-5 players (diminishing returns plus one pairwise bonus)."""
    w = [0.1, 0.4, 0.2, 0.3, 0.25]
    return math.sqrt(sum(w[i] for i in s)) + (0.1 if {0, 3} <= s else 0.0) - (0.05 if {1, 2} <= s else 0.0)


def brute_force_shapley(n: int, u: Callable[[frozenset[int]], float]) -> list[float]:
    phi = [0.0] * n
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        prefix: frozenset[int] = frozenset()
        for p in perm:
            phi[p] += (u(prefix | {p}) - u(prefix)) / len(perms)
            prefix = prefix | {p}
    return phi


# --- exact Shapley ----------------------------------------------------------------------------


def test_exact_matches_the_hand_computed_values() -> None:
    assert exact_shapley(3, synergy) == pytest.approx([1.25, 1.25, 0.0], abs=1e-12)


def test_exact_is_efficient() -> None:
    phi = exact_shapley(3, synergy)

    assert sum(phi) == pytest.approx(synergy(frozenset({0, 1, 2})) - synergy(frozenset()), abs=1e-12)


def test_exact_gives_symmetric_players_equal_values() -> None:
    phi = exact_shapley(3, synergy)

    assert phi[0] == phi[1]


def test_exact_gives_a_null_player_zero() -> None:
    assert exact_shapley(3, synergy)[2] == 0.0


def test_exact_equals_brute_force_over_all_permutations() -> None:
    assert exact_shapley(4, lumpy) == pytest.approx(brute_force_shapley(4, lumpy), abs=1e-12)


def test_exact_evaluates_every_coalition_exactly_once() -> None:
    u = Counting(lumpy)

    exact_shapley(4, u)

    assert len(u.calls) == 16 and len(set(u.calls)) == 16


def test_exact_of_nobody_is_empty() -> None:
    assert exact_shapley(0, lumpy) == []


# --- GTG-Shapley ------------------------------------------------------------------------------


def test_gtg_is_close_to_exact_without_truncation() -> None:
    exact = exact_shapley(5, lumpy)

    est = gtg_shapley(5, lumpy, seed=0, eps=0.0, max_perms=2000, convergence=0.002)

    assert est == pytest.approx(exact, abs=0.01)


def test_gtg_with_default_settings_is_within_a_few_percent_of_exact() -> None:
    exact = exact_shapley(5, lumpy)

    est = gtg_shapley(5, lumpy, seed=0)

    assert est == pytest.approx(exact, abs=0.03)  # values are 0.16-0.31


def test_gtg_is_deterministic_given_the_seed() -> None:
    assert gtg_shapley(5, lumpy, seed=3) == gtg_shapley(5, lumpy, seed=3)


def test_gtg_between_round_truncation_gives_zeros_after_two_evaluations() -> None:
    u = Counting(lambda s: 0.5 if len(s) in (0, 4) else 0.9)

    phi = gtg_shapley(4, u, seed=0)

    assert phi == [0.0, 0.0, 0.0, 0.0] and len(u.calls) == 2


def test_gtg_within_round_truncation_gives_the_exact_answer_here() -> None:
    phi = gtg_shapley(4, lambda s: 1.0 if 0 in s else 0.0, seed=0)  # player 0 alone reaches U(N)

    assert phi == [1.0, 0.0, 0.0, 0.0]


def test_gtg_within_round_truncation_saves_evaluations() -> None:
    truncated, full = Counting(lambda s: 1.0 if 0 in s else 0.0), Counting(lambda s: 1.0 if 0 in s else 0.0)

    gtg_shapley(4, truncated, seed=0, eps=1e-3, max_perms=8)
    gtg_shapley(4, full, seed=0, eps=0.0, max_perms=8)

    assert len(truncated.calls) < len(full.calls) == 2 + 8 * 4


def test_gtg_stops_at_max_perms() -> None:
    u = Counting(lumpy)

    gtg_shapley(5, u, seed=0, eps=0.0, max_perms=3, convergence=1e-9)

    assert len(u.calls) == 2 + 3 * 5


def test_gtg_stop_reason_and_permutations_are_recorded() -> None:
    converged = estimate("gtg", 5, lumpy, seed=0)
    capped = estimate("gtg", 5, lumpy, seed=0, params={"max_perms": 7, "convergence": 1e-9})

    assert converged.stop == "converged" and converged.permutations % 5 == 0
    assert (capped.stop, capped.permutations) == ("max_perms", 7)


def test_gtg_different_seeds_sample_different_permutations() -> None:
    assert gtg_shapley(5, lumpy, seed=1, max_perms=10) != gtg_shapley(5, lumpy, seed=2, max_perms=10)


def test_gtg_between_round_threshold_can_differ_from_the_within_round_one() -> None:
    u = Counting(lambda s: 0.01 * len(s))  # the round moved the utility by 0.04

    phi = gtg_shapley(4, u, seed=0, eps=0.0, eps_round=0.05)

    assert phi == [0.0] * 4 and len(u.calls) == 2


# --- TMC-Shapley ------------------------------------------------------------------------------


def test_tmc_is_close_to_exact_without_truncation() -> None:
    exact = exact_shapley(5, lumpy)

    est = tmc_shapley(5, lumpy, seed=0, tolerance=0.0, max_perms=3000, convergence=1e-6)

    assert est == pytest.approx(exact, abs=0.01)


def test_tmc_with_default_settings_is_within_a_few_percent_of_exact() -> None:
    # uniform permutations are noisier than GTG's guided ones: errors up to 0.043 over seeds 0-7 (values 0.16-0.31)
    assert tmc_shapley(5, lumpy, seed=0) == pytest.approx(exact_shapley(5, lumpy), abs=0.05)


def test_tmc_is_deterministic_given_the_seed() -> None:
    assert tmc_shapley(5, lumpy, seed=3) == tmc_shapley(5, lumpy, seed=3)


def test_tmc_truncation_stops_a_permutation_once_it_reaches_the_full_utility() -> None:
    truncated, full = Counting(lambda s: 1.0 if 0 in s else 0.0), Counting(lambda s: 1.0 if 0 in s else 0.0)

    phi = tmc_shapley(4, truncated, seed=0, max_perms=8)
    tmc_shapley(4, full, seed=0, tolerance=0.0, patience=10, max_perms=8)

    assert phi == [1.0, 0.0, 0.0, 0.0] and len(truncated.calls) < len(full.calls)


def test_tmc_stops_at_max_perms() -> None:
    u = Counting(lumpy)

    tmc_shapley(5, u, seed=0, tolerance=0.0, max_perms=3, convergence=1e-9)

    assert len(u.calls) == 2 + 3 * 5


# --- leave-one-out and the registry -----------------------------------------------------------


def test_loo_is_the_loss_from_removing_each_player() -> None:
    assert loo(3, synergy) == [1.5, 1.5, 0.0]


@pytest.mark.parametrize(("rule", "n", "expected"), [("auto", 10, "exact"), ("auto", 11, "gtg"), ("gtg", 3, "gtg"), ("loo", 3, "loo"), ("tmc", 3, "tmc")])
def test_choose_valuation(rule: str, n: int, expected: str) -> None:
    assert choose_valuation(ValuationSpec(rule=rule, exact_max_n=10), n) == expected


@pytest.mark.parametrize(
    ("arch", "n_val", "hidden", "largest_exact"),
    [("logreg", 269, 64, 20), ("logreg", 1000, 64, 19), ("mlp", 269, 64, 18), ("mlp", 1000, 256, 14), ("cnn", 269, 64, 11)],
)
def test_auto_is_exact_up_to_the_time_budget(arch: str, n_val: int, hidden: int, largest_exact: int) -> None:
    spec = ValuationSpec(metric="accuracy")  # rule auto, no exact_max_n: the default time budget decides (cross-entropy:
    # tests/aggregator/test_utility_metric.py)

    chosen = [choose_valuation(spec, n, arch=arch, n_val=n_val, hidden=hidden) for n in range(1, EXACT_LIMIT + 3)]

    assert chosen == ["exact"] * largest_exact + ["gtg"] * (EXACT_LIMIT + 2 - largest_exact)
    assert predicted_exact_seconds(arch, largest_exact, n_val, hidden) <= spec.time_budget_s


def test_exact_max_n_overrides_the_time_budget() -> None:
    assert choose_valuation(ValuationSpec(exact_max_n=4), 5) == "gtg"


def test_unknown_valuation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown valuation rule"):
        choose_valuation(ValuationSpec(rule="banzhaf"), 3)


def test_run_valuation_passes_an_estimator_its_parameters() -> None:
    u = Counting(lumpy)

    run_valuation("gtg", 5, u, seed=0, params={"eps": 0.0, "max_perms": 3, "convergence": 1e-9})

    assert len(u.calls) == 2 + 3 * 5


def test_gtg_parameters_do_not_break_a_small_round_valued_exactly() -> None:
    assert run_valuation("exact", 3, synergy, seed=0, params={"eps": 0.1}) == pytest.approx([1.25, 1.25, 0.0])


def test_a_parameter_no_estimator_knows_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown parameter"):
        run_valuation("gtg", 3, synergy, seed=0, params={"epsilon": 0.1})


def test_the_record_holds_every_parameter_the_estimator_used() -> None:
    record = estimate("tmc", 4, lumpy, seed=5, params={"tolerance": 0.0, "eps": 0.2}).to_dict()

    assert record["method"] == "tmc" and record["seed"] == 5
    assert record["params"] == {"tolerance": 0.0, "patience": 1, "max_perms": 500, "convergence": 0.05, "window": 50}


def test_estimate_replays_to_the_same_values_from_its_record() -> None:
    first = estimate("gtg", 5, lumpy, seed=11, params={"max_perms": 40})

    again = estimate(first.method, 5, lumpy, first.seed, first.params)

    assert again.values == first.values


# --- coalition utility ------------------------------------------------------------------------

TINY = TaskSpec(data=DataSchema(n_features=2, n_classes=2, image_shape=None))


def _tiny_utility(weights: list[float], fast: bool | None = None) -> CoalitionUtility:
    """Global model all zeros (predicts class 0: accuracy 1/2); player 0 = identity (1.0), player 1 = -identity (0.0)."""
    zero = OrderedDict([("linear.bias", torch.zeros(2)), ("linear.weight", torch.zeros(2, 2))])
    good = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])  # flat: bias then weight (sorted names)
    x, y = torch.eye(2), torch.tensor([0, 1])
    return CoalitionUtility(TINY, zero, [good, -good], weights, x, y, fast=fast)


def test_empty_coalition_is_the_current_global_model() -> None:
    assert _tiny_utility([1.0, 1.0])(frozenset()) == 0.5


@pytest.mark.parametrize(("weights", "expected"), [([1.0, 1.0], 0.5), ([3.0, 1.0], 1.0), ([1.0, 3.0], 0.0)])
def test_coalitions_average_their_deltas_weighted_by_samples(weights: list[float], expected: float) -> None:
    u = _tiny_utility(weights)

    assert (u({0}), u({1}), u({0, 1})) == (1.0, 0.0, expected)


def test_each_coalition_is_computed_once() -> None:
    u = _tiny_utility([1.0, 1.0])

    u((0, 1))
    u(frozenset({1, 0}))
    u.evaluate_many([(1,), (1,), (0, 1)])

    assert u.evaluations == 2


def test_evaluate_many_keeps_the_order_asked() -> None:
    assert _tiny_utility([3.0, 1.0]).evaluate_many([(1,), (), (0,)]) == [0.0, 0.5, 1.0]


def test_out_of_range_player_is_an_error() -> None:
    with pytest.raises(ValueError):
        _tiny_utility([1.0, 1.0])({2})


def test_fast_path_needs_logreg() -> None:
    spec = TaskSpec(model=ModelSpec(arch="mlp"))

    with pytest.raises(ConfigError):
        CoalitionUtility(spec, {}, [], [], torch.zeros(1, 64), torch.zeros(1, dtype=torch.long), fast=True)


@pytest.fixture(scope="module")
def digits_round() -> tuple[TaskSpec, dict[str, torch.Tensor], list[torch.Tensor], list[float], torch.Tensor, torch.Tensor]:
    spec = TaskSpec(training=TrainingSpec(epochs=1))
    splits = digits_splits(5, "dirichlet:0.5", seed=0)
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    deltas = [flatten(local_update(spec, g, d, seed=i)) for i, d in enumerate(splits.trainers)]
    weights = [float(len(d)) for d in splits.trainers]
    return spec, g, deltas, weights, splits.validation.x, splits.validation.y


def test_logreg_fast_path_equals_the_slow_path_on_every_coalition(digits_round) -> None:  # type: ignore[no-untyped-def]
    spec, g, deltas, weights, x, y = digits_round
    coalitions = [frozenset(c) for r in range(6) for c in itertools.combinations(range(5), r)]

    fast = CoalitionUtility(spec, g, deltas, weights, x, y, fast=True).evaluate_many(coalitions)
    slow = CoalitionUtility(spec, g, deltas, weights, x, y, fast=False).evaluate_many(coalitions)

    assert fast == slow and len(set(fast)) > 5


def test_empty_coalition_matches_the_published_model_accuracy(digits_round) -> None:  # type: ignore[no-untyped-def]
    spec, g, deltas, weights, x, y = digits_round

    u = CoalitionUtility(spec, g, deltas, weights, x, y)

    assert u(()) == pytest.approx(accuracy(model_with_state(spec.model, spec.data, g), x, y), abs=1e-6)
