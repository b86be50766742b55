"""Contribution valuation: Shapley values of the round's coalition utility, chosen by name.

Every estimator is a pure function of ``(n, utility, [seed], **params)``
returning one value per player; a utility is any callable on a frozenset of
player indices (``evaluate_many`` and ``table`` are used when present, as
:class:`aggregator.valuation.utility.CoalitionUtility` provides them).  Sampling uses a
local ``numpy`` generator seeded by ``seed``, so a replay with the same
seed and parameters recomputes the same numbers.

- ``exact``: the Shapley value (Shapley 1953),
  ``phi_i = sum_{S without i} |S|! (n-|S|-1)! / n! * (U(S + i) - U(S))``,
  every one of the ``2^n`` coalitions evaluated once -- in one batched pass
  when the utility offers ``table()`` (see :mod:`aggregator.valuation.batched`), then
  :func:`aggregator.valuation.batched.shapley_from_table`.
- ``gtg``: GTG-Shapley (Liu, Chen, Yang, Zhou & Zhao 2022, "GTG-Shapley:
  Efficient and Accurate Participant Contribution Evaluation in Federated
  Learning", ACM TIST 13(4), Algorithm 1): between-round truncation (all
  zero when ``|U(N) - U({})| <= eps_round``), guided permutation sampling
  (each cycle of ``n`` permutations puts every player first once, the rest
  in random order), within-round truncation (once a prefix is within ``eps``
  of ``U(N)`` the remaining marginals are taken as 0), and a convergence stop
  (relative L1 change of the running mean over a cycle below
  ``convergence``, after ``min_cycles`` cycles) or ``max_perms``.
- ``tmc``: Truncated Monte-Carlo Shapley (Ghorbani & Zou 2019, "Data
  Shapley: Equitable Valuation of Data for Machine Learning", ICML,
  Algorithm 1): uniformly random permutations; a permutation is truncated
  once ``patience`` consecutive prefixes are within ``tolerance * |U(N) -
  U({})|`` of ``U(N)`` (the paper's tolerance is relative to ``U(N)``; a
  federated round's utility gain is what the players share, so it is
  relative to that here); stop when the mean relative change of the
  estimates over the last ``window`` permutations is below ``convergence``
  (the paper: 0.05 over 100), or at ``max_perms``.
- ``loo``: leave-one-out, ``U(N) - U(N without i)`` (a cheap baseline).

:func:`estimate` (what a round runs) then gives players the utility reports
as interchangeable -- bit-identical updates with equal weights, see
:meth:`aggregator.valuation.utility.CoalitionUtility.symmetric_players` -- the mean of
their estimates: their Shapley values are equal by the symmetry axiom, the
mean keeps the total (efficiency), and for two identical updates on five
digits trainers it removes a sampling gap of 2-5% (``gtg``) and 36-39%
(``tmc``) between their shares (``tests/aggregator/test_fairness.py``).  Exact values
need it only where float summation order splits a tie.

Defaults were set on ``bench/valuation.py``'s heterogeneous digits rounds
(n = 10 and 16): GTG's ``eps = 0.005`` (half a percentage point of accuracy)
and ``convergence = 0.03`` gave a rank correlation with exact Shapley of
0.993 (worst of 5 seeds 0.976) at n = 10 and 0.975 (0.956) at n = 16, a
share error of 0.0085 and 0.0045, with 32% and 1.7% of exact's evaluations
(``bench/results/valuation.json``).  The thresholds are absolute, in the
metric's units; the same numbers in nats serve the cross-entropy metric
(``--metric cross_entropy``): a first round's gain ``U(N) - U({})`` is
larger there (1.7-1.8 nats against 0.77 accuracy), so ``eps`` truncates a
little later -- GTG 0.998 (0.988) at n = 10 and 0.994 (0.985) at n = 16 with
36% and 2.7% of the evaluations, TMC 0.990 (0.988) and 0.983 (0.968) -- and
in later rounds (``--start-round 2 5``) cross-entropy still moves where
accuracy has stopped: ``|U(N) - U({})|`` of 0.007-0.05 nats, while
accuracy's 0.002 in round 5 falls under ``eps_round`` and GTG returns
zeros; GTG's mean rank correlation there is 0.973-0.979 (worst seed 0.952),
as under accuracy in round 2.  So no metric-specific scaling: the recorded
parameters are the same numbers for either metric.  Estimates from different seeds differ (that is sampling
noise); the receipt records the seed so a replay reproduces them.

``auto`` (the task default) is ``exact`` when its predicted cost fits the
spec's time budget and ``gtg`` beyond (:func:`choose_valuation`); the
prediction is a fixed cost model measured by ``bench/valuation.py``, not a
clock, so every replay makes the same choice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aggregator.valuation.batched import shapley_from_table
from market.errors import ConfigError
from market.spec import DataSchema, ModelSpec, ValuationSpec

EXACT_LIMIT = 20  # 2^20 coalitions: the largest exact valuation measured (bench/valuation.py)

#: seconds per (coalition x validation sample) of the batched exact method on the reference
#: machine (2 shared cores, 1 torch thread, load ~3.7), from ``bench/valuation.py``: logreg
#: 16.2 s for n = 20 with 1,000 samples; MLP 5.3 s for n = 14 at hidden width 256 (the part
#: that scales with the width) plus a fixed 3e-8 (measured 0.53 s at width 64, n = 14, 269
#: samples); the CNN (vmap, no shortcut) 3.2 s for n = 10 with 269 samples.
EXACT_COST_PER_COALITION_SAMPLE = {"logreg": 1.6e-8, "mlp": 3.2e-7, "cnn": 1.2e-5}
#: the same for the cross-entropy metric (:func:`aggregator.valuation.batched.linear_ce_table`,
#: ``mlp_ce_table``; the CNN's vmap pass costs the same for either metric): the accuracy constants
#: times the cross-entropy / accuracy time ratio measured side by side by ``bench/valuation.py
#: --metric both`` (logreg, ``fedavg`` -- the slower utility, one exponential per coalition, sample
#: and class: 3.1x at n = 20 on 269 and on 1,000 samples, 6.3 s and 22.9 s; MLP at width 256: 1.4-1.75x
#: at n = 14, 8.3 s on 1,000 samples; the fixed part as for accuracy, measured 1.23x at width 64).
EXACT_COST_PER_COALITION_SAMPLE_CE = {"logreg": 5.0e-8, "mlp": 5.5e-7, "cnn": 1.2e-5}
#: ``gce`` on logreg: every coalition's ``[V, C]`` logits as a weighted sum of the players' (measured below)
GCE_LOGREG_COST_PER_COALITION_SAMPLE_PLAYER = 2.0e-8  # n = 16: 5.0 s (1.8e-8), load ~2
_MLP_COST_WIDTH = 256
_MLP_COST_FIXED = 3e-8
#: a declared (``arch = "layers"``) model's or the built-in CNN's vmap pass, per coalition x validation sample: seconds per
#: multiply-add, plus a fixed part. Measured by ``bench/valuation.py --cost-model`` (gce, 1 torch thread, forwards cut
#: to stay in cache, :data:`aggregator.valuation.batched.FORWARD_BYTES`): networks with a convolution 1.4-3.4e-10 s per
#: multiply-add of the whole network (the digits CNN, n = 8: 0.34 s; mnist5k's CNN, n = 6: 4.4 s; the built-in cnn on
#: 28x28 images, n = 6: 1.35 s), so 4e-10 leaves room for a busy machine; dense layers only 0.4-0.9e-10 as a table
#: (MLPs of width 64 and 512). Before the forwards were cut, 4-6e-10 idle and up to 1e-9 under load.
LAYERS_COST_PER_MAC_CONV_NET = 4.0e-10
LAYERS_COST_PER_MAC_DENSE_NET = 2.5e-10
LAYERS_COST_FIXED = 3e-8


class Utility(Protocol):
    def __call__(self, coalition: frozenset[int]) -> float: ...


@dataclass(frozen=True)
class Valuation:
    """An estimator's values and what it did (recorded in the round receipt)."""

    method: str
    values: list[float]
    seed: int
    params: dict[str, Any]  # every parameter the estimator used, defaults included
    permutations: int = 0  # sampled permutations (gtg, tmc)
    stop: str = "complete"  # complete | converged | max_perms | between_round_truncation
    evaluations: int | None = None  # distinct coalitions the utility computed, if it counts them
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            "params": dict(self.params),
            "permutations": self.permutations,
            "stop": self.stop,
            "evaluations": self.evaluations,
            **self.extra,
        }


