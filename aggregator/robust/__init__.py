"""Robust aggregation: which updates survive, and what vector the round applies.

A rule is a small callable in the style of ByzFL's aggregators (EPFL,
https://byzfl.epfl.ch): parameters validated in ``__init__``, a pure
``__call__(vectors[n, d]) -> RobustDecision`` and a :class:`ConfigError` when
its precondition fails.  Rules are chosen by name (task spec ``robust.rule``,
``--robust``):

======================  =====================================================  ==============
name                    rule                                                   precondition
======================  =====================================================  ==============
``mean``                plain FedAvg, no defence                               --
``krum``                Krum (Blanchard et al. 2017)                           n > 2f + 2
``multikrum``           Multi-Krum, keeps ``m = n - f``                        n > 2f + 2
``cwmed``               coordinate-wise median (Yin et al. 2018)               n > 2f
``cwtm``                coordinate-wise trimmed mean (Yin et al. 2018)         n > 2f
``geomed``              geometric median, smoothed Weiszfeld                   n > 2f
``cc``                  centered clipping (Karimireddy et al. 2021)            n > 2f
``ccdrop``              cc, gross outliers dropped, re-centred (the default)   n > 2f
``nnm+<rule>``          nearest-neighbour mixing first (Allouah et al. 2023)   n > 2f
``clip+``, ``arc+``     static / adaptive clipping first                       --, n > 2f
======================  =====================================================  ==============

Who is an outlier (paid 0, not valued).  Outliers are flagged by evidence, not
by quota, wherever the rule has evidence to give:

- rules that keep everyone but down-weight (``cwmed``, ``cwtm``, ``geomed``,
  ``cc``) flag only updates that lie more than 2.5 times the median distance
  (Euclidean) from the rule's own aggregate *and* do not point its way (cosine
  similarity with it below 0.3: an honest trainer with more data goes further
  in the same direction), at most ``f`` (effective) of them, the farthest
  (:func:`aggregator.robust.base.far_outliers`); ``ccdrop`` flags exactly the
  updates it dropped by that same test.  A round in which nobody attacks
  therefore usually flags nobody, and an honest trainer is not refused pay
  because somebody had to be.  Their per-trainer treatment (fraction of
  coordinates used, Weiszfeld weight, clipping factor) is recorded in
  ``details`` for the receipt;
- selection rules select by quota, because selecting is what they are:
  Multi-Krum's outliers are the ``n - m`` updates it did not select; Krum's
  the ``f`` with the highest Krum scores.  (Proof tasks prove Multi-Krum, so
  they flag ``f`` every round.)
- after a pre-aggregation step the rule's scores are computed on the
  transformed rows, which still stand for the same trainers.

What the round applies.  ``RobustDecision.reweight`` says whether the
aggregate is the plain mean of the selected updates (``mean``,
``multikrum``): then the round uses the FedAvg of the survivors (equal
weights: a self-reported sample count decides nothing) instead.  Otherwise (``krum``, coordinate-wise and iterative rules,
anything after a pre-step) the round applies ``RobustDecision.aggregate``, which
ignores sample counts too.  Valuation then runs over the survivors with the
coalition utility as before (FedAvg of the coalition's updates).

When a round has too few valid updates for the configured ``f``, the
aggregator lowers it with :func:`effective_f`; ``effective_f == 0`` with a
configured ``f > 0`` means no outlier removal (plain ``mean``), and the receipt
records it.
"""

from aggregator.robust.base import (
    PreAggregator,
    RobustDecision,
    RobustRule,
    combine,
    gram,
    pairwise_sq_distances,
    span_sq_distances,
)
from aggregator.robust.centre import CenteredClipping, CenteredClippingDrop, GeometricMedian
from aggregator.robust.coordinate import CoordinateMedian, TrimmedMean
from aggregator.robust.pre import AdaptiveClip, Clip, NearestNeighborMixing
from aggregator.robust.registry import PRE_AGGREGATORS, ROBUST_RULES, Pipeline, effective_f, get_rule, max_f
from aggregator.robust.selection import Krum, Mean, MultiKrum

__all__ = [
    "AdaptiveClip", "CenteredClipping", "CenteredClippingDrop", "Clip", "CoordinateMedian", "GeometricMedian", "Krum", "Mean", "MultiKrum",
    "NearestNeighborMixing", "PRE_AGGREGATORS", "Pipeline", "PreAggregator", "ROBUST_RULES", "RobustDecision",
    "RobustRule", "TrimmedMean", "combine", "effective_f", "get_rule", "gram", "max_f", "pairwise_sq_distances",
    "span_sq_distances",
]
