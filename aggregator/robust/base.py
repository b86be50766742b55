"""What every robust rule shares: the decision it returns, parameter checks, distances.

The pairwise distances follow the "one matrix product" identity
``|x_i - x_j|^2 = |x_i|^2 + |x_j|^2 - 2 <x_i, x_j>``: a single ``[n, d] @ [d, n]``
Gram matrix gives all of them, instead of ``n^2`` passes over ``d``-long
differences.  The product runs in the input's precision (the aggregator passes
float64; ByzFL, the reference, works in float32) and is combined in float64.
Rules whose aggregate is a weighted combination of the inputs (Weiszfeld's
geometric median, centered clipping) keep the iterate as a weight vector
``w`` (``z = w @ X``) so every iteration costs ``O(n^2)`` on the Gram matrix
and only the final ``w @ X`` touches all ``d`` coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from market.errors import ConfigError

Details = Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class RobustDecision:
    """What a rule decided about ``n`` inputs.

    ``selected``: indices (ascending) that survive: valued and paid; the rest are
    outliers (paid 0).  ``scores``: one per input, lower = more central (Krum
    score, or distance to the aggregate).  ``aggregate``: the rule's own output
    vector ``[d]`` (what ByzFL's counterpart returns).  ``reweight``: True when
    the aggregate is the plain mean of the selected inputs, so the round may use
    the sample-weighted FedAvg of the selected instead; False when the round must
    use ``aggregate`` itself.  ``details``: named per-input columns recorded in
    the receipt (e.g. ``weight``, ``kept_fraction``, ``clip``).
    """

    rule: str
    selected: tuple[int, ...]
    scores: tuple[float, ...]
    f: int = 0
    aggregate: Tensor | None = field(default=None, repr=False, compare=False)
    reweight: bool = True
    details: Details = field(default_factory=dict)

    @property
    def excluded(self) -> tuple[int, ...]:
        keep = set(self.selected)
        return tuple(i for i in range(len(self.scores)) if i not in keep)


class RobustRule(Protocol):
    name: str
    f: int

    def __call__(self, vectors: Tensor) -> RobustDecision: ...


class PreAggregator(Protocol):
    """A step that maps ``[n, d]`` to ``[n, d]`` (row ``i`` still stands for input ``i``).

    ``inplace=True`` allows it to overwrite ``vectors`` (only for matrices the caller owns).
    """

    name: str

    def __call__(self, vectors: Tensor, inplace: bool = False) -> tuple[Tensor, Details]: ...


def check_f(rule: str, f: object) -> int:
    if not isinstance(f, int) or isinstance(f, bool) or f < 0:
        raise ConfigError(f"{rule}: f must be a non-negative integer, got {f!r}")
    return f


def check_int(rule: str, param: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{rule}: {param} must be an integer >= {minimum}, got {value!r}")
    return value


def check_float(rule: str, param: str, value: object, *, positive: bool = False) -> float:
    x = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")
    if not (0.0 < x < float("inf") if positive else 0.0 <= x < float("inf")):
        kind = "a positive" if positive else "a non-negative"
        raise ConfigError(f"{rule}: {param} must be {kind} finite number, got {value!r}")
    return x


def check_matrix(vectors: Tensor) -> tuple[int, int]:
    if vectors.dim() != 2:
        raise ValueError(f"robust rules take a [n, d] matrix, got shape {list(vectors.shape)}")
    if vectors.shape[0] == 0:
        raise ValueError("robust rules need at least one vector")
    if not vectors.is_floating_point():
        raise ValueError(f"robust rules take floating-point vectors, got {vectors.dtype}")
    return int(vectors.shape[0]), int(vectors.shape[1])


def need(rule: str, n: int, f: int, ok: bool, condition: str) -> None:
    """Raise the rule's precondition error (``condition`` like ``n > 2f + 2``) unless ``ok``."""
    if not ok:
        raise ConfigError(f"{rule} needs {condition} (got n={n}, f={f}); lower robust.f or add trainers")


class HonestMajority:
    """Base of the rules that need a strict honest majority, ``n > 2f`` (ByzFL's ``f < n/2``)."""

    name = ""
    f = 0

    @staticmethod
    def max_f(n: int) -> int:
        return (n - 1) // 2

    def _rows(self, vectors: Tensor) -> int:
        """Check the ``[n, d]`` input and the precondition; return ``n``."""
        n, _ = check_matrix(vectors)
        need(self.name, n, self.f, n > 2 * self.f, "n > 2f")
        return n


def gram(vectors: Tensor) -> Tensor:
    """``X @ X.T`` as float64 ``[n, n]``; the product itself runs in the input's dtype."""
    return (vectors @ vectors.T).to(torch.float64)


def pairwise_sq_distances(vectors: Tensor, g: Tensor | None = None) -> Tensor:
    """``[n, n]`` squared Euclidean distances via one matrix product (float64, clamped at 0)."""
    g = gram(vectors) if g is None else g
    sq = torch.diagonal(g)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * g).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    return d2


