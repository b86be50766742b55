"""The task's robust rule over one round's valid updates: which rule runs with which ``f``, and the model update.

Shared by the unproven round (:mod:`aggregator.round`, the spec's rule) and the proven one
(:mod:`aggregator.provable`, whose model comes from the default rule over the full updates), so both publish the
same model for the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from aggregator.fedavg import fedavg
from aggregator.robust import Mean, RobustDecision, RobustRule, effective_f, get_rule, max_f
from market.spec import RobustSpec


def robust_rule(robust: RobustSpec, n: int) -> tuple[RobustRule, int]:
    """The rule to run over ``n`` valid updates and the ``f`` it runs with.

    ``f`` is lowered to what the rule supports with ``n`` inputs; if that leaves
    0 while the spec asked for ``f > 0`` (or the rule cannot run at all) the
    round runs plain ``mean``.  A spec with ``f = 0`` runs its rule with ``f = 0``.
    """
    name, f = robust.rule, robust.f
    params = dict(robust.params)
    get_rule(name, f, **params)  # reject an unknown rule or bad params even when the round falls back to mean
    if name == "mean":
        return Mean(), 0
    f_eff = effective_f(n, f, name)
    if f_eff == 0 and (f > 0 or max_f(name, n) < 0):
        return Mean(), 0
    if isinstance(params.get("m"), int):
        params["m"] = min(params["m"], n - f_eff)  # a smaller round cannot keep more than n - f
    return get_rule(name, f_eff, **params), f_eff


def run_rule(robust: RobustSpec, deltas: Sequence[Tensor]) -> tuple[RobustDecision, int]:
    """The decision of :func:`robust_rule` over ``deltas`` (none: nothing selected), and the ``f`` it ran with."""
    if not deltas:
        return RobustDecision("mean", (), (), 0), 0
    rule, f_eff = robust_rule(robust, len(deltas))
    return rule(torch.stack(list(deltas)).to(torch.float64)), f_eff


def robust_update(decision: RobustDecision, kept: list[Tensor], weights: list[float]) -> Tensor | None:
    """The flat model update: the rule's aggregate, or FedAvg of the survivors when the rule allows it."""
    if not decision.reweight and decision.aggregate is not None:
        return decision.aggregate.to(torch.float64)
    return fedavg(torch.stack(kept), weights) if kept else None
