"""Bad updates are rejected with a reason and the round still completes for everyone else."""

from __future__ import annotations

from pathlib import Path

import torch

from aggregator.service import Aggregator
from market.data import digits_splits
from market.errors import MalformedUpdateError
from market.commitment import submission_commitment
from market.task import load_task
from market.store import LocalStore
from market.tensors import encode_state
from simulator.environment import open_environment
from simulator.simulate import post_task
from simulator.simulate import SimulateConfig
from trainer_node.node import TrainerNode


def _setup(tmp_path: Path, n: int = 4):  # type: ignore[no-untyped-def]
    cfg = SimulateConfig(trainers=n, rounds=1, chain="tester", store_dir=str(tmp_path / "store"))
    splits = digits_splits(n, "iid", 0)
    ctx = open_environment(chain="tester", n_accounts=n + 2, store="local", store_dir=str(tmp_path / "store"))
    env = ctx.__enter__()
    task_id, spec = post_task(env, env.accounts[0], env.accounts[1].address, cfg, splits.validation, 10**18)
    nodes = [TrainerNode(env.contract, env.store, a, s) for a, s in zip(env.accounts[2:], splits.trainers)]
    for node in nodes:
        node.join(task_id)
    agg = Aggregator(env.contract, env.store, env.accounts[1], splits.validation)
    return env, task_id, spec, nodes, agg


def _submit_blob(env, task_id: int, node: TrainerNode, blob: bytes) -> str:  # type: ignore[no-untyped-def]
    cid = env.store.put(blob)
    spec = load_task(env.contract, env.store, task_id).spec
    try:
        commitment = submission_commitment(spec, task_id, 0, node.address, cid, blob)
    except MalformedUpdateError:
        commitment = b"\x00" * 32  # not an update at all: nothing to sketch
    env.contract.submit_update(node.account, task_id, 0, cid, commitment)
    return cid


def test_nan_update_is_rejected_and_the_round_completes(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    for node in nodes[:-1]:
        node.run_round(task_id)
    template = {"linear.weight": torch.full((10, 64), float("nan")), "linear.bias": torch.zeros(10)}
    _submit_blob(env, task_id, nodes[-1], encode_state(template, {"kind": "delta", "samples": "100"}))

    posted = agg.run_round(task_id)

    assert "nan" in posted.receipt.rejected[nodes[-1].address].lower()
    assert posted.receipt.bps[nodes[-1].address] == 0
    assert sum(posted.bps) == 10_000
    assert env.contract.task(task_id).finished


def test_blob_whose_bytes_do_not_match_its_cid_is_rejected(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    for node in nodes:
        node.run_round(task_id)
    victim = nodes[0]
    cid = env.contract.submissions(task_id, 0)[0].cid
    assert isinstance(env.store, LocalStore)
    path = env.store.root / cid
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # tamper with the stored bytes
    path.write_bytes(bytes(data))

    posted = agg.run_round(task_id)

    assert "hash check" in posted.receipt.rejected[victim.address]
    assert posted.receipt.bps[victim.address] == 0
    assert sum(posted.bps) == 10_000


def test_copied_cid_earns_nothing(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    for node in nodes[:-1]:
        node.run_round(task_id)
    original = env.contract.submissions(task_id, 0)[0]
    copier = nodes[-1]
    env.contract.submit_update(copier.account, task_id, 0, original.cid,
                               submission_commitment(spec, task_id, 0, copier.address, original.cid,
                                                     env.store.get(original.cid)))

    posted = agg.run_round(task_id)

    assert "duplicate" in posted.receipt.rejected[copier.address]
    assert posted.receipt.bps[copier.address] == 0


def test_restarted_trainer_does_not_submit_twice(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    first = nodes[0].run_round(task_id)

    again = nodes[0].run_round(task_id)

    assert first.cid is not None
    assert again.cid is None and again.skipped == "already submitted this round"
    assert env.contract.submitters(task_id, 0).count(nodes[0].address) == 1
