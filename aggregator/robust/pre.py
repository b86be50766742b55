"""Pre-aggregation steps: transform the ``[n, d]`` updates before any rule sees them.

Composed by name with ``+`` in front of a rule (``nnm+cwtm``, ``arc+nnm+krum``),
applied left to right; row ``i`` still stands for trainer ``i``, so the rule's
selection and outlier flags name trainers as usual.  After any pre-step the
round uses the rule's own aggregate (the mean of mixed or clipped vectors is no
longer a mean of the submitted updates).

- ``nnm``: nearest-neighbour mixing (Allouah, Farhadkhani, Guerraoui, Gupta,
  Pinot & Stephan 2023, "Fixing by Mixing: A Recipe for Optimal Byzantine ML
  under Heterogeneity", AISTATS): replace each update by the mean of its
  ``n - f`` nearest updates (itself included).  Computed as one mixing matrix
  ``M`` (``[n, n]``, ``1/(n-f)`` on each row's neighbours) times ``X``; ByzFL's
  ``NNM`` gathers an ``[n, n - f, d]`` tensor instead.  Needs ``n > 2f``.
- ``clip``: static clipping of every update to norm ``c`` (ByzFL ``Clipping``, c=2.0).
- ``arc``: adaptive robust clipping (Allouah et al. 2024, "Boosting Robustness by
  Clipping Gradients in Distributed Learning"): clip the
  ``floor(2f/n * (n - f))`` largest updates to the largest remaining norm
  (ByzFL ``ARC``).  Needs ``n > 2f``.

Each step returns the new matrix and per-input details for the receipt
(``clip.factor``, ``arc.factor``: 1 = untouched).  Steps are pure by default;
``inplace=True`` lets the clipping steps scale rows of their argument instead of
copying it (what ByzFL's ``Clipping`` and ``ARC`` always do).  A
:class:`~aggregator.robust.registry.Pipeline` uses it only on intermediate
matrices it owns, never on the caller's input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aggregator.robust.base import Details, HonestMajority, check_f, check_float, check_matrix, floats, pairwise_sq_distances


class NearestNeighborMixing(HonestMajority):
    name = "nnm"

    def __init__(self, f: int) -> None:
        self.f = check_f(self.name, f)

    def __call__(self, vectors: Tensor, inplace: bool = False) -> tuple[Tensor, Details]:
        n = self._rows(vectors)
        k = n - self.f
        d2 = pairwise_sq_distances(vectors)
        nearest = torch.sort(d2, dim=1, stable=True).indices[:, :k]  # ties: lower index first
        mix = torch.zeros(n, n, dtype=vectors.dtype)
        mix.scatter_(1, nearest, 1.0 / k)
        return mix @ vectors, {}


def _scale_rows(vectors: Tensor, factor: Tensor, inplace: bool) -> Tensor:
    if bool((factor == 1.0).all()):
        return vectors
    if not inplace:
        return vectors * factor.to(vectors.dtype)[:, None]
    for i in torch.nonzero(factor != 1.0).flatten().tolist():
        vectors[i].mul_(float(factor[i]))
    return vectors


class Clip:
    name = "clip"

    def __init__(self, f: int = 0, c: float = 2.0) -> None:
        self.c = check_float(self.name, "c", c)  # ``f`` is accepted for a uniform signature and ignored

    @staticmethod
    def max_f(n: int) -> int:
        return n

    def __call__(self, vectors: Tensor, inplace: bool = False) -> tuple[Tensor, Details]:
        check_matrix(vectors)
        norms = torch.linalg.vector_norm(vectors, dim=1).to(torch.float64)
        factor = torch.where(norms > self.c, self.c / norms.clamp_min(1e-300), torch.ones_like(norms))
        return _scale_rows(vectors, factor, inplace), {"factor": floats(factor)}


class AdaptiveClip(HonestMajority):
    name = "arc"

    def __init__(self, f: int) -> None:
        self.f = check_f(self.name, f)

    def __call__(self, vectors: Tensor, inplace: bool = False) -> tuple[Tensor, Details]:
        n = self._rows(vectors)
        norms = torch.linalg.vector_norm(vectors, dim=1).to(torch.float64)
        clipped = int((2 * self.f / n) * (n - self.f))
        factor = torch.ones(n, dtype=torch.float64)
        if clipped > 0:
            order = sorted(range(n), key=lambda i: (float(norms[i]), i))
            threshold = float(norms[order[n - clipped - 1]])
            for i in order[n - clipped :]:
                if float(norms[i]) > threshold:
                    factor[i] = threshold / float(norms[i])
        return _scale_rows(vectors, factor, inplace), {"factor": floats(factor)}
