"""Model states and updates as safetensors bytes (never pickle: updates come from strangers).

An update blob is a safetensors file whose tensors are named like the model's
``state_dict`` and whose string metadata carries ``samples`` (how many local
examples it was trained on) and ``kind`` (``delta`` for an update, ``model``
for a full global model).  See https://huggingface.co/docs/safetensors.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from market.errors import MalformedUpdateError

State = "OrderedDict[str, torch.Tensor]"


#: all metadata travels as one canonical JSON string under this key: safetensors keeps metadata in a
#: hash map whose order changes from process to process, and CIDs need byte-identical files
META_KEY = "poc"


def encode_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise named tensors (contiguous CPU copies) to safetensors bytes, deterministically."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {META_KEY: json.dumps(metadata or {}, sort_keys=True, separators=(",", ":"))}
    return _st_save(clean, metadata=meta)


def decode_state(data: bytes) -> tuple["OrderedDict[str, torch.Tensor]", dict[str, str]]:
    """Parse safetensors bytes; :class:`MalformedUpdateError` on anything malformed."""
    if len(data) < 8:
        raise MalformedUpdateError("not a safetensors file: too short")
    try:
        tensors = _st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        metadata = dict(header.get("__metadata__") or {})
        if META_KEY in metadata:
            packed = json.loads(metadata.pop(META_KEY))
            if not isinstance(packed, dict) or not all(isinstance(v, str) for v in packed.values()):
                raise ValueError("metadata must be a JSON object of strings")
            metadata.update(packed)
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise MalformedUpdateError(f"not a safetensors file: {exc}") from None
    except Exception as exc:  # safetensors may raise other Rust-mapped errors
        raise MalformedUpdateError(f"not a safetensors file: {type(exc).__name__}: {exc}") from None
    return OrderedDict(sorted(tensors.items())), metadata


def flatten(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a state's tensors (sorted by name) into one float32 vector."""
    return torch.cat([state[k].reshape(-1).to(torch.float32) for k in sorted(state)])


def unflatten(vec: torch.Tensor, template: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Inverse of :func:`flatten` given a template with the right names and shapes."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    offset = 0
    for k in sorted(template):
        n = template[k].numel()
        out[k] = vec[offset : offset + n].reshape(template[k].shape).to(template[k].dtype).clone()
        offset += n
    if offset != vec.numel():
        raise MalformedUpdateError(f"vector has {vec.numel()} values, model has {offset}")
    return out