def _evaluate(utility: Utility, coalitions: Sequence[frozenset[int]]) -> list[float]:
    many = getattr(utility, "evaluate_many", None)
    if callable(many):
        return [float(u) for u in many(coalitions)]
    return [float(utility(c)) for c in coalitions]


def _members(mask: int, n: int) -> frozenset[int]:
    return frozenset(i for i in range(n) if mask >> i & 1)


def utility_table(n: int, utility: Utility) -> np.ndarray:
    """``U`` of all ``2^n`` coalitions, indexed by bitmask: batched if the utility has ``table()``."""
    table = getattr(utility, "table", None)
    if callable(table):
        return np.asarray(table(), dtype=np.float64)
    return np.array(_evaluate(utility, [_members(m, n) for m in range(1 << n)]), dtype=np.float64)


def exact_shapley(n: int, utility: Utility) -> list[float]:
    """Exact Shapley values; every one of the ``2^n`` coalitions is evaluated once."""
    if n == 0:
        return []
    if n > EXACT_LIMIT:
        raise ConfigError(f"exact Shapley with n={n} needs 2^{n} evaluations; use valuation rule 'gtg'")
    return shapley_from_table(utility_table(n, utility), n)


def _check_sampling(max_perms: int, convergence: float) -> None:
    if max_perms < 1 or not convergence > 0:
        raise ConfigError("valuation: need max_perms >= 1 and convergence > 0")


