"""A hand-made task for the API tests, small enough to check every number by hand.

Task 1 on the in-process chain: 3 trainers, 2 rounds, reward 1 ETH (pools of 0.5 ETH).
Round 0 was settled by the aggregator's result: trainer 0 kept (10,000 bps, so
0.5 ETH), trainer 1 an outlier, trainer 2 rejected ("update has NaN values");
validation accuracy 0.5 → 0.9.  Round 1 is open with trainer 0's update only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from eth_utils import keccak
from market.receipt import Receipt, ReceiptDetails, ReceiptSubmission
from market.spec import TaskSpec
from market.store import LocalStore, put_json
from tests.conftest import Market

REWARD = 10**18
POOL = REWARD // 2
REASON = "update has NaN values"


@dataclass
class Scenario:
    market: Market
    store: LocalStore
    task_id: int
    trainers: list[LocalAccount]
    update_cids: list[str]
    model_cid: str
    receipt_cid: str
    spec_cid: str


def build_scenario(market: Market, store_dir: Path, *, accuracy_model: float | None = None, idle: int = 0) -> Scenario:
    """``accuracy_model``: the receipt's published-model accuracy (None: a receipt written before the field);
    ``idle``: that many more trainers join and never submit (round 0 then closes by its deadline)."""
    store = LocalStore(store_dir)
    c = market.contract
    trainers = market.trainers[:3]
    idlers = market.trainers[3:3 + idle]
    initial_cid = store.put(b"initial model")
    spec_cid = put_json(store, {**TaskSpec().model_dump(mode="json"), "initial_model_cid": initial_cid})
    task_id, _ = c.create_task(market.owner, spec_cid=spec_cid, initial_model_cid=initial_cid, validation_commitment=b"\x07" * 32,
                               aggregator=market.aggregator.address, rounds=2, reward_wei=REWARD, max_trainers=3 + idle)
    for t in [*trainers, *idlers]:
        c.join(t, task_id)
    cids = []
    for i, t in enumerate(trainers):
        cid = store.put(f"update of trainer {i}, round 0".encode())
        c.submit_update(t, task_id, 0, cid, keccak(text=f"{task_id}:0:{t.address}:{cid}"))
        cids.append(cid)
    t0, t1, t2 = (t.address for t in trainers)
    model_cid = store.put(b"aggregated model of round 0")
    receipt = Receipt(
        task_id=task_id, round=0, spec_cid=spec_cid, validation_commitment="0x" + "07" * 32,
        input_model_cid=initial_cid, model_cid=model_cid,
        submissions=[ReceiptSubmission(trainer=t.address, cid=cid, commitment="0x" + keccak(text=f"{task_id}:0:{t.address}:{cid}").hex())
                     for t, cid in zip(trainers, cids)],
        outliers=[t1], rejected={t2: REASON},
        contributions={t0: 1.0, t1: 0.0, t2: 0.0}, bps={t0: 10_000, t1: 0, t2: 0}, bps_vector=[10_000, 0, 0],
        valuation_seed=0,
        details=ReceiptDetails(accuracy_before=0.5, accuracy_after=0.9, accuracy_model=accuracy_model, valuation="exact",
                               robust={"rule": "multikrum", "applied": "multikrum"}),
    )
    receipt_cid = put_json(store, receipt.to_json())
    if idle:
        market.chain.advance_time(c.task(task_id).submit_window + 1)  # submissions close by the deadline
    c.post_result(market.aggregator, task_id, 0, model_cid, receipt_cid, [10_000, 0, 0])
    cid = store.put(b"update of trainer 0, round 1")
    c.submit_update(trainers[0], task_id, 1, cid, keccak(text=f"{task_id}:1:{t0}:{cid}"))
    return Scenario(market, store, task_id, trainers, cids, model_cid, receipt_cid, spec_cid)
