"""Model architectures named in the task spec: logistic regression, an MLP, a small CNN, or declared layers.

Every party builds the model from the spec alone, with a seeded initialisation,
so the round-0 global model is reproducible from the spec.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from market.architecture import Activation, Conv2d, Dropout, Embedding, Flatten, GroupNorm, Layer, LayerNorm, Linear, Pool2d
from market.spec import DataSchema, ModelSpec


class LogReg(nn.Module):
    """Multinomial logistic regression: logits linear in the parameters (one output: linear regression)."""

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
    def __init__(self, image_shape: tuple[int, int], n_classes: int, hidden: int, channels: int = 1) -> None:
        super().__init__()
        self.image_shape = image_shape
        self.channels = channels
        self.conv = nn.Conv2d(channels, 8, kernel_size=3, padding=1)
        h, w = image_shape
        self.fc1 = nn.Linear(8 * (h // 2) * (w // 2), hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.image_shape
        z = torch.relu(self.conv(x.reshape(-1, self.channels, h, w)))
        z = torch.nn.functional.max_pool2d(z, 2).flatten(1)
        return self.fc2(torch.relu(self.fc1(z)))


class _Lookup(nn.Module):
    """An embedding over the features read as whole numbers (the spec bounds them to the table)."""

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(num_embeddings, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x.round().long().clamp(0, self.table.num_embeddings - 1))


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU}


def _torch_layer(layer: Layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nn.Module:
    if isinstance(layer, Linear):
        return nn.Linear(in_shape[0], out_shape[0], bias=layer.bias)
    if isinstance(layer, Conv2d):
        return nn.Conv2d(in_shape[0], layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias)
    if isinstance(layer, Pool2d):
        pool = nn.MaxPool2d if layer.type == "maxpool2d" else nn.AvgPool2d
        return pool(layer.kernel_size, layer.stride or layer.kernel_size)
    if isinstance(layer, GroupNorm):
        return nn.GroupNorm(layer.groups, in_shape[0])
    if isinstance(layer, LayerNorm):
        return nn.LayerNorm(list(in_shape))
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, Flatten):
        return nn.Flatten(1)
    if isinstance(layer, Embedding):
        return _Lookup(layer.num_embeddings, layer.dim)
    assert isinstance(layer, Activation)
    return _ACTIVATIONS[layer.type]()


class Declared(nn.Module):
    """A ``model.arch = "layers"`` model: the declared layers in order, over one sample of ``input_shape``."""

    def __init__(self, model: ModelSpec, data: DataSchema) -> None:
        super().__init__()
        summary = model.summary(data)
        self.input_shape = summary.input_shape
        shapes = [summary.input_shape, *(row.out_shape for row in summary.layers)]
        self.layers = nn.Sequential(*(_torch_layer(layer, shapes[i], shapes[i + 1]) for i, layer in enumerate(model.layer_list())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.reshape(-1, *self.input_shape))


def build_model(model: ModelSpec, data: DataSchema, seed: int = 0) -> nn.Module:
    """A freshly initialised model; the same ``seed`` gives the same weights everywhere."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if model.arch == "logreg":
            net: nn.Module = LogReg(data.n_features, data.outputs)
        elif model.arch == "mlp":
            net = MLP(data.n_features, data.outputs, model.hidden)
        elif model.arch == "cnn":
            assert data.image_shape is not None
            net = SmallCNN(data.image_shape, data.outputs, model.hidden, data.channels)
        else:
            net = Declared(model, data)
    finally:
        torch.random.set_rng_state(gen_state)
    if data.regression:
        _predict_the_middle(net, data)
    return net


@torch.no_grad()
def _predict_the_middle(net: nn.Module, data: DataSchema) -> None:
    """A regression model starts predicting the middle of ``label_range`` for every sample: its last layer's weights 0,
    its bias the midpoint. From random weights its predictions were off by a constant anyone could correct without
    data (an attacker paid 13 % of a diabetes round for a bias shift computed from the public model and the range)."""
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    last.weight.zero_()
    if last.bias is not None:
        last.bias.fill_(sum(data.label_range) / 2)


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


def r_squared_of(predictions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - SSE / SST`` of predictions ``[..., V, 1]`` (a regression model's one output) against labels ``[V]``
    (float64; ``SST`` the labels' spread about their own mean, at least 1e-12 so that constant labels stay finite)."""
    target = y.to(torch.float64)
    err = ((predictions.to(torch.float64)[..., 0] - target) ** 2).sum(-1)
    return 1.0 - err / ((target - target.mean()) ** 2).sum().clamp_min(1e-12)


@torch.no_grad()
def r_squared(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``1 - SSE / SST`` of a regression model's one output against real labels ``y``."""
    net.eval()
    return float(r_squared_of(net(x), y))


def held_out_score(data: DataSchema, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The task's headline score on held-out data: accuracy (classification) or R^2 (regression)."""
    return r_squared(net, x, y) if data.regression else accuracy(net, x, y)
