"""What one round decided (:class:`RoundOutcome`): the new model, rejections, outliers, values,
basis points and everything else the round receipt records (see :mod:`aggregator.receipt`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from market.models import model_with_state, r_squared
from market.receipt import ProofInputs
from market.spec import TaskSpec
from market.zk import statement as zs


@torch.no_grad()
def payout_record(spec: TaskSpec, estimator: str) -> dict[str, str]:
    """What decided a round's pay, for the receipt (``market verify`` replays it)."""
    v = spec.valuation
    return {"rule": v.payout, "metric": v.metric, "utility": v.utility, "estimator": estimator, "weights": "equal"}


def published_accuracy(spec: TaskSpec, state: dict[str, Tensor], x_val: Tensor, y_val: Tensor) -> float | None:
    """Validation accuracy of the model a round publishes (``state``, float32 as stored and as the next round
    loads it): correct predictions / samples, an exact ratio like the coalition utilities; on a regression task its
    R^2 (the task's score; an argmax over one output scored every regression round 0); None without data."""
    n = int(y_val.numel())
    if n == 0:
        return None
    net = model_with_state(spec.model, spec.data, state)
    if spec.data.regression:
        return r_squared(net, x_val, y_val)
    correct = int((net(x_val).argmax(dim=-1) == y_val).sum())
    return correct / n


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
    contributions: dict[str, float]  # Shapley value (in the metric's units); 0 if not a survivor
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
    # validation accuracy of ``new_state``, the model the round publishes and the next round starts from
    # (float32, as published); ``accuracy_after`` is U(survivors), which differs when the robust rule's
    # own aggregate (not the survivors' FedAvg) became the update
    accuracy_model: float | None = None
    # how pay was decided: payout rule, metric, coalition utility, estimator, FedAvg/coalition weights
    payout: dict[str, str] = field(default_factory=dict)
    # rejected updates refused as copies (the other rejections cost their trainers the stake)
    copies: tuple[str, ...] = ()
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
            "accuracy_model": self.accuracy_model,
            "timings": dict(self.timings),
            "valuation_record": dict(self.valuation_record),
            "cumulative_values": dict(self.cumulative_values),
            "cumulative_shares": dict(self.cumulative_shares),
            "payout": dict(self.payout),
            "proof": self.proof.model_dump() if self.proof is not None else None,
        }
