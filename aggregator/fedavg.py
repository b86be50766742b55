"""Federated averaging of the surviving updates.

FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", Algorithm 1): the new global model is the
old one plus the average of the client deltas weighted by their sample
counts.  Sums are taken in float64 in a fixed order, so every replay of a
round gets the same bits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from market.tensors import flatten, unflatten


def fedavg(vectors: Tensor, weights: Sequence[float] | Tensor) -> Tensor:
    """``sum_i w_i v_i / sum_i w_i`` over the rows of ``vectors[n, d]``, as float64 ``[d]``."""
    if vectors.dim() != 2 or vectors.shape[0] == 0:
        raise ValueError(f"fedavg needs a non-empty [n, d] matrix, got shape {list(vectors.shape)}")
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.numel() != vectors.shape[0]:
        raise ValueError(f"fedavg got {w.numel()} weights for {vectors.shape[0]} vectors")
    if not bool((w >= 0).all()) or not float(w.sum()) > 0:
        raise ValueError("fedavg weights must be non-negative with a positive sum")
    return (w / w.sum()) @ vectors.to(torch.float64)


def apply_delta(state: dict[str, Tensor], delta: Tensor) -> "OrderedDict[str, Tensor]":
    """``state + delta`` (delta flat, names sorted as in :func:`market.tensors.flatten`), float32."""
    new = flatten(state).to(torch.float64) + delta.to(torch.float64)
    return unflatten(new.to(torch.float32), state)


def next_state(global_state: dict[str, Tensor], update: Tensor | None) -> "OrderedDict[str, Tensor]":
    """The global model plus the flat ``update``; unchanged (a float32 copy) when there is none."""
    if update is not None:
        return apply_delta(global_state, update)
    return OrderedDict((k, v.detach().clone().float()) for k, v in sorted(global_state.items()))
