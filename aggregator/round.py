"""One aggregation round, as a pure function: submissions in, new model and payout out.

The aggregator's step 3 of DESIGN.md ("One round, end to end"): validate
every update (rejections carry a reason), run the task's robust rule over the
valid ones (:mod:`aggregator.robust`: Multi-Krum, Krum, coordinate-wise median
or trimmed mean, geometric median, centered clipping, optionally after NNM or
clipping), apply the rule's own aggregate or, for Multi-Krum and mean, FedAvg
the survivors (McMahan et al. 2017) with equal weights -- a sample count is
the trainer's own claim, so it decides nothing -- value each survivor by Shapley value of
the validation utility (minus the generalized cross-entropy by default, cross-entropy or accuracy;
:mod:`aggregator.valuation`: exact, GTG, TMC or leave-one-out, chosen by the
spec), and turn the values (with ``payout = "cumulative"``, the default, each
trainer's running sum over the rounds so far; with ``"round"`` this round's)
into basis points summing to 10,000.  Everything that
goes into the round receipt comes back in :class:`aggregator.outcome.RoundOutcome`; the only
non-reproducible field is ``timings`` (seconds).  Proof tasks run :func:`aggregator.provable.provable_round`.

Conventions for small rounds: the configured ``f`` is lowered to
:func:`aggregator.robust.effective_f` for the spec's rule (0 = no outlier
removal, rule ``mean``) so a round with few valid updates still completes; with no valid update at
all the global model is unchanged and every trainer gets 0 bps (the contract
refunds the pool).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from torch import Tensor

from aggregator.fedavg import next_state
from aggregator.outcome import RoundOutcome, payout_record, published_accuracy
from aggregator.provable import provable_round
from aggregator.robust import RobustDecision
from aggregator.robust.base import EVIDENCE_ALIGNMENT, EVIDENCE_OPPOSITION, EVIDENCE_RATIO
from aggregator.robust_rule import robust_update, run_rule
from aggregator.validate import Published, ValidUpdates, validate_all
from aggregator.valuation import value_survivors
from aggregator.valuation.estimators import choose_valuation, model_cost
from market.payout import contribution_shares, cumulative_shares, cumulative_values, to_basis_points
from market.spec import TaskSpec


def _select(spec: TaskSpec, valid: ValidUpdates) -> tuple[RobustDecision, dict[str, Any]]:
    decision, f_eff = run_rule(spec.robust, valid.deltas)
    kept = set(decision.selected)
    record = {
        "rule": spec.robust.rule,
        "applied": decision.rule,
        "f": spec.robust.f,
        "f_effective": f_eff,
        "scores": dict(zip(valid.addresses, decision.scores)),
        "weights": "equal",  # FedAvg and coalition weights; claimed sample counts are recorded, not used
        # what makes an outlier (aggregator.robust.base.far_outliers); ccdrop's treatment has each update's
        # distance and cosine; krum and multikrum select n - f by quota
        "evidence": {"distance_over_median": spec.robust.params.get("drop", EVIDENCE_RATIO),
                     "cosine_below": EVIDENCE_ALIGNMENT, "or_cosine_below": EVIDENCE_OPPOSITION},
        # which vector became the model update: the survivors' equal-weight FedAvg, or the rule's own aggregate
        "update": "fedavg" if decision.reweight else "rule",
        "treatment": {
            a: {"outlier": i not in kept, **{k: float(v[i]) for k, v in decision.details.items()}}
            for i, a in enumerate(valid.addresses)
        },
    }
    return decision, record


def pay_split(spec: TaskSpec, addresses: Sequence[str], paid: Collection[str], contributions: Mapping[str, float],
              prior: Mapping[str, float]) -> tuple[dict[str, float], list[int]]:
    """An unproven round's pay from its values: each trainer's cumulative value (``prior`` plus this round's
    ``contributions``, which name every address) and the basis points of ``addresses``, the ``paid`` ones (the
    survivors) split by their cumulative value (``payout = "cumulative"``) or this round's (``"round"``)."""
    cumulative = cumulative_values(prior, contributions)
    on = cumulative if spec.valuation.payout == "cumulative" else contributions
    return cumulative, to_basis_points([on[a] for a in addresses], [a in paid for a in addresses])


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
    earlier: Sequence[Published] = (),
    order: Mapping[str, int] | None = None,
) -> RoundOutcome:
    """Validate, robust-aggregate, value and pay out one round's ``(address, blob)`` submissions.

    A task with ``proof.system != "none"`` runs the provable round instead
    (:func:`provable_round`): ``proof_seed`` is the round's on-chain seed,
    ``binders`` and ``sketches`` each submitter's commitment binder and update sketch.

    ``seed`` drives the valuation's sampling (default ``spec.valuation.seed``;
    a caller running many rounds typically passes ``spec.valuation.seed + round``).
    ``prior_values`` are the trainers' cumulative values before this round (the
    previous round's ``cumulative_values``; ``{}`` or None for the first round).
    With ``spec.valuation.payout == "cumulative"`` each eligible trainer is paid by its cumulative value.
    ``earlier``: the updates published in earlier rounds, ``order``: each submitter's on-chain
    submission sequence; an update that copies one of them, or one submitted before it, is refused
    (:func:`aggregator.validate.find_copies`).
    """
    seed = spec.valuation.seed if seed is None else seed
    addresses = tuple(a for a, _ in submissions)
    if len(set(addresses)) != len(addresses):
        raise ValueError("submissions must come from distinct addresses (the contract takes one per trainer)")
    if spec.proof.system != "none":
        if proof_seed is None or binders is None or sketches is None:
            raise ValueError("a proof task's round needs the round seed and each submitter's binder and sketch")
        return provable_round(spec, global_state, submissions, x_val, y_val, seed, proof_seed, binders, sketches, earlier, order,
                              prior_values)
    t0 = time.perf_counter()
    valid = validate_all(spec, global_state, submissions, earlier, order)
    decision, robust = _select(spec, valid)
    survivors = tuple(valid.addresses[i] for i in decision.selected)
    kept = [valid.deltas[i] for i in decision.selected]
    weights = [1.0] * len(survivors)  # equal: see the module docstring
    new_state = next_state(global_state, robust_update(decision, kept, weights))
    t1 = time.perf_counter()

    name = choose_valuation(spec.valuation, len(survivors), n_val=int(y_val.numel()), **model_cost(spec.model, spec.data))
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
    published = published_accuracy(spec, new_state, x_val, y_val)
    t2 = time.perf_counter()

    value_of = dict(zip(survivors, values))
    flat_values = [value_of.get(a, 0.0) for a in addresses]
    eligible = [a in value_of for a in addresses]
    cumulative, bps = pay_split(spec, addresses, survivors, dict(zip(addresses, flat_values)), prior_values or {})
    return RoundOutcome(
        new_state=new_state,
        addresses=addresses,
        samples=valid.samples,
        rejected=valid.rejected,
        copies=tuple(sorted(valid.copies)),
        outliers=tuple(a for a in valid.addresses if a not in survivors),
        survivors=survivors,
        robust=robust,
        valuation=name,
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
        valuation_record=record,
        cumulative_values=cumulative,
        cumulative_shares=cumulative_shares(cumulative),
        payout=payout_record(spec, name),
    )
