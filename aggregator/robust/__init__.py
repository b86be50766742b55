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

Who is an outlier (paid 0, not valued).  Every rule flags ``f`` (effective)
trainers, the same number Multi-Krum has always excluded, so the choice of
rule does not change how many trainers a round refuses to pay:

- selection rules exclude: Multi-Krum's outliers are exactly the updates it did
  not select (``n - m``); Krum's are the ``f`` with the highest Krum scores (the
  ``n - f`` most central are paid, although the aggregate is the one best update);
- rules that keep everyone but down-weight (``cwmed``, ``cwtm``, ``geomed``,
  ``cc``, ``ccdrop``; the latter gives its dropped inputs weight 0) flag the ``f`` updates farthest (Euclidean) from the rule's own
  aggregate: a distance-based flag that works the same way for every such rule,
  while their per-trainer treatment (fraction of coordinates used, Weiszfeld
  weight, clipping factor) is recorded in ``details`` for the receipt;
- after a pre-aggregation step the rule's scores are computed on the
  transformed rows, which still stand for the same trainers.

What the round applies.  ``RobustDecision.reweight`` says whether the
aggregate is the plain mean of the selected updates (``mean``,
``multikrum``): then the round uses the sample-weighted FedAvg of the
survivors instead.  Otherwise (``krum``, coordinate-wise and iterative rules,
anything after a pre-step) the round applies ``RobustDecision.aggregate``, which
ignores sample counts (a robust estimator must not let a trainer buy weight by
claiming more samples).  Valuation then runs over the survivors with the
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
