"""The aggregator's side of a round, at the I/O edge.

wait for the round's reveals to close → read the revealed submissions and the round's seed from the
chain → fetch each update by CID (in parallel, under one time budget and a size cap, re-hashed on
read) → reject what cannot be used (missing blob, hash mismatch, an update whose signed metadata names
another trainer, task or round, a commitment that does not match) → read the earlier rounds'
receipts (cumulative values) and updates (to refuse copies of them) →
:func:`aggregator.round.aggregate_round` (validate, robust rule, FedAvg, coalition utilities,
Shapley values, basis points) → write the new model and the round receipt to the store →
``postResult`` with the seed and the lost-stake mask (every rejection but a copy).

Everything it posts is derived deterministically from the chain, the store, the spec and the
validation set, so a crash before posting is recovered by running the round again; it posts only
while its result window is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from torch import Tensor

from aggregator.fetch import fetch_updates, update_size_cap
from aggregator.ledger import split_problem
from aggregator.outcome import RoundOutcome
from aggregator.receipt import build_receipt
from aggregator.round import aggregate_round
from aggregator.validate import Published
from market.chain.contract import (
    ZERO32,
    MarketContract,
    RoundSnapshot,
    SeedExpired,
    Submission,
    TaskInfo,
    amount_text,
    result_hash,
    round_state,
    vote_commitment,
)
from market.commitment import update_sketch
from market.data import Dataset, dataset_commitment
from market.errors import ConfigError, ContractRevert, MalformedUpdateError, MarketError, StoreError
from market.failpoints import failpoint
from market.payout import cumulative_values
from market.receipt import Receipt
from market.spec import TaskSpec
from market.store import ContentStore, data_dir, put_json
from market.task import TaskView, fetch_global_model, load_task, read_receipt, wait_until
from market.tensors import decode_state, encode_state, flatten
from market.zk.sketch import binder, commitment_bytes

#: seconds the aggregator gives the whole round's fetches (one budget, not one per update)
FETCH_BUDGET_S = 120.0


@dataclass
class PostedRound:
    task_id: int
    round: int
    model_cid: str
    receipt_cid: str
    receipt: Receipt
    outcome: RoundOutcome | None  # None: a result the service kept from before a restart (see ``receipt``)
    bps: list[int]
    gas: int
    seconds: dict[str, float] = field(default_factory=dict)
    proof: dict[str, Any] | None = None  # proof tasks: system, shape, prove_s, verified_on_chain
    credited_wei: int = 0  # credited to trainers by the posted result (its TrainerCredited events)
    credited_trainers: int = 0  # how many trainers were credited
    stakes_lost_wei: int = 0  # stakes the result took from trainers (no reveal, or lost updates)
    decided: bool = True  # False: a vote the round's quorum has not matched yet (nothing credited by it)
    fee_wei: int = 0  # the aggregators' fee the deciding post paid (split among the members that agreed)
    #: "posted", or "committed": a drawn member committed to its result and posts it once the votes open
    stage: str = "posted"
    commit_gas: int = 0  # gas of the commitment this call made (``commitVote``), if it made one


@dataclass(frozen=True)
class Computed:
    """A round's result, computed and stored but not yet posted (kept from a member's commitment to its vote)."""

    seed: bytes
    outcome: RoundOutcome | None  # None: a result kept on disk from before a restart (its receipt says what it is)
    model_cid: str
    receipt_cid: str
    receipt: Receipt
    proved: Any  # aggregator.proof's proved round (or the proof kept with a kept result), or None
    compute_s: float

    @property
    def bps(self) -> list[int]:
        return self.receipt.bps_vector

    @property
    def lost_mask(self) -> int:
        return lost_mask(self.receipt)

    def vote_commitment(self, member: str) -> bytes:
        """What ``member`` commits to before posting this result (``commitVote``)."""
        return vote_commitment(result_hash(self.model_cid, self.seed, self.lost_mask, self.bps), member)

    def to_json(self) -> dict[str, Any]:
        """What posting this result needs, for :meth:`Aggregator.kept_vote` (the model and receipt are in the store)."""
        proof = self.proved
        return {"seed": self.seed.hex(), "model_cid": self.model_cid, "receipt_cid": self.receipt_cid,
                "compute_s": self.compute_s, "calldata": proof.calldata.hex() if proof is not None else None,
                "proof": proof.report() if proof is not None else None}


@dataclass(frozen=True)
class KeptProof:
    """A round proof kept on disk with its result: the calldata ``postResult`` carries, and what was reported."""

    calldata: bytes
    reported: dict[str, Any]

    def report(self) -> dict[str, Any]:
        return dict(self.reported)


def update_binding(task_id: int, round_: int, trainer: str) -> dict[str, str]:
    """The metadata every update carries: who made it, for which task and round (a copy of another
    trainer's blob names that trainer, so it can never be claimed by its revealer)."""
    return {"trainer": trainer.lower(), "task": str(task_id), "round": str(round_)}


def binding_mismatch(meta: dict[str, str], task_id: int, round_: int, trainer: str) -> str | None:
    """Why an update's metadata does not bind it to ``trainer``'s submission to ``round_`` of ``task_id`` (None if it does)."""
    want = update_binding(task_id, round_, trainer)
    got = {k: str(meta.get(k, "")).lower() for k in want}
    if got == want:
        return None
    if not any(got.values()):
        return "the update does not name its trainer, task and round in its metadata"
    return (f"the update names trainer {got['trainer'] or '?'}, task {got['task'] or '?'}, round {got['round'] or '?'}, "
            f"not its revealer {want['trainer']} in task {task_id} round {round_}")


def prefilter(
    spec: TaskSpec, task_id: int, round_: int, subs: list[Submission], store: ContentStore,
    fetched: dict[str, bytes | StoreError] | None = None,
) -> tuple[list[tuple[str, bytes]], dict[str, str], dict[str, list[int]]]:
    """Fetch every revealed submission (or take it from ``fetched``); return the usable (address, blob)
    pairs (join order), the reasons for the rest, and the sketch of each usable update.

    An update that cannot be fetched, whose metadata names another trainer, task or round, or whose
    sketch does not match its revealed commitment is refused.  Bytes that are not an update at all
    pass through so that validation rejects them with its reason.
    """
    usable: list[tuple[str, bytes]] = []
    rejected: dict[str, str] = {}
    sketches: dict[str, list[int]] = {}
    for s in sorted(subs, key=lambda s: s.seq):
        try:
            got = fetched[s.cid] if fetched is not None and s.cid in fetched else store.get(s.cid)
            if isinstance(got, StoreError):
                raise got
            blob = got
        except StoreError as exc:
            rejected[s.trainer] = str(exc)
            continue
        try:
            _tensors, meta = decode_state(blob)
        except MalformedUpdateError:
            usable.append((s.trainer, blob))
            continue
        why = binding_mismatch(meta, task_id, round_, s.trainer)
        if why:
            rejected[s.trainer] = why
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


def lost_mask(receipt: Receipt) -> int:
    """Bit j: the j-th revealed update (join order) lost its trainer's stake (``receipt.lost``)."""
    lost = set(receipt.lost)
    return sum(1 << j for j, s in enumerate(receipt.submissions) if s.trainer in lost)


def valuation_seed(round_seed: bytes) -> int:
    """The valuation's integer seed, drawn from the round's on-chain seed (63 bits)."""
    return int.from_bytes(round_seed[:8], "big") >> 1


@dataclass(frozen=True)
class PriorRound:
    """What a round takes from the earlier rounds settled by a result (their receipts, read by CID)."""

    values: dict[str, float]  # each trainer's sum of its values in the earlier rounds (aggregator.ledger)
    updates: list[Published]  # every update and global update published so far: copies of them are refused
    # earlier rounds whose receipt's values do not give what it paid: their values are left out of ``values``
    left_out: dict[int, str] = field(default_factory=dict)


def earlier_reveals(contract: MarketContract, snap: RoundSnapshot) -> dict[int, list[Submission]]:
    """Every round's revealed submissions (:meth:`MarketContract.all_submissions`: two log queries), which an
    earlier receipt's submitters must be (:func:`prior_round`); nothing is read when no earlier round has one."""
    if not any(r < snap.round and done.receipt_cid for r, done in snap.settled.items()):
        return {}
    return contract.all_submissions(snap.task_id, snap.info, snap.settled)


def prior_round(store: ContentStore, snap: RoundSnapshot, spec: TaskSpec,
                revealed: Mapping[int, Sequence[Submission]] | None = None) -> PriorRound:
    """Each trainer's sum of its values in the earlier settled rounds (each receipt's own values, taken when they
    give what its round paid and its submitters are the round's ``revealed`` ones on chain, from
    :meth:`MarketContract.all_submissions`: :func:`aggregator.ledger.split_problem`), and every update published
    before this round."""
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
    left_out: dict[int, str] = {}
    for r in sorted(snap.settled):
        done = snap.settled[r]
        if r >= snap.round or not done.receipt_cid:
            continue
        receipt = read_receipt(store, done.receipt_cid)
        on_chain = [s.trainer for s in revealed[r]] if revealed is not None else None
        problem = split_problem(spec, receipt, values, on_chain, stored=False)
        if problem is None:
            values = cumulative_values(values, receipt.details.contributions)  # = its cumulative_values
        else:
            left_out[r] = problem
        cid_of = {s.trainer: s.cid for s in receipt.submissions}
        for trainer in [*receipt.details.survivors, *receipt.details.outliers]:
            delta = read(cid_of[trainer]) if trainer in cid_of else None
            if delta is not None:
                updates.append(Published(trainer, f"the update of {trainer} in round {r}", delta))
        new, old = read(receipt.model_cid), read(receipt.input_model_cid)
        if new is not None and old is not None and new.shape == old.shape and bool((new != old).any()):
            updates.append(Published("", f"round {r}'s global update", new.double() - old.double()))
    return PriorRound(values, updates, left_out)


class Aggregator:
    def __init__(
        self, contract: MarketContract, store: ContentStore, account: LocalAccount, validation: Dataset,
        votes_dir: Path | None = None,
    ) -> None:
        """``votes_dir``: where a drawn member keeps the result it commits to until it has posted it (default
        ``votes/`` in :func:`market.store.data_dir`), so that a restart posts what it committed to."""
        self.contract = contract
        self.store = store
        self.account = account
        self.validation = validation
        self.votes_dir = votes_dir if votes_dir is not None else data_dir() / "votes"
        self.progress: Any = None  # optional callable(str) for long steps (zk setup, proving)
        self._computed: dict[tuple[int, int], Computed] = {}  # the latest round computed and not yet posted

    def _vote_file(self, task_id: int, round_: int) -> Path:
        market = self.contract.address.lower()
        return self.votes_dir / f"{self.contract.chain.chain_id}-{market}-{task_id}-{round_}-{self.account.address.lower()}.json"

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Hold this key's lock in its votes folder while serving (``market aggregator run``): a second service of
        the same key on the same market from the same data folder would commit, and keep its votes, over this
        one's; it gets a one-line error instead. The lock goes with the process (an OS file lock)."""
        market = self.contract.address.lower()
        path = self.votes_dir / f".{self.contract.chain.chain_id}-{market}-{self.account.address.lower()}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                raise ConfigError(
                    f"another `market aggregator run` (pid {holder}) is serving {self.account.address} on this market "
                    f"with the votes folder {self.votes_dir}: stop it first (two would commit over each other)") from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def keep_vote(self, task_id: int, round_: int, done: Computed) -> None:
        """Write what posting ``done`` needs to disk (atomically) before committing to it."""
        path = self._vote_file(task_id, round_)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(done.to_json(), f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the commitment is sent, power loss included
        os.replace(tmp, path)

    def kept_vote(self, task_id: int, round_: int, commitment: bytes) -> Computed | None:
        """The result this member kept for ``round_`` before a restart, if it is the one it committed to on chain
        (None if there is none, or it is unreadable, or it is not that one: the round is then computed again)."""
        path = self._vote_file(task_id, round_)
        try:
            kept = json.loads(path.read_text())
            proof = KeptProof(bytes.fromhex(kept["calldata"]), kept["proof"]) if kept["calldata"] is not None else None
            done = Computed(bytes.fromhex(kept["seed"]), None, kept["model_cid"], kept["receipt_cid"],
                            read_receipt(self.store, kept["receipt_cid"]), proof, float(kept["compute_s"]))
        except (OSError, ValueError, KeyError, TypeError, MarketError):
            return None
        return done if done.vote_commitment(self.account.address) == commitment else None

    def check_task(self, view: TaskView) -> None:
        """This key may serve the task: it is in the market's aggregator registry, and the validation set is the
        one the task committed to."""
        if self.contract.registry.member(self.account.address) is None:
            raise ConfigError(f"this key ({self.account.address}) is not a registered aggregator: register it first "
                              "(`market aggregator register`)")
        if view.info.validation_commitment != "0x" + dataset_commitment(self.validation).hex():
            raise ConfigError(f"the validation set does not match task {view.info.task_id}'s validation commitment")

    def my_window(self, info: Any, seed: bytes | None = None) -> str | None:
        """The phase in which this key posts in the current (sealed) round: ``closed`` (drawn onto the panel, which
        may also post in the backup window), ``backup`` (drawn as the backup), or None (not drawn)."""
        panel, backup = self.contract.panel(info.task_id, info, seed)
        me = self.account.address.lower()
        if me in (a.lower() for a in panel):
            return "closed"
        return "backup" if backup is not None and backup.lower() == me else None

    def voted(self, task_id: int, round_: int) -> bool:
        """Whether this key already posted its result for ``round_`` (a vote waiting for the quorum)."""
        return self.contract.registry.vote_of(task_id, round_, self.account.address) != ZERO32

    def committed(self, task_id: int, round_: int) -> bool:
        """Whether this key committed to its result for ``round_`` (``commitVote``)."""
        return self.contract.registry.vote_commitment_of(task_id, round_, self.account.address) != ZERO32

    def votes_open(self, task_id: int, info: TaskInfo, seed: bytes | None = None) -> bool:
        """Whether votes are taken now: every drawn member (the panel and its backup) has committed to a result (read
        from mined blocks, never a pending one), or the panel's window is seven eighths through."""
        state = round_state(info, self.contract.chain.clock())
        if state.now >= state.votes_open_at:
            return True
        panel, backup = self.contract.panel(task_id, info, seed)
        drawn = panel + ([backup] if backup else [])
        return all(self.contract.registry.vote_commitment_of(task_id, info.current_round, m) != ZERO32 for m in drawn)

    def reveals_closed(self, task_id: int) -> bool:
        """Whether the current round's reveals are over (or the task finished): by :meth:`Chain.clock`,
        the reveal deadline passed, or every committer revealed (the contract then sealed the round)."""
        return round_state(self.contract.task(task_id), self.contract.chain.clock()).phase not in ("waiting", "open", "reveal")

    def fetch_budget(self, snap: RoundSnapshot) -> float:
        """Seconds for fetching the round's updates: :data:`FETCH_BUDGET_S`, at most half of what is left of
        the result window (the rest is for validating, valuing, proving and posting); a settled round
        (a replay) gets the full budget."""
        if snap.result.settlement != "open":
            return FETCH_BUDGET_S
        state = round_state(snap.info, self.contract.chain.clock())
        left = (state.result_deadline if state.phase != "backup" else state.final_deadline) - state.now
        return max(5.0, min(FETCH_BUDGET_S, left / 2))

    def round_seed(self, snap: RoundSnapshot) -> bytes:
        """The round's seed: from its settlement once settled, else from the chain (sealing the round
        first if its reveal deadline passed and nobody sealed it)."""
        if snap.result.settlement == "result":
            return snap.result.seed
        return self.seed_and_info(snap)[0]

    def seed_and_info(self, snap: RoundSnapshot) -> tuple[bytes, TaskInfo]:
        """The open round's seed and the task as it stands once the round is sealed (read again only when this
        call sealed it)."""
        info = snap.info
        if info.seal_block == 0 and info.submitted_count:
            self.contract.seal(self.account, info.task_id)
            info = self.contract.task(info.task_id)
        try:
            return self.contract.round_seed(info.task_id, info), info
        except SeedExpired:  # nobody kept the seed and its block hash is gone: seal again, from a new block
            self.contract.seal(self.account, info.task_id)
            info = self.contract.task(info.task_id)
            return self.contract.round_seed(info.task_id, info), info

    def compute_round(self, view: TaskView, snap: RoundSnapshot | None = None,
                      round_seed: bytes | None = None) -> tuple[RoundOutcome, str, Receipt]:
        """Everything but the transaction: deterministic from chain, store, spec and validation set
        (and the round's seed, read from the chain when not given)."""
        task_id, r = view.info.task_id, view.info.current_round
        if snap is None or snap.round != r:
            snap = self.contract.round_snapshot(task_id, r, view.info)
        if round_seed is None:
            round_seed = self.round_seed(snap)
        subs = list(snap.submissions)
        global_cid, global_state = fetch_global_model(self.store, view)
        fetched = fetch_updates(self.store, [s.cid for s in subs], budget_s=self.fetch_budget(snap),
                                max_bytes=update_size_cap(len(self.store.get(global_cid))))
        usable, prerejected, sketches = prefilter(view.spec, task_id, r, subs, self.store, fetched)
        seed = valuation_seed(round_seed)
        proof_args: dict[str, Any] = {}
        if view.spec.proof.system != "none":
            proof_args = {
                "proof_seed": round_seed,
                "binders": {s.trainer: binder(task_id, r, s.trainer, s.cid) for s in subs},
                "sketches": sketches,
            }
        prior = prior_round(self.store, snap, view.spec, earlier_reveals(self.contract, snap))
        for earlier, problem in prior.left_out.items():
            if self.progress:
                self.progress(f"round {earlier}'s receipt is left out of the values carried on ({problem}); "
                              f"`market verify --task {task_id} --round {earlier}` shows it")
        outcome = aggregate_round(view.spec, global_state, usable, self.validation.x, self.validation.y, seed=seed,
                                  prior_values=prior.values, earlier=prior.updates,
                                  order={s.trainer: s.commit_seq for s in subs}, **proof_args)
        model_cid = self.store.put(encode_state(outcome.new_state, {"kind": "model", "round": str(r)}))
        receipt = build_receipt(
            view=view, round_=r, submissions=subs, global_cid=global_cid, model_cid=model_cid,
            prerejected=prerejected, outcome=outcome, seed=seed, round_seed=round_seed,
        )
        return outcome, model_cid, receipt

    def _seal_or_wait(self, task_id: int, r: int, phase: str, timeout: float, poll: float,
                      say: Callable[[str], None]) -> None:
        """Seal round ``r`` (again); once less than half the panel's window is left the contract refuses a new seal
        (no panel is drawn too late to post): say so and wait for the round to move on to the fallback."""
        try:
            self.contract.seal(self.account, task_id)
        except ContractRevert as exc:
            if exc.name != "MarketResultWindowClosed":
                raise
            say(f"round {r}: too late to seal: no panel can be drawn for it any more; it settles by the fallback "
                "once its windows are over")
            wait_until(lambda: self.contract.moved_on(task_id, r, phase), timeout, f"round {r} of task {task_id}", poll)

    def run_round(self, task_id: int) -> PostedRound:
        """Aggregate and post the current round of ``task_id`` (its reveals must be closed).

        On a task whose quorum is more than one, a drawn member (the backup too, in the panel's window) first
        commits to its result (``commitVote``) and posts it once every drawn member has committed, or once the
        panel's window is seven eighths through (so no member can copy another's result), the backup only in its
        own window: until then the returned round's ``stage`` is ``"committed"``, nothing is posted, and a later
        call posts it (the result is kept; after a restart it is computed again, byte for byte the same)."""
        snap = self.contract.round_snapshot(task_id)  # the round's one read of the task
        view = load_task(self.contract, self.store, task_id, snap.info)
        self.check_task(view)
        if view.info.finished:
            raise MarketError(f"task {task_id} has finished")
        r = view.info.current_round
        if not snap.submissions:
            raise MarketError(f"task {task_id} round {r}: nothing was revealed; settle it with `market task settle {task_id}`")
        t0 = time.perf_counter()
        round_seed, info = self.seed_and_info(snap)
        window = self.my_window(info, round_seed)
        if window is None:
            raise MarketError(f"task {task_id} round {r}: this key ({self.account.address}) was not drawn for the round's "
                              "panel; nothing posted")
        if self.voted(task_id, r):
            raise MarketError(f"task {task_id} round {r}: this key already posted its result; the round settles once "
                              f"{info.quorum} of the panel's {info.panel} post the same one")
        me = self.account.address
        sealed_vote = info.quorum > 1  # every drawn member commits to its result before any is seen
        commitment = self.contract.registry.vote_commitment_of(task_id, r, me) if sealed_vote else ZERO32
        state = round_state(info, self.contract.chain.clock())
        if sealed_vote and commitment == ZERO32 and state.now >= state.vote_commits_close:
            raise MarketError(f"task {task_id} round {r}: the drawn members' commitments closed at unix time "
                              f"{state.vote_commits_close} and this member committed to no result, so it cannot post one")
        early_backup = window == "backup" and state.phase == "closed"  # commits now, posts in its own window
        done = self._computed.get((task_id, r))
        if done is None and commitment != ZERO32:  # committed before a restart: post what it committed to
            done = self.kept_vote(task_id, r, commitment)
        if done is None or done.seed != round_seed:
            done = self._compute(view, snap, round_seed, t0)
        self._computed = {(task_id, r): done}
        commit_gas = 0
        if sealed_vote:
            if commitment == ZERO32:
                self.keep_vote(task_id, r, done)  # on disk before the commitment: a restart posts this very result
                tx = self.contract.commit_vote(self.account, task_id, r, done.model_cid, done.bps, seed=round_seed,
                                               lost_mask=done.lost_mask)
                commit_gas = int(tx["gasUsed"])
                if early_backup or not self.votes_open(task_id, info, round_seed):
                    return self._posted(task_id, r, done, commit_gas, {}, stage="committed", commit_gas=commit_gas)
            elif commitment != done.vote_commitment(me):
                raise MarketError(f"task {task_id} round {r}: this key committed to another result than the one it "
                                  "computed now; the contract would refuse it (nothing posted)")
            elif early_backup or not self.votes_open(task_id, info, round_seed):
                return self._posted(task_id, r, done, 0, {}, stage="committed")
        failpoint("aggregator_before_post")
        t1 = time.perf_counter()
        if self.contract.task(task_id).current_round != r:  # the second read: posting into a settled round reverts
            raise MarketError(f"task {task_id} round {r} was settled meanwhile; nothing posted")
        proof = done.proved.calldata if done.proved is not None else b""
        try:
            tx = self.contract.post_result(self.account, task_id, r, done.model_cid, done.receipt_cid, done.bps, proof,
                                           seed=round_seed, lost_mask=done.lost_mask)
        except ContractRevert as exc:
            if exc.name != "RegistryCommitsOpen":
                raise
            # a clock a little ahead of the chain's: the votes are not open yet at the next block; try again later
            return self._posted(task_id, r, done, 0, {}, stage="committed", commit_gas=commit_gas)
        self._computed.pop((task_id, r), None)
        self._vote_file(task_id, r).unlink(missing_ok=True)
        chain_s = time.perf_counter() - t1
        posted = self._posted(task_id, r, done, int(tx["gasUsed"]), {"chain": chain_s}, commit_gas=commit_gas)
        if done.proved is not None:
            posted.proof = {**done.proved.report(), "verified_on_chain": True}
        paid = self.contract.settlement_if_any(tx)  # read from the receipt's events: no chain read
        if paid is None:  # a vote: the round settles once the task's quorum of identical results is in
            posted.decided = False
            return posted
        posted.credited_wei, posted.credited_trainers = paid["credited"], paid["trainers"]
        posted.stakes_lost_wei = paid["stakes_lost"]
        posted.fee_wei = paid["fee"]
        return posted

    def _compute(self, view: TaskView, snap: RoundSnapshot, round_seed: bytes, t0: float) -> Computed:
        """The round's result (and its proof, on a proof task), stored."""
        outcome, model_cid, receipt = self.compute_round(view, snap, round_seed)
        receipt_cid = put_json(self.store, receipt.to_json())
        proved = None
        if view.spec.proof.system != "none":
            from aggregator.proof import prove_round

            proved = prove_round(self.contract, snap, outcome, model_cid, receipt_cid, self.progress)
        return Computed(round_seed, outcome, model_cid, receipt_cid, receipt, proved, time.perf_counter() - t0)

    @staticmethod
    def _posted(task_id: int, r: int, done: Computed, gas: int, seconds: dict[str, float], *,
                stage: str = "posted", commit_gas: int = 0) -> PostedRound:
        timings = done.outcome.timings if done.outcome is not None else {}
        seconds = {
            "aggregate": float(timings.get("aggregate", 0.0)),
            "valuation": float(timings.get("valuation", 0.0)),
            "compute": done.compute_s,
            "chain": 0.0,
            **seconds,
        }
        return PostedRound(task_id, r, done.model_cid, done.receipt_cid, done.receipt, done.outcome, done.bps, gas,
                           seconds, decided=stage != "committed", stage=stage, commit_gas=commit_gas)

    def serve(self, task_id: int, *, once: bool = False, timeout: float = 7200.0, poll: float = 0.5,
              say: Callable[[str], None] = print) -> None:
        """Aggregate and post every round of ``task_id`` as its reveals close, until the task ends
        (``once``: one round).  ``say`` gets one line per phase: waiting for commitments and reveals,
        aggregating, posted (what was credited), finished.  A round nothing was revealed in is settled
        (its pool refunded) so that the next one can start."""
        self.check_task(load_task(self.contract, self.store, task_id))
        while True:
            info = self.contract.task(task_id)
            if info.finished:
                say(f"task {task_id} finished: every round is settled")
                return
            r = info.current_round
            state = round_state(info, self.contract.chain.clock())
            if state.phase in ("waiting", "open", "reveal"):
                say(f"round {r}: {state.text()}; aggregating once reveals close "
                    f"({state.committed} committed, {state.submitted} revealed so far, at most {info.max_trainers})")
                wait_until(lambda: self.reveals_closed(task_id), timeout, f"reveals of round {r} of task {task_id}", poll)
                continue
            if state.phase == "settleable" and info.submitted_count == 0:
                paid = self.contract.settlement(self.contract.settle_without_result(self.account, task_id))
                say(f"round {r}: nothing was revealed: settled, its pool of {amount_text(paid['refunded'], info.token)} refunded")
                if once:
                    return
                continue
            if state.phase == "settleable":  # no result came and the round is over: settle it so the next can start
                paid = self.contract.settlement(self.contract.settle_without_result(self.account, task_id))
                say(f"round {r}: no result came: settled by the fallback, {amount_text(paid['credited'], info.token)} to "
                    f"{paid['trainers']} trainers that proved their update available")
                if once:
                    return
                continue
            if state.phase == "availability":
                say(f"round {r}: {state.text()}")
                wait_until(lambda: self.contract.moved_on(task_id, r, "availability"), timeout,
                           f"round {r} of task {task_id}", poll)
                continue
            if info.seal_block == 0:  # the reveal deadline passed and nobody sealed the round: seal it (anyone may)
                self._seal_or_wait(task_id, r, state.phase, timeout, poll, say)
                continue
            # keep the seed at once (whoever is drawn): otherwise, 256 blocks on, anyone could seal the round again
            if self.contract.keep_seed(self.account, task_id, info):
                say(f"round {r}: kept the round's seed on chain (its panel can no longer be drawn again)")
            try:
                mine = self.my_window(info)
            except SeedExpired:  # nobody kept it in time: seal again (a new seed; the panel as of the first seal)
                self._seal_or_wait(task_id, r, state.phase, timeout, poll, say)
                continue
            voted = self.voted(task_id, r)
            sealed = info.quorum > 1  # every drawn member commits to its result first
            committed = sealed and mine is not None and self.committed(task_id, r)
            # the backup posts only in its own window; with a quorum it first commits in the panel's window
            backup_waits = mine == "backup" and state.phase == "closed" and (
                not sealed or committed or state.now >= state.vote_commits_close)
            if mine is None or voted or backup_waits:
                why = ("not drawn for this round's panel" if mine is None else
                       f"posted; waiting for {info.quorum} of {info.panel} identical results" if voted else
                       f"drawn as the backup: the panel may post until unix time {state.result_deadline}")
                say(f"round {r}: {why}")
                wait_until(lambda: self.contract.moved_on(task_id, r, state.phase), timeout, f"round {r} of task {task_id}", poll)
                continue
            if committed and not self.votes_open(task_id, info):
                say(f"round {r}: committed to its result; posting it once every drawn member has committed to theirs, "
                    f"or at unix time {state.votes_open_at}")
                wait_until(lambda: self.contract.moved_on(task_id, r, state.phase)
                           or self.votes_open(task_id, self.contract.task(task_id)), timeout,
                           f"the panel's commitments in round {r} of task {task_id}", poll)
                continue
            say(f"round {r}: the panel's commitments are in; posting its result" if committed else
                f"round {r}: reveals closed ({info.submitted_count} updates of {info.committed_count} committed); aggregating")
            try:
                posted = self.run_round(task_id)
            except MarketError as exc:
                # the panel decided while this member computed, or this round cannot be posted (e.g. a proof task
                # with no valid update): say so and go on with the task; a failure to post is not the service's end
                if self.contract.task(task_id).current_round == r:
                    say(f"round {r}: not posted: {exc}")
                    wait_until(lambda: self.contract.moved_on(task_id, r, state.phase), timeout,
                               f"round {r} of task {task_id}", poll)
                else:
                    say(f"round {r}: settled by the rest of the panel while this member computed")
                if once:
                    return
                continue
            if posted.stage == "committed":
                if posted.commit_gas:
                    when = "in the backup window, if the panel has not settled the round" if mine == "backup" else \
                        "once the drawn members' commitments are in"
                    say(f"round {r}: committed to its result ({posted.commit_gas} gas); it is posted {when}")
                else:  # the chain did not take the vote yet (its clock behind this machine's): again shortly
                    time.sleep(max(poll, 1.0))
                continue
            if not posted.decided:
                say(f"round {r}: posted model {posted.model_cid} as one of {info.panel} panel members ({posted.gas} gas); "
                    f"the round settles once {info.quorum} post the same result")
                if once:
                    return
                continue
            rec = posted.receipt
            lost = f"; {len(rec.lost)} lost their stake" if rec.lost else ""
            fee = f"; fee {amount_text(posted.fee_wei, info.token)}" if posted.fee_wei else ""
            say(f"round {r}: posted model {posted.model_cid}: credited {amount_text(posted.credited_wei, info.token)} to "
                f"{posted.credited_trainers} trainers; {len(rec.outliers)} outliers, {len(rec.rejected)} rejected{lost}; "
                f"bps {posted.bps}{fee}; {posted.gas} gas")
            if once:
                return
