"""Robust rules: which updates survive into the aggregate.

Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent", NeurIPS; El Mhamdi et al. 2018, "The
Hidden Vulnerability of Distributed Learning in Byzantium", ICML) scores each
update by the sum of squared distances to its ``n - f - 2`` nearest
neighbours and keeps the ``m`` (default ``n - f``) lowest scores.  It needs
``n > 2f + 2``.  ``Mean`` keeps everyone (plain FedAvg, no defence).

A rule is a small callable in the style of ByzFL's aggregators: parameters
validated in ``__init__``, a pure ``__call__(vectors[n, d]) -> RobustDecision``
and a :class:`ConfigError` when its precondition fails.  Rules are chosen by
name from :data:`ROBUST_RULES` so the task spec can name them.

When a round has too few valid updates for the configured ``f``, the
aggregator lowers it with :func:`effective_f` rather than stalling the round;
``effective_f == 0`` means no outlier removal, and the receipt records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from market.errors import ConfigError


@dataclass(frozen=True)
class RobustDecision:
    """Indices kept (ascending), one score per input (lower = more central; 0 for ``mean``)."""

    rule: str
    selected: tuple[int, ...]
    scores: tuple[float, ...]
    f: int = 0


class RobustRule(Protocol):
    name: str

    def __call__(self, vectors: Tensor) -> RobustDecision: ...


def _check_matrix(vectors: Tensor) -> int:
    if vectors.dim() != 2:
        raise ValueError(f"robust rules take a [n, d] matrix, got shape {list(vectors.shape)}")
    return int(vectors.shape[0])


def pairwise_sq_distances(vectors: Tensor) -> Tensor:
    """``[n, n]`` squared Euclidean distances in float64 via one matrix product (clamped at 0)."""
    v = vectors.to(torch.float64)
    sq = (v * v).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (v @ v.T)
    d2 = d2.clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    return d2


class MultiKrum:
    """Keep the ``m`` updates with the lowest Krum scores (``m=None``: ``n - f``)."""

    name = "multikrum"

    def __init__(self, f: int, m: int | None = None) -> None:
        if not isinstance(f, int) or isinstance(f, bool) or f < 0:
            raise ConfigError(f"multikrum: f must be a non-negative integer, got {f!r}")
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
            raise ConfigError(f"multikrum: m must be a positive integer, got {m!r}")
        self.f = f
        self.m = m

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n, f = _check_matrix(vectors), self.f
        if not n > 2 * f + 2:
            raise ConfigError(f"multikrum needs n > 2f + 2 (got n={n}, f={f}); lower robust.f or add trainers")
        m = n - f if self.m is None else self.m
        if m > n - f:
            raise ConfigError(f"multikrum: m must be at most n - f = {n - f} (got m={m})")
        d2 = pairwise_sq_distances(vectors)
        d2.fill_diagonal_(float("inf"))  # a point is not its own neighbour
        k = n - f - 2
        nearest = torch.sort(d2, dim=1).values[:, :k]
        scores = [float(s) for s in nearest.sum(dim=1)]
        order = sorted(range(n), key=lambda i: (scores[i], i))
        return RobustDecision(self.name, tuple(sorted(order[:m])), tuple(scores), f)


class Mean:
    """No outlier removal: every update is kept."""

    name = "mean"

    def __init__(self, f: int = 0) -> None:
        self.f = 0  # ``f`` is accepted for a uniform registry signature and ignored

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n = _check_matrix(vectors)
        return RobustDecision(self.name, tuple(range(n)), (0.0,) * n, 0)


ROBUST_RULES: dict[str, Callable[..., RobustRule]] = {"multikrum": MultiKrum, "mean": Mean}


def get_rule(name: str, f: int, **params: Any) -> RobustRule:
    """The rule called ``name`` with ``f`` and its extra ``params`` (e.g. ``m`` for multikrum)."""
    if name not in ROBUST_RULES:
        raise ConfigError(f"unknown robust rule {name!r}: use one of {', '.join(sorted(ROBUST_RULES))}")
    try:
        return ROBUST_RULES[name](f, **params)
    except TypeError as exc:
        raise ConfigError(f"robust rule {name}: bad parameters {sorted(params)}: {exc}") from None


def effective_f(n: int, f: int) -> int:
    """The largest ``f' <= f`` with ``n > 2f' + 2``, or 0 (no outlier removal) if none.

    Multi-Krum needs ``n > 2f + 2``; with fewer valid updates than that the
    round still completes with the largest ``f`` the rule can support, e.g.
    ``effective_f(5, 1) == 1``, ``effective_f(4, 1) == 0``, ``effective_f(8, 3) == 2``.
    """
    if n < 0 or f < 0:
        raise ValueError(f"effective_f needs n, f >= 0 (got n={n}, f={f})")
    return max(0, min(f, (n - 3) // 2))
