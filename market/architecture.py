"""Declared model architectures: a sequence of standard layers named in the task spec.

An owner who needs more than the three built-in models (``logreg``, ``mlp``, ``cnn``) writes
``model.arch = "layers"`` and lists the layers, e.g. for 28x28 grey images::

    [model]
    arch = "layers"
    layers = [
      {type = "conv2d", out_channels = 16, kernel_size = 3, padding = 1}, {type = "relu"},
      {type = "maxpool2d", kernel_size = 2},
      {type = "flatten"},
      {type = "linear", out_features = 64}, {type = "relu"},
      {type = "linear"},   # the last linear's out_features may be left out: the task's outputs
    ]

Nobody runs the owner's code: every party builds the same ``torch.nn`` layers from this list
(:func:`market.models.build_model`), so a spec is data, never a program.  This module is the pure
half: the layer types, and :func:`infer` which walks a list over the input shape and returns each
layer's output shape, parameter count and multiply-adds -- the spec is refused, in one line naming
the layer, if a shape does not fit, and a trainer sees the table before joining (``market task show``).

The input is one sample: ``[channels, rows, columns]`` when the data is an image (``data.image_shape``),
otherwise ``[n_features]``.  The last layer must give ``[outputs]`` (the task's classes).

BatchNorm is left out on purpose: its running statistics are not trained parameters, and averaging
them over trainers with different data is not defined the same way by every FL system (FedBN keeps
them local); ``groupnorm`` and ``layernorm`` normalise each sample on its own and average like any
other weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: the largest activation (values per sample, summed over layers) and work (multiply-adds per sample) a declared
#: model may need: a spec is untrusted, and every trainer and aggregator runs its model
MAX_ACTIVATIONS = 2_000_000
MAX_MACS = 500_000_000
#: no model has more weights than this: 40 MB of float32
MAX_PARAMETERS = 10_000_000


class _Layer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Linear(_Layer):
    """A fully connected layer on a flat input; ``out_features`` left out means the task's outputs (last layer only)."""

    type: Literal["linear"]
    out_features: int | None = Field(None, gt=0, le=65536)
    bias: bool = True


class Conv2d(_Layer):
    type: Literal["conv2d"]
    out_channels: int = Field(gt=0, le=4096)
    kernel_size: int = Field(gt=0, le=31)
    stride: int = Field(1, gt=0, le=31)
    padding: int = Field(0, ge=0, le=31)
    bias: bool = True


class Pool2d(_Layer):
    """Max or average pooling; ``stride`` left out means the kernel size (non-overlapping windows)."""

    type: Literal["maxpool2d", "avgpool2d"]
    kernel_size: int = Field(gt=0, le=31)
    stride: int | None = Field(None, gt=0, le=31)


class GroupNorm(_Layer):
    """Normalises each sample's channels in ``groups`` groups (``groups = 1``: the whole sample), with a learnt scale and shift."""

    type: Literal["groupnorm"]
    groups: int = Field(1, gt=0, le=4096)


class LayerNorm(_Layer):
    """Normalises each sample over its whole shape, with a learnt scale and shift per value."""

    type: Literal["layernorm"]


class Activation(_Layer):
    type: Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu"]


class Dropout(_Layer):
    """Zeroes each value with probability ``p`` while training; nothing at evaluation (valuation, accuracy)."""

    type: Literal["dropout"]
    p: float = Field(0.5, ge=0, lt=1)


class Flatten(_Layer):
    type: Literal["flatten"]


class Embedding(_Layer):
    """First layer only: each feature is a whole number ``0 .. num_embeddings - 1`` looked up in a learnt table.

    The data's ``feature_range`` must lie inside ``[0, num_embeddings - 1]``; the output is
    ``[n_features, dim]`` (add a ``flatten`` before a ``linear``)."""

    type: Literal["embedding"]
    num_embeddings: int = Field(gt=0, le=1_000_000)
    dim: int = Field(gt=0, le=4096)


Layer = Annotated[
    Linear | Conv2d | Pool2d | GroupNorm | LayerNorm | Activation | Dropout | Flatten | Embedding,
    Field(discriminator="type"),
]


@dataclass(frozen=True)
class LayerShape:
    """One row of a model's table: the layer, what it gives one sample, its weights and multiply-adds."""

    index: int
    text: str
    out_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Summary:
    input_shape: tuple[int, ...]
    layers: tuple[LayerShape, ...]

    @property
    def values(self) -> int:
        """Values one sample holds through the model (its input and every layer's output): the memory a pass takes."""
        return math.prod(self.input_shape) + sum(math.prod(row.out_shape) for row in self.layers)

    @property
    def params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.layers)


def _text(layer: _Layer) -> str:
    fields = layer.model_dump(exclude={"type"}, exclude_defaults=True)
    inner = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{layer.type}({inner})"  # type: ignore[attr-defined]


