"""Model architectures named in the task spec: logistic regression, an MLP, a small CNN.

Every party builds the model from the spec alone, with a seeded initialisation,
so the round-0 global model is reproducible from the spec.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from market.spec import DataSchema, ModelSpec


class LogReg(nn.Module):
    """Multinomial logistic regression: logits linear in the parameters."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MLP(nn.Module):
    def __init__(self, n_features: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class SmallCNN(nn.Module):
    def __init__(self, image_shape: tuple[int, int], n_classes: int, hidden: int) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.conv = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        h, w = image_shape
        self.fc1 = nn.Linear(8 * (h // 2) * (w // 2), hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.image_shape
        z = torch.relu(self.conv(x.reshape(-1, 1, h, w)))
        z = torch.nn.functional.max_pool2d(z, 2).flatten(1)
        return self.fc2(torch.relu(self.fc1(z)))


def build_model(model: ModelSpec, data: DataSchema, seed: int = 0) -> nn.Module:
    """A freshly initialised model; the same ``seed`` gives the same weights everywhere."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if model.arch == "logreg":
            net: nn.Module = LogReg(data.n_features, data.n_classes)
        elif model.arch == "mlp":
            net = MLP(data.n_features, data.n_classes, model.hidden)
        else:
            assert data.image_shape is not None
            net = SmallCNN(data.image_shape, data.n_classes, model.hidden)
    finally:
        torch.random.set_rng_state(gen_state)
    return net


def state_of(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """A detached float32 copy of the model's parameters, sorted by name."""
    return OrderedDict(sorted((k, v.detach().clone().float()) for k, v in net.state_dict().items()))


def model_with_state(model: ModelSpec, data: DataSchema, state: dict[str, torch.Tensor]) -> nn.Module:
    net = build_model(model, data)
    net.load_state_dict(state)
    net.eval()
    return net


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(dim=1) == y).float().mean().item())
