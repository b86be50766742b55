"""Coordinate-wise rules: median and trimmed mean.

Coordinate-wise median and trimmed mean (Yin, Chen, Ramchandran & Bartlett
2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
Rates", ICML) aggregate each coordinate on its own.  They exclude nobody as a
whole, so for payment the ``f`` inputs farthest (Euclidean) from the aggregate
are the outliers; the receipt also records, per input, the fraction of
coordinates on which its value was used (``kept_fraction``).

- ``cwmed``: the median of each coordinate; for even ``n`` the mean of the two
  middle values (as ``numpy.median`` and ByzFL's ``Median``).
- ``cwtm``: drop the ``f`` largest and ``f`` smallest values of each coordinate
  and average the remaining ``n - 2f`` (ByzFL's ``TrMean``).

Both need ``n > 2f`` (an honest majority).  The order statistics come from a
sorting network over whole rows (:mod:`aggregator.robust.sortnet`).
"""

from __future__ import annotations

from torch import Tensor

from aggregator.robust.base import HonestMajority, RobustDecision, check_f, evidence_of, floats, kept_by_evidence
from aggregator.robust.sortnet import rank_band


def _decision(name: str, f: int, vectors: Tensor, lo: int, hi: int) -> RobustDecision:
    """Average of the column-wise ranks ``lo..hi-1``; outliers: of the ``f`` farthest from it, those far by evidence."""
    band = rank_band(vectors, lo, hi)
    scores = floats(band.distance)
    _, cosines = evidence_of(vectors, band.mean)
    kept = band.kept.double() / max(1, vectors.shape[1])
    return RobustDecision(
        name, kept_by_evidence(scores, f, cosines=cosines), scores, f, aggregate=band.mean, reweight=False,
        details={"kept_fraction": floats(kept)},
    )


class CoordinateMedian(HonestMajority):
    """Coordinate-wise median; the ``f`` inputs farthest from it are the outliers."""

    name = "cwmed"

    def __init__(self, f: int) -> None:
        self.f = check_f(self.name, f)

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n = self._rows(vectors)
        return _decision(self.name, self.f, vectors, (n - 1) // 2, n // 2 + 1)


class TrimmedMean(HonestMajority):
    """Coordinate-wise ``f``-trimmed mean; the ``f`` inputs farthest from it are the outliers."""

    name = "cwtm"

    def __init__(self, f: int) -> None:
        self.f = check_f(self.name, f)

    def __call__(self, vectors: Tensor) -> RobustDecision:
        n = self._rows(vectors)
        return _decision(self.name, self.f, vectors, self.f, n - self.f)