def span_sq_distances(g: Tensor, w: Tensor) -> Tensor:
    """``|x_i - z|^2`` for ``z = w @ X`` from the Gram matrix alone (float64, clamped at 0)."""
    gw = g @ w
    return (torch.diagonal(g) - 2.0 * gw + w @ gw).clamp_min(0.0)


def combine(w: Tensor, vectors: Tensor) -> Tensor:
    """``w @ X`` in the input's dtype (one matrix-vector product)."""
    return w.to(vectors.dtype) @ vectors


def most_central(scores: Sequence[float], keep: int) -> tuple[int, ...]:
    """The ``keep`` indices with the lowest scores, ties to the lower index, ascending."""
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    return tuple(sorted(order[:keep]))


#: how many times the median distance from the rule's aggregate an input must lie to be flagged (the
#: threshold ``ccdrop`` drops at; ``bench/robustness.py``, ``bench/fairness.py``)
EVIDENCE_RATIO = 2.5
#: ... and below which cosine similarity with the aggregate: an update that is far only because it goes
#: further the aggregate's way (more data, so more local steps) is no evidence of an attack.  Measured on
#: digits (``bench/fairness.py``, ``bench/robustness.py``): honest updates farther than 2.5x the median
#: (shard sizes 1:8) had cosine 0.44-0.83 with the aggregate; sign_flip, gaussian, label_flip and ipm
#: updates that far had at most 0.08.
EVIDENCE_ALIGNMENT = 0.3
#: an update this opposed to the others' centre is evidence whatever its distance (ipm sends minus the
#: honest mean, cosine -1, from inside the honest spread); honest updates measured at least 0.08
EVIDENCE_OPPOSITION = -0.5


def cosines_to_centre(g: Tensor, w: Tensor) -> Tensor:
    """Cosine similarity of each input ``x_i`` with the centre of the *other* inputs, ``z = w @ X`` with
    ``w_i`` set to 0 (a cosine ignores the scale, so no renormalising), from the Gram matrix: a huge input
    does not drag the centre its own way.  0 where either vector is zero.
    """
    n = int(g.shape[0])
    diag = torch.diagonal(g).clamp_min(0.0)
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        wi = w.clone()
        wi[i] = 0.0
        zz = float(wi @ g @ wi)
        if zz <= 0 or float(diag[i]) <= 0:
            continue
        out[i] = float(g[i] @ wi) / (float(diag[i]) ** 0.5 * zz**0.5)
    return out


def far_outliers(
    scores: Sequence[float], f: int, ratio: float = EVIDENCE_RATIO, cosines: Sequence[float] | None = None
) -> tuple[int, ...]:
    """Outliers by evidence, not by quota, ascending: the inputs whose score (distance from the rule's
    aggregate) is more than ``ratio`` times the (lower) median score and, when ``cosines`` (each input's
    cosine similarity with the aggregate) are given, that point less than :data:`EVIDENCE_ALIGNMENT` the
    aggregate's way, or that point against it (cosine below :data:`EVIDENCE_OPPOSITION`) at any distance;
    at most ``f`` of them, the farthest.

    A round in which nobody is far from the aggregate flags nobody.
    """
    n = len(scores)
    if n == 0 or f <= 0:
        return ()
    median = sorted(scores)[(n - 1) // 2]
    evident = [i for i in range(n) if (scores[i] > ratio * median and (cosines is None or cosines[i] < EVIDENCE_ALIGNMENT))
               or (cosines is not None and cosines[i] < EVIDENCE_OPPOSITION)]
    return tuple(sorted(sorted(evident, key=lambda i: (-scores[i], i))[:f]))


def kept_by_evidence(
    scores: Sequence[float], f: int, ratio: float = EVIDENCE_RATIO, cosines: Sequence[float] | None = None
) -> tuple[int, ...]:
    """The inputs :func:`far_outliers` does not flag, ascending."""
    out = set(far_outliers(scores, f, ratio, cosines))
    return tuple(i for i in range(len(scores)) if i not in out)


def evidence_of(vectors: Tensor, aggregate: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each input's distance from ``aggregate`` and cosine similarity with it (float64)."""
    g = gram(torch.cat([vectors, aggregate.to(vectors.dtype)[None]]).to(torch.float64))
    w = torch.zeros(g.shape[0], dtype=torch.float64)
    w[-1] = 1.0
    return floats(span_sq_distances(g, w).sqrt()[:-1]), floats(cosines_to_centre(g, w)[:-1])


def floats(t: Tensor) -> tuple[float, ...]:
    return tuple(float(x) for x in t.tolist())
