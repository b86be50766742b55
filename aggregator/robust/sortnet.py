"""Column-wise order statistics of an ``[n, d]`` matrix with a sorting network.

Coordinate-wise median and trimmed mean need, for each of ``d`` columns, the
values of a few ranks among ``n``.  ``torch.sort`` / ``torch.quantile`` along
dimension 0 sort ``d`` short strided columns one by one; a sorting network
instead applies the same compare-exchange to whole rows, i.e. to all ``d``
columns at once, as branch-free vectorised ``minimum``/``maximum``.  The
network is Batcher's merge exchange (Knuth, TAOCP vol. 3, 5.2.2, Algorithm M),
pruned backwards to the comparators that can reach the requested output rows.
Columns are processed in cache-sized blocks.  Ties are harmless: a network
permutes values, so every rank holds exactly the value a full sort puts there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

_BLOCK = 16384  # columns per block: n rows of 64 KiB (float32) stay in cache


@cache
def merge_exchange(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's merge-exchange network for ``n`` inputs: after it, row ``i`` holds rank ``i``."""
    if n < 2:
        return ()
    t = (n - 1).bit_length()
    comps: list[tuple[int, int]] = []
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while True:
            comps.extend((i, i + d) for i in range(n - d) if i & p == r)
            if q == p:
                break
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return tuple(comps)


@cache
def pruned(n: int, outputs: frozenset[int]) -> tuple[tuple[int, int], ...]:
    """The comparators of :func:`merge_exchange` that can affect the rows ``outputs``."""
    needed = set(outputs)
    kept = []
    for i, j in reversed(merge_exchange(n)):
        if i in needed or j in needed:
            kept.append((i, j))
            needed.update((i, j))
    return tuple(reversed(kept))


@dataclass(frozen=True)
class Band:
    """Column-wise mean of ranks ``lo..hi-1`` and how each row relates to it."""

    mean: Tensor  # [d], the input's dtype
    kept: Tensor  # [n] int64: columns where the row's value lies within the band's lowest..highest value
    distance: Tensor  # [n] float64: Euclidean distance of each row to ``mean``


def _band_block(block: np.ndarray, comps: tuple[tuple[int, int], ...], lo: int, hi: int) -> tuple[np.ndarray, ...]:
    rows = [block[i].copy() for i in range(block.shape[0])]
    spare = np.empty_like(rows[0])
    for i, j in comps:
        np.minimum(rows[i], rows[j], out=spare)
        np.maximum(rows[i], rows[j], out=rows[j])
        rows[i], spare = spare, rows[i]
    total = rows[lo].astype(np.float64)
    for r in range(lo + 1, hi):
        total += rows[r]
    mean = (total / (hi - lo)).astype(block.dtype)
    kept = np.count_nonzero((block >= rows[lo]) & (block <= rows[hi - 1]), axis=1)
    diff = block - mean
    sq = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    return mean, kept, sq


def rank_band(vectors: Tensor, lo: int, hi: int) -> Band:
    """One pass over ``vectors`` (``[n, d]``): the column-wise mean of ranks ``lo..hi-1`` (0 = smallest)."""
    n, d = vectors.shape
    if not 0 <= lo < hi <= n:
        raise ValueError(f"ranks {lo}..{hi - 1} out of range for n={n}")
    comps = pruned(n, frozenset(range(lo, hi)))
    x = vectors.detach().cpu().contiguous().numpy()
    parts = [_band_block(x[:, s : s + _BLOCK], comps, lo, hi) for s in range(0, d, _BLOCK)]
    mean = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=x.dtype)
    kept = np.sum([p[1] for p in parts], axis=0) if parts else np.zeros(n, dtype=np.int64)
    sq = np.sum([p[2] for p in parts], axis=0) if parts else np.zeros(n)
    return Band(torch.from_numpy(mean), torch.from_numpy(np.asarray(kept, dtype=np.int64)), torch.from_numpy(np.sqrt(sq)))
