"""The round's valuation step: coalition utility -> estimator -> the record that goes into the receipt.

:func:`value_survivors` builds the coalition utility of
:mod:`aggregator.valuation.utility` over the round's surviving updates -- the
validation accuracy, or minus the mean validation (generalized) cross-entropy, of a
coalition's model, as the task's ``valuation.metric`` says -- picks the
estimator (:func:`aggregator.valuation.estimators.choose_valuation`), runs it with the
round's seed and returns the values with everything a replay needs: method,
seed, utility, metric, every parameter (defaults included), permutations sampled, why it
stopped, how many coalitions were evaluated, and the utilities themselves --
all of them when there are at most :data:`RECORD_LIMIT`, otherwise the
smallest coalitions up to that many plus a SHA-256 digest of the complete
set, so a replay can check all ``2^20`` utilities of an exact round without
the receipt carrying them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from aggregator.valuation.batched import popcounts
from aggregator.valuation.estimators import choose_valuation, estimate, model_cost, predicted_exact_seconds
from aggregator.valuation.utility import CoalitionUtility
from market.spec import TaskSpec

RECORD_LIMIT = 4096  # utilities written into the receipt in full (2^12)


@dataclass(frozen=True)
class RoundValuation:
    method: str
    values: list[float]  # aligned with the survivors
    record: dict[str, Any]
    utilities: dict[str, float]  # ",".join(sorted(addresses)) -> U ("" = empty coalition), at most RECORD_LIMIT
    evaluations: int
    accuracy_before: float  # validation accuracy of the empty coalition's model (the round's input), whatever the metric
    accuracy_after: float  # ... and of all survivors' (their FedAvg)
    utility_before: float | None = None  # U({}) and U(survivors) in the metric's units (= the accuracies for accuracy)
    utility_after: float | None = None


def table_digest(table: np.ndarray) -> str:
    """SHA-256 of a full utility table as little-endian float64 in bitmask order (bit i = i-th survivor)."""
    return hashlib.sha256(np.ascontiguousarray(table, dtype="<f8").tobytes()).hexdigest()


def sampled_digest(evaluated: dict[frozenset[int], float]) -> str:
    """SHA-256 of the canonical JSON ``{hex bitmask: utility}`` of individually evaluated coalitions."""
    body = {format(sum(1 << i for i in c), "x"): float(u) for c, u in evaluated.items()}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _key(survivors: Sequence[str], members: Any) -> str:
    return ",".join(sorted(survivors[i] for i in members))


def _recorded(survivors: Sequence[str], utility: CoalitionUtility) -> tuple[dict[str, float], int, dict[str, str]]:
    n = len(survivors)
    if utility.has_table:
        table = utility.table()
        masks = np.lexsort((np.arange(1 << n), popcounts(n)))[:RECORD_LIMIT]  # by size, then bitmask
        rows = [(frozenset(i for i in range(n) if int(m) >> i & 1), float(table[m])) for m in masks]
        rows.sort(key=lambda cu: (len(cu[0]), sorted(cu[0])))
        return {_key(survivors, c): u for c, u in rows}, 1 << n, {"format": "table-f64le", "sha256": table_digest(table)}
    evaluated = utility.evaluated
    rows = sorted(evaluated.items(), key=lambda cu: (len(cu[0]), sorted(cu[0])))[:RECORD_LIMIT]
    return {_key(survivors, c): u for c, u in rows}, len(evaluated), {"format": "json-hexmask", "sha256": sampled_digest(evaluated)}


def value_survivors(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    survivors: Sequence[str],
    deltas: Sequence[Tensor],
    weights: Sequence[float],
    x_val: Tensor,
    y_val: Tensor,
    seed: int,
) -> RoundValuation:
    """Value each survivor's update (at least one) by the task's valuation rule."""
    n = len(survivors)
    n_val = int(y_val.numel())
    metric = spec.valuation.metric
    cost = model_cost(spec.model, spec.data)
    name = choose_valuation(spec.valuation, n, n_val=n_val, **cost)
    utility = CoalitionUtility(spec, global_state, deltas, weights, x_val, y_val, utility=spec.valuation.utility, metric=metric)
    result = estimate(name, n, utility, seed, dict(spec.valuation.params))
    before, after = utility(frozenset()), utility(frozenset(range(n)))
    acc_before, acc_after = utility.accuracy(frozenset()), utility.accuracy(frozenset(range(n)))
    utilities, total, digest = _recorded(survivors, utility)
    record = {
        **result.to_dict(),
        "evaluations": utility.evaluations,
        # U(S) = the metric (validation accuracy, or minus the mean validation (generalized) cross-entropy)
        # of the model S's updates give (utility fedavg: their FedAvg; partial: their part of the round's update)
        "utility": spec.valuation.utility,
        "metric": metric,
        "utility_before": before,  # U({}) and U(survivors): the values sum to their difference (efficiency)
        "utility_after": after,
        "rule": spec.valuation.rule,
        "predicted_exact_s": predicted_exact_seconds(n=n, n_val=n_val, metric=metric, utility=spec.valuation.utility, **cost),
        "utilities_total": total,
        "utilities_recorded": len(utilities),
        "utilities_digest": digest,
    }
    return RoundValuation(name, result.values, record, utilities, utility.evaluations, acc_before, acc_after, before, after)
