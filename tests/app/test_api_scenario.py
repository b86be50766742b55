"""A hand-made task for the API tests, small enough to check every number by hand.

Task 1 on the in-process chain: 3 trainers, 2 rounds, reward 1 ETH (pools of 0.5 ETH), no stake.
Round 0: the three committed and revealed; it was settled by the aggregator's result with the
chain's seed: trainer 0 kept (10,000 bps, so 0.5 ETH), trainer 1 an outlier, trainer 2 rejected
("update has NaN values", its stake lost); validation accuracy 0.5 → 0.9.  Round 1 is open (commit
phase) with trainer 0's commitment only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from market.receipt import Receipt, ReceiptDetails, ReceiptSubmission
from market.spec import TaskSpec
from market.store import LocalStore, put_json
from tests.app.chain_steps import commit, commit_and_reveal, commitment_of, open_round, post
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
                               rounds=2, reward_wei=REWARD, max_trainers=3 + idle)
    for t in [*trainers, *idlers]:
        c.join(t, task_id)
    cids = [store.put(f"update of trainer {i}, round 0".encode()) for i in range(len(trainers))]
    # every trainer commits; with idlers the commits close by the deadline, else as soon as all three committed
    commit_and_reveal(c, task_id, list(zip(trainers, cids)))
    info = c.task(task_id)
    t0, t1, t2 = (t.address for t in trainers)
    model_cid = store.put(b"aggregated model of round 0")
    seed = c.round_seed(task_id, info)
    receipt = Receipt(
        task_id=task_id, round=0, spec_cid=spec_cid, validation_commitment="0x" + "07" * 32,
        input_model_cid=initial_cid, model_cid=model_cid,
        submissions=[ReceiptSubmission(trainer=t.address, cid=cid, commitment="0x" + commitment_of(cid).hex())
                     for t, cid in zip(trainers, cids)],
        outliers=[t1], rejected={t2: REASON},
        contributions={t0: 1.0, t1: 0.0, t2: 0.0}, bps={t0: 10_000, t1: 0, t2: 0}, bps_vector=[10_000, 0, 0],
        valuation_seed=int.from_bytes(seed[:8], "big") >> 1,
        details=ReceiptDetails(accuracy_before=0.5, accuracy_after=0.9, accuracy_model=accuracy_model, valuation="exact",
                               robust={"rule": "multikrum", "applied": "multikrum"}),
        round_seed="0x" + seed.hex(), lost=[t2],
    )
    receipt_cid = put_json(store, receipt.to_json())
    post(c, market.aggregator, task_id, model_cid, receipt_cid, [10_000, 0, 0], lost_mask=0b100)
    open_round(c, task_id)
    commit(c, trainers[0], task_id, store.put(b"update of trainer 0, round 1"))
    return Scenario(market, store, task_id, trainers, cids, model_cid, receipt_cid, spec_cid)
