"""Update validation: every malformed blob is rejected with a short reason, good ones pass."""

from __future__ import annotations

import io
import json
import pickle

import pytest
import torch

from aggregator.validate import validate_update
from market.tensors import encode_state

TEMPLATE = {"a": torch.zeros(2, 2), "b": torch.zeros(2)}


def _blob(tensors: dict[str, torch.Tensor] | None = None, **meta: str) -> bytes:
    tensors = tensors if tensors is not None else {"a": torch.ones(2, 2), "b": torch.tensor([3.0, 4.0])}
    metadata = {"samples": "10", "kind": "delta"}
    metadata.update(meta)
    return encode_state(tensors, {k: v for k, v in metadata.items() if v != "<absent>"})


def test_a_good_update_comes_back_with_its_sample_count() -> None:
    delta, samples, reason = validate_update(_blob(), TEMPLATE, max_norm=100.0)

    assert reason is None and samples == 10
    assert delta is not None and torch.equal(delta["b"], torch.tensor([3.0, 4.0]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_rejected(bad: float) -> None:
    blob = _blob({"a": torch.ones(2, 2), "b": torch.tensor([bad, 0.0])})

    delta, samples, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert delta is None and samples is None and reason == "tensor b contains NaN or Inf"


def test_wrong_shape_is_rejected() -> None:
    blob = _blob({"a": torch.ones(2, 3), "b": torch.zeros(2)})

    _, _, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert reason == "tensor a has shape [2, 3], expected [2, 2]"


def test_wrong_dtype_is_rejected() -> None:
    blob = _blob({"a": torch.ones(2, 2, dtype=torch.float64), "b": torch.zeros(2)})

    _, _, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert reason == "tensor a has dtype float64, expected float32"


def test_missing_tensor_is_rejected() -> None:
    _, _, reason = validate_update(_blob({"a": torch.ones(2, 2)}), TEMPLATE, max_norm=100.0)

    assert reason == "missing tensors: b"


def test_extra_tensor_is_rejected() -> None:
    blob = _blob({"a": torch.ones(2, 2), "b": torch.zeros(2), "c": torch.zeros(1)})

    _, _, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert reason == "unexpected tensors: c"


def test_norm_at_the_limit_passes() -> None:
    blob = _blob({"a": torch.zeros(2, 2), "b": torch.tensor([3.0, 4.0])})  # norm exactly 5

    _, _, reason = validate_update(blob, TEMPLATE, max_norm=5.0)

    assert reason is None


def test_norm_above_the_limit_is_rejected() -> None:
    blob = _blob({"a": torch.zeros(2, 2), "b": torch.tensor([3.0, 4.0])})

    _, _, reason = validate_update(blob, TEMPLATE, max_norm=4.99)

    assert reason == "update norm 5 exceeds max_update_norm 4.99"


@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_a_zero_delta_the_global_model_unchanged_is_rejected(zero: float) -> None:
    blob = _blob({"a": torch.full((2, 2), zero), "b": torch.full((2,), zero)})

    delta, samples, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert delta is None and samples is None
    assert reason == "no change from the global model (the delta is zero everywhere)"


@pytest.mark.parametrize("tiny", [1e-3, 1e-45])  # 1e-45: the smallest float32 subnormal
def test_one_non_zero_value_is_enough_to_pass(tiny: float) -> None:
    blob = _blob({"a": torch.zeros(2, 2), "b": torch.tensor([0.0, tiny])})

    _, samples, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert reason is None and samples == 10


def test_missing_samples_is_rejected() -> None:
    _, _, reason = validate_update(_blob(samples="<absent>"), TEMPLATE, max_norm=100.0)

    assert reason == "metadata samples is missing"


@pytest.mark.parametrize("samples", ["0", "-3", "1.5", "abc", "", " 7", "1e3", "01"])
def test_samples_must_be_a_positive_integer(samples: str) -> None:
    _, _, reason = validate_update(_blob(samples=samples), TEMPLATE, max_norm=100.0)

    assert reason is not None and reason.startswith("metadata samples must be a positive integer")


def test_a_full_model_instead_of_a_delta_is_rejected() -> None:
    _, _, reason = validate_update(_blob(kind="model"), TEMPLATE, max_norm=100.0)

    assert reason == "metadata kind is 'model', expected 'delta'"


def test_pickle_bytes_are_rejected_without_unpickling() -> None:
    buf = io.BytesIO()
    torch.save({"a": torch.ones(2, 2), "b": torch.zeros(2)}, buf)
    blobs = [buf.getvalue(), pickle.dumps({"a": [1.0] * 4, "b": [0.0, 0.0]})]

    reasons = [validate_update(b, TEMPLATE, max_norm=100.0)[2] for b in blobs]

    assert all(r is not None and r.startswith("not a safetensors file") for r in reasons)


def test_truncated_bytes_are_rejected() -> None:
    blob = _blob()

    _, _, reason = validate_update(blob[:-3], TEMPLATE, max_norm=100.0)

    assert reason is not None and reason.startswith("not a safetensors file")


def test_tampered_header_is_rejected() -> None:
    blob = bytearray(_blob())
    blob[9] ^= 0xFF  # inside the JSON header

    _, _, reason = validate_update(bytes(blob), TEMPLATE, max_norm=100.0)

    assert reason is not None and reason.startswith("not a safetensors file")


def test_reasons_are_one_short_printable_line_even_when_the_header_is_hostile() -> None:
    header = json.dumps({"a": {"dtype": "F32\n" + "X" * 300, "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    blob = len(header).to_bytes(8, "little") + header + b"\0" * 16

    _, _, reason = validate_update(blob, TEMPLATE, max_norm=100.0)

    assert reason is not None and reason.isprintable() and len(reason) <= 160
