"""ONNX files as declared layers (:mod:`market.onnx_import`): what torch exports converts to a network that
computes the same, anything else is refused in one line, and a task's round-0 model is the file's weights."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from market.cid import compute_cid
from market.errors import ConfigError, DataError
from market.models import build_model
from market.onnx_import import import_onnx, onnx_model
from market.spec import DataSchema, ModelSpec, TaskSpec
from market.store import LocalStore
from market.task import check_onnx_origin, initial_model_blob
from market.tensors import decode_state
from owner.task import publish_spec

TABULAR = DataSchema(n_features=30, n_classes=2)
IMAGES = DataSchema(n_features=2 * 8 * 8, n_classes=10, image_shape=(8, 8), channels=2)


def export(net: nn.Module, n_features: int, sample_shape: tuple[int, ...] | None = None) -> bytes:
    buf = io.BytesIO()
    x = torch.rand(1, *(sample_shape or (n_features,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net.eval(), (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}})
    return buf.getvalue()


class SmallConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(6 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.max_pool2d(torch.tanh(self.conv(x.reshape(-1, 2, 8, 8))), 2)
        z = nn.functional.leaky_relu(self.conv2(nn.functional.avg_pool2d(z, 1)))
        return self.fc(nn.functional.gelu(z).flatten(1))


@pytest.mark.parametrize("net, data", [
    (nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 8, bias=False), nn.Sigmoid(), nn.Linear(8, 2)), TABULAR),
    (SmallConvNet(), IMAGES),
    (nn.Sequential(nn.Flatten(), nn.Linear(128, 12), nn.ELU(), nn.Linear(12, 10)), IMAGES),
])
def test_a_torch_export_converts_to_layers_that_compute_what_the_network_does(net: nn.Module, data: DataSchema) -> None:
    torch.manual_seed(0)
    blob = export(net, data.n_features)
    layers, weights = import_onnx(blob, data)
    model = build_model(ModelSpec(arch="layers", layers=layers), data)
    model.load_state_dict(weights)  # every weight, every name, every shape
    x = torch.rand(7, data.n_features)

    assert torch.allclose(model.eval()(x), net.eval()(x), atol=1e-6)
    assert onnx_model(blob, data).onnx_cid == compute_cid(blob)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(30, 30), nn.Linear(30, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) + x)


@pytest.mark.parametrize("make, needle", [
    (lambda: export(nn.Sequential(nn.Linear(30, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), 30), "batch normalisation is not taken"),
    (lambda: export(Residual(), 30), "the graph must be one chain of layers"),
    (lambda: export(nn.Sequential(nn.Linear(30, 4), nn.Softplus(), nn.Linear(4, 2)), 30), "operator Softplus is not one the market builds"),
    (lambda: export(nn.Sequential(nn.Linear(30, 4), nn.ReLU(), nn.Linear(4, 3)), 30), "the last layer gives [3] per sample; the task needs [2]"),
    (lambda: export(nn.Sequential(nn.Linear(20, 2)), 20), "layer 0 (linear) takes 20 inputs, but gets 30 there"),
    (lambda: b"not a protobuf at all \xff\xfe", "not an ONNX model"),
])
def test_what_the_market_cannot_build_is_refused_in_one_line(make, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        import_onnx(make(), TABULAR, "net.onnx")
    text = str(err.value)
    assert text.startswith("net.onnx") and "\n" not in text and needle in text


def test_weights_kept_in_another_file_or_custom_operators_are_refused() -> None:
    blob = export(nn.Sequential(nn.Linear(30, 2)), 30)
    model = onnx.load_from_string(blob)
    model.graph.initializer[0].data_location = onnx.TensorProto.EXTERNAL
    with pytest.raises(ConfigError, match="keeps its data in another file"):
        import_onnx(model.SerializeToString(), TABULAR)
    model = onnx.load_from_string(blob)
    model.graph.node[0].domain = "com.example"
    with pytest.raises(ConfigError, match="custom operators"):
        import_onnx(model.SerializeToString(), TABULAR)


def test_a_tasks_round_0_model_is_the_files_weights_and_anyone_can_check_it(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 2))
    blob = export(net, 30)
    spec = TaskSpec(data=TABULAR, model=onnx_model(blob, TABULAR))
    store = LocalStore(tmp_path / "store")

    with pytest.raises(ConfigError, match="give that file"):
        initial_model_blob(spec)
    other = export(nn.Sequential(nn.Linear(30, 8), nn.ReLU(), nn.Linear(8, 2)), 30)
    with pytest.raises(ConfigError, match="not the ONNX file"):
        initial_model_blob(spec, other)
    published, _cid = publish_spec(store, spec, blob)
    state, _ = decode_state(store.get(published.initial_model_cid or ""))

    assert torch.equal(state["layers.0.weight"], net[0].weight.detach()) and torch.equal(state["layers.2.bias"], net[2].bias.detach())
    assert "checked" in check_onnx_origin(published, store)
    # a round-0 model that is not the file's weights (the seed's, say) is caught
    forged = published.model_copy(update={"initial_model_cid": store.put(initial_model_blob(spec.model_copy(
        update={"model": spec.model.model_copy(update={"onnx_cid": None})}), None))})
    with pytest.raises(DataError, match="is not the weights of its ONNX file"):
        check_onnx_origin(forged, store)


def _crafted(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], elem: int = onnx.TensorProto.FLOAT) -> bytes:
    from onnx import helper

    x = helper.make_tensor_value_info("x", elem, [None, 1, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 10])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _w(name: str, *shape: int, value: float | None = None, dtype: type = np.float32) -> onnx.TensorProto:
    from onnx import numpy_helper

    a = np.full(shape, value, dtype=dtype) if value is not None else np.random.default_rng(0).random(shape).astype(dtype)
    return numpy_helper.from_array(a, name)


_FC = [onnx.helper.make_node("Flatten", ["c"], ["f"]), onnx.helper.make_node("Gemm", ["f", "W2", "B2"], ["y"], transB=1)]
_IMAGES = DataSchema(n_features=64, n_classes=10, image_shape=(8, 8))


@pytest.mark.parametrize("make, needle", [  # attacker pass (helper 36): each of these was a traceback
    (lambda: _crafted([onnx.helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), *_FC],
                      [_w("W", 4, 1, 5, 5), _w("B", 4), _w("W2", 10, 256), _w("B2", 10)]), "do not fit a 3x3 convolution"),
    (lambda: _crafted([onnx.helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]), *_FC],
                      [_w("W", 4, 1, 3, 3), _w("B", 7), _w("W2", 10, 256), _w("B2", 10)]), "do not fit a 3x3 convolution"),
    (lambda: _crafted([onnx.helper.make_node("MaxPool", ["x"], ["c"], kernel_shape=2), *_FC], [_w("W2", 10, 16), _w("B2", 10)]),
     "not a model the market can build"),
    (lambda: _crafted([onnx.helper.make_node("MaxPool", ["x"], ["c"]), *_FC], [_w("W2", 10, 64), _w("B2", 10)]),
     "not a model the market can build"),
    (lambda: _crafted([onnx.helper.make_node("Conv", ["x", "W"], ["c"], pads=[16] * 4), *_FC],
                      [_w("W", 4, 1, 33, 33), _w("W2", 10, 256), _w("B2", 10)]), "a layer the market cannot build: kernel_size"),
    (lambda: _crafted([onnx.helper.make_node("Flatten", ["x"], ["f"]), onnx.helper.make_node("Gemm", ["f", "W2"], ["y"], transB=1)],
                      [_w("W2", 10, 64, value=float("nan"))]), "holds values that are not finite numbers"),
    (lambda: _crafted([onnx.helper.make_node("Flatten", ["x"], ["f"]), onnx.helper.make_node("Gemm", ["f", "W2"], ["y"], transB=1)],
                      [_w("W2", 10, 64, value=1e39, dtype=np.float64)]), "is not finite as float32"),
    (lambda: _crafted([onnx.helper.make_node("Flatten", ["x"], ["f"]), onnx.helper.make_node("Gemm", ["f", "W2"], ["y"], transB=1)],
                      [_w("W2", 10, 64)], elem=onnx.TensorProto.STRING), "the graph's input holds STRING"),
    (lambda: _crafted([onnx.helper.make_node("Flatten", ["x"], ["f"]),
                       onnx.helper.make_node("Gemm", ["f", "W2"], ["y"], transB=1, alpha="x")], [_w("W2", 10, 64)]),
     "not a model the market can build"),
])
def test_a_malformed_onnx_file_is_one_line_never_a_traceback(make, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        import_onnx(make(), _IMAGES, "net.onnx")
    assert str(err.value).startswith("net.onnx: ") and needle in str(err.value) and "\n" not in str(err.value)