def _gtg(
    n: int, utility: Utility, seed: int, eps: float, eps_round: float | None, max_perms: int, convergence: float, min_cycles: int
) -> tuple[list[float], int, str]:
    if not eps >= 0 or (eps_round is not None and not eps_round >= 0) or min_cycles < 1:
        raise ConfigError("gtg: need eps >= 0, eps_round >= 0, min_cycles >= 1")
    _check_sampling(max_perms, convergence)
    if n == 0:
        return [], 0, "complete"
    v_empty, v_all = _evaluate(utility, [frozenset(), frozenset(range(n))])
    phi = np.zeros(n, dtype=np.float64)
    if abs(v_all - v_empty) <= (eps if eps_round is None else eps_round):  # between-round truncation
        return phi.tolist(), 0, "between_round_truncation"
    rng = np.random.default_rng(seed % 2**64)  # any int seed, negative included
    t, cycles, previous = 0, 0, phi.copy()
    while True:
        for first in range(n):  # guided sampling: each player leads one permutation per cycle
            rest = [i for i in range(n) if i != first]
            perm = [first] + [rest[j] for j in rng.permutation(n - 1)]
            t += 1
            v_prev, prefix = v_empty, frozenset[int]()
            for player in perm:
                prefix = prefix | {player}
                v_now = v_prev if abs(v_all - v_prev) < eps else float(utility(prefix))  # within-round truncation
                phi[player] += (v_now - v_prev - phi[player]) / t
                v_prev = v_now
            if t >= max_perms:
                return phi.tolist(), t, "max_perms"
        cycles += 1
        scale = float(np.abs(phi).sum())
        change = float(np.abs(phi - previous).sum()) / scale if scale > 0 else 0.0
        if cycles >= min_cycles and change < convergence:
            return phi.tolist(), t, "converged"
        previous = phi.copy()


def gtg_shapley(
    n: int,
    utility: Utility,
    seed: int = 0,
    *,
    eps: float = 0.005,
    eps_round: float | None = None,
    max_perms: int = 500,
    convergence: float = 0.03,
    min_cycles: int = 2,
) -> list[float]:
    """GTG-Shapley estimate (Liu et al. 2022, Algorithm 1); ``eps_round`` defaults to ``eps``."""
    return _gtg(n, utility, seed, eps, eps_round, max_perms, convergence, min_cycles)[0]


