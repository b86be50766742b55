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
(McMahan et al. 2017), which is recorded but no longer decides anything: the
round weighs every update equally, so nobody can buy weight by claiming more
samples.  Each rejection carries a one-line reason that goes
into the round receipt.

Copies (:func:`find_copies`): an update whose cosine similarity with an update
submitted before it in the round (on-chain order), or with another trainer's or a
global update published in an earlier round,
exceeds the spec's ``validation.copy_cosine`` is refused as a copy: it carries
no work of its own, and paying it would let anyone who sees an update earn a
second share of its value.  The earlier update keeps its value, so a copy never
raises what the pair is paid.  A free rider that adds noise to the global model is
not caught here; it is valued like anyone else (see the README's valuation
section for what it earns).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
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
    #: the rejected updates that are copies (a judgement by cosine); every other rejection is checkable
    #: without the validation set, and its trainer loses its stake
    copies: frozenset[str] = frozenset()


def _unit_rows(vectors: Sequence[Tensor]) -> Tensor:
    m = torch.stack([v.to(torch.float64).reshape(-1) for v in vectors])
    return m / m.norm(dim=1, keepdim=True).clamp_min(1e-300)


#: an update this alike a trainer's *own* earlier update is a replay of it (honest updates of the same
#: trainer in consecutive rounds measured at most 0.997 alike on digits: same data, next model)
OWN_REPLAY_COSINE = 0.9999


@dataclass(frozen=True)
class Published:
    """An update published in an earlier round, which a new one may not copy.

    ``publisher``: the trainer who submitted it ("" for a round's global update, the new model minus the
    old); ``label``: how a rejection names it; ``delta``: the flat update."""

    publisher: str
    label: str
    delta: Tensor


def find_copies(
    addresses: Sequence[str],
    deltas: Sequence[Tensor],
    threshold: float,
    earlier: Sequence[Published] = (),
    order: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """``address -> reason`` for every update that is a (near) copy of one before it.

    An update is a copy when its cosine similarity with an update submitted before it this round
    (``order``: each address's on-chain submission sequence; default: list order), or with one in
    ``earlier`` published by another trainer or as a global update, is above ``threshold``; or with
    its own earlier update above :data:`OWN_REPLAY_COSINE` (a replay: the same data trained from the
    next model points the same way, measured up to 0.997, so a lower bar would refuse honest trainers;
    other trainers' earlier updates stayed below 0.7).  The first of a group of copies is not a copy.
    """
    out: dict[str, str] = {}
    if not deltas:
        return out
    unit = _unit_rows(deltas)
    same = unit @ unit.T
    old = unit @ _unit_rows([p.delta for p in earlier]).T if earlier else None
    seq = order or {a: i for i, a in enumerate(addresses)}
    for i in sorted(range(len(addresses)), key=lambda k: (seq.get(addresses[k], k), k)):
        address = addresses[i]
        before = [j for j in range(len(addresses)) if seq.get(addresses[j], j) < seq.get(address, i)
                  and float(same[i, j]) > threshold]
        if before:
            j = min(before, key=lambda k: seq.get(addresses[k], k))
            out[address] = f"a copy of the update of {addresses[j]} submitted earlier this round (cosine {float(same[i, j]):.6f})"
            continue
        if old is None:
            continue
        for k, p in enumerate(earlier):
            own = p.publisher.lower() == address.lower()
            if float(old[i, k]) > (OWN_REPLAY_COSINE if own else threshold):
                what = "a replay of" if own else "a copy of"
                out[address] = f"{what} {p.label} (cosine {float(old[i, k]):.6f})"
                break
    return out


def validate_all(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    submissions: Sequence[tuple[str, bytes]],
    earlier: Sequence[Published] = (),
    order: Mapping[str, int] | None = None,
) -> ValidUpdates:
    """Run :func:`validate_update` over every submission, then refuse copies (:func:`find_copies`, against each
    other and ``earlier``); a reason for each rejection."""
    out = ValidUpdates([], [], {}, {})
    for address, blob in submissions:
        delta, count, reason = validate_update(blob, global_state, spec.validation.max_update_norm)
        if delta is None or count is None:
            out.rejected[address] = reason or "invalid update"
            continue
        out.addresses.append(address)
        out.deltas.append(flatten(delta))
        out.samples[address] = count
    copies = find_copies(out.addresses, out.deltas, spec.validation.copy_cosine, earlier, order)
    if not copies:
        return out
    keep = [i for i, a in enumerate(out.addresses) if a not in copies]
    return ValidUpdates(
        [out.addresses[i] for i in keep], [out.deltas[i] for i in keep],
        {a: c for a, c in out.samples.items() if a not in copies}, {**out.rejected, **copies}, frozenset(copies),
    )
