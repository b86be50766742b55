"""From contribution values to the integer basis points the contract pays out.

Values are clipped at 0 (a harmful update earns nothing, it is not charged),
ineligible trainers (rejected updates, robust-rule outliers) get 0, and the
rest are normalised to shares of 10,000 basis points.  Rounding is the
largest-remainder (Hamilton) method: everyone gets the floor of their exact
quota and the leftover points go to the largest fractional parts, ties to the
lower index, so the result sums to exactly 10,000 (Balinski & Young 1982,
"Fair Representation").  Arithmetic is exact (``fractions.Fraction`` of the
binary floats), so no float rounding can make the sum drift.

Two edge cases: if every eligible value is <= 0, the eligible trainers split
the points equally (they submitted valid work, but the round's utility did
not move, so the valuation cannot tell them apart); if nobody is eligible the
result is all zeros, and the contract then refunds the round's pool to the
owner.

Across rounds (:func:`cumulative_values`, :func:`cumulative_shares`) a
trainer's cumulative value is the plain sum of its per-round values, signed:
a round in which it hurt the model (negative value) counts against the rounds
in which it helped, and a round in which it was rejected or an outlier adds
0 (it was not valued).  Clipping at 0 happens once, on the sum, when shares
are taken -- clipping every round first would let a trainer whose values are
pure noise around zero (a free rider) collect the positive half of the noise
every round.  Its cumulative share is ``max(C_i, 0) / sum_j max(C_j, 0)``;
if nobody's sum is positive, everyone listed gets an equal share.

The ``cumulative`` payout (the default) pays each round's pool by each eligible
trainer's cumulative value (clipped at 0): per-round values are noisy, sums
average the noise out (``bench/fairness.py``).  The price is that a trainer who
joins late is paid little at first (the first rounds' gains are the largest);
dividing by the rounds or the round scales a trainer took part in pays it
faster, but when tried (issue 13, ``tests/attacks/test_fair_pay.py`` against
that variant) it paid a data-less newcomer submitting noise 0.4-0.7x an honest
trainer and let a trainer shed a bad record under a fresh identity, so it waits
for an identity cost (stakes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

TOTAL_BPS = 10_000


def _quotas(values: Sequence[float], eligible: Sequence[bool]) -> list[Fraction]:
    """Exact normalised shares (sum 1, or all 0 when nobody is eligible)."""
    if len(values) != len(eligible):
        raise ValueError(f"{len(values)} values but {len(eligible)} eligibility flags")
    if any(not math.isfinite(v) for v in values):
        raise ValueError("contribution values must be finite")
    clipped = [Fraction(v) if ok and v > 0 else Fraction(0) for v, ok in zip(values, eligible)]
    total = sum(clipped, Fraction(0))
    if total > 0:
        return [c / total for c in clipped]
    k = sum(1 for ok in eligible if ok)
    return [Fraction(1, k) if ok else Fraction(0) for ok in eligible] if k else [Fraction(0)] * len(values)


def contribution_shares(values: Sequence[float], eligible: Sequence[bool]) -> list[float]:
    """The normalised shares behind :func:`to_basis_points`, as floats for the report."""
    return [float(q) for q in _quotas(values, eligible)]


def to_basis_points(values: Sequence[float], eligible: Sequence[bool]) -> list[int]:
    """Integer basis points summing to exactly 10,000 (or all 0 if nobody is eligible)."""
    quotas = [q * TOTAL_BPS for q in _quotas(values, eligible)]
    bps = [math.floor(q) for q in quotas]
    if not any(quotas):
        return bps
    leftover = TOTAL_BPS - sum(bps)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - bps[i]), i))
    for i in by_remainder[:leftover]:
        bps[i] += 1
    return bps


def cumulative_values(prior: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float]:
    """Each trainer's sum of per-round values: ``prior`` (earlier rounds) plus ``current`` (this round), signed.

    Keys are the union of both, in order of first appearance (prior first).
    """
    out = {a: float(v) for a, v in prior.items()}
    for a, v in current.items():
        out[a] = out.get(a, 0.0) + float(v)
    if any(not math.isfinite(v) for v in out.values()):
        raise ValueError("contribution values must be finite")
    return out


def cumulative_shares(values: Mapping[str, float]) -> dict[str, float]:
    """Shares of cumulative values: clipped at 0 and normalised (equal if none is positive)."""
    return dict(zip(values, contribution_shares(list(values.values()), [True] * len(values))))
