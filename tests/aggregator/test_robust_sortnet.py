"""The sorting network behind coordinate-wise median and trimmed mean."""

from __future__ import annotations

import itertools

import pytest
import torch

import aggregator.robust.sortnet as sortnet
from aggregator.robust.sortnet import merge_exchange, pruned, rank_band


def _apply(comps: tuple[tuple[int, int], ...], values: list[int]) -> list[int]:
    v = list(values)
    for i, j in comps:
        if v[i] > v[j]:
            v[i], v[j] = v[j], v[i]
    return v


@pytest.mark.parametrize("n", range(1, 13))
def test_merge_exchange_sorts_every_zero_one_input(n: int) -> None:
    # the 0-1 principle (Knuth 5.3.4): a network that sorts all 2^n 0/1 inputs sorts everything
    comps = merge_exchange(n)

    assert all(_apply(comps, list(bits)) == sorted(bits) for bits in itertools.product((0, 1), repeat=n))


@pytest.mark.parametrize(("n", "outputs"), [(7, {3}), (10, {4, 5}), (12, {0, 11}), (9, {2, 3, 4, 5, 6})])
def test_the_pruned_network_still_places_its_outputs(n: int, outputs: set[int]) -> None:
    comps = pruned(n, frozenset(outputs))

    assert len(comps) <= len(merge_exchange(n))
    for bits in itertools.product((0, 1), repeat=n):
        out, want = _apply(comps, list(bits)), sorted(bits)
        assert all(out[k] == want[k] for k in outputs)


@pytest.mark.parametrize(("n", "lo", "hi"), [(5, 2, 3), (6, 2, 4), (10, 2, 8), (50, 10, 40), (3, 0, 3)])
def test_rank_band_matches_a_full_sort_with_many_ties(n: int, lo: int, hi: int) -> None:
    x = torch.randint(0, 4, (n, 37), generator=torch.Generator().manual_seed(n)).to(torch.float32)
    ranked = torch.sort(x, dim=0).values[lo:hi]

    band = rank_band(x, lo, hi)

    assert torch.equal(band.mean, ranked.double().mean(dim=0).float())
    kept = ((x >= ranked[0]) & (x <= ranked[-1])).sum(dim=1)
    assert torch.equal(band.kept, kept)
    assert torch.allclose(band.distance, torch.linalg.vector_norm((x - band.mean).double(), dim=1))


def test_rank_band_joins_column_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sortnet, "_BLOCK", 4)
    x = torch.randn(7, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    band = rank_band(x, 3, 4)

    assert torch.equal(band.mean, torch.sort(x, dim=0).values[3])
