"""The aggregator's side of a round, at the I/O edge.

read the round's submissions from the chain → fetch each update by CID
(re-hashed on read) → reject what cannot be used (missing blob, hash mismatch,
commitment that does not bind the submitter, a second submission of a CID) → read the
earlier rounds' receipts (cumulative values) and updates (to refuse copies of them) →
:func:`aggregator.round.aggregate_round` (validate, robust rule, FedAvg,
coalition utilities, Shapley values, basis points) → write the new model and
the round receipt to the store → ``postResult``.

Everything it posts is derived deterministically from the chain, the store,
the spec and the validation set, so a crash before posting is recovered by
running the round again; it posts only while the round is still open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from torch import Tensor

from aggregator.outcome import RoundOutcome
from aggregator.receipt import build_receipt
from aggregator.round import aggregate_round
from aggregator.validate import Published
from market.chain.contract import MarketContract, RoundSnapshot, Submission, amount_text, round_state
from market.commitment import update_sketch
from market.data import Dataset, dataset_commitment
from market.errors import ConfigError, MalformedUpdateError, MarketError, StoreError
from market.failpoints import failpoint
from market.receipt import Receipt
from market.spec import TaskSpec
from market.store import ContentStore, put_json
from market.task import TaskView, fetch_global_model, load_task, read_receipt, wait_until
from market.tensors import decode_state, encode_state, flatten
from market.zk.sketch import binder, commitment_bytes


@dataclass
class PostedRound:
    task_id: int
    round: int
    model_cid: str
    receipt_cid: str
    receipt: Receipt
    outcome: RoundOutcome
    bps: list[int]
    gas: int
    seconds: dict[str, float] = field(default_factory=dict)
    proof: dict[str, Any] | None = None  # proof tasks: system, shape, prove_s, verified_on_chain
    credited_wei: int = 0  # credited to trainers by the posted result (its TrainerCredited events)
    credited_trainers: int = 0  # how many trainers were credited


def prefilter(
    spec: TaskSpec, task_id: int, round_: int, subs: list[Submission], store: ContentStore
) -> tuple[list[tuple[str, bytes]], dict[str, str], dict[str, list[int]]]:
    """Fetch every submission; return the usable (address, blob) pairs (join order), the reasons for
    the rest, and the sketch of each usable update.

    An update whose sketch does not match its on-chain commitment (or whose commitment binds
    another submitter, CID, task or round) is refused; of two submissions of the same CID the
    later one (submission order) is refused.  Bytes that are not an update at all pass through
    so that validation rejects them with its reason.
    """
    usable: list[tuple[str, bytes]] = []
    rejected: dict[str, str] = {}
    sketches: dict[str, list[int]] = {}
    seen: dict[str, str] = {}
    for s in sorted(subs, key=lambda s: s.seq):
        if s.cid in seen:
            rejected[s.trainer] = f"duplicate of the update {seen[s.cid]} submitted earlier"
            continue
        seen[s.cid] = s.trainer
        try:
            blob = store.get(s.cid)
        except StoreError as exc:
            rejected[s.trainer] = str(exc)
            continue
        try:
            sketch = update_sketch(spec, task_id, blob)
        except MalformedUpdateError:
            usable.append((s.trainer, blob))
            continue
        if s.commitment != commitment_bytes(sketch, binder(task_id, round_, s.trainer, s.cid)):
            rejected[s.trainer] = "commitment does not match this update's sketch and submitter"
            continue
        sketches[s.trainer] = sketch
        usable.append((s.trainer, blob))
    order = {s.trainer: s.index for s in subs}
    usable.sort(key=lambda p: order[p[0]])
    return usable, rejected, sketches


@dataclass(frozen=True)
class PriorRound:
    """What a round takes from the earlier rounds settled by a result (their receipts, read by CID)."""

    values: dict[str, float]  # each trainer's cumulative contribution value so far (the latest receipt's)
    updates: list[Published]  # every update and global update published so far: copies of them are refused


def prior_round(store: ContentStore, snap: RoundSnapshot) -> PriorRound:
    """Cumulative values of the latest earlier settled round, and every update published before this round."""
    flat: dict[str, Tensor | None] = {}  # by CID: a round's model is the next round's input

    def read(cid: str) -> Tensor | None:
        if cid not in flat:
            try:
                flat[cid] = flatten(decode_state(store.get(cid))[0])
            except MarketError:
                flat[cid] = None  # unreadable now: nothing to compare a copy with (the round still completes)
        return flat[cid]

    updates: list[Published] = []
    values: dict[str, float] = {}
    for r in sorted(snap.settled):
        done = snap.settled[r]
        if r >= snap.round or not done.receipt_cid:
            continue
        receipt = read_receipt(store, done.receipt_cid)
        values = dict(receipt.details.cumulative_values)
        cid_of = {s.trainer: s.cid for s in receipt.submissions}
        for trainer in [*receipt.details.survivors, *receipt.details.outliers]:
            delta = read(cid_of[trainer]) if trainer in cid_of else None
            if delta is not None:
                updates.append(Published(trainer, f"the update of {trainer} in round {r}", delta))
        new, old = read(receipt.model_cid), read(receipt.input_model_cid)
        if new is not None and old is not None and new.shape == old.shape and bool((new != old).any()):
            updates.append(Published("", f"round {r}'s global update", new.double() - old.double()))
    return PriorRound(values, updates)


class Aggregator:
    def __init__(
        self, contract: MarketContract, store: ContentStore, account: LocalAccount, validation: Dataset
    ) -> None:
        self.contract = contract
        self.store = store
        self.account = account
        self.validation = validation
        self.progress: Any = None  # optional callable(str) for long steps (zk setup, proving)

    def check_task(self, view: TaskView) -> None:
        if view.info.aggregator.lower() != self.account.address.lower():
            raise ConfigError(f"this key ({self.account.address}) is not task {view.info.task_id}'s aggregator ({view.info.aggregator})")
        if view.info.validation_commitment != "0x" + dataset_commitment(self.validation).hex():
            raise ConfigError(f"the validation set does not match task {view.info.task_id}'s validation commitment")

    def submissions_closed(self, task_id: int) -> bool:
        """Whether the current round takes no more updates (or the task finished): its submission deadline
        passed by :meth:`Chain.clock`, or the task's full trainer count (``max_trainers``) submitted. Never
        merely because every trainer that has joined so far submitted: the contract refuses a result then."""
        return round_state(self.contract.task(task_id), self.contract.chain.clock()).phase != "open"

    def compute_round(self, view: TaskView, snap: RoundSnapshot | None = None) -> tuple[RoundOutcome, str, Receipt]:
        """Everything but the transaction: deterministic from chain, store, spec and validation set."""
        task_id, r = view.info.task_id, view.info.current_round
        if snap is None or snap.round != r:
            snap = self.contract.round_snapshot(task_id, r, view.info)
        subs = list(snap.submissions)
        global_cid, global_state = fetch_global_model(self.store, view)
        usable, prerejected, sketches = prefilter(view.spec, task_id, r, subs, self.store)
        seed = view.spec.valuation.seed * 1_000_003 + r
        proof_args: dict[str, Any] = {}
        if view.spec.proof.system != "none":
            proof_args = {
                "proof_seed": snap.result.submissions_digest,
                "binders": {s.trainer: binder(task_id, r, s.trainer, s.cid) for s in subs},
                "sketches": sketches,
            }
        prior = prior_round(self.store, snap)
        outcome = aggregate_round(view.spec, global_state, usable, self.validation.x, self.validation.y, seed=seed,
                                  prior_values=prior.values, earlier=prior.updates,
                                  order={s.trainer: s.seq for s in subs}, **proof_args)
        model_cid = self.store.put(encode_state(outcome.new_state, {"kind": "model", "round": str(r)}))
        receipt = build_receipt(
            view=view, round_=r, submissions=subs, global_cid=global_cid, model_cid=model_cid,
            prerejected=prerejected, outcome=outcome, seed=seed,
        )
        return outcome, model_cid, receipt

    def run_round(self, task_id: int) -> PostedRound:
        """Aggregate and post the current round of ``task_id`` (submissions must be closed)."""
        snap = self.contract.round_snapshot(task_id)  # the round's one read of the task
        view = load_task(self.contract, self.store, task_id, snap.info)
        self.check_task(view)
        if view.info.finished:
            raise MarketError(f"task {task_id} has finished")
        r = view.info.current_round
        t0 = time.perf_counter()
        outcome, model_cid, receipt = self.compute_round(view, snap)
        bps = receipt.bps_vector
        receipt_cid = put_json(self.store, receipt.to_json())
        proved = None
        if view.spec.proof.system != "none":
            from aggregator.proof import prove_round

            proved = prove_round(self.contract, snap, outcome, model_cid, receipt_cid, self.progress)
        compute_s = time.perf_counter() - t0
        failpoint("aggregator_before_post")
        t1 = time.perf_counter()
        if self.contract.task(task_id).current_round != r:  # the second read: posting into a settled round reverts
            raise MarketError(f"task {task_id} round {r} was settled meanwhile; nothing posted")
        proof = proved.calldata if proved is not None else b""
        tx = self.contract.post_result(self.account, task_id, r, model_cid, receipt_cid, bps, proof)
        chain_s = time.perf_counter() - t1
        seconds = {
            "aggregate": float(outcome.timings.get("aggregate", 0.0)),
            "valuation": float(outcome.timings.get("valuation", 0.0)),
            "compute": compute_s,
            "chain": chain_s,
        }
        posted = PostedRound(task_id, r, model_cid, receipt_cid, receipt, outcome, bps, int(tx["gasUsed"]), seconds)
        paid = self.contract.settlement(tx)  # read from the receipt's events: no chain read
        posted.credited_wei, posted.credited_trainers = paid["credited"], paid["trainers"]
        if proved is not None:
            posted.proof = {**proved.report(), "verified_on_chain": True}
        return posted

    def serve(self, task_id: int, *, once: bool = False, timeout: float = 7200.0, poll: float = 0.5,
              say: Callable[[str], None] = print) -> None:
        """Aggregate and post every round of ``task_id`` as its submissions close, until the task ends
        (``once``: one round).  ``say`` gets one line per phase: waiting for submissions, aggregating,
        posted (what was credited), finished."""
        self.check_task(load_task(self.contract, self.store, task_id))
        while True:
            info = self.contract.task(task_id)
            if info.finished:
                say(f"task {task_id} finished: every round is settled")
                return
            r = info.current_round
            state = round_state(info, self.contract.chain.clock())
            if state.phase == "open":
                say(f"round {r}: waiting for submissions ({state.submitted} of at most {info.max_trainers} so far; "
                    f"closes in {state.seconds_left} s, or once {info.max_trainers} have submitted)")
                wait_until(lambda: self.submissions_closed(task_id), timeout,
                           f"submissions to round {r} of task {task_id}", poll)
                info = self.contract.task(task_id)
                if info.finished or info.current_round != r:
                    continue
            say(f"round {r}: submissions closed ({info.submitted_count} updates); aggregating")
            posted = self.run_round(task_id)
            rec = posted.receipt
            say(f"round {r}: posted model {posted.model_cid}: credited {amount_text(posted.credited_wei, info.token)} to "
                f"{posted.credited_trainers} trainers; {len(rec.outliers)} outliers, {len(rec.rejected)} rejected; "
                f"bps {posted.bps}; {posted.gas} gas")
            if once:
                return
