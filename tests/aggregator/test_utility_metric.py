"""The cross-entropy metric: U(S) = minus the mean validation cross-entropy of the coalition's model.

Batched tables (logreg subset sums, MLP terms, CNN vmap) must equal evaluating each coalition's
model one at a time to float64 rounding; the accuracy metric must be untouched.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from aggregator.valuation import value_survivors
from aggregator.valuation.batched import MLPTerms, linear_ce_table, mean_cross_entropy, mean_gce, mlp_ce_table, shapley_from_table
from aggregator.valuation.estimators import EXACT_LIMIT, choose_valuation, estimate, predicted_exact_seconds
from aggregator.valuation.utility import CoalitionUtility
from market.errors import ConfigError
from market.spec import DataSchema, RobustSpec, TaskSpec, ValuationSpec
from tests.aggregator.test_valuation_batched import _round

RTOL = 1e-12


def _all(n: int) -> list[frozenset[int]]:
    return [frozenset(i for i in range(n) if m >> i & 1) for m in range(1 << n)]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(np.abs(a - b) <= RTOL * np.abs(b)))


# --- batched == one coalition at a time ------------------------------------------------------


@pytest.mark.parametrize(("arch", "n"), [("logreg", 7), ("mlp", 6), ("cnn", 5)])
@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_the_gce_table_equals_one_coalition_at_a_time(arch: str, n: int, utility: str) -> None:
    spec, g, deltas, w, x, y = _round(arch, n)
    naive = CoalitionUtility(spec, g, deltas, w, x, y, fast=False, utility=utility, metric="gce").table()
    batched = CoalitionUtility(spec, g, deltas, w, x, y, utility=utility, metric="gce").table()

    assert _close(batched, naive)


def test_gce_by_its_definition() -> None:
    z = torch.randn(3, 7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    p = torch.softmax(z, -1).gather(-1, y.view(1, -1, 1).expand(3, 7, 1)).squeeze(-1)

    assert mean_gce(z, y, 0.25).tolist() == pytest.approx(((1 - p**0.25) / 0.25).mean(-1).tolist(), rel=1e-13)


@pytest.mark.parametrize(("arch", "n"), [("logreg", 7), ("mlp", 6), ("cnn", 5)])
@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_the_cross_entropy_table_equals_one_coalition_at_a_time(arch: str, n: int, utility: str) -> None:
    spec, g, deltas, w, x, y = _round(arch, n)

    naive = CoalitionUtility(spec, g, deltas, w, x, y, fast=False, utility=utility, metric="cross_entropy").table()
    batched = CoalitionUtility(spec, g, deltas, w, x, y, utility=utility, metric="cross_entropy").table()

    assert _close(batched, naive)
    assert len(set(naive.tolist())) >= (1 << (n - 1))  # the coalitions really differ (the last player is a zero update)
    assert np.all(naive < 0)  # minus a cross-entropy


@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_logreg_cross_entropy_without_a_free_rider_and_an_uneven_split(utility: str) -> None:
    spec, g, deltas, w, x, y = _round("logreg", 9, zero_last=False)
    u = CoalitionUtility(spec, g, deltas, w, x, y, utility=utility, metric="cross_entropy")

    per_coalition = np.array(u.evaluate_many(_all(9)))  # the fast per-coalition path

    assert _close(CoalitionUtility(spec, g, deltas, w, x, y, utility=utility, metric="cross_entropy").table(), per_coalition)
    assert len(set(per_coalition.tolist())) == 1 << 9


def test_the_logreg_fast_path_equals_the_slow_path_for_cross_entropy() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 5)

    fast = CoalitionUtility(spec, g, deltas, w, x, y, fast=True, metric="cross_entropy").evaluate_many(_all(5))
    slow = CoalitionUtility(spec, g, deltas, w, x, y, fast=False, metric="cross_entropy").evaluate_many(_all(5))

    assert _close(np.array(fast), np.array(slow))


@pytest.mark.parametrize("arch", ["logreg", "mlp"])
def test_the_accuracy_metric_is_unchanged(arch: str) -> None:
    spec, g, deltas, w, x, y = _round(arch, 5)

    default = CoalitionUtility(spec, g, deltas, w, x, y).table()
    named = CoalitionUtility(spec, g, deltas, w, x, y, metric="accuracy").table()
    naive = CoalitionUtility(spec, g, deltas, w, x, y, fast=False, metric="accuracy").table()

    assert np.array_equal(default, named) and np.array_equal(named, naive)
    assert set((default * y.numel()).round(9).tolist()) <= set(float(k) for k in range(y.numel() + 1))  # counts / V


def test_with_the_partial_utility_a_zero_update_is_a_null_player_under_cross_entropy() -> None:
    spec, g, deltas, w, x, y = _round("logreg", 6)
    table = CoalitionUtility(spec, g, deltas, w, x, y, utility="partial", metric="cross_entropy").table()

    assert np.array_equal(table[: 1 << 5], table[1 << 5 :]) and shapley_from_table(table, 6)[5] == 0.0


# --- hand-computed values and the pure pieces --------------------------------------------------

TINY = TaskSpec(data=DataSchema(n_features=2, n_classes=2, image_shape=None))


def _tiny(weights: list[float], metric: str = "cross_entropy", fast: bool | None = None) -> CoalitionUtility:
    """Global model all zeros (uniform: CE log 2); player 0 = identity logits, player 1 = minus identity."""
    zero = OrderedDict([("linear.bias", torch.zeros(2)), ("linear.weight", torch.zeros(2, 2))])
    good = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])  # flat: bias then weight (sorted names)
    return CoalitionUtility(TINY, zero, [good, -good], weights, torch.eye(2), torch.tensor([0, 1]), fast=fast, metric=metric)


@pytest.mark.parametrize("fast", [True, False])
def test_cross_entropy_by_hand(fast: bool) -> None:
    u = _tiny([3.0, 1.0], fast=fast)

    # {0}: logits [1, 0] for label 0 -> CE log(1 + e^-1); {1}: log(1 + e); {0, 1}: FedAvg 3/4 - 1/4 = 1/2 of the identity
    expected = [-math.log(2.0), -math.log1p(math.exp(-1.0)), -math.log1p(math.e), -math.log1p(math.exp(-0.5))]

    assert u.evaluate_many([(), (0,), (1,), (0, 1)]) == pytest.approx(expected, rel=1e-15)
    assert u.table() == pytest.approx(expected, rel=1e-15)


def test_accuracy_is_still_there_under_cross_entropy_and_costs_no_evaluation() -> None:
    u = _tiny([3.0, 1.0])

    assert (u.accuracy(()), u.accuracy((0,)), u.accuracy((0, 1))) == (0.5, 1.0, 1.0)
    assert u.evaluations == 0 and u.accuracy((1,)) == _tiny([3.0, 1.0], metric="accuracy")((1,))


def test_an_unknown_metric_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown utility metric 'loss': use one of accuracy, cross_entropy, gce") as e:
        _tiny([1.0, 1.0], metric="loss")

    assert "\n" not in str(e.value)


def test_mean_cross_entropy_is_torchs() -> None:
    gen = torch.Generator().manual_seed(0)
    z, y = 5 * torch.randn(3, 40, 7, generator=gen, dtype=torch.float64), torch.randint(0, 7, (40,), generator=gen)

    expected = [float(torch.nn.functional.cross_entropy(z[k], y)) for k in range(3)]

    assert mean_cross_entropy(z, y).tolist() == pytest.approx(expected, rel=1e-14)


def _brute_linear(terms: torch.Tensor, y: torch.Tensor, offset: torch.Tensor | None, weights: torch.Tensor | None) -> list[float]:
    out = []
    for m in range(1 << terms.shape[0]):
        members = [i for i in range(terms.shape[0]) if m >> i & 1]
        z = (offset if offset is not None else torch.zeros_like(terms[0])) + terms[members].sum(0)
        if weights is not None and members:
            z = z / weights[members].sum()
        out.append(-float(mean_cross_entropy(z, y)))
    return out


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("low_bits", [0, 2, 5])
def test_linear_ce_table_on_random_logits(weighted: bool, low_bits: int) -> None:
    gen = torch.Generator().manual_seed(low_bits)
    terms = 4 * torch.randn(5, 30, 6, generator=gen, dtype=torch.float64)
    offset = None if weighted else torch.randn(30, 6, generator=gen, dtype=torch.float64)
    weights = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5 if weighted else None
    y = torch.randint(0, 6, (30,), generator=gen)

    table = linear_ce_table(terms, y, offset=offset, weights=weights, low_bits=low_bits).numpy()
    expected = np.array(_brute_linear(terms, y, offset, weights))

    assert _close(table[1:], expected[1:]) and (weighted or _close(table[:1], expected[:1]))


@pytest.mark.parametrize("weighted", [True, False])
def test_linear_ce_table_recomputes_sums_of_exponentials_that_underflow(weighted: bool) -> None:
    """Two halves that disagree by thousands of nats: every exponential underflows, logsumexp must take over."""
    terms = torch.tensor([[[0.0, -3000.0, -3100.0]], [[-3000.0, 0.0, -2900.0]]], dtype=torch.float64)  # [n=2, V=1, C=3]
    y = torch.tensor([2])
    weights = torch.tensor([1.0, 1.0], dtype=torch.float64) if weighted else None

    table = linear_ce_table(terms, y, weights=weights, low_bits=1).numpy()

    assert np.all(np.isfinite(table)) and _close(table[1:], np.array(_brute_linear(terms, y, None, weights))[1:])


@pytest.mark.parametrize("fedavg", [True, False])
def test_mlp_ce_table_on_random_terms(fedavg: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    n, v, h, c = 6, 25, 9, 4
    w = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
    players = MLPTerms(
        hidden=torch.randn(n, v, h, generator=gen, dtype=torch.float64),
        out_weight=torch.randn(n, c, h, generator=gen, dtype=torch.float64),
        out_bias=torch.randn(n, c, generator=gen, dtype=torch.float64),
        scale=w if fedavg else torch.zeros(n, dtype=torch.float64),
    )
    offset = None if fedavg else MLPTerms(
        torch.randn(v, h, generator=gen, dtype=torch.float64), torch.randn(c, h, generator=gen, dtype=torch.float64),
        torch.randn(c, generator=gen, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
    )
    y = torch.randint(0, c, (v,), generator=gen)
    expected = []
    for m in range(1 << n):
        k = [i for i in range(n) if m >> i & 1]
        hid, out_w, bias, s = players.hidden[k].sum(0), players.out_weight[k].sum(0), players.out_bias[k].sum(0), players.scale[k].sum()
        if offset is not None:
            hid, out_w, bias, s = hid + offset.hidden, out_w + offset.out_weight, bias + offset.out_bias, s + offset.scale
        logits = (hid.relu() @ out_w.T + s * bias) / (s * s if float(s) > 0 else 1.0)
        expected.append(-float(mean_cross_entropy(logits, y)))

    table = mlp_ce_table(players, y, offset, low_bits=2).numpy()

    assert _close(table[1:], np.array(expected[1:])) and (fedavg or _close(table[:1], np.array(expected[:1])))


# --- the round's valuation: record, accuracies, cost model -------------------------------------

SPEC = TaskSpec(robust=RobustSpec(rule="mean"))


def _valued(metric: str, rule: str = "exact") -> tuple[TaskSpec, tuple, object]:  # type: ignore[type-arg]
    spec = SPEC.model_copy(update={"valuation": ValuationSpec(rule=rule, metric=metric)})  # type: ignore[arg-type]
    _, g, deltas, w, x, y = _round("logreg", 5, zero_last=False)
    survivors = [f"0x{i + 1:040x}" for i in range(5)]
    return spec, (g, deltas, w, x, y), value_survivors(spec, g, survivors, deltas, w, x, y, seed=3)


@pytest.mark.parametrize("rule", ["exact", "gtg", "tmc"])
def test_the_record_names_the_metric_and_a_replay_recomputes_the_values(rule: str) -> None:
    spec, (g, deltas, w, x, y), valued = _valued("cross_entropy", rule)
    rec = valued.record  # type: ignore[attr-defined]

    u = CoalitionUtility(spec, g, deltas, w, x, y, utility=rec["utility"], metric=rec["metric"])
    replay = estimate(rec["method"], 5, u, rec["seed"], rec["params"])

    assert (rec["metric"], rec["utility"], rec["method"]) == ("cross_entropy", "fedavg", rule)
    assert replay.values == valued.values  # type: ignore[attr-defined]


def test_under_cross_entropy_the_values_share_the_gain_in_nats_and_the_accuracies_stay_accuracies() -> None:
    _, _, ce = _valued("cross_entropy")
    _, _, acc = _valued("accuracy")

    assert ce.record["utility_after"] - ce.record["utility_before"] == pytest.approx(sum(ce.values), abs=1e-9)  # type: ignore[attr-defined]
    assert ce.utility_before == ce.utilities[""] < 0  # type: ignore[attr-defined]
    assert (ce.accuracy_before, ce.accuracy_after) == (acc.accuracy_before, acc.accuracy_after)  # type: ignore[attr-defined]
    assert acc.record["metric"] == "accuracy" and acc.utility_after == acc.accuracy_after  # type: ignore[attr-defined]
    assert ce.record["predicted_exact_s"] > acc.record["predicted_exact_s"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("arch", "n_val", "hidden", "acc_largest", "ce_largest"),
    [("logreg", 269, 64, 20, 19), ("logreg", 1000, 64, 19, 17), ("mlp", 269, 64, 18, 17), ("mlp", 1000, 256, 14, 14), ("cnn", 269, 64, 11, 11)],
)
def test_auto_reads_the_metric_from_the_valuation_spec(arch: str, n_val: int, hidden: int, acc_largest: int, ce_largest: int) -> None:
    for metric, largest in (("accuracy", acc_largest), ("cross_entropy", ce_largest)):
        spec = ValuationSpec(metric=metric)  # type: ignore[arg-type]

        chosen = [choose_valuation(spec, n, arch=arch, n_val=n_val, hidden=hidden) for n in range(1, EXACT_LIMIT + 3)]

        assert chosen == ["exact"] * largest + ["gtg"] * (EXACT_LIMIT + 2 - largest), metric
        assert predicted_exact_seconds(arch, largest, n_val, hidden, metric=metric) <= spec.time_budget_s


def test_the_cost_model_default_is_accuracy_and_an_unknown_metric_is_an_error() -> None:
    assert predicted_exact_seconds("logreg", 16, 269) == predicted_exact_seconds("logreg", 16, 269, metric="accuracy")

    with pytest.raises(ConfigError, match="unknown utility metric"):
        predicted_exact_seconds("logreg", 16, 269, metric="loss")
