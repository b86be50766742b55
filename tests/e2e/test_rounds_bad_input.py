"""Bad updates are rejected with a reason and the round still completes for everyone else; a bad update
that anyone can check (unavailable, tampered, unbound, invalid) costs its trainer the stake."""

from __future__ import annotations

from pathlib import Path

import torch

from aggregator.service import Aggregator
from market.data import digits_splits
from market.store import LocalStore
from market.task import load_task
from market.tensors import decode_state, encode_state
from simulator.environment import open_environment
from simulator.simulate import SimulateConfig, post_task
from tests.support.rounds import bound_meta, close_commits, open_round, play_round
from trainer_node.node import TrainerNode

STAKE = 10**17


def _setup(tmp_path: Path, n: int = 4, stake: str = "0.1"):  # type: ignore[no-untyped-def]
    cfg = SimulateConfig(trainers=n, rounds=1, chain="tester", store_dir=str(tmp_path / "store"), stake=stake)
    splits = digits_splits(n, "iid", 0)
    ctx = open_environment(chain="tester", n_accounts=n + 2, store="local", store_dir=str(tmp_path / "store"))
    env = ctx.__enter__()
    task_id, spec = post_task(env, env.accounts[0], cfg, splits.validation, 10**18)
    nodes = [TrainerNode(env.contract, env.store, a, s) for a, s in zip(env.accounts[2:], splits.trainers)]
    for node in nodes:
        node.join(task_id)
    agg = Aggregator(env.contract, env.store, env.accounts[1], splits.validation)
    return env, task_id, spec, nodes, agg


