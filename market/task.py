"""What every role does first: read a task and its spec, fetch a model by CID.

Shared by trainer nodes, the aggregator, the API and ``market verify``; all
reads go through the chain client and the content store (re-hashed on read).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from market.chain.contract import MarketContract, TaskInfo
from market.errors import ConfigError, DataError, MalformedUpdateError, MarketError
from market.models import build_model, state_of
from market.receipt import Receipt
from market.spec import TaskSpec, parse_spec
from market.store import ContentStore, get_json
from market.tensors import decode_state, encode_state


@dataclass(frozen=True)
class TaskView:
    info: TaskInfo
    spec: TaskSpec


def load_task(contract: MarketContract, store: ContentStore, task_id: int, info: TaskInfo | None = None) -> TaskView:
    """The task (one ``getTask``, or the ``info`` the caller already read) and its spec (by CID)."""
    info = info if info is not None else contract.task(task_id)
    try:
        spec = parse_spec(get_json(store, info.spec_cid), f"task {task_id} spec {info.spec_cid}")
    except ConfigError as exc:  # the spec came from the store, not from the user: corrupt data
        raise DataError(str(exc)) from None
    if not spec.initial_model_cid:
        raise DataError(f"task {task_id}: its spec names no initial_model_cid")
    return TaskView(info, spec)


def initial_model_blob(spec: TaskSpec, onnx: bytes | None = None) -> bytes:
    """The round-0 model every party can rebuild: from the spec's seed, or, for a model converted from an ONNX file
    (``model.onnx_cid``), that file's weights (``onnx``, its bytes; a one-line ConfigError if it is not that file)."""
    net = build_model(spec.model, spec.data, seed=spec.model_seed)
    if spec.model.onnx_cid is not None:
        net.load_state_dict(onnx_weights(spec, onnx))
    return encode_state(state_of(net), {"kind": "model"})


def onnx_weights(spec: TaskSpec, onnx: bytes | None, source: str = "--onnx") -> "OrderedDict[str, torch.Tensor]":
    """The weights of the ONNX file a spec's model was converted from, checked to be that file (its CID) and to
    convert to exactly the spec's layers; a one-line ConfigError otherwise."""
    from market.cid import compute_cid
    from market.onnx_import import import_onnx

    want = spec.model.onnx_cid
    if onnx is None:
        raise ConfigError(f"the spec's model was converted from the ONNX file {want}: give that file ({source} FILE)")
    if compute_cid(onnx) != want:
        raise ConfigError(f"{source}: this file is {compute_cid(onnx)}, not the ONNX file {want} the spec's model came from")
    layers, weights = import_onnx(onnx, spec.data, source)
    if layers != spec.model.layers:
        raise ConfigError(f"{source}: the file converts to other layers than the spec's model.layers")
    return weights


def check_onnx_origin(spec: TaskSpec, store: ContentStore) -> str:
    """For a spec whose model came from an ONNX file: convert the file the store holds (by ``model.onnx_cid``) again and
    check it gives exactly the spec's layers and its round-0 weights. A line saying so; DataError naming what differs."""
    assert spec.model.onnx_cid is not None and spec.initial_model_cid
    try:
        expected = initial_model_blob(spec, store.get(spec.model.onnx_cid))
    except ConfigError as exc:
        raise DataError(f"the task's ONNX file does not give its model: {exc}") from None
    if store.get(spec.initial_model_cid) != expected:
        raise DataError(f"the task's round-0 model {spec.initial_model_cid} is not the weights of its ONNX file "
                        f"{spec.model.onnx_cid}")
    return (f"converted from ONNX file {spec.model.onnx_cid}: checked, the file gives exactly these layers and the task's "
            "round-0 weights")


def decode_model(spec: TaskSpec, blob: bytes, what: str) -> "OrderedDict[str, torch.Tensor]":
    """Decode a model blob and check it has exactly the spec's parameter names and shapes."""
    state, _meta = decode_state(blob)
    template = state_of(build_model(spec.model, spec.data))
    if set(state) != set(template):
        raise MalformedUpdateError(f"{what}: parameters {sorted(state)} do not match the spec's model")
    for k, v in template.items():
        if state[k].shape != v.shape or not torch.isfinite(state[k]).all():
            raise MalformedUpdateError(f"{what}: parameter {k} has the wrong shape or non-finite values")
    return state


def fetch_global_model(store: ContentStore, view: TaskView) -> tuple[str, "OrderedDict[str, torch.Tensor]"]:
    """CID and weights of the model the current round starts from: the latest posted model, else the initial one."""
    assert view.spec.initial_model_cid
    cid = view.info.latest_model_cid or view.spec.initial_model_cid
    return cid, decode_model(view.spec, store.get(cid), f"global model {cid}")


def read_receipt(store: ContentStore, cid: str) -> Receipt:
    """The round receipt stored under ``cid`` (re-hashed on read; DataError if it is not a receipt)."""
    return Receipt.from_json(store.get(cid), f"receipt {cid}")


def wait_until(pred: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    """Poll ``pred`` until it holds; a one-line MarketError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise MarketError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
