"""An aggregator that posts the honest pay but hands forged values on to the next round (attacker pass 39).

With the cumulative payout each round pays by every trainer's sum of per-round values, and the next round read
that sum from the latest receipt's ``cumulative_values``. A receipt is not what the chain checks (the proof and
the panel's vote cover the model, the seed, the lost stakes and the bps), so an aggregator could post round 0
honestly, store a receipt whose ``cumulative_values`` gave its accomplice +5 and everyone else -1, and the honest
aggregator of round 1 paid the accomplice the whole pool (10000 bps, honestly about 2,900); ``market verify
--validation`` passed both rounds. Now the next round sums each receipt's own per-round values, and takes them only
when they give what the receipt paid (:func:`aggregator.ledger.split_problem`); ``market verify`` names a receipt
that does not (its ``values`` check), and the replay compares the values too.

A second pass (attacker pass 40) then broke the first fix: a proof's inputs on an unproven task, a flag list that
raised in every later round, and a trainer that revealed nothing listed and valued; a receipt's lists must now follow
from the round's revealed submissions on chain and the task's settlement, and a malformed one is left out, named.

Real trainer nodes and the real aggregator on the in-process chain, digits, four trainers, two rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aggregator.ledger import split_problem
from aggregator.service import Aggregator, lost_mask, prior_round
from market.data import Dataset, digits_splits
from market.payout import cumulative_values
from market.receipt import Receipt
from market.store import put_json
from market.task import load_task, read_receipt
from market_app.verify import verify_round
from simulator.environment import Environment, open_environment
from simulator.simulate import SimulateConfig, post_task
from tests.support.rounds import play_round
from trainer_node.node import TrainerNode

SPLITS = digits_splits(4, "iid", 5)
Forge = Callable[[dict[str, Any], str], None]  # (receipt JSON, accomplice) -> None, in place


@dataclass
class Played:
    env: Environment
    task_id: int
    accomplice: str
    honest0: Receipt  # round 0's receipt as the aggregator computed it
    validation: Dataset

    def receipt(self, r: int) -> Receipt:
        info = self.env.contract.settled_rounds(self.task_id)[r]
        return read_receipt(self.env.store, info.receipt_cid)

    def checks(self, r: int, validation: bool = False) -> dict[str, tuple[bool, str]]:
        rep = verify_round(self.env.contract, self.env.store, self.task_id, r, self.validation if validation else None)
        return {name: (ok, detail) for name, ok, detail in rep.checks}


def _play(stack: ExitStack, tmp: Path, forge: Forge) -> Played:
    """Round 0 posted with its honest model and bps and a receipt ``forge`` edited; round 1 played honestly."""
    cfg = SimulateConfig(trainers=4, rounds=2, seed=5, chain="tester", store_dir=str(tmp / "store"))
    env = stack.enter_context(open_environment(chain="tester", n_accounts=6, store="local", store_dir=cfg.store_dir))
    task_id, _spec = post_task(env, env.accounts[0], cfg, SPLITS.validation, 4 * 10**18)
    nodes = [TrainerNode(env.contract, env.store, a, s, seed=5) for a, s in zip(env.accounts[2:6], SPLITS.trainers)]
    for n in nodes:
        n.join(task_id)
    agg = Aggregator(env.contract, env.store, env.accounts[1], SPLITS.validation)
    accomplice = nodes[0].address.lower()
    play_round(env, nodes, agg, task_id=task_id, post=False)
    snap = env.contract.round_snapshot(task_id)
    seed, _info = agg.seed_and_info(snap)
    _outcome, model_cid, receipt = agg.compute_round(load_task(env.contract, env.store, task_id, snap.info), snap, seed)
    doc = receipt.to_json()
    forge(doc, next(a for a in doc["details"]["addresses"] if a.lower() == accomplice))
    env.contract.post_result(agg.account, task_id, 0, model_cid, put_json(env.store, doc), list(receipt.bps_vector),
                             seed=seed, lost_mask=lost_mask(receipt))
    play_round(env, nodes, agg, task_id=task_id)
    return Played(env, task_id, accomplice, receipt, SPLITS.validation)


@pytest.fixture
def play(tmp_path: Path) -> Iterator[Callable[[Forge], Played]]:
    with ExitStack() as stack:
        yield lambda forge: _play(stack, tmp_path, forge)


def _head_start(doc: dict[str, Any], accomplice: str) -> None:
    cv = doc["details"]["cumulative_values"]
    for a in cv:
        cv[a] = 5.0 if a == accomplice else -1.0


def _forge_values(doc: dict[str, Any], accomplice: str) -> None:
    """The contributions and the cumulative values forged alike (so they add up), the paid bps left honest."""
    d = doc["details"]
    for key in ("contributions", "cumulative_values"):
        for a in d[key]:
            d[key][a] = 5.0 if a == accomplice else (-1.0 if d[key][a] else 0.0)


def _scale(doc: dict[str, Any], accomplice: str) -> None:
    """Every value doubled: the same shares, so the same bps; only the replay can tell."""
    d = doc["details"]
    for key in ("contributions", "cumulative_values"):
        d[key] = {a: 2 * v for a, v in d[key].items()}


def test_a_forged_cumulative_value_does_not_move_the_next_rounds_pay(play: Callable[[Forge], Played]) -> None:
    p = play(_head_start)

    r1 = p.receipt(1).details
    # round 1 carried on the honest values of round 0, not the stored ones
    honest = cumulative_values(p.honest0.details.contributions, r1.contributions)
    assert r1.cumulative_values == honest
    assert p.receipt(1).bps[next(a for a in r1.addresses if a.lower() == p.accomplice)] < 5_000, p.receipt(1).bps
    ok, detail = p.checks(0)["values"]
    assert not ok and detail.startswith("its cumulative values are not the earlier rounds' plus this round's")
    assert p.checks(1, validation=True)["values"][0] and all(ok for ok, _ in p.checks(1, validation=True).values())


def test_forged_contributions_that_do_not_give_the_paid_bps_are_left_out(play: Callable[[Forge], Played]) -> None:
    p = play(_forge_values)

    snap = p.env.contract.round_snapshot(p.task_id)
    prior = prior_round(p.env.store, snap, load_task(p.env.contract, p.env.store, p.task_id).spec,
                        p.env.contract.all_submissions(p.task_id))
    assert set(prior.left_out) == {0} and prior.left_out[0].startswith("it paid [")
    r1 = p.receipt(1).details
    assert r1.cumulative_values == cumulative_values({}, r1.contributions)  # round 0's forged values left out
    ok, detail = p.checks(0)["values"]
    assert not ok and "its values give" in detail
    ok, detail = p.checks(1)["values"]  # round 1 itself is sound, and says what it left out
    assert ok and "round 0's values left out" in detail


def _proof_on_an_unproven_task(doc: dict[str, Any], accomplice: str) -> None:
    """Attacker pass 40: a proof's inputs on an unproven task sent the split through the proven path, where a
    player that is not a slot could carry any value (+100 here: the accomplice then took 9,839 bps a round)."""
    d = doc["details"]
    slots = [a for a in d["addresses"] if a != accomplice]
    d["proof"] = {"system": "groth16", "slots": slots, "n": len(slots), "k": 0, "f": 0, "sketches": [], "binders": [],
                  "perm": list(range(len(slots))), "outlier_slots": [], "utilities": [], "values": [0] * len(slots)}
    d["contributions"][accomplice] = 100.0


def _malformed_flags(doc: dict[str, Any], accomplice: str) -> None:
    """Attacker pass 40: a flag list that is not a list raised in every later round and in `market verify`."""
    doc["details"]["robust"]["full_rule_flagged"] = 5


def _a_stranger_valued(doc: dict[str, Any], accomplice: str) -> None:
    """Attacker pass 40: a trainer that revealed nothing in the round listed as a survivor valued -1e6 (it could then
    never be paid again); listed among the receipt's submissions too, so its lists agree with each other."""
    stranger = "0x" + "ab" * 20
    d = doc["details"]
    doc["submissions"].append({"trainer": stranger, "cid": doc["submissions"][0]["cid"],
                               "commitment": doc["submissions"][0]["commitment"]})
    doc["bps"][stranger] = 0
    doc["bps_vector"].append(0)
    doc["contributions"][stranger] = 0.0
    for key in ("addresses", "survivors"):
        d[key].append(stranger)
    d["bps"].append(0)
    for key in ("contributions", "cumulative_values"):
        d[key][stranger] = -1e6


