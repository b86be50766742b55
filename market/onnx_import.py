"""An ONNX graph as declared layers and their weights: how an owner brings a model it built elsewhere.

:func:`import_onnx` reads an ONNX file (a protobuf message: parsed, never executed; no custom operators, no
external data files) whose graph is one chain of standard operators, and returns the same network as
``model.layers`` (:mod:`market.architecture`) plus its weights under the names the declared model uses
(``layers.<i>.weight``).  ``market task init --onnx`` writes those layers into the spec with the file's CID
(``model.onnx_cid``), ``market task create --onnx`` publishes the file and makes its weights the round-0 model,
and every trainer's ``market task show`` converts the published file again and checks it gives exactly the
spec's layers and round-0 weights.  After that nothing reads ONNX: the task trains the declared layers, with
every fast path a declared model has.

Operators taken (opset 9 to 22, what ``torch.onnx.export`` writes for such networks): ``Gemm`` and ``MatMul``
(+ ``Add`` of a bias) as ``linear``; ``Conv`` (square kernel, equal strides, symmetric padding, no groups or
dilation) as ``conv2d``; ``MaxPool``/``AveragePool`` (square, no padding) as pooling; ``Relu``, ``Tanh``,
``Sigmoid``, ``Elu`` (alpha 1), ``LeakyRelu`` (alpha 0.01), ``Gelu``; ``Flatten`` (axis 1) and a ``Reshape`` to
``[batch, -1]`` as ``flatten``; ``Dropout`` and ``Identity`` (kept out). Anything else is refused in one
line naming the node.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from market.architecture import Activation, Conv2d, Flatten, Layer, Linear, Pool2d
from market.cid import compute_cid
from market.errors import ConfigError
from market.models import build_model
from market.spec import DataSchema, ModelSpec

#: the largest ONNX file taken: the most weights a task's model may have, as float32, and room for the graph
MAX_ONNX_BYTES = 48 * 1024 * 1024
_ACTIVATION_OPS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Gelu": "gelu"}


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _square(values: Any, what: str, where: str) -> int:
    vals = [int(v) for v in values]
    if len(vals) != 2 or vals[0] != vals[1]:
        raise ConfigError(f"{where}: only square 2-D {what} are taken, got {vals}")
    return vals[0]


def _pads(node_attrs: dict[str, Any], where: str) -> int:
    pads = [int(p) for p in node_attrs.get("pads", [0, 0, 0, 0])]
    if len(set(pads)) != 1:
        raise ConfigError(f"{where}: only the same padding on every side is taken, got {pads}")
    if node_attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ConfigError(f"{where}: auto_pad is not taken: export with explicit padding")
    return pads[0]


class _Reader:
    """Walks a chain graph node by node, collecting layers and weights."""

    def __init__(self, graph: Any) -> None:
        import onnx
        from onnx import numpy_helper

        self.consts: dict[str, np.ndarray] = {}
        for t in graph.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                raise ConfigError(f"initializer {t.name!r} keeps its data in another file: save the model with its "
                                  "weights inside (onnx.save(model, path, save_as_external_data=False))")
            value = numpy_helper.to_array(t)
            if value.dtype.kind not in "fiu":
                raise ConfigError(f"initializer {t.name!r} holds {value.dtype}, not real numbers")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ConfigError(f"initializer {t.name!r} holds values that are not finite numbers (NaN or infinity)")
            self.consts[t.name] = value
        self.layers: list[Layer] = []
        self.weights: OrderedDict[str, torch.Tensor] = OrderedDict()

    def const(self, name: str, where: str) -> np.ndarray:
        if name not in self.consts:
            raise ConfigError(f"{where}: input {name!r} must be a constant (a weight), not a computed value")
        return self.consts[name]

    def add(self, layer: Layer, **weights: np.ndarray) -> None:
        i = len(self.layers)
        self.layers.append(layer)
        for k, v in weights.items():
            with np.errstate(over="ignore"):
                value = np.array(v, dtype=np.float32)  # a writable copy, as every party holds weights
            if not np.isfinite(value).all():
                raise ConfigError(f"layer {i} ({layer.type}): its {k} is not finite as float32 (NaN, infinity, or "
                                  "beyond 3.4e38)")
            self.weights[f"layers.{i}.{k}"] = torch.from_numpy(value)

    def linear(self, w: np.ndarray, b: np.ndarray | None, where: str) -> None:  # w: [out, in]
        if w.ndim != 2 or (b is not None and b.shape != (w.shape[0],)):
            raise ConfigError(f"{where}: a linear layer needs a 2-D weight and a bias of its outputs, got {w.shape}"
                              f" and {None if b is None else b.shape}")
        kw = {"weight": w} if b is None else {"weight": w, "bias": b}
        self.add(Linear(type="linear", out_features=int(w.shape[0]), bias=b is not None), **kw)


def import_onnx(blob: bytes, data: DataSchema, source: str = "ONNX model") -> tuple[tuple[Layer, ...], "OrderedDict[str, torch.Tensor]"]:
    """The graph in ``blob`` as declared layers over ``data``, and its weights (declared names); one ConfigError line otherwise.

    The file is untrusted: whatever in it is malformed (attributes of the wrong type, missing ones, tensors whose
    bytes do not match their shape, weights that do not fit the layer their node describes, weights that are not
    finite numbers) is that one line too, never a traceback."""
    from pydantic import ValidationError

    try:
        layers, weights = _convert(blob, data, source)
        model = ModelSpec(arch="layers", layers=layers)
        build_model(model, data).load_state_dict(weights)  # every weight has its layer's exact shape
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(source) else f"{source}: {text}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: a layer the market cannot build: {'.'.join(map(str, first['loc']))}: "
                          f"{first['msg']}") from None
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError) as exc:
        text = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"{source}: not a model the market can build: {text}") from None
    return layers, weights


def _convert(blob: bytes, data: DataSchema, source: str) -> tuple[tuple[Layer, ...], "OrderedDict[str, torch.Tensor]"]:
    import onnx
    from google.protobuf.message import DecodeError

    if len(blob) > MAX_ONNX_BYTES:
        raise ConfigError(f"{source}: {len(blob)} bytes, more than the {MAX_ONNX_BYTES} an ONNX model may have here")
    try:
        model = onnx.load_from_string(blob)
    except (DecodeError, ValueError, RuntimeError):
        raise ConfigError(f"{source}: not an ONNX model (torch.onnx.export writes one)") from None
    graph = model.graph
    if len(graph.input) - len({t.name for t in graph.initializer} & {i.name for i in graph.input}) != 1 or len(graph.output) != 1:
        raise ConfigError(f"{source}: the graph must take one input (the samples) and give one output")
    r = _Reader(graph)
    feature_input = next(i.name for i in graph.input if i.name not in r.consts)
    elem = next(i for i in graph.input if i.name == feature_input).type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise ConfigError(f"{source}: the graph's input holds {onnx.TensorProto.DataType.Name(elem)}, not the real-valued "
                          "features the market feeds it")
    current = feature_input
    pending_matmul: tuple[int, np.ndarray] | None = None  # a MatMul's weight, waiting for a bias Add
    for k, node in enumerate(graph.node):
        where = f"{source}: node {k} ({node.op_type}{' ' + repr(node.name) if node.name else ''})"
        op, a = node.op_type, _attrs(node)
        if op == "Constant":
            r.consts[node.output[0]] = onnx.numpy_helper.to_array(a["value"]) if "value" in a else np.asarray(a.get("value_ints", []))
            continue
        if op == "Identity" and node.input and node.input[0] in r.consts:  # another name for a constant
            r.consts[node.output[0]] = r.consts[node.input[0]]
            continue
        if node.domain not in ("", "ai.onnx"):
            raise ConfigError(f"{where}: custom operators (domain {node.domain!r}) are not taken")
        if not node.input or node.input[0] != current:
            raise ConfigError(f"{where}: the graph must be one chain of layers, each taking the previous one's output")
        if pending_matmul is not None and op != "Add":
            r.linear(pending_matmul[1], None, where)
            pending_matmul = None
        if op == "Gemm":
            if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
                raise ConfigError(f"{where}: only Gemm with alpha = beta = 1 and an untransposed input is taken")
            w = r.const(node.input[1], where)
            w = w if a.get("transB", 0) else w.T
            b = r.const(node.input[2], where).reshape(-1) if len(node.input) > 2 and node.input[2] else None
            r.linear(w, b, where)
        elif op == "MatMul":
            pending_matmul = (k, r.const(node.input[1], where).T)
        elif op == "Add":
            if len(node.input) < 2 or node.input[1] not in r.consts:
                raise ConfigError(f"{where}: the graph must be one chain of layers (a skip connection or a second branch "
                                  "is not taken)")
            if pending_matmul is None:
                raise ConfigError(f"{where}: an Add is taken only as the bias of the MatMul before it")
            r.linear(pending_matmul[1], r.const(node.input[1], where).reshape(-1), where)
            pending_matmul = None
        elif op == "Conv":
            w = r.const(node.input[1], where)
            if w.ndim != 4 or int(a.get("group", 1)) != 1 or any(int(d) != 1 for d in a.get("dilations", [1, 1])):
                raise ConfigError(f"{where}: only 2-D convolutions without groups or dilation are taken")
            b = r.const(node.input[2], where) if len(node.input) > 2 and node.input[2] else None
            kernel = _square(a.get("kernel_shape", w.shape[2:]), "kernels", where)
            if tuple(w.shape[2:]) != (kernel, kernel) or (b is not None and b.shape != (w.shape[0],)):
                raise ConfigError(f"{where}: its weight {list(w.shape)} (and bias {None if b is None else list(b.shape)}) "
                                  f"do not fit a {kernel}x{kernel} convolution")
            stride = _square(a.get("strides", [1, 1]), "strides", where)
            layer = Conv2d(type="conv2d", out_channels=int(w.shape[0]), kernel_size=kernel, stride=stride,
                           padding=_pads(a, where), bias=b is not None)
            r.add(layer, **({"weight": w} if b is None else {"weight": w, "bias": b}))
        elif op in ("MaxPool", "AveragePool"):
            if _pads(a, where) or int(a.get("ceil_mode", 0)) or any(int(d) != 1 for d in a.get("dilations", [1, 1])):
                raise ConfigError(f"{where}: only pooling without padding, ceil_mode or dilation is taken")
            kernel = _square(a["kernel_shape"], "windows", where)
            stride = _square(a.get("strides", [kernel, kernel]), "strides", where)
            r.add(Pool2d(type="maxpool2d" if op == "MaxPool" else "avgpool2d", kernel_size=kernel,
                         stride=None if stride == kernel else stride))
        elif op in _ACTIVATION_OPS:
            if op == "Gelu" and a.get("approximate", b"none") not in (b"none", "none"):
                raise ConfigError(f"{where}: only the exact Gelu is taken")
            r.add(Activation(type=_ACTIVATION_OPS[op]))  # type: ignore[arg-type]
        elif op == "Elu" and abs(float(a.get("alpha", 1.0)) - 1.0) < 1e-6:
            r.add(Activation(type="elu"))
        elif op == "LeakyRelu" and abs(float(a.get("alpha", 0.01)) - 0.01) < 1e-6:
            r.add(Activation(type="leaky_relu"))
        elif op == "Flatten":
            if int(a.get("axis", 1)) != 1:
                raise ConfigError(f"{where}: only Flatten with axis 1 (keep the batch) is taken")
            r.add(Flatten(type="flatten"))
        elif op == "Reshape":
            shape = [int(v) for v in r.const(node.input[1], where).reshape(-1)]
            if current == feature_input and shape[:1] in ([-1], [0]) and tuple(shape[1:]) == data.input_shape:
                current = node.output[0]  # the samples as the model sees them: the declared model reshapes them itself
                continue
            if len(shape) != 2 or shape[1] != -1 and shape[0] not in (-1, 0):
                raise ConfigError(f"{where}: only a Reshape to [batch, -1] (a flatten) is taken, got {shape}")
            r.add(Flatten(type="flatten"))
        elif op in ("Dropout", "Identity"):
            pass  # an exported network's dropout does nothing at inference; train-time dropout is declared, not imported
        elif op == "BatchNormalization":
            raise ConfigError(f"{where}: batch normalisation is not taken (docs/spec-reference.md: use groupnorm or "
                              "layernorm, or fold it into the layer before it when exporting)")
        else:
            raise ConfigError(f"{where}: operator {op} is not one the market builds (docs/spec-reference.md, 'Your own model')")
        current = node.output[0]
    if pending_matmul is not None:
        r.linear(pending_matmul[1], None, f"{source}: the last MatMul")
    if current != graph.output[0].name:
        raise ConfigError(f"{source}: the graph's output is not the end of its chain of layers")
    try:
        summary = ModelSpec(arch="layers", layers=tuple(r.layers)).summary(data)
    except ValueError as exc:
        raise ConfigError(f"{source}: as layers over the task's data: {exc}") from None
    shapes = [summary.input_shape, *(row.out_shape for row in summary.layers)]
    for name, tensor in r.weights.items():
        i = int(name.split(".")[1])
        if isinstance(r.layers[i], Linear) and name.endswith("weight") and tensor.shape[1] != shapes[i][0]:
            raise ConfigError(f"{source}: layer {i} (linear) takes {tensor.shape[1]} inputs, but gets {shapes[i][0]} there")
        if isinstance(r.layers[i], Conv2d) and name.endswith("weight") and tensor.shape[1] != shapes[i][0]:
            raise ConfigError(f"{source}: layer {i} (conv2d) takes {tensor.shape[1]} channels, but gets {shapes[i][0]} there")
    return tuple(r.layers), r.weights


def read_onnx_file(path: str, option: str = "--onnx") -> bytes:
    """The bytes of the ONNX file an option names; a one-line ConfigError if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror}") from None


def onnx_model(blob: bytes, data: DataSchema, source: str = "ONNX model") -> ModelSpec:
    """The spec's model for an ONNX file: its layers, and its CID as where they (and the round-0 weights) came from."""
    layers, _ = import_onnx(blob, data, source)
    return ModelSpec(arch="layers", layers=layers, onnx_cid=compute_cid(blob))
