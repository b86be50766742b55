"""One aggregation round, as a pure function: submissions in, new model and payout out.

The aggregator's step 3 of DESIGN.md ("One round, end to end"): validate
every update (rejections carry a reason), run the task's robust rule over the
valid ones (:mod:`aggregator.robust`: Multi-Krum, Krum, coordinate-wise median
or trimmed mean, geometric median, centered clipping, optionally after NNM or
clipping), apply the rule's own aggregate or, for Multi-Krum and mean, FedAvg
the survivors weighted by samples (McMahan et al. 2017), value each survivor by Shapley value of
the validation-accuracy utility (:mod:`aggregator.valuation`: exact, GTG,
TMC or leave-one-out, chosen by the spec), and turn the values (this round's,
or with ``payout = "cumulative"`` each trainer's sum over the rounds so far)
into basis points summing to 10,000.  Everything that
goes into the round receipt comes back in :class:`RoundOutcome`; the only
non-reproducible field is ``timings`` (seconds).

Conventions for small rounds: the configured ``f`` is lowered to
:func:`aggregator.robust.effective_f` for the spec's rule (0 = no outlier
removal, rule ``mean``) so a round with few valid updates still completes; with no valid update at
all the global model is unchanged and every trainer gets 0 bps (the contract
refunds the pool).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from aggregator.fedavg import apply_delta, fedavg
from aggregator.robust import Mean, RobustDecision, RobustRule, effective_f, get_rule, max_f
from aggregator.validate import validate_update
from aggregator.valuation import value_survivors
from aggregator.valuation.estimators import choose_valuation
from aggregator.valuation.utility import CoalitionUtility
from market.payout import contribution_shares, cumulative_shares, cumulative_values, to_basis_points
from market.receipt import ProofInputs
from market.spec import TaskSpec
from market.tensors import flatten
from market.zk import statement as zs


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
    # the valuation run: method, seed, every parameter, permutations, stop reason, utilities digest
    valuation_record: dict[str, Any] = field(default_factory=dict)
    # sum of each trainer's per-round values so far (earlier rounds + this one), and its share of the total
    cumulative_values: dict[str, float] = field(default_factory=dict)
    cumulative_shares: dict[str, float] = field(default_factory=dict)
    # proof tasks: the circuit's inputs (valid addresses in slot order, f, sketches, binders, base
    # permutation, outlier slots, integer utilities) -- see market.zk.statement
    proof: ProofInputs | None = None
    # proof tasks: the circuit's statement, computed once here and proven by aggregator.proof
    decision: zs.Decision | None = field(default=None, repr=False, compare=False)

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
            "valuation_record": dict(self.valuation_record),
            "cumulative_values": dict(self.cumulative_values),
            "cumulative_shares": dict(self.cumulative_shares),
            "proof": self.proof.model_dump() if self.proof is not None else None,
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
    """The rule to run over ``n`` valid updates and the ``f`` it runs with.

    ``f`` is lowered to what the rule supports with ``n`` inputs; if that leaves
    0 while the spec asked for ``f > 0`` (or the rule cannot run at all) the
    round runs plain ``mean``.  A spec with ``f = 0`` runs its rule with ``f = 0``.
    """
    name, f = spec.robust.rule, spec.robust.f
    params = dict(spec.robust.params)
    get_rule(name, f, **params)  # reject an unknown rule or bad params even when the round falls back to mean
    if name == "mean":
        return Mean(), 0
    f_eff = effective_f(n, f, name)
    if f_eff == 0 and (f > 0 or max_f(name, n) < 0):
        return Mean(), 0
    if isinstance(params.get("m"), int):
        params["m"] = min(params["m"], n - f_eff)  # a smaller round cannot keep more than n - f
    return get_rule(name, f_eff, **params), f_eff


def _select(spec: TaskSpec, valid: _Valid) -> tuple[RobustDecision, dict[str, Any]]:
    if valid.deltas:
        rule, f_eff = _robust_rule(spec, len(valid.deltas))
        decision = rule(torch.stack(valid.deltas).to(torch.float64))
    else:
        f_eff, decision = 0, RobustDecision("mean", (), (), 0)
    kept = set(decision.selected)
    record = {
        "rule": spec.robust.rule,
        "applied": decision.rule,
        "f": spec.robust.f,
        "f_effective": f_eff,
        "scores": dict(zip(valid.addresses, decision.scores)),
        # which vector became the model update: the survivors' sample-weighted FedAvg, or the rule's own aggregate
        "update": "fedavg" if decision.reweight else "rule",
        "treatment": {
            a: {"outlier": i not in kept, **{k: float(v[i]) for k, v in decision.details.items()}}
            for i, a in enumerate(valid.addresses)
        },
    }
    return decision, record


def _robust_update(decision: RobustDecision, kept: list[Tensor], weights: list[float]) -> Tensor | None:
    """The flat model update: the rule's aggregate, or FedAvg of the survivors when the rule allows it."""
    if not decision.reweight and decision.aggregate is not None:
        return decision.aggregate.to(torch.float64)
    return fedavg(torch.stack(kept), weights) if kept else None


