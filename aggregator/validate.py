"""Checks an update blob must pass before the aggregator considers it at all.

Updates come from strangers, so they are parsed as safetensors (a header of
names, dtypes and shapes plus raw little-endian data; never pickle, which runs
code on load; https://huggingface.co/docs/safetensors) and then checked
against the global model's names, shapes and dtype, for finiteness, for an
absurd L2 norm (the first defence of Blanchard et al. 2017 against
arbitrarily large Byzantine updates), for an all-zero delta (the global model
returned unchanged: the free rider of Lin et al. 2019, "Free-riders in
Federated Learning"; it carries no work, yet under the default ``fedavg``
coalition utility diluting the honest step can earn it a positive Shapley
value -- measured up to 1.4% of a first round and 54% of a converged one --
so it is refused outright) and for a ``samples`` count, the FedAvg weight
(McMahan et al. 2017).  Each rejection carries a one-line reason that goes
into the round receipt.  A free rider that adds noise to the global model is
not caught here; it is valued like anyone else (see the README's valuation
section for what it earns).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from market.errors import MalformedUpdateError
from market.spec import TaskSpec
from market.tensors import decode_state, flatten

_SAMPLES = re.compile(r"[1-9][0-9]{0,17}")  # a positive int that fits in int64
_MAX_REASON = 160

Validated = tuple["OrderedDict[str, Tensor] | None", "int | None", "str | None"]


def _reject(reason: str) -> Validated:
    """One printable line of at most ``_MAX_REASON`` characters (parts of it may be a stranger's bytes)."""
    line = " ".join("".join(c if c.isprintable() else " " for c in reason).split())
    return None, None, line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def _names(names: set[str]) -> str:
    shown = sorted(names)[:3]
    return ", ".join(shown) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")


def validate_update(blob: bytes, template: dict[str, Tensor], max_norm: float) -> Validated:
    """``(delta, samples, None)`` for an acceptable update, ``(None, None, reason)`` otherwise.

    ``template`` is the global model's state: the update must have exactly its
    tensor names and shapes, in float32, all finite, with L2 norm (over all
    tensors together) at most ``max_norm``, and string metadata ``samples``
    holding a positive decimal integer.  Metadata ``kind``, if present, must
    be ``delta``.  A delta that is zero everywhere (no change from the global
    model) is rejected.
    """
    try:
        tensors, metadata = decode_state(blob)
    except MalformedUpdateError as exc:
        return _reject(str(exc))
    missing, extra = set(template) - set(tensors), set(tensors) - set(template)
    if missing:
        return _reject(f"missing tensors: {_names(missing)}")
    if extra:
        return _reject(f"unexpected tensors: {_names(extra)}")
    for name in sorted(template):
        t = tensors[name]
        if tuple(t.shape) != tuple(template[name].shape):
            return _reject(f"tensor {name} has shape {list(t.shape)}, expected {list(template[name].shape)}")
        if t.dtype != torch.float32:
            return _reject(f"tensor {name} has dtype {str(t.dtype).removeprefix('torch.')}, expected float32")
    for name in sorted(template):
        if not bool(torch.isfinite(tensors[name]).all()):
            return _reject(f"tensor {name} contains NaN or Inf")
    kind = metadata.get("kind")
    if kind is not None and kind != "delta":
        return _reject(f"metadata kind is {kind!r}, expected 'delta'")
    raw = metadata.get("samples")
    if raw is None:
        return _reject("metadata samples is missing")
    if not _SAMPLES.fullmatch(raw):
        return _reject(f"metadata samples must be a positive integer, got {raw[:20]!r}")
    norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors.values()))
    if not norm <= max_norm:
        return _reject(f"update norm {norm:.4g} exceeds max_update_norm {max_norm:g}")
    if norm == 0.0:  # every value +0.0 or -0.0
        return _reject("no change from the global model (the delta is zero everywhere)")
    return tensors, int(raw), None


@dataclass(frozen=True)
class ValidUpdates:
    """The updates that passed validation (flat deltas in submission order) and why the rest did not."""

    addresses: list[str]
    deltas: list[Tensor]  # flat float32, names sorted
    samples: dict[str, int]
    rejected: dict[str, str]


def validate_all(spec: TaskSpec, global_state: dict[str, Tensor], submissions: Sequence[tuple[str, bytes]]) -> ValidUpdates:
    """Run :func:`validate_update` over every submission; a reason for each rejection."""
    out = ValidUpdates([], [], {}, {})
    for address, blob in submissions:
        delta, count, reason = validate_update(blob, global_state, spec.validation.max_update_norm)
        if delta is None or count is None:
            out.rejected[address] = reason or "invalid update"
            continue
        out.addresses.append(address)
        out.deltas.append(flatten(delta))
        out.samples[address] = count
    return out