def _lost(env, task_id: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {a: sum(per.values()) for a, per in env.contract.stakes_lost(task_id).items()}


def _balanced(env, task_id: int, trainers: int = 4, withdrawn: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Every wei is accounted for: lost stakes are credited on top of the pools, and the contract holds the
    reward and the stakes deposited less what left it."""
    info = env.contract.task(task_id)
    assert info.escrow + info.credited + info.refunded == info.reward + sum(_lost(env, task_id).values())
    assert env.chain.balance(env.contract.address) == info.reward + trainers * STAKE - withdrawn - info.refunds_withdrawn


def test_nan_update_is_rejected_and_the_round_completes(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    bad = nodes[-1]
    template = {"linear.weight": torch.full((10, 64), float("nan")), "linear.bias": torch.zeros(10)}
    blob = encode_state(template, bound_meta(task_id, 0, bad.address))

    posted = play_round(env, nodes, agg, task_id=task_id, blobs={bad.address: blob}).posted

    assert posted is not None
    assert "nan" in posted.receipt.rejected[bad.address].lower()
    assert posted.receipt.bps[bad.address] == 0 and posted.receipt.lost == [bad.address]
    assert sum(posted.bps) == 10_000
    assert env.contract.task(task_id).finished
    assert _lost(env, task_id) == {bad.address: STAKE} and posted.stakes_lost_wei == STAKE
    # the lost stake goes to the paid trainers, with the pool: not a wei to the owner
    assert sum(env.contract.credited(task_id, 0).values()) == 10**18 + STAKE
    assert bad.address not in env.contract.credited(task_id, 0)
    _balanced(env, task_id)


def test_blob_whose_bytes_do_not_match_its_cid_is_rejected(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    victim = nodes[0]
    played = play_round(env, nodes, agg, task_id=task_id, post=False)  # everyone revealed; the round is sealed
    cid = played.cid(victim)
    assert isinstance(env.store, LocalStore)
    path = env.store.root / cid
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # tamper with the stored bytes after the reveal
    path.write_bytes(bytes(data))

    posted = agg.run_round(task_id)

    assert "hash check" in posted.receipt.rejected[victim.address]
    assert posted.receipt.bps[victim.address] == 0 and victim.address in posted.receipt.lost
    assert sum(posted.bps) == 10_000


def test_a_second_trainer_revealing_another_trainers_cid_is_rejected(tmp_path: Path) -> None:
    """Two trainers cannot both validly reveal one blob: its metadata names the trainer that made it."""
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    *honest, copier = nodes
    # the bytes honest[0] commits to (training is deterministic), which the copier got out of band: nothing is
    # published before the reveals, and a commitment hides the CID
    blob = honest[0].prepare_update(load_task(env.contract, env.store, task_id))[0]

    played = play_round(env, nodes, agg, task_id=task_id, blobs={copier.address: blob})
    posted = played.posted
    original = played.cid(honest[0])

    assert posted is not None and played.committed[copier.address] == original
    assert {s.cid for s in posted.receipt.submissions if s.trainer == copier.address} == {original}
    assert posted.receipt.rejected[copier.address] == (
        f"the update names trainer {honest[0].address.lower()}, task {task_id}, round 0, "
        f"not its revealer {copier.address.lower()} in task {task_id} round 0")
    assert posted.receipt.bps[copier.address] == 0 and posted.receipt.bps[honest[0].address] > 0
    assert honest[0].address not in posted.receipt.rejected
    assert _lost(env, task_id) == {copier.address: STAKE}


def test_an_update_revealed_but_never_published_is_unavailable_and_its_stake_lost(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    *honest, hider = nodes
    state, meta = decode_state(hider.prepare_update(load_task(env.contract, env.store, task_id))[0])

    played = play_round(env, nodes, agg, task_id=task_id, blobs={hider.address: encode_state(state, meta)},
                        unpublished=[hider])
    posted = played.posted

    assert posted is not None and hider.address in played.revealed
    cid = played.cid(hider)
    assert posted.receipt.rejected[hider.address] == f"blob {cid} is not in the store at {env.store.root}"
    assert posted.receipt.lost == [hider.address] and _lost(env, task_id) == {hider.address: STAKE}
    assert sum(posted.bps) == 10_000 and posted.receipt.bps[hider.address] == 0
    _balanced(env, task_id)


def test_an_update_without_its_binding_is_rejected_and_its_stake_lost(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    *honest, bare = nodes
    open_round(env.contract, task_id)
    state, _meta = decode_state(bare.prepare_update(load_task(env.contract, env.store, task_id))[0])
    blob = encode_state(state, {"kind": "delta", "samples": str(len(bare.data))})  # a good update, unbound

    posted = play_round(env, nodes, agg, task_id=task_id, blobs={bare.address: blob}).posted

    assert posted is not None
    assert posted.receipt.rejected == {bare.address: "the update does not name its trainer, task and round in its metadata"}
    assert posted.receipt.lost == [bare.address] and _lost(env, task_id) == {bare.address: STAKE}
    assert sum(env.contract.credited(task_id, 0).values()) == 10**18 + STAKE
    _balanced(env, task_id)


def test_a_committer_that_does_not_reveal_loses_its_stake_to_the_revealers(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    silent = nodes[1]

    played = play_round(env, nodes, agg, task_id=task_id, drop_reveals=[silent])
    posted = played.posted

    assert posted is not None and silent.address in played.committed and silent.address not in played.revealed
    assert [s.trainer for s in posted.receipt.submissions] == [n.address for n in nodes if n is not silent]
    assert silent.address not in posted.receipt.bps and posted.stakes_lost_wei == STAKE
    assert _lost(env, task_id) == {silent.address: STAKE}
    credited = env.contract.credited(task_id, 0)
    assert silent.address not in credited and sum(credited.values()) == 10**18 + STAKE
    withdrawn = sum(n.withdraw(task_id) for n in nodes)
    assert withdrawn == 10**18 + STAKE + 3 * STAKE  # the pool, the lost stake, and the three stakes given back
    assert env.contract.owed(task_id, silent.address) == 0
    _balanced(env, task_id, withdrawn=withdrawn)


def test_restarted_trainer_does_not_commit_or_reveal_twice(tmp_path: Path) -> None:
    env, task_id, spec, nodes, agg = _setup(tmp_path)
    open_round(env.contract, task_id)
    first = nodes[0].run_round(task_id)

    again = nodes[0].run_round(task_id)

    assert first.cid is not None
    assert again.cid is None and again.skipped == "already submitted this round"
    assert list(env.contract.commitments(task_id, 0)) == [nodes[0].address]
    for node in nodes[1:]:
        node.run_round(task_id)
    close_commits(env.contract, task_id)
    restarted = TrainerNode(env.contract, env.store, nodes[0].account, nodes[0].data)  # no memory of the commit
    revealed = restarted.reveal_round(task_id)
    assert revealed.cid == first.cid
    assert restarted.reveal_round(task_id).skipped == "already revealed this round"
    assert env.contract.submitters(task_id, 0).count(nodes[0].address) == 1