def shape_text(shape: tuple[int, ...]) -> str:
    """``[16, 14, 14]``: a shape as the spec's messages and ``market task show`` write it."""
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _windows(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def infer(layers: tuple[_Layer, ...] | list[_Layer], input_shape: tuple[int, ...], outputs: int,
          feature_range: tuple[float, float] = (0.0, 1.0)) -> Summary:
    """Each layer's output shape, weights and multiply-adds for one sample of ``input_shape``.

    Raises ``ValueError`` naming the first layer (``model.layers[i]``) whose input it cannot take,
    or saying what the last layer must give.
    """
    if not layers:
        raise ValueError("model.layers is empty: list the layers, the last one giving the task's outputs")
    shape = tuple(input_shape)
    rows: list[LayerShape] = []
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        where = f"model.layers[{i}] ({layer.type})"  # type: ignore[attr-defined]
        params = macs = 0
        if isinstance(layer, Linear):
            if len(shape) != 1:
                raise ValueError(f"{where} needs a flat input, got {shape_text(shape)}: add {{type = \"flatten\"}} before it")
            if layer.out_features is None and i != last:
                raise ValueError(f"{where}: only the last layer may leave out out_features (it then gives the task's {outputs} outputs)")
            out = layer.out_features if layer.out_features is not None else outputs
            params = shape[0] * out + (out if layer.bias else 0)
            macs = shape[0] * out
            shape = (out,)
        elif isinstance(layer, Conv2d | Pool2d):
            if len(shape) != 3:
                raise ValueError(f"{where} needs an image [channels, rows, columns], got {shape_text(shape)}: "
                                 "set data.image_shape (and data.channels) for image data, and put it before any flatten")
            c, h, w = shape
            k = layer.kernel_size
            if isinstance(layer, Conv2d):
                s, pad, out_c = layer.stride, layer.padding, layer.out_channels
            else:
                s, pad, out_c = layer.stride or k, 0, c
            oh, ow = _windows(h, k, s, pad), _windows(w, k, s, pad)
            if oh < 1 or ow < 1:
                raise ValueError(f"{where}: a {k}x{k} window does not fit a {h}x{w} input"
                                 + (f" padded by {pad}" if pad else ""))
            if isinstance(layer, Conv2d):
                params = out_c * c * k * k + (out_c if layer.bias else 0)
                macs = out_c * c * k * k * oh * ow
            else:  # a pooling window reads k x k values for each output: work like a multiply-add each
                macs = out_c * k * k * oh * ow
            shape = (out_c, oh, ow)
        elif isinstance(layer, GroupNorm):
            channels = shape[0]  # of a flat input, every feature is a channel
            if channels % layer.groups:
                raise ValueError(f"{where}: groups = {layer.groups} must divide the {channels} channels of its input {shape_text(shape)}")
            if channels // layer.groups * math.prod(shape[1:]) < 2:
                raise ValueError(f"{where}: each of its {layer.groups} groups would hold one value of {shape_text(shape)}, which "
                                 "cannot be normalised: use fewer groups")
            params = 2 * channels
        elif isinstance(layer, LayerNorm):
            params = 2 * math.prod(shape)
        elif isinstance(layer, Flatten):
            shape = (math.prod(shape),)
        elif isinstance(layer, Embedding):
            if i != 0:
                raise ValueError(f"{where}: an embedding looks up the data's features, so it must be the first layer")
            if len(shape) != 1:
                raise ValueError(f"{where}: an embedding takes the flat features, not an image {shape_text(shape)}: "
                                 "leave data.image_shape out")
            lo, hi = feature_range
            if lo < 0 or hi > layer.num_embeddings - 1:
                raise ValueError(f"{where}: features are looked up as whole numbers 0..{layer.num_embeddings - 1}, "
                                 f"but data.feature_range is [{lo:g}, {hi:g}]")
            params = layer.num_embeddings * layer.dim
            shape = (shape[0], layer.dim)
        if not isinstance(layer, Linear | Conv2d | Pool2d | Flatten | Dropout):
            macs = math.prod(shape)  # activations and normalisations: a few operations per value
        text = _text(layer) if not (isinstance(layer, Linear) and layer.out_features is None) else f"linear(out_features={outputs})"
        rows.append(LayerShape(i, text, shape, params, macs))
    if shape != (outputs,):
        raise ValueError(f"the last layer gives {shape_text(shape)} per sample; the task needs [{outputs}] (its outputs): "
                         "end with a linear layer, out_features left out")
    summary = Summary(tuple(input_shape), tuple(rows))
    activations = summary.values
    if summary.params > MAX_PARAMETERS:
        raise ValueError(f"the model has {summary.params} weights, more than the {MAX_PARAMETERS} a task's model may have")
    if activations > MAX_ACTIVATIONS:
        raise ValueError(f"the layers hold {activations} values per sample, more than the {MAX_ACTIVATIONS} a task's model may")
    if summary.macs > MAX_MACS:
        raise ValueError(f"the layers take {summary.macs} multiply-adds per sample, more than the {MAX_MACS} a task's model may")
    return summary
