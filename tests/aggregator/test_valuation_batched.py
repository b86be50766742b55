"""Batched coalition evaluation: every coalition's accuracy equals re-running that coalition's model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from aggregator.valuation.batched import (
    MLPTerms,
    linear_table,
    mlp_table,
    popcounts,
    shapley_from_table,
    shapley_weights,
    subset_sums,
)
from aggregator.valuation.estimators import exact_shapley
from aggregator.valuation.utility import CoalitionUtility
from market.data import digits_splits
from market.errors import ConfigError
from market.models import build_model, state_of
from market.spec import ModelSpec, TaskSpec, TrainingSpec
from market.tensors import flatten
from trainer_node.train import local_update


def brute_force_shapley(n: int, u: list[float]) -> list[float]:
    """Average marginal contribution over all n! orders, from a bitmask-indexed table."""
    phi = [0.0] * n
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        mask = 0
        for p in perm:
            phi[p] += (u[mask | 1 << p] - u[mask]) / len(perms)
            mask |= 1 << p
    return phi


# --- pure pieces ------------------------------------------------------------------------------


def test_subset_sums_index_coalitions_by_bitmask() -> None:
    a = torch.tensor([1.0, 10.0, 100.0])

    assert subset_sums(a).tolist() == [0.0, 1.0, 10.0, 11.0, 100.0, 101.0, 110.0, 111.0]


def test_popcounts() -> None:
    assert popcounts(3).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]


def test_shapley_weights_sum_to_one_over_coalition_sizes() -> None:
    n = 6

    w = shapley_weights(n)

    assert sum(w[s] * math.comb(n - 1, s) for s in range(n)) == pytest.approx(1.0)


def test_shapley_from_table_equals_the_permutation_definition() -> None:
    rng = np.random.default_rng(0)
    u = rng.random(1 << 5)

    assert shapley_from_table(u, 5) == pytest.approx(brute_force_shapley(5, u.tolist()), abs=1e-12)


def test_shapley_from_table_rejects_a_table_of_the_wrong_size() -> None:
    with pytest.raises(ValueError):
        shapley_from_table(np.zeros(8), 4)


def _argmax_table(offset: torch.Tensor | None, terms: torch.Tensor, y: torch.Tensor) -> list[float]:
    n = terms.shape[0]
    out = []
    for m in range(1 << n):
        z = offset.clone() if offset is not None else torch.zeros_like(terms[0])
        for i in range(n):
            if m >> i & 1:
                z = z + terms[i]
        out.append(float((z.argmax(-1) == y).double().mean()))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_table_breaks_ties_like_argmax(seed: int) -> None:
    """Small integer logits tie often; the first maximal class wins, as in torch.argmax."""
    gen = torch.Generator().manual_seed(seed)
    terms = torch.randint(-1, 2, (6, 40, 4), generator=gen).double()
    offset = torch.randint(-1, 2, (40, 4), generator=gen).double()
    y = torch.randint(0, 4, (40,), generator=gen)

    table = linear_table(terms, y, offset=offset, low_bits=2, block=16)

    assert table.tolist() == _argmax_table(offset, terms, y)


def test_linear_table_uses_the_empty_logits_for_the_empty_coalition() -> None:
    terms, y = torch.eye(2)[None].double(), torch.tensor([0, 1])

    table = linear_table(terms, y, empty=torch.tensor([[0.0, 1.0], [0.0, 1.0]]))

    assert table.tolist() == [0.5, 1.0]


# --- on real updates: batched == one coalition at a time, every coalition ---------------------


def _round(arch: str, n: int, zero_last: bool = True) -> tuple[TaskSpec, dict[str, torch.Tensor], list[torch.Tensor], list[float], torch.Tensor, torch.Tensor]:
    spec = TaskSpec(model=ModelSpec(arch=arch, hidden=32), training=TrainingSpec(epochs=1, lr=0.5 if arch == "logreg" else 0.1))
    splits = digits_splits(n, "dirichlet:0.5", seed=0)
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    deltas = [flatten(local_update(spec, g, d, seed=i)) for i, d in enumerate(splits.trainers)]
    if zero_last:
        deltas[-1] = torch.zeros_like(deltas[-1])  # a free rider: ties and exact null contributions
    return spec, g, deltas, [float(len(d)) for d in splits.trainers], splits.validation.x, splits.validation.y


@pytest.mark.parametrize("arch", ["logreg", "mlp", "cnn"])
@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_batched_table_equals_one_coalition_at_a_time(arch: str, utility: str) -> None:
    spec, g, deltas, w, x, y = _round(arch, 4 if arch == "cnn" else 6)  # the CNN's naive pass is slow

    naive = CoalitionUtility(spec, g, deltas, w, x, y, fast=False, utility=utility).table()
    batched = CoalitionUtility(spec, g, deltas, w, x, y, utility=utility).table()

    assert np.array_equal(batched, naive)
    assert len(set(naive.tolist())) >= 5  # the coalitions really differ


def test_logreg_table_on_more_players_than_one_half_holds() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 9, zero_last=False)

    u = CoalitionUtility(spec, g, deltas, w, x, y)
    per_coalition = u.evaluate_many([frozenset(i for i in range(9) if m >> i & 1) for m in range(1 << 9)])

    assert np.array_equal(CoalitionUtility(spec, g, deltas, w, x, y).table(), np.array(per_coalition))


def test_exact_shapley_from_the_table_equals_the_per_coalition_formula() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 6)
    table = CoalitionUtility(spec, g, deltas, w, x, y).table()

    assert exact_shapley(6, CoalitionUtility(spec, g, deltas, w, x, y)) == pytest.approx(brute_force_shapley(6, table.tolist()), abs=1e-12)


def test_the_table_counts_every_coalition_and_then_answers_lookups() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 5)
    u = CoalitionUtility(spec, g, deltas, w, x, y)

    table = u.table()

    assert u.evaluations == 32 and u({0, 2}) == table[0b101] and u(()) == table[0]


def test_an_unknown_utility_is_a_config_error() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 3)

    with pytest.raises(ConfigError, match="unknown coalition utility"):
        CoalitionUtility(spec, g, deltas, w, x, y, utility="loss")


def test_with_the_partial_utility_a_zero_update_is_a_null_player() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 6)
    table = CoalitionUtility(spec, g, deltas, w, x, y, utility="partial").table()

    without, with_ = table[: 1 << 5], table[1 << 5 :]  # player 5 (the zero update) absent / present

    assert np.array_equal(without, with_) and shapley_from_table(table, 6)[5] == 0.0


def test_mlp_table_recomputes_near_ties_in_float64() -> None:
    """Two classes whose logits differ by ~1e-9: float32 cannot order them, the certified pass must defer."""
    gen = torch.Generator().manual_seed(0)
    n, v, h = 5, 40, 8
    base_w = torch.randn(n, 1, h, generator=gen, dtype=torch.float64)
    players = MLPTerms(
        hidden=torch.randn(n, v, h, generator=gen, dtype=torch.float64),
        out_weight=torch.cat([base_w, base_w + 1e-9 * torch.randn(n, 1, h, generator=gen, dtype=torch.float64)], 1),
        out_bias=torch.zeros(n, 2, dtype=torch.float64),
        scale=torch.ones(n, dtype=torch.float64),
    )
    y = torch.randint(0, 2, (v,), generator=gen)
    expected = []
    for m in range(1 << n):
        members = [i for i in range(n) if m >> i & 1]
        logits = players.hidden[members].sum(0).relu() @ players.out_weight[members].sum(0).T
        expected.append(float((logits.argmax(-1) == y).double().mean()))

    table = mlp_table(players, y, weights=torch.ones(n, dtype=torch.float64), low_bits=2)

    assert table.tolist()[1:] == expected[1:]