def _tmc(
    n: int, utility: Utility, seed: int, tolerance: float, patience: int, max_perms: int, convergence: float, window: int
) -> tuple[list[float], int, str]:
    if not tolerance >= 0 or patience < 1 or window < 1:
        raise ConfigError("tmc: need tolerance >= 0, patience >= 1, window >= 1")
    _check_sampling(max_perms, convergence)
    if n == 0:
        return [], 0, "complete"
    v_empty, v_all = _evaluate(utility, [frozenset(), frozenset(range(n))])
    threshold = tolerance * abs(v_all - v_empty)
    rng = np.random.default_rng(seed % 2**64)
    phi = np.zeros(n, dtype=np.float64)
    history: list[np.ndarray] = []
    for t in range(1, max_perms + 1):
        v_prev, prefix, close = v_empty, frozenset[int](), 0
        for player in (int(p) for p in rng.permutation(n)):
            prefix = prefix | {player}
            if close >= patience:  # truncated: the rest of the permutation adds nothing
                v_now = v_prev
            else:
                v_now = float(utility(prefix))
                close = close + 1 if abs(v_all - v_now) <= threshold else 0
            phi[player] += (v_now - v_prev - phi[player]) / t
            v_prev = v_now
        history.append(phi.copy())
        if len(history) > window:
            old = history.pop(0)
            scale = float(np.abs(phi).mean())
            if scale > 0 and float(np.abs(phi - old).mean()) / scale < convergence:
                return phi.tolist(), t, "converged"
    return phi.tolist(), max_perms, "max_perms"


def tmc_shapley(
    n: int,
    utility: Utility,
    seed: int = 0,
    *,
    tolerance: float = 0.01,
    patience: int = 1,
    max_perms: int = 500,
    convergence: float = 0.05,
    window: int = 50,
) -> list[float]:
    """Truncated Monte-Carlo Shapley (Ghorbani & Zou 2019)."""
    return _tmc(n, utility, seed, tolerance, patience, max_perms, convergence, window)[0]


def loo(n: int, utility: Utility) -> list[float]:
    """Leave-one-out values ``U(N) - U(N without i)``."""
    everyone = frozenset(range(n))
    u = _evaluate(utility, [everyone] + [everyone - {i} for i in range(n)])
    return [u[0] - u[1 + i] for i in range(n)]


VALUATIONS: dict[str, Callable[..., list[float]]] = {"exact": exact_shapley, "gtg": gtg_shapley, "tmc": tmc_shapley, "loo": loo}


def predicted_exact_seconds(
    arch: str, n: int, n_val: int, hidden: int = _MLP_COST_WIDTH, *, metric: str = "accuracy", utility: str = "fedavg",
    macs: tuple[int, int] = (0, 0),
) -> float:
    """The cost model behind ``auto``: seconds the batched exact method takes on the reference machine.

    ``macs``: the model's multiply-adds per sample, (in convolutions, in the other layers), for the models the
    generic vmap pass values (declared layers, the CNN, any regression model); (0, 0): the older fixed constants."""
    if metric not in ("accuracy", "cross_entropy", "gce", "r2"):
        raise ConfigError(f"unknown utility metric {metric!r}: use accuracy, cross_entropy, gce or r2")
    if any(macs) and (arch in ("layers", "cnn") or metric == "r2"):  # the generic vmap pass, whatever the metric
        conv, dense = macs
        per = (LAYERS_COST_PER_MAC_CONV_NET if conv else LAYERS_COST_PER_MAC_DENSE_NET) * (conv + dense) + LAYERS_COST_FIXED
        return per * (1 << n) * n_val
    if metric == "gce" and arch == "logreg" and utility == "fedavg":  # the cross-entropy table's own sums
        return EXACT_COST_PER_COALITION_SAMPLE_CE["logreg"] * (1 << n) * n_val
    if metric == "gce":  # every coalition's logits, no shortcut: the per-player sum (logreg) or a vmap pass
        if arch == "logreg":
            return GCE_LOGREG_COST_PER_COALITION_SAMPLE_PLAYER * (1 << n) * n_val * max(n, 1)
        return EXACT_COST_PER_COALITION_SAMPLE["cnn"] * (1 << n) * n_val
    costs = EXACT_COST_PER_COALITION_SAMPLE if metric == "accuracy" else EXACT_COST_PER_COALITION_SAMPLE_CE
    per = costs.get(arch, costs["cnn"])
    if arch == "mlp":
        per = per * hidden / _MLP_COST_WIDTH + _MLP_COST_FIXED
    return per * (1 << n) * n_val


