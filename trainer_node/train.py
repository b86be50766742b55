"""Local training: one trainer's FedAvg client step.

Implements the client side of FederatedAveraging (McMahan et al. 2017,
"Communication-Efficient Learning of Deep Networks from Decentralized Data",
Algorithm 1, ClientUpdate): starting from the current global model, run
``epochs`` passes of minibatch SGD over the local data and return the update
``delta = local - global`` that the aggregator averages.

Deterministic given ``seed``: shuffling uses a local :class:`torch.Generator`,
never the global RNG, so two runs with the same inputs give bit-identical
deltas (on the same machine and thread count).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor

from market.data import Dataset
from market.errors import ConfigError
from market.models import model_with_state, state_of
from market.spec import TaskSpec


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy, ``F.cross_entropy`` by its definition.

    ``F.cross_entropy`` goes through ``log_softmax``, which opens an OpenMP
    parallel region even for a 32x10 batch; when the machine's cores are busy
    (several trainer nodes, a chain, a test run) that costs milliseconds per
    call (measured 13 ms vs 10 us on 2 cores), so local training would run
    ~40x slower.  ``logsumexp`` and ``gather`` stay on the calling thread.
    """
    return (torch.logsumexp(logits, dim=1) - logits.gather(1, y[:, None]).squeeze(1)).mean()


def _squared_error(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error of a regression model's one output (a regression task's local loss)."""
    return ((out[:, 0] - y) ** 2).mean()


def local_update(spec: TaskSpec, global_state: dict[str, Tensor], data: Dataset, seed: int) -> "OrderedDict[str, Tensor]":
    """Train ``spec.training.epochs`` epochs of SGD from ``global_state``; return ``local - global``.

    Keys are sorted by name and every tensor is float32, ready for
    :func:`market.tensors.encode_state`.
    """
    if len(data) == 0:
        raise ConfigError("local training needs at least one example")
    hp = spec.training
    net = model_with_state(spec.model, spec.data, global_state)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=hp.lr, momentum=hp.momentum)
    gen = torch.Generator().manual_seed(seed)
    regression = spec.data.regression
    x, y = data.x.to(torch.float32), (data.y.to(torch.float32) if regression else data.y.to(torch.int64))
    loss_of = _squared_error if regression else _cross_entropy
    n = len(data)
    for _ in range(hp.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, hp.batch_size):
            idx = order[start : start + hp.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_of(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
    local = state_of(net)
    return OrderedDict((k, local[k] - global_state[k].to(torch.float32)) for k in local)
