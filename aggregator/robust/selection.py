"""Selection rules: Krum, Multi-Krum, and the undefended mean.

Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer 2017, "Machine
Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS;
El Mhamdi, Guerraoui & Rouault 2018, "The Hidden Vulnerability of Distributed
Learning in Byzantium", ICML) score each update by the sum of squared
distances to its ``k`` nearest other updates.  Blanchard et al. use
``k = n - f - 2``; ByzFL (Allouah et al. 2023, "Fixing by Mixing") uses
``k = n - f - 1``, and so do we by default (``neighbours`` picks another ``k``),
so our scores rank exactly as ByzFL's.  Both rules need ``n > 2f + 2``.

- ``multikrum``: keep the ``m`` (default ``n - f``) lowest scores; the aggregate
  is their mean, and since it is a plain mean of the selected updates the round
  uses their sample-weighted FedAvg.  Outliers: everyone not kept.
- ``krum``: the aggregate is the single lowest-scored update.  The ``n - f``
  lowest-scored are paid (Krum's own notion of central), the ``f`` highest are
  outliers.
- ``mean``: everyone is kept; no defence (plain FedAvg).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aggregator.robust.base import (
    RobustDecision,
    check_f,
    check_int,
    check_matrix,
    combine,
    floats,
    gram,
    most_central,
    need,
    pairwise_sq_distances,
)
from market.errors import ConfigError


def _krum_k(rule: str, vectors: Tensor, f: int, neighbours: int | None) -> int:
    """Check Krum's precondition; the number of neighbours each score sums over."""
    n, _ = check_matrix(vectors)
    need(rule, n, f, n > 2 * f + 2, "n > 2f + 2")
    k = n - f - 1 if neighbours is None else neighbours
    if not 1 <= k <= n - 1:
        raise ConfigError(f"{rule}: neighbours must be between 1 and n - 1 = {n - 1} (got {k})")
    return k


def _krum_scores(vectors: Tensor, k: int) -> tuple[float, ...]:
    d2 = pairwise_sq_distances(vectors, gram(vectors))
    d2.fill_diagonal_(float("inf"))  # a point is not its own neighbour
    nearest = torch.topk(d2, k, dim=1, largest=False, sorted=True).values
    return floats(nearest.sum(dim=1))


class MultiKrum:
    """Keep the ``m`` updates with the lowest Krum scores (``m=None``: ``n - f``)."""

    name = "multikrum"

    def __init__(self, f: int, m: int | None = None, neighbours: int | None = None) -> None:
        self.f = check_f(self.name, f)
        self.m = None if m is None else check_int(self.name, "m", m, 1)
        self.neighbours = None if neighbours is None else check_int(self.name, "neighbours", neighbours, 1)

    @staticmethod
    def max_f(n: int) -> int:
        return (n - 3) // 2

    def __call__(self, vectors: Tensor) -> RobustDecision:
        f = self.f
        k = _krum_k(self.name, vectors, f, self.neighbours)
        n = int(vectors.shape[0])
        m = n - f if self.m is None else self.m
        if m > n - f:
            raise ConfigError(f"multikrum: m must be at most n - f = {n - f} (got m={m})")
        scores = _krum_scores(vectors, k)
        selected = most_central(scores, m)
        w = torch.zeros(n, dtype=torch.float64)
        w[list(selected)] = 1.0 / m
        return RobustDecision(
            self.name, selected, scores, f, aggregate=combine(w, vectors), reweight=True,
            details={"weight": floats(w)},
        )


class Krum:
    """The single update with the lowest Krum score; the ``n - f`` most central are paid."""

    name = "krum"

    def __init__(self, f: int, neighbours: int | None = None) -> None:
        self.f = check_f(self.name, f)
        self.neighbours = None if neighbours is None else check_int(self.name, "neighbours", neighbours, 1)

    @staticmethod
    def max_f(n: int) -> int:
        return (n - 3) // 2

    def __call__(self, vectors: Tensor) -> RobustDecision:
        scores = _krum_scores(vectors, _krum_k(self.name, vectors, self.f, self.neighbours))
        n = len(scores)
        best = min(range(n), key=lambda i: (scores[i], i))
        w = torch.zeros(n, dtype=torch.float64)
        w[best] = 1.0
        return RobustDecision(
            self.name, most_central(scores, n - self.f), scores, self.f,
            aggregate=vectors[best].clone(), reweight=False, details={"weight": floats(w)},
        )


class Mean:
    """No outlier removal: every update is kept (plain FedAvg)."""

    name = "mean"

    def __init__(self, f: int = 0) -> None:
        self.f = 0  # ``f`` is accepted for a uniform registry signature and ignored

    @staticmethod
    def max_f(n: int) -> int:
        return n

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n, _ = check_matrix(vectors)
        w = torch.full((n,), 1.0 / n, dtype=torch.float64)
        return RobustDecision(
            self.name, tuple(range(n)), (0.0,) * n, 0, aggregate=combine(w, vectors), reweight=True,
            details={"weight": (1.0 / n,) * n},
        )
