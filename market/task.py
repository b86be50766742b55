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


def initial_model_blob(spec: TaskSpec) -> bytes:
    """The round-0 model every party can rebuild from the spec's seed."""
    net = build_model(spec.model, spec.data, seed=spec.model_seed)
    return encode_state(state_of(net), {"kind": "model"})


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