def model_cost(model: ModelSpec, data: DataSchema) -> dict[str, Any]:
    """What the cost model needs to know of a task's model: ``arch``, ``hidden`` and, of a declared one, its ``macs``."""
    if model.arch in ("logreg", "mlp") and not data.regression:  # their own batched paths and constants
        return {"arch": model.arch, "hidden": model.hidden}
    rows = model.summary(data).layers
    conv = sum(row.macs for row, layer in zip(rows, model.layer_list()) if layer.type in ("conv2d", "maxpool2d", "avgpool2d"))
    return {"arch": model.arch, "hidden": model.hidden, "macs": (conv, sum(row.macs for row in rows) - conv)}


def choose_valuation(spec: ValuationSpec, n: int, *, arch: str = "logreg", n_val: int = 269, hidden: int = 64,
                     macs: tuple[int, int] = (0, 0)) -> str:
    """The estimator to run for ``n`` players.

    ``auto``: ``exact`` up to ``spec.exact_max_n`` if it is set, otherwise
    wherever :func:`predicted_exact_seconds` for the spec's ``metric`` fits
    ``spec.time_budget_s`` (and ``n <= EXACT_LIMIT``); ``gtg`` beyond.
    """
    if spec.rule == "auto":
        if spec.exact_max_n is not None:
            return "exact" if n <= min(spec.exact_max_n, EXACT_LIMIT) else "gtg"
        cost = predicted_exact_seconds(arch, n, n_val, hidden, metric=spec.metric, utility=spec.utility, macs=macs)
        fits = n <= EXACT_LIMIT and cost <= spec.time_budget_s
        return "exact" if fits else "gtg"
    if spec.rule not in VALUATIONS:
        raise ConfigError(f"unknown valuation rule {spec.rule!r}: use auto or one of {', '.join(sorted(VALUATIONS))}")
    if spec.rule == "exact" and n > EXACT_LIMIT:
        raise ConfigError(f"valuation 'exact' with {n} trainers is infeasible; use 'gtg' or 'auto'")
    return spec.rule


def _keyword_params(fn: Callable[..., Any]) -> dict[str, Any]:
    return {p.name: p.default for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def _check_params(params: dict[str, Any]) -> None:
    known = set().union(*(_keyword_params(f) for f in VALUATIONS.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"valuation: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def estimate(name: str, n: int, utility: Utility, seed: int, params: dict[str, Any] | None = None) -> Valuation:
    """Run the estimator ``name`` with the ``params`` it accepts; return its values and a record of the run.

    ``params`` come from the task spec, which may name GTG's settings under
    rule ``auto`` even when the round is small enough for ``exact``; so each
    estimator takes the parameters it knows, and a name no estimator knows is
    a :class:`ConfigError` (a typo should not be silently ignored).
    """
    if name not in VALUATIONS:
        raise ConfigError(f"unknown valuation rule {name!r}: use one of {', '.join(sorted(VALUATIONS))}")
    params = dict(params or {})
    _check_params(params)
    used = {k: params.get(k, default) for k, default in _keyword_params(VALUATIONS[name]).items()}
    perms, stop = 0, "complete"
    if name == "exact":
        values = exact_shapley(n, utility)
    elif name == "loo":
        values = loo(n, utility)
    elif name == "gtg":
        values, perms, stop = _gtg(n, utility, seed, **used)
    else:
        values, perms, stop = _tmc(n, utility, seed, **used)
    extra: dict[str, Any] = {}
    twins = getattr(utility, "symmetric_players", None)
    if callable(twins):
        groups = [sorted(int(i) for i in g) for g in twins()]
        values = symmetrize(values, groups)
        extra["symmetric"] = groups
    evaluations = getattr(utility, "evaluations", None)
    return Valuation(name, values, seed, used, perms, stop, evaluations if isinstance(evaluations, int) else None, extra)


def symmetrize(values: Sequence[float], groups: Sequence[Sequence[int]]) -> list[float]:
    """``values`` with each group of interchangeable players given the group's mean (disjoint groups)."""
    out = [float(v) for v in values]
    for group in groups:
        mean = sum(out[i] for i in group) / len(group)
        for i in group:
            out[i] = mean
    return out


def run_valuation(name: str, n: int, utility: Utility, seed: int, params: dict[str, Any] | None = None) -> list[float]:
    """:func:`estimate`'s values only."""
    return estimate(name, n, utility, seed, params).values
