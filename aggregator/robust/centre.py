"""Robust centres found by iteration: geometric median and centered clipping.

- ``geomed``: the geometric median by smoothed Weiszfeld iterations (Weiszfeld
  1937; Pillutla, Kakade & Harchaoui 2022, "Robust Aggregation for Federated
  Learning", IEEE TSP): ``z <- sum_i b_i x_i / sum_i b_i`` with
  ``b_i = 1 / max(nu, |x_i - z|)``, starting from ``z = 0``, ``T`` times
  (ByzFL's ``GeometricMedian(nu=0.1, T=3)``; ``T`` is cheap to raise here).
- ``cc``: centered clipping (Karimireddy, He & Jaggi 2021, "Learning from
  History for Byzantine Robust Optimization", ICML):
  ``v <- v + mean_i clip_tau(x_i - v)`` ``L`` times from ``v = 0``, where
  ``clip_tau`` scales a vector longer than ``tau`` down to length ``tau``.  ByzFL's
  ``CenteredClipping`` defaults to ``tau = 100, L = 1``; a fixed radius is only
  meaningful at a known update scale, so here ``tau=None`` (the default) sets
  it each iteration to the median distance from the current centre, i.e. the
  half of the inputs farthest from the centre is clipped.  Our rule is
  stateless (each round starts from 0): the "momentum" of the paper lives in
  the trainers' optimisers, not in the aggregator.

Both iterates are weighted combinations of the inputs, so they are kept as
weights ``w`` with ``z = w @ X`` and every iteration runs on the Gram matrix
(``O(n^2)``), not on ``d``-long vectors.  Both keep everyone in the aggregate,
down-weighted; for payment, the ``f`` inputs farthest from the final centre
are the outliers.  The receipt records each input's weight in the aggregate
(``weight``) and, for ``cc``, its last clipping factor (``clip``, 1 = not
clipped).  Both need ``n > 2f``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aggregator.robust.base import (
    RobustDecision, check_f, check_float, check_int, check_matrix, combine, floats, gram, most_central, need,
    span_sq_distances,
)


class GeometricMedian:
    """Smoothed Weiszfeld iterations from 0; the ``f`` inputs farthest from the result are the outliers."""

    name = "geomed"

    def __init__(self, f: int, nu: float = 0.1, T: int = 3) -> None:  # noqa: N803 - ByzFL's parameter name
        self.f = check_f(self.name, f)
        self.nu = check_float(self.name, "nu", nu, positive=True)
        self.T = check_int(self.name, "T", T, 1)

    @staticmethod
    def max_f(n: int) -> int:
        return (n - 1) // 2

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n, _ = check_matrix(vectors)
        need(self.name, n, self.f, n > 2 * self.f, "n > 2f")
        g = gram(vectors)
        w = torch.zeros(n, dtype=torch.float64)
        for _ in range(self.T):
            beta = 1.0 / span_sq_distances(g, w).sqrt().clamp_min(self.nu)
            w = beta / beta.sum()
        scores = floats(span_sq_distances(g, w).sqrt())
        return RobustDecision(
            self.name, most_central(scores, n - self.f), scores, self.f,
            aggregate=combine(w, vectors), reweight=False, details={"weight": floats(w)},
        )


class CenteredClipping:
    """``L`` centered-clipping steps from 0 with radius ``tau`` (None: median distance to the centre)."""

    name = "cc"

    def __init__(self, f: int, tau: float | None = None, L: int = 3) -> None:  # noqa: N803 - ByzFL's name
        self.f = check_f(self.name, f)
        self.tau = None if tau is None else check_float(self.name, "tau", tau, positive=True)
        self.L = check_int(self.name, "L", L, 1)

    @staticmethod
    def max_f(n: int) -> int:
        return (n - 1) // 2

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n, _ = check_matrix(vectors)
        need(self.name, n, self.f, n > 2 * self.f, "n > 2f")
        g = gram(vectors)
        w = torch.zeros(n, dtype=torch.float64)
        clip = torch.ones(n, dtype=torch.float64)
        for _ in range(self.L):
            dist = span_sq_distances(g, w).sqrt()
            tau = self.tau if self.tau is not None else float(dist.sort().values[(n - 1) // 2])
            clip = torch.where(dist > tau, tau / dist.clamp_min(1e-300), torch.ones_like(dist))
            w = w * (1.0 - float(clip.mean())) + clip / n
        scores = floats(span_sq_distances(g, w).sqrt())
        return RobustDecision(
            self.name, most_central(scores, n - self.f), scores, self.f,
            aggregate=combine(w, vectors), reweight=False, details={"weight": floats(w), "clip": floats(clip)},
        )