def _next_state(global_state: dict[str, Tensor], update: Tensor | None) -> "OrderedDict[str, Tensor]":
    """The global model plus the flat ``update``; unchanged (a float32 copy) when there is none."""
    if update is not None:
        return apply_delta(global_state, update)
    return OrderedDict((k, v.detach().clone().float()) for k, v in sorted(global_state.items()))


def aggregate_round(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    submissions: Sequence[tuple[str, bytes]],
    x_val: Tensor,
    y_val: Tensor,
    seed: int | None = None,
    prior_values: Mapping[str, float] | None = None,
    proof_seed: bytes | None = None,
    binders: Mapping[str, int] | None = None,
    sketches: Mapping[str, Sequence[int]] | None = None,
) -> RoundOutcome:
    """Validate, robust-aggregate, value and pay out one round's ``(address, blob)`` submissions.

    A task with ``proof.system != "none"`` runs the provable round instead
    (:func:`_provable_round`): ``proof_seed`` is the round's final submissions digest,
    ``binders`` and ``sketches`` each submitter's commitment binder and update sketch.

    ``seed`` drives the valuation's sampling (default ``spec.valuation.seed``;
    a caller running many rounds typically passes ``spec.valuation.seed + round``).
    ``prior_values`` are the trainers' cumulative values before this round (the
    previous round's ``cumulative_values``; ``{}`` or None for the first round).
    With ``spec.valuation.payout == "cumulative"`` they decide the basis points.
    """
    seed = spec.valuation.seed if seed is None else seed
    addresses = tuple(a for a, _ in submissions)
    if len(set(addresses)) != len(addresses):
        raise ValueError("submissions must come from distinct addresses (the contract takes one per trainer)")
    if spec.proof.system != "none":
        if proof_seed is None or binders is None or sketches is None:
            raise ValueError("a proof task's round needs the submissions digest and each submitter's binder and sketch")
        return _provable_round(spec, global_state, submissions, x_val, y_val, seed, proof_seed, binders, sketches)
    t0 = time.perf_counter()
    valid = _validate_all(spec, global_state, submissions)
    decision, robust = _select(spec, valid)
    survivors = tuple(valid.addresses[i] for i in decision.selected)
    kept = [valid.deltas[i] for i in decision.selected]
    weights = [float(valid.samples[a]) for a in survivors]
    new_state = _next_state(global_state, _robust_update(decision, kept, weights))
    t1 = time.perf_counter()

    name = choose_valuation(spec.valuation, len(survivors), arch=spec.model.arch, n_val=int(y_val.numel()), hidden=spec.model.hidden)
    values: list[float] = []
    utilities: dict[str, float] = {}
    evaluations = 0
    before: float | None = None
    after: float | None = None
    record: dict[str, Any] = {}
    if survivors:
        valued = value_survivors(spec, global_state, survivors, kept, weights, x_val, y_val, seed)
        name, values, utilities, record = valued.method, valued.values, valued.utilities, valued.record
        evaluations, before, after = valued.evaluations, valued.accuracy_before, valued.accuracy_after
    t2 = time.perf_counter()

    value_of = dict(zip(survivors, values))
    flat_values = [value_of.get(a, 0.0) for a in addresses]
    eligible = [a in value_of for a in addresses]
    cumulative = cumulative_values(prior_values or {}, dict(zip(addresses, flat_values)))
    paid_on = [cumulative[a] for a in addresses] if spec.valuation.payout == "cumulative" else flat_values
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
        bps=tuple(to_basis_points(paid_on, eligible)),
        utilities=utilities,
        evaluations=evaluations,
        accuracy_before=before,
        accuracy_after=after,
        timings={"aggregate": t1 - t0, "valuation": t2 - t1},
        valuation_record=record,
        cumulative_values=cumulative,
        cumulative_shares=cumulative_shares(cumulative),
    )