@pytest.mark.parametrize("forge, needle", [
    (_proof_on_an_unproven_task, "it carries a proof's inputs on a task settled without one"),
    (_malformed_flags, "its updates flagged by the model's rule are not valid updates of a proof task's round"),
    (_a_stranger_valued, "are not the ones revealed on chain"),
])
def test_a_receipt_whose_lists_do_not_hold_is_left_out_and_named(play: Callable[[Forge], Played], forge: Forge,
                                                                 needle: str) -> None:
    p = play(forge)

    ok, detail = p.checks(0)["values"]
    assert not ok and needle in detail, detail
    snap = p.env.contract.round_snapshot(p.task_id)
    prior = prior_round(p.env.store, snap, load_task(p.env.contract, p.env.store, p.task_id).spec,
                        p.env.contract.all_submissions(p.task_id))
    assert set(prior.left_out) == {0} and needle in prior.left_out[0]
    r1 = p.receipt(1).details  # round 1 settled (no crash), paying by its own values alone
    assert r1.cumulative_values == cumulative_values({}, r1.contributions)
    assert all(v > -1 for v in r1.cumulative_values.values())


def test_values_forged_to_give_the_same_bps_are_caught_by_the_replay(play: Callable[[Forge], Played]) -> None:
    p = play(_scale)

    assert split_problem(load_task(p.env.contract, p.env.store, p.task_id).spec, p.receipt(0), {}) is None
    assert p.checks(0)["values"][0]  # consistent with what it paid: without the validation set nothing shows
    ok, detail = p.checks(0, validation=True)["replay"]
    assert not ok and detail.startswith("differs in values, cumulative values")


def test_an_honest_receipt_passes_the_values_check(play: Callable[[Forge], Played]) -> None:
    p = play(lambda doc, accomplice: None)

    for r in (0, 1):
        checks = p.checks(r, validation=True)
        assert all(ok for ok, _ in checks.values()), checks
        assert checks["values"][1].startswith("its cumulative values are the earlier rounds' plus its own")
