"""The round a proof task runs, as ``zk/round.circom`` proves it (pure: no chain, no store).

Multi-Krum over the committed sketches of the valid updates, the model by ccdrop over the full updates, cyclic-
permutation Shapley over integer utilities (equal FedAvg weights), largest-remainder basis points; the circuit's inputs
come back as :class:`market.receipt.ProofInputs` and the statement as ``RoundOutcome.decision``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from torch import Tensor

from aggregator.fedavg import next_state
from aggregator.outcome import RoundOutcome, payout_record, published_accuracy
from aggregator.robust import effective_f
from aggregator.robust_rule import robust_update, run_rule
from aggregator.validate import Published, validate_all
from aggregator.valuation.utility import CoalitionUtility
from market.payout import contribution_shares, cumulative_shares, cumulative_values, to_basis_points
from market.receipt import ProofInputs
from market.spec import TaskSpec
from market.zk import statement as zs

#: The rule a proof task's model comes from, run over every valid full update. The circuit's outlier rule sees
#: each update only through its committed sketch, a projection public before training, so an update can hide any
#: component in the projection's null space (the same sketch as an honest update; tests/attacks/test_null_space.py).
#: The round's model is this rule's aggregate of the valid updates (the unproven default rule: centered clipping
#: bounds what any one update does to it, and what it flags by evidence is dropped), so the proven round's model is
#: the one an unproven round of the default rule would publish, whatever the sketches show. The pay is not changed by it: coalitions are valued by the
#: FedAvg of their members, as the circuit's utilities say, so an update that hurts the coalitions it joins has a
#: negative value and is paid nothing (leaving a flagged update out of the coalitions instead measurably cost honest
#: non-iid trainers their pay: flagged in 16 of 30 late rounds). The model is not bound by the proof: a quorum of
#: drawn members recomputes it, and `market verify --validation` replays it.
FULL_RULE = "ccdrop"


def full_update_check(spec: TaskSpec, deltas: Sequence[Tensor]) -> tuple[Tensor | None, tuple[int, ...], dict[str, list[float]]]:
    """:data:`FULL_RULE` over ``deltas``, run as an unproven round runs its rule (:mod:`aggregator.robust_rule`, the
    task's ``f``): the model update, the indices it flags, and its per-update treatment (e.g. each clipping factor)."""
    decision, _ = run_rule(spec.robust.model_copy(update={"rule": FULL_RULE, "params": {}}), deltas)
    kept = [deltas[i] for i in decision.selected]
    update = robust_update(decision, kept, [1.0] * len(kept))
    details = {k: [float(x) for x in v] for k, v in decision.details.items()}
    return update, tuple(i for i in range(len(deltas)) if i not in decision.selected), details


def provable_round(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    submissions: Sequence[tuple[str, bytes]],
    x_val: Tensor,
    y_val: Tensor,
    seed: int,
    digest: bytes,
    binders: Mapping[str, int],
    sketch_of: Mapping[str, Sequence[int]],
    earlier: Sequence[Published] = (),
    order: Mapping[str, int] | None = None,
) -> RoundOutcome:
    """The round ``zk/round.circom`` proves: Multi-Krum over the sketches of the valid updates
    (slots in the given order, join order), the model by :data:`FULL_RULE` over the valid full updates,
    coalition models by the FedAvg of their members, cyclic-permutation Shapley
    over integer utilities (1/4096 accuracy), largest-remainder basis points."""

    addresses = tuple(a for a, _ in submissions)
    t0 = time.perf_counter()
    valid = validate_all(spec, global_state, submissions, earlier, order)
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
    update, flagged_at, details = full_update_check(spec, list(valid.deltas))
    flagged = tuple(valid.addresses[j] for j in flagged_at)  # left out of the model (not of the coalitions: FULL_RULE)
    weights = [1.0] * len(survivors)  # equal weights: a claimed sample count decides nothing
    new_state = next_state(global_state, update)
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
    published = published_accuracy(spec, new_state, x_val, y_val)
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
        # the model: FULL_RULE's aggregate of the valid full updates (what it flags is left out of the model only)
        "update": FULL_RULE,
        "full_rule_flagged": list(flagged),
        "treatment": {a: {"outlier": a in outliers, "flagged_by_full_rule": a in flagged,
                          **{k: v[slot[a]] for k, v in details.items()}} for a in valid.addresses},
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
        copies=tuple(sorted(valid.copies)),
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
        accuracy_model=published,
        timings={"aggregate": t1 - t0, "valuation": t2 - t1},
        valuation_record={"method": "cyclic-shapley", "permutation": list(perm), "utility_scale": zs.UTIL_SCALE},
        cumulative_values=cumulative,
        cumulative_shares=cumulative_shares(cumulative),
        payout=payout_record(spec, "cyclic-shapley"),
        proof=proof,
        decision=decision,
    )
