"""One aggregation round, as a pure function: submissions in, new model and payout out.

The aggregator's step 3 of DESIGN.md ("One round, end to end"): validate
every update (rejections carry a reason), run the task's robust rule over the
valid ones (Multi-Krum, Blanchard et al. 2017), FedAvg the survivors weighted
by samples (McMahan et al. 2017), value each survivor by Shapley value of
the validation-accuracy utility (exact, or GTG-Shapley of Liu et al. 2022),
and turn the values into basis points summing to 10,000.  Everything that
goes into the round receipt comes back in :class:`RoundOutcome`; the only
non-reproducible field is ``timings`` (seconds).

Conventions for small rounds: the configured ``f`` is lowered to
:func:`aggregator.robust.effective_f` (0 = no outlier removal, rule ``mean``)
so a round with few valid updates still completes; with no valid update at
all the global model is unchanged and every trainer gets 0 bps (the contract
refunds the pool).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from aggregator.aggregate import apply_delta, fedavg
from aggregator.payout import contribution_shares, to_basis_points
from aggregator.robust import Mean, RobustDecision, RobustRule, effective_f, get_rule
from aggregator.utility import CoalitionUtility
from aggregator.validate import validate_update
from aggregator.valuation import choose_valuation, run_valuation
from market.spec import TaskSpec
from market.tensors import flatten


@dataclass(frozen=True)
class RoundOutcome:
    """Everything a round decided; ``to_dict()`` is the JSON-ready part (all but ``new_state``)."""

    new_state: "OrderedDict[str, Tensor]" = field(repr=False)
    addresses: tuple[str, ...]  # submission order; ``bps`` is aligned with it
    samples: dict[str, int]  # valid submissions only
    rejected: dict[str, str]  # address -> reason
    outliers: tuple[str, ...]
    survivors: tuple[str, ...]
    robust: dict[str, Any]  # rule, applied rule, f, f_effective, scores per valid address
    valuation: str
    seed: int
    contributions: dict[str, float]  # Shapley value (accuracy points); 0 if not a survivor
    shares: dict[str, float]
    bps: tuple[int, ...]
    utilities: dict[str, float]  # ",".join(sorted(addresses)) -> U; "" is the empty coalition
    evaluations: int
    accuracy_before: float | None  # U({}) on the validation set (None if nothing was valued)
    accuracy_after: float | None  # U(survivors)
    timings: dict[str, float]  # seconds spent in 'aggregate' and 'valuation'

    @property
    def bps_by_address(self) -> dict[str, int]:
        return dict(zip(self.addresses, self.bps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "addresses": list(self.addresses),
            "samples": dict(self.samples),
            "rejected": dict(self.rejected),
            "outliers": list(self.outliers),
            "survivors": list(self.survivors),
            "robust": dict(self.robust),
            "valuation": self.valuation,
            "seed": self.seed,
            "contributions": dict(self.contributions),
            "shares": dict(self.shares),
            "bps": list(self.bps),
            "utilities": dict(self.utilities),
            "evaluations": self.evaluations,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class _Valid:
    addresses: list[str]
    deltas: list[Tensor]  # flat float32, names sorted
    samples: dict[str, int]
    rejected: dict[str, str]


def _validate_all(spec: TaskSpec, global_state: dict[str, Tensor], submissions: Sequence[tuple[str, bytes]]) -> _Valid:
    out = _Valid([], [], {}, {})
    for address, blob in submissions:
        delta, count, reason = validate_update(blob, global_state, spec.validation.max_update_norm)
        if delta is None or count is None:
            out.rejected[address] = reason or "invalid update"
            continue
        out.addresses.append(address)
        out.deltas.append(flatten(delta))
        out.samples[address] = count
    return out


def _robust_rule(spec: TaskSpec, n: int) -> tuple[RobustRule, int]:
    f_eff = effective_f(n, spec.robust.f) if spec.robust.rule != "mean" else 0
    params = dict(spec.robust.params)
    if f_eff == 0:
        get_rule(spec.robust.rule, spec.robust.f, **params)  # still reject an unknown rule or bad params
        return Mean(), 0
    if isinstance(params.get("m"), int):
        params["m"] = min(params["m"], n - f_eff)  # a smaller round cannot keep more than n - f
    return get_rule(spec.robust.rule, f_eff, **params), f_eff


def _select(spec: TaskSpec, valid: _Valid) -> tuple[RobustDecision, dict[str, Any]]:
    if valid.deltas:
        rule, f_eff = _robust_rule(spec, len(valid.deltas))
        decision = rule(torch.stack(valid.deltas))
    else:
        f_eff, decision = 0, RobustDecision("mean", (), (), 0)
    record = {
        "rule": spec.robust.rule,
        "applied": decision.rule,
        "f": spec.robust.f,
        "f_effective": f_eff,
        "scores": dict(zip(valid.addresses, decision.scores)),
    }
    return decision, record


def aggregate_round(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    submissions: Sequence[tuple[str, bytes]],
    x_val: Tensor,
    y_val: Tensor,
    seed: int | None = None,
) -> RoundOutcome:
    """Validate, robust-aggregate, value and pay out one round's ``(address, blob)`` submissions.

    ``seed`` drives the valuation's sampling (default ``spec.valuation.seed``;
    a caller running many rounds typically passes ``spec.valuation.seed + round``).
    """
    seed = spec.valuation.seed if seed is None else seed
    addresses = tuple(a for a, _ in submissions)
    if len(set(addresses)) != len(addresses):
        raise ValueError("submissions must come from distinct addresses (the contract takes one per trainer)")
    t0 = time.perf_counter()
    valid = _validate_all(spec, global_state, submissions)
    decision, robust = _select(spec, valid)
    survivors = tuple(valid.addresses[i] for i in decision.selected)
    kept = [valid.deltas[i] for i in decision.selected]
    weights = [float(valid.samples[a]) for a in survivors]
    if kept:
        new_state = apply_delta(global_state, fedavg(torch.stack(kept), weights))
    else:
        new_state = OrderedDict((k, v.detach().clone().float()) for k, v in sorted(global_state.items()))
    t1 = time.perf_counter()

    name = choose_valuation(spec.valuation, len(survivors))
    values: list[float] = []
    utilities: dict[str, float] = {}
    evaluations = 0
    before: float | None = None
    after: float | None = None
    if survivors:
        utility = CoalitionUtility(spec, global_state, kept, weights, x_val, y_val)
        values = run_valuation(name, len(survivors), utility, seed, dict(spec.valuation.params))
        before, after = utility(frozenset()), utility(frozenset(range(len(survivors))))
        by_size = sorted(utility.evaluated.items(), key=lambda cu: (len(cu[0]), sorted(cu[0])))
        utilities = {",".join(sorted(survivors[i] for i in c)): u for c, u in by_size}
        evaluations = utility.evaluations
    t2 = time.perf_counter()

    value_of = dict(zip(survivors, values))
    flat_values = [value_of.get(a, 0.0) for a in addresses]
    eligible = [a in value_of for a in addresses]
    return RoundOutcome(
        new_state=new_state,
        addresses=addresses,
        samples=valid.samples,
        rejected=valid.rejected,
        outliers=tuple(a for a in valid.addresses if a not in survivors),
        survivors=survivors,
        robust=robust,
        valuation=name,
        seed=seed,
        contributions=dict(zip(addresses, flat_values)),
        shares=dict(zip(addresses, contribution_shares(flat_values, eligible))),
        bps=tuple(to_basis_points(flat_values, eligible)),
        utilities=utilities,
        evaluations=evaluations,
        accuracy_before=before,
        accuracy_after=after,
        timings={"aggregate": t1 - t0, "valuation": t2 - t1},
    )
