"""`market verify` against tampered rounds (issue 14, item 10 and row 13): a round passes only if what was posted
on chain is what its receipt says, the receipt starts from the chain's previous model, and its rejections hold.

One task on the in-process chain, real trainer nodes (three honest, one sign-flipper the robust rule drops as an
outlier) and the real aggregator code; each round is posted by a different aggregator:
  round 0  honest
  round 1  (a) the chain pays 100 % to the round's outlier; the receipt, stored as the honest one, says otherwise
  round 2  (b) the round is computed from random weights instead of the chain's previous model (posted consistently)
  round 3  (c) the receipt claims that an honest update is invalid (NaN), and gives its pay to the others
Every tampered round must fail `market verify` with a one-line reason and exit 1; the honest one passes, with and
without the validation set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from aggregator.service import Aggregator, lost_mask
from market.data import Dataset, dataset_commitment, digits_splits, save_npz
from market.receipt import Receipt
from market.store import ContentStore, put_json
from market.task import TaskView, fetch_global_model, load_task
from market.tensors import encode_state
from market_app.cli.main import main
from market_app.verify import Report, verify_round
from owner.task import TaskRequest, create_task
from simulator.environment import Environment, open_environment
from simulator.simulate import SimulateConfig, spec_for
from trainer_node.node import TrainerNode

ROUNDS = 4
SPLITS = digits_splits(4, "iid", 3)
NAN = "tensor weight contains NaN or Inf"


@dataclass
class Played:
    env: Environment
    task_id: int
    attacker: str
    honest: list[str]
    validation: Dataset
    dir: Path


def _commit_and_reveal(env: Environment, task_id: int, nodes: list[TrainerNode]) -> None:
    info = env.contract.task(task_id)
    env.chain.advance_to(info.opens_at(info.current_round))
    for n in nodes:
        n.run_round(task_id)
    for n in nodes:  # the task's every seat committed: reveals are open
        n.reveal_round(task_id)


def _post(agg: Aggregator, task_id: int, tamper: Callable[[Receipt], tuple[Receipt, list[int]]] | None = None,
          start: Callable[[TaskView], TaskView] | None = None) -> None:
    """What an aggregator does in ``Aggregator.run_round``, with a hook on the model it starts from and on what
    it stores and posts."""
    c = agg.contract
    snap = c.round_snapshot(task_id)
    view = load_task(c, agg.store, task_id, snap.info)
    seed = agg.round_seed(snap)
    _outcome, model_cid, receipt = agg.compute_round(start(view) if start else view, snap, seed)
    bps = list(receipt.bps_vector)
    if tamper is not None:
        receipt, bps = tamper(receipt)
    receipt_cid = put_json(agg.store, receipt.to_json())
    c.post_result(agg.account, task_id, snap.info.current_round, model_cid, receipt_cid, bps, seed=seed,
                  lost_mask=lost_mask(receipt))


def _random_start(store: ContentStore) -> Callable[[TaskView], TaskView]:
    def start(view: TaskView) -> TaskView:
        _cid, state = fetch_global_model(store, view)
        gen = torch.Generator().manual_seed(99)
        noise = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in state.items()}
        cid = store.put(encode_state(noise, {"kind": "model"}))
        return TaskView(replace(view.info, latest_model_cid=cid), view.spec)

    return start


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    d = tmp_path_factory.mktemp("verify")
    with open_environment(chain="tester", n_accounts=6, store="local", store_dir=str(d / "store")) as env:
        owner, agg_acct, trainers = env.accounts[0], env.accounts[1], env.accounts[2:]
        cfg = SimulateConfig(trainers=4, attackers=1, rounds=ROUNDS, seed=3)
        request = TaskRequest(spec=spec_for(cfg), validation_commitment=dataset_commitment(SPLITS.validation),
                              rounds=ROUNDS, reward_wei=4 * 10**18, max_trainers=4,
                              submit_window=60, reveal_window=30, result_window=60)
        task_id = create_task(env.contract, env.store, owner, request).task_id
        nodes = [TrainerNode(env.contract, env.store, a, shard, attack="sign_flip" if i == 3 else None, seed=3)
                 for i, (a, shard) in enumerate(zip(trainers, SPLITS.trainers))]
        for n in nodes:
            n.join(task_id)
        agg = Aggregator(env.contract, env.store, agg_acct, SPLITS.validation)
        attacker = nodes[3].address
        honest = [n.address for n in nodes[:3]]

        def pay_the_outlier(receipt: Receipt) -> tuple[Receipt, list[int]]:
            assert attacker in receipt.outliers, receipt.outliers
            return receipt, [10_000 if s.trainer == attacker else 0 for s in receipt.submissions]

        def claim_nan(receipt: Receipt) -> tuple[Receipt, list[int]]:
            victim = max(honest, key=lambda a: receipt.bps[a])
            order = [s.trainer for s in receipt.submissions]
            bps = dict(receipt.bps)
            heir = next(a for a in honest if a != victim and bps[a])
            bps[heir] += bps[victim]
            bps[victim] = 0
            forged = receipt.model_copy(update={
                "rejected": {**receipt.rejected, victim: NAN}, "lost": [*receipt.lost, victim], "bps": bps,
                "bps_vector": [bps[a] for a in order],
            })
            return forged, forged.bps_vector

        for tamper, start in ((None, None), (pay_the_outlier, None), (None, _random_start(env.store)), (claim_nan, None)):
            _commit_and_reveal(env, task_id, nodes)
            _post(agg, task_id, tamper, start)
        assert env.contract.task(task_id).finished
        save_npz(SPLITS.validation, d / "validation.npz")
        yield Played(env, task_id, attacker, honest, SPLITS.validation, d)


def _checks(rep: Report) -> dict[str, tuple[bool, str]]:
    return {name: (ok, detail) for name, ok, detail in rep.checks}


def test_an_honest_round_passes(played: Played) -> None:
    rep = verify_round(played.env.contract, played.env.store, played.task_id, 0)

    assert rep.ok, rep.checks
    assert {"receipt", "submissions", "calldata", "payout", "input model", "values", "rejections"} <= set(_checks(rep))


def test_an_honest_round_passes_the_replay_with_the_chains_seed(played: Played) -> None:
    rep = verify_round(played.env.contract, played.env.store, played.task_id, 0, played.validation)

    assert rep.ok, rep.checks
    assert _checks(rep)["replay"][0]


def test_a_chain_that_paid_the_outlier_fails(played: Played) -> None:
    rep = verify_round(played.env.contract, played.env.store, played.task_id, 1)

    checks = _checks(rep)
    assert not rep.ok
    ok, detail = checks["calldata"]
    assert not ok and detail.startswith("bps: receipt [") and "posted" in detail
    assert checks["input model"][0] and checks["rejections"][0]  # the rest of the round is honest


def test_a_receipt_that_starts_from_random_weights_fails(played: Played) -> None:
    rep = verify_round(played.env.contract, played.env.store, played.task_id, 2, played.validation)

    checks = _checks(rep)
    assert not rep.ok
    ok, detail = checks["input model"]
    assert not ok and "the chain's previous model is" in detail and "round 1's model" in detail
    assert checks["calldata"][0]  # posted consistently with its receipt: only the starting point betrays it
    assert not checks["replay"][0] and checks["replay"][1].startswith("differs in model, bps")


def test_a_receipt_claiming_a_rejection_that_does_not_hold_fails(played: Played) -> None:
    rep = verify_round(played.env.contract, played.env.store, played.task_id, 3)

    checks = _checks(rep)
    assert not rep.ok
    ok, detail = checks["rejections"]
    assert not ok and f"({NAN}) but its update passes every check that needs no validation set" in detail
    assert checks["calldata"][0] and checks["payout"][0]  # the forgery is consistent with itself and the chain
    ok, detail = checks["values"]  # but not with its own lists: a rejection the validation did not make
    assert not ok and "its addresses are not its submitters less the updates it refused" in detail


def test_the_cli_exits_1_with_one_line_per_failed_check(played: Played, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import market_app.cli.task as task_cli

    monkeypatch.setattr(task_cli, "_contract", lambda args: played.env.contract)
    monkeypatch.setattr(task_cli, "_store", lambda args: played.env.store)

    assert main(["verify", "--task", str(played.task_id), "--round", "0"]) == 0
    out = capsys.readouterr().out
    assert "round verified" in out and "FAIL" not in out

    assert main(["verify", "--task", str(played.task_id)]) == 1
    out = capsys.readouterr().out
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert [ln.split()[1] for ln in fails] == ["calldata", "input", "values", "rejections"]
    assert "rounds 1, 2, 3 FAILED verification" in out
    assert all(len(ln) < 320 for ln in fails)


def test_verify_reads_what_was_posted_not_the_wrappers_view(played: Played) -> None:
    from market_app.verify import posted_result

    info = played.env.contract.task(played.task_id)
    call: dict[str, Any] = posted_result(played.env.contract, played.task_id, 1, info)

    order = [s.trainer for s in played.env.contract.submissions(played.task_id, 1, info)]
    assert [int(b) for b in call["bps"]] == [10_000 if a == played.attacker else 0 for a in order]
    assert len(call["seed"]) == 32 and call["lostMask"] == 0
