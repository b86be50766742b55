"""Rules and pre-aggregation steps by name, their composition, and the ``f`` a round can support.

A rule name is a rule, optionally preceded by pre-aggregation steps joined
with ``+``: ``multikrum``, ``cwtm``, ``nnm+cwmed``, ``arc+nnm+krum``.  Extra
parameters go to the rule; a parameter named after a pre-step is a dict of that
step's parameters, e.g. ``{"rule": "clip+cc", "params": {"clip": {"c": 5.0}, "L": 5}}``.
Every step receives the same ``f``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor

from aggregator.robust.base import (
    Details,
    HonestMajority,
    PreAggregator,
    RobustDecision,
    RobustRule,
    evidence_of,
    kept_by_evidence,
)
from aggregator.robust.centre import CenteredClipping, CenteredClippingDrop, GeometricMedian
from aggregator.robust.coordinate import CoordinateMedian, TrimmedMean
from aggregator.robust.pre import AdaptiveClip, Clip, NearestNeighborMixing
from aggregator.robust.selection import Krum, Mean, MultiKrum
from market.errors import ConfigError

ROBUST_RULES: dict[str, Callable[..., RobustRule]] = {
    "mean": Mean,
    "krum": Krum,
    "multikrum": MultiKrum,
    "cwmed": CoordinateMedian,
    "cwtm": TrimmedMean,
    "geomed": GeometricMedian,
    "cc": CenteredClipping,
    "ccdrop": CenteredClippingDrop,
}
PRE_AGGREGATORS: dict[str, Callable[..., PreAggregator]] = {
    "nnm": NearestNeighborMixing,
    "clip": Clip,
    "arc": AdaptiveClip,
}


class Pipeline:
    """Pre-aggregation steps, then a rule; one :class:`RobustDecision` about the original inputs."""

    def __init__(self, pre: Sequence[PreAggregator], rule: RobustRule) -> None:
        self.pre = tuple(pre)
        self.rule = rule
        self.f = rule.f
        self.name = "+".join([p.name for p in self.pre] + [rule.name])

    def __call__(self, vectors: Tensor) -> RobustDecision:
        details: dict[str, tuple[float, ...]] = {}
        x = vectors
        for step in self.pre:
            x, extra = step(x, inplace=x is not vectors)  # never overwrite the caller's matrix
            details.update({f"{step.name}.{k}": v for k, v in extra.items()})
        decision = self.rule(x)
        merged: Details = {**details, **decision.details}
        out = replace(decision, rule=self.name, reweight=decision.reweight and not self.pre, details=merged)
        if self.pre and isinstance(self.rule, HonestMajority) and decision.aggregate is not None:
            # evidence from the trainers' own updates: after NNM the mixed rows all sit close together, so a
            # ratio to their median distance would flag an honest trainer; distances of the originals do not
            scores, cosines = evidence_of(vectors, decision.aggregate)
            out = replace(out, selected=kept_by_evidence(scores, self.f, cosines=cosines), scores=scores)
        return out


def _unknown(name: str) -> ConfigError:
    return ConfigError(
        f"unknown robust rule {name!r}: use one of {', '.join(sorted(ROBUST_RULES))}, optionally after "
        f"pre-aggregation steps ({', '.join(sorted(PRE_AGGREGATORS))}) joined by '+', e.g. nnm+cwtm"
    )


def _parse(name: str) -> tuple[list[str], str]:
    if not isinstance(name, str) or not name:
        raise _unknown(str(name))
    *pre, rule = name.split("+")
    if rule not in ROBUST_RULES:
        if rule in PRE_AGGREGATORS:
            raise ConfigError(f"{rule!r} is a pre-aggregation step, not a rule: compose it, e.g. {rule}+cwtm")
        raise _unknown(name)
    for step in pre:
        if step not in PRE_AGGREGATORS:
            raise _unknown(name)
    return pre, rule


def _build(what: str, factory: Callable[..., Any], f: int, params: dict[str, Any]) -> Any:
    try:
        return factory(f, **params)
    except TypeError as exc:
        raise ConfigError(f"robust rule {what}: bad parameters {sorted(params)}: {exc}") from None


def get_rule(name: str, f: int, /, **params: Any) -> RobustRule:
    """The rule (or pipeline) called ``name`` with ``f`` and its extra ``params`` (e.g. ``m`` for multikrum)."""
    pre_names, rule_name = _parse(name)
    if "f" in params:
        raise ConfigError(f"robust rule {name}: f is set by robust.f, not by params")
    rule_params = dict(params)
    pre = []
    for step in pre_names:
        step_params = rule_params.pop(step, {}) if step in rule_params else {}
        if not isinstance(step_params, dict):
            raise ConfigError(f"robust rule {name}: parameters of step {step!r} must be an object, got {step_params!r}")
        pre.append(_build(step, PRE_AGGREGATORS[step], f, step_params))
    rule = _build(rule_name, ROBUST_RULES[rule_name], f, rule_params)
    return Pipeline(pre, rule) if pre else rule


def max_f(name: str, n: int) -> int:
    """The largest ``f`` every step of ``name`` supports with ``n`` inputs (-1: not even ``f = 0``)."""
    pre_names, rule_name = _parse(name)
    steps = [PRE_AGGREGATORS[p] for p in pre_names] + [ROBUST_RULES[rule_name]]
    return min(int(s.max_f(n)) for s in steps)  # type: ignore[union-attr]  # every registered step defines max_f


def effective_f(n: int, f: int, rule: str = "multikrum") -> int:
    """The largest ``f' <= f`` that ``rule`` supports with ``n`` inputs, or 0 if none.

    Krum and Multi-Krum need ``n > 2f + 2``, the other rules and NNM ``n > 2f``.
    With fewer valid updates the round still completes with the largest ``f``
    the rule can support, e.g. for multikrum ``effective_f(5, 1) == 1``,
    ``effective_f(4, 1) == 0``, ``effective_f(8, 3) == 2``.
    """
    if n < 0 or f < 0:
        raise ValueError(f"effective_f needs n, f >= 0 (got n={n}, f={f})")
    return max(0, min(f, max_f(rule, n)))