def _provable_round(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    submissions: Sequence[tuple[str, bytes]],
    x_val: Tensor,
    y_val: Tensor,
    seed: int,
    digest: bytes,
    binders: Mapping[str, int],
    sketch_of: Mapping[str, Sequence[int]],
) -> RoundOutcome:
    """The round ``zk/round.circom`` proves: Multi-Krum over the sketches of the valid updates
    (slots in the given order, join order), FedAvg of the survivors, cyclic-permutation Shapley
    over integer utilities (1/4096 accuracy), largest-remainder basis points."""

    addresses = tuple(a for a, _ in submissions)
    t0 = time.perf_counter()
    valid = _validate_all(spec, global_state, submissions)
    n = len(valid.addresses)
    f_eff = effective_f(n, spec.robust.f, "multikrum") if n else 0
    sketches = [list(sketch_of[a]) for a in valid.addresses]
    perm = zs.permutation(digest, n) if n else []
    survivors: tuple[str, ...] = ()
    decision = None
    if n:
        decision = zs.decide(sketches, [binders[a] for a in valid.addresses], f_eff, perm)
        survivors = tuple(valid.addresses[i] for i in decision.survivors)
    slot = {a: i for i, a in enumerate(valid.addresses)}
    kept = [valid.deltas[slot[a]] for a in survivors]
    weights = [float(valid.samples[a]) for a in survivors]
    new_state = _next_state(global_state, fedavg(torch.stack(kept), weights) if kept else None)
    t1 = time.perf_counter()

    util: list[int] = []
    values: list[int] = [0] * n
    utilities: dict[str, float] = {}
    before = after = None
    evaluations = 0
    if decision is not None and survivors:
        oracle = CoalitionUtility(spec, global_state, kept, weights, x_val, y_val, utility=spec.valuation.utility)
        surv_index = {slot[a]: j for j, a in enumerate(survivors)}
        keys = [frozenset(surv_index[i] for i in c if i in surv_index) for c in decision.coalitions]
        acc = oracle.evaluate_many(keys)
        util = [zs.quantize_utility(a) for a in acc]
        evaluations = oracle.evaluations
        values = zs.slot_values(n, perm, util)
        before, after = util[0] / zs.UTIL_SCALE, util[1] / zs.UTIL_SCALE
        for key, a in zip(keys, acc):
            utilities[",".join(sorted(survivors[j] for j in key))] = a
    elif decision is not None:
        util = [0] * len(decision.coalitions)
    t2 = time.perf_counter()

    value_of = {a: values[slot[a]] for a in valid.addresses}
    eligible = [a in survivors for a in addresses]
    # rejected submitters are ineligible and the eligible keep their order, so this equals the circuit's
    # split over the valid slots (market.zk.statement.settle asserts that when proving)
    bps = to_basis_points([value_of.get(a, 0) for a in addresses], eligible)
    flat_values = [value_of.get(a, 0) / zs.UTIL_SCALE for a in addresses]
    outliers = tuple(a for a in valid.addresses if a not in survivors)
    cumulative = cumulative_values({}, dict(zip(addresses, flat_values)))
    robust = {
        "rule": "multikrum",
        "applied": "multikrum-sketch" if f_eff else "mean",
        "f": spec.robust.f,
        "f_effective": f_eff,
        "scores": {a: float(decision.scores[i]) for i, a in enumerate(valid.addresses)} if decision else {},
        "update": "fedavg",
        "treatment": {a: {"outlier": a in outliers} for a in valid.addresses},
    }
    proof = ProofInputs(
        system=spec.proof.system,
        slots=list(valid.addresses),
        n=n,
        k=spec.proof.sketch_k,
        f=f_eff,
        sketches=[list(s) for s in sketches],
        binders=[str(binders[a]) for a in valid.addresses],
        perm=list(perm),
        outlier_slots=list(decision.outliers) if decision else [],
        utilities=util,
        values=list(values),
    )
    return RoundOutcome(
        new_state=new_state,
        addresses=addresses,
        samples=valid.samples,
        rejected=valid.rejected,
        outliers=outliers,
        survivors=survivors,
        robust=robust,
        valuation="cyclic-shapley",
        seed=seed,
        contributions=dict(zip(addresses, flat_values)),
        shares=dict(zip(addresses, contribution_shares(flat_values, eligible))),
        bps=tuple(bps),
        utilities=utilities,
        evaluations=evaluations,
        accuracy_before=before,
        accuracy_after=after,
        timings={"aggregate": t1 - t0, "valuation": t2 - t1},
        valuation_record={"method": "cyclic-shapley", "permutation": list(perm), "utility_scale": zs.UTIL_SCALE},
        cumulative_values=cumulative,
        cumulative_shares=cumulative_shares(cumulative),
        proof=proof,
        decision=decision,
    )
