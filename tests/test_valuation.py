"""Coalition utility and Shapley estimators, on utilities whose values are known by hand."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import Callable

import pytest
import torch

from aggregator.utility import CoalitionUtility
from aggregator.valuation import choose_valuation, exact_shapley, gtg_shapley, loo, run_valuation
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


# --- leave-one-out and the registry -----------------------------------------------------------


def test_loo_is_the_loss_from_removing_each_player() -> None:
    assert loo(3, synergy) == [1.5, 1.5, 0.0]


@pytest.mark.parametrize(("rule", "n", "expected"), [("auto", 10, "exact"), ("auto", 11, "gtg"), ("gtg", 3, "gtg"), ("loo", 3, "loo")])
def test_choose_valuation(rule: str, n: int, expected: str) -> None:
    assert choose_valuation(ValuationSpec(rule=rule, exact_max_n=10), n) == expected


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
