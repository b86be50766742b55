"""A trainer node: one data owner's side of every round.

join with the task's stake → when the round opens, fetch the global model by CID → train locally
on private data (which never leaves this process) → serialise the update with safetensors, its
metadata naming this trainer, the task and the round → commit
``H(cid ‖ commitment ‖ salt ‖ trainer ‖ task ‖ round)`` on chain (the CID is computed locally) →
once submissions close, upload the update and reveal the CID, commitment and salt → wait for the
round to settle.  The salt is derived from the
node's key, the task, the round and the CID, so a node restarted between commit and reveal retrains
(deterministically), finds the same CID and salt, checks them against its on-chain commitment and
reveals.  Attack modes exist only for simulation (``trainer_node.attacks``); a colluding attack
gets the round's honest updates from the optional ``collusion`` hook.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from market.chain.contract import ZERO_ADDRESS, MarketContract, TaskInfo, amount_text, commit_hash, round_state
from market.cid import cid_digest, compute_cid
from market.commitment import submission_commitment
from market.data import Dataset
from market.errors import ContractRevert, MarketError
from market.failpoints import failpoint
from market.store import ContentStore
from market.task import TaskView, fetch_global_model, load_task, read_receipt, wait_until
from market.tensors import encode_state
from trainer_node.attacks import Collusion, attack_seed, is_colluding, poison_data, poison_update
from trainer_node.train import local_update


@dataclass(frozen=True)
class SubmitResult:
    """A commit (``run_round``) or a reveal (``reveal_round``)."""

    task_id: int
    round: int
    cid: str | None
    gas: int
    train_s: float
    chain_s: float
    skipped: str | None = None  # why nothing was sent


@dataclass(frozen=True)
class Pending:
    """What a committed update needs to be revealed (the blob is uploaded only then)."""

    cid: str
    commitment: bytes
    salt: bytes
    blob: bytes = field(repr=False, default=b"")


@dataclass
class RunSummary:
    """What :meth:`TrainerNode.run` did: the rounds it submitted to (round -> CID, None when an earlier
    run submitted) and what each settled round gave it."""

    task_id: int
    submitted: dict[int, str | None] = field(default_factory=dict)
    outcomes: dict[int, str] = field(default_factory=dict)  # round -> paid | unpaid | outlier | rejected | fallback | unknown
    rejected: dict[int, str] = field(default_factory=dict)  # round -> the receipt's reason
    credited_wei: int = 0  # credited in the rounds this run saw settle
    total_credited_wei: int = 0  # credited in every round of the task (set when the task finished)
    stopped_waiting: bool = False  # --timeout ran out while waiting for a submitted round to settle
    revealed: dict[int, str] = field(default_factory=dict)  # round -> CID revealed

    @property
    def all_rejected(self) -> bool:
        """Every update this run submitted was settled and rejected."""
        return bool(self.submitted) and set(self.rejected) == set(self.submitted)


class SubmissionsClosed(MarketError):
    """The current round takes no more updates: seen before training, so no gas was spent."""

    def __init__(self, round_: int, deadline: int, now: int, then: str = "") -> None:
        self.round, self.deadline, self.now = round_, deadline, now
        ago = f"{now - deadline} s ago" if now >= deadline else "early: the task's full trainer count submitted"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
        self.text = f"round {round_}: too late: submissions closed at {when} (unix {deadline}, {ago})"
        super().__init__(self.line(then))

    def line(self, then: str) -> str:
        """The one line, with what happens next; tagged with the contract's error name, as a decoded revert is."""
        return f"{self.text} — {then} [MarketSubmissionClosed]" if then else f"{self.text} [MarketSubmissionClosed]"


class UpdatesRejected(MarketError):
    """The task finished and every update this node submitted was rejected by the aggregator."""


def round_seed(seed: int, task_id: int, round_: int, address: str) -> int:
    h = hashlib.sha256(f"{seed}:{task_id}:{round_}:{address.lower()}".encode()).digest()
    return int.from_bytes(h[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


#: Largest update a node posts on chain to prove it available (calldata: about 16 gas a byte).
MAX_AVAILABILITY_BYTES = 128 * 1024


def reveal_salt(account: LocalAccount, task_id: int, round_: int, cid: str) -> bytes:
    """The salt of a commitment: secret (derived from the private key), and the same after a restart."""
    return keccak(b"poc-market/salt/v1" + bytes(account.key) + task_id.to_bytes(32, "big")
                  + round_.to_bytes(32, "big") + cid_digest(cid))


def unchecked_note(info: TaskInfo) -> str | None:
    """What a trainer should know before it trains for a task whose rounds one drawn aggregator judges alone (a
    quorum of one): nobody checks the pay it posts (on a proof task, the coalition utilities and the rejections,
    which the proof does not bind). None for a task a quorum of drawn members judges."""
    if info.quorum > 1:
        return None
    unchecked = ("the coalition utilities and rejections its proof does not bind" if info.verifier != ZERO_ADDRESS
                 else "every trainer's pay, and nobody checks it")
    return (f"note: task {info.task_id} is judged by one drawn aggregator (a panel of {info.panel}, quorum 1): it alone "
            f"decides {unchecked}")


class TrainerNode:
    def __init__(
        self,
        contract: MarketContract,
        store: ContentStore,
        account: LocalAccount,
        data: Dataset,
        *,
        attack: str | None = None,
        seed: int = 0,
        collusion: Callable[[int, int], Collusion] | None = None,
    ) -> None:
        self.contract = contract
        self.store = store
        self.account = account
        self.data = data
        self.attack = attack
        self.seed = seed
        self.collusion = collusion  # simulation only: (task, round) -> the round's honest updates
        self._token = ZERO_ADDRESS  # the reward's token of the task being run (ETH until run() reads it)
        self._pending: dict[tuple[int, int], Pending] = {}  # (task, round) -> what to reveal

    @property
    def address(self) -> str:
        return str(self.account.address)

    def join(self, task_id: int) -> bool:
        """Join the task with its stake (or top a lost stake up); True if a transaction was sent."""
        info = self.contract.task(task_id)
        seat = self.contract.seat(task_id, self.address)
        if seat.index and seat.stake >= info.stake:
            return False
        self.contract.join(self.account, task_id, info)
        return True

    def already_submitted(self, task_id: int, round_: int | None = None) -> bool:
        """Whether this node committed to ``round_`` (the current round when None)."""
        if round_ is None:
            round_ = self.contract.task(task_id).current_round
        return self.contract.seat(task_id, self.address).committed_round == round_

    def prepare_update(self, view: TaskView) -> tuple[bytes, int]:
        """Train on the local data from the current global model; return (blob, samples)."""
        spec = view.spec
        _cid, global_state = fetch_global_model(self.store, view)
        data = self.data
        if self.attack:
            data = poison_data(self.attack, data, spec.data.label_space)
        task_id, r = view.info.task_id, view.info.current_round
        seed = round_seed(self.seed, task_id, r, self.address)
        delta = local_update(spec, global_state, data, seed)
        if self.attack:
            seen = None
            if self.collusion is not None and is_colluding(self.attack):
                seen = self.collusion(task_id, r)
            # one noise seed per task (gaussian repeats its noise), sized to the spec's published norm bound
            delta = poison_update(self.attack, delta, attack_seed(self.seed, task_id, self.address),
                                  collusion=seen, max_norm=spec.validation.max_update_norm)
        meta = {"kind": "delta", "samples": str(len(self.data)), "trainer": self.address.lower(),
                "task": str(task_id), "round": str(r)}
        return encode_state(delta, meta), len(self.data)

    def _sealed(self, view: TaskView, blob: bytes) -> tuple[Pending, bytes]:
        """What to reveal later and the hash to commit now.  Nothing is uploaded yet: the CID is computed
        here, and the blob is published only when it is revealed, after submissions close, so nobody
        can copy it before then."""
        task_id, r = view.info.task_id, view.info.current_round
        cid = compute_cid(blob)
        commitment = submission_commitment(view.spec, task_id, r, self.address, cid, blob)
        pending = Pending(cid, commitment, reveal_salt(self.account, task_id, r, cid), blob)
        return pending, commit_hash(cid, commitment, pending.salt, self.address, task_id, r)

    def run_round(self, task_id: int, info: TaskInfo | None = None,
                  say: Callable[[str], None] | None = None) -> SubmitResult:
        """Train and commit for the task's current round (once); ``info``: the task as just read,
        if the caller has it; ``say``: gets ``round r: trained (N s)`` before the commitment is sent.
        Reveal it with :meth:`reveal_round` once submissions close.

        A round whose submissions have closed (by :meth:`Chain.clock`, the time the commitment would be
        mined at) raises :class:`SubmissionsClosed` before any training or gas is spent."""
        view = load_task(self.contract, self.store, task_id, info)  # the round's one read of the task
        info = view.info
        if info.finished:
            raise MarketError(f"task {task_id} has finished")
        r = info.current_round
        if self.already_submitted(task_id, r):
            return SubmitResult(task_id, r, None, 0, 0.0, 0.0, skipped="already submitted this round")
        state = round_state(info, self.contract.chain.clock())
        if state.phase == "waiting":
            raise MarketError(f"round {r} opens at unix time {state.opens_at} (in {state.seconds_left} s): the schedule is fixed")
        if state.phase != "open":
            raise SubmissionsClosed(r, state.submit_deadline, state.now)
        # ask the contract too (a call, no transaction): an unjoined or unstaked node learns it before training
        try:
            self.contract.preflight_commit(self.address, task_id, r)
        except ContractRevert as exc:
            if exc.name == "MarketSubmissionClosed":
                raise SubmissionsClosed(r, state.submit_deadline, state.now) from None
            raise
        t0 = time.perf_counter()
        blob, _samples = self.prepare_update(view)
        pending, sealed = self._sealed(view, blob)
        train_s = time.perf_counter() - t0
        if say is not None:
            say(f"round {r}: trained ({train_s:.1f} s)")
        t1 = time.perf_counter()
        receipt = self.contract.commit(self.account, task_id, r, sealed)
        self._pending[(task_id, r)] = pending
        failpoint("trainer_after_submit")
        return SubmitResult(task_id, r, pending.cid, int(receipt["gasUsed"]), train_s, time.perf_counter() - t1)

    def reveal_round(self, task_id: int, info: TaskInfo | None = None) -> SubmitResult:
        """Reveal this node's commitment to the current round (submissions must be closed).  After a
        restart the update is rebuilt (training is deterministic) and checked against the commitment."""
        info = info if info is not None else self.contract.task(task_id)
        r = info.current_round
        seat = self.contract.seat(task_id, self.address)
        if seat.committed_round != r:
            return SubmitResult(task_id, r, None, 0, 0.0, 0.0, skipped="nothing committed this round")
        if seat.revealed_round == r:
            return SubmitResult(task_id, r, None, 0, 0.0, 0.0, skipped="already revealed this round")
        pending = self._pending.get((task_id, r))
        if pending is None:  # restarted between commit and reveal: rebuild the same update
            view = load_task(self.contract, self.store, task_id, info)
            candidate, sealed = self._sealed(view, self.prepare_update(view)[0])
            if sealed != seat.commitment:
                raise MarketError(f"round {r}: this node's update no longer matches its commitment (data or code "
                                  "changed since it committed); it cannot be revealed and its stake will be lost")
            pending = candidate
        t1 = time.perf_counter()
        if self.store.put(pending.blob) != pending.cid:
            raise MarketError(f"round {r}: the store returned another CID than {pending.cid} for this node's update")
        failpoint("trainer_after_upload")
        receipt = self.contract.reveal(self.account, task_id, r, pending.cid, pending.commitment, pending.salt)
        self._pending.pop((task_id, r), None)
        return SubmitResult(task_id, r, pending.cid, int(receipt["gasUsed"]), 0.0, time.perf_counter() - t1)

    def prove_available(self, task_id: int, round_: int) -> SubmitResult:
        """No result came for ``round_``: post this node's revealed update on chain (its sha2-256 is the
        revealed CID), so the round's fallback may pay it; the fallback pays no update left unproved."""
        mine = [s for s in self.contract.submissions(task_id, round_) if s.trainer.lower() == self.address.lower()]
        if not mine:
            return SubmitResult(task_id, round_, None, 0, 0.0, 0.0, skipped="nothing revealed this round")
        sub = mine[0]
        blob = self.store.get(sub.cid, MAX_AVAILABILITY_BYTES)
        t1 = time.perf_counter()
        receipt = self.contract.prove_available(self.account, task_id, round_, sub.commitment,
                                                reveal_salt(self.account, task_id, round_, sub.cid), blob)
        return SubmitResult(task_id, round_, sub.cid, int(receipt["gasUsed"]), 0.0, time.perf_counter() - t1)

    def keep_seed(self, task_id: int) -> bool:
        """Once the reveals are closed: seal the round if nobody did, then keep its seed in storage while the seal
        block's hash is readable (256 blocks). The seed fixes the round's drawn panel; kept, the panel stays the
        one that must answer for the round (a silent member is fined in the fallback) even when no aggregator
        runs. Best effort: False when there was nothing to do or the chain refused (another party sealed or kept it
        first, a result settled the round meanwhile, the windows closed, the hash is gone); it never stops ``run``."""
        try:
            info = self.contract.task(task_id)
            if not info.seal_block and info.submitted_count:
                self.contract.seal(self.account, task_id)
                info = self.contract.task(task_id)
            return self.contract.keep_seed(self.account, task_id, info)
        except MarketError:  # a race with another party's transaction: the round goes on without this node's help
            return False

    def run(self, task_id: int, *, once: bool = False, timeout: float = 3600.0, poll: float = 0.5,
            say: Callable[[str], None] = print) -> RunSummary:
        """Join (with the task's stake), then commit and reveal every round until the task ends (``once``:
        the current round only, returning after its reveal).

        ``say`` gets one line per phase: waiting for the round to open, training, trained (N s),
        committed, revealed CID, and once the round settles what this node got (credited X ETH,
        flagged as an outlier, rejected: reason); at the end the total credited.  A round whose
        submissions closed before this node got to it is skipped with a line saying so, before any
        training (``once``: :class:`SubmissionsClosed`).  A round left unsettled past its windows is
        settled by the node (anyone may).  When waiting ``timeout`` seconds for a phase does not see it
        come, it says it stopped waiting and returns once it has committed this run (the commitment
        stands), and raises the one-line timeout otherwise.  If every update it submitted was rejected,
        it raises :class:`UpdatesRejected` (one line) after the task finishes.
        """
        if self.join(task_id):
            say(f"joined task {task_id} as {self.address}")
            note = unchecked_note(self.contract.task(task_id))
            if note:
                say(note)
        summary = RunSummary(task_id)
        said: set[tuple[int, str]] = set()

        def once_per_phase(r: int, phase: str, line: str) -> None:
            if (r, phase) not in said:
                said.add((r, phase))
                say(line)

        def wait_phase(info: TaskInfo, before: str, what: str) -> bool:
            """Wait until the round's phase is no longer ``before`` (the phase this pass acted on: a phase
            that changed meanwhile is not waited out); False (and a line) when ``timeout`` ran out after a
            commitment, the timeout's MarketError before any."""
            try:
                wait_until(lambda: self.contract.moved_on(task_id, info.current_round, before), timeout, what, poll)
            except MarketError:
                if not summary.submitted:
                    raise
                summary.stopped_waiting = True
                r = info.current_round
                unrevealed = ""
                seat = self.contract.seat(task_id, self.address)
                if seat.committed_round == r and seat.revealed_round != r:
                    deadline = round_state(info, self.contract.chain.clock()).reveal_deadline
                    unrevealed = f"; your commitment is not revealed yet: run again before unix time {deadline} or the stake is lost"
                say(f"round {r}: stopped waiting after {timeout:.0f} s (--timeout) for {what}{unrevealed}; "
                    f"see `market task status {task_id}`, or run again to keep going")
                return False
            return True

        while True:
            info = self.contract.task(task_id)
            self._token = info.token  # amounts are ETH, or units of the task's ERC-20 token
            for done in sorted(k for k in summary.submitted if k < info.current_round and k not in summary.outcomes):
                say(self._settled_line(task_id, done, summary))  # however quickly it settled
            if info.finished:
                return self._finish(summary, say)
            r = info.current_round
            state = round_state(info, self.contract.chain.clock())
            seat = self.contract.seat(task_id, self.address)
            committed, revealed = seat.committed_round == r, seat.revealed_round == r
            if once and committed and revealed and r not in summary.revealed:
                say(f"round {r}: already revealed this round; nothing to do")
                return summary
            if committed and not revealed and state.phase == "reveal":
                res = self.reveal_round(task_id, info)
                summary.submitted.setdefault(r, res.cid)
                summary.revealed[r] = res.cid or ""
                say(f"round {r}: revealed {res.cid} ({res.gas} gas); waiting for round {r} to settle")
                if once:
                    return summary
                continue
            if state.phase == "waiting":
                once_per_phase(r, "waiting", f"round {r}: opens in {state.seconds_left} s (the task's schedule)")
            elif state.phase == "open" and not committed:
                if not seat.index or seat.stake < info.stake:
                    if self.join(task_id):
                        say(f"round {r}: staked again to take part")
                say(f"round {r}: training on {len(self.data)} samples (submissions close in {state.seconds_left} s)")
                try:
                    res = self.run_round(task_id, info, say=say)
                except (SubmissionsClosed, ContractRevert) as exc:
                    name = getattr(exc, "name", "MarketSubmissionClosed")
                    if once or name != "MarketSubmissionClosed":
                        if isinstance(exc, SubmissionsClosed) and once:
                            raise SubmissionsClosed(exc.round, exc.deadline, exc.now, "run again once the next round opens") from None
                        raise
                    said.add((r, "late"))
                    say(exc.line("waiting for the next round") if isinstance(exc, SubmissionsClosed)
                        else f"round {r}: {exc} — waiting for the next round")
                    continue
                summary.submitted[r] = res.cid
                said.add((r, "committed"))
                say(f"round {r}: committed to {res.cid} ({res.gas} gas); revealing once submissions close")
                continue
            elif state.phase == "open":
                once_per_phase(r, "committed", f"round {r}: committed; revealing once submissions close")
            elif state.phase == "availability" and revealed and seat.available_round != r:
                try:
                    res = self.prove_available(task_id, r)
                    say(f"round {r}: no result came; proved the update {res.cid} available on chain ({res.gas} gas)")
                except MarketError as exc:  # too large to post, gone from the store, or the window just closed
                    say(f"round {r}: no result came, and this node could not prove its update available: {exc}")
                    once_per_phase(r, "settle", f"round {r}: {state.text()}")
                summary.submitted.setdefault(r, None)
            elif state.phase == "settleable":
                settled = self.contract.settlement(self.contract.settle_without_result(self.account, task_id))
                say(f"round {r}: its windows are over: settled it ({settled['settlement']})")
                if committed:
                    summary.submitted.setdefault(r, None)  # its line comes with the next pass
                continue
            elif not committed:
                if once:
                    raise SubmissionsClosed(r, state.submit_deadline, state.now, "run again once the next round opens")
                once_per_phase(r, "late", SubmissionsClosed(r, state.submit_deadline, state.now).line("waiting for the next round"))
            else:
                summary.submitted.setdefault(r, None)
                if revealed and state.phase in ("closed", "backup") and (r, "seed") not in said:
                    said.add((r, "seed"))
                    if self.keep_seed(task_id):
                        say(f"round {r}: kept the round's seed on chain (its drawn panel must answer for the round)")
                once_per_phase(r, "settle", f"round {r}: {state.text()}")
            if not wait_phase(info, state.phase, f"round {r} of task {task_id} to move on"):
                return summary

    def _settled_line(self, task_id: int, r: int, summary: "RunSummary") -> str:
        """What this node got in settled round ``r`` (its receipt by CID, its credit from ``TrainerCredited``)."""
        done = self.contract.round_info(task_id, r)
        paid = self.contract.credited(task_id, r).get(self.address, 0)
        summary.credited_wei += paid
        if done.settlement == "fallback":
            summary.outcomes[r] = "fallback"
            return (f"round {r}: settled without the aggregator's result (equal split among the updates proved "
                    f"available): credited {amount_text(paid, self._token)}")
        receipt = None
        if done.receipt_cid:
            try:
                receipt = read_receipt(self.store, done.receipt_cid)
            except MarketError as exc:
                summary.outcomes[r] = "paid" if paid else "unknown"
                return f"round {r}: settled: credited {amount_text(paid, self._token)} (receipt {done.receipt_cid} unreadable: {exc})"
        me = self.address.lower()
        if receipt is not None:
            rejected = {a.lower(): why for a, why in receipt.rejected.items()}
            if me in rejected:
                summary.outcomes[r] = "rejected"
                summary.rejected[r] = rejected[me]
                return f"round {r}: rejected: {rejected[me]}"
            if me in {a.lower() for a in receipt.outliers}:
                summary.outcomes[r] = "outlier"
                return f"round {r}: flagged as an outlier: " + (f"credited {amount_text(paid, self._token)}" if paid else "paid 0")
        summary.outcomes[r] = "paid" if paid else "unpaid"
        return f"round {r}: settled: credited {amount_text(paid, self._token)}"

    def _finish(self, summary: "RunSummary", say: Callable[[str], None]) -> "RunSummary":
        task_id = summary.task_id
        total = self.contract.credited(task_id).get(self.address, 0)  # every round of the task, this run or not
        summary.total_credited_wei = total
        if summary.all_rejected:
            first = min(summary.rejected)
            raise UpdatesRejected(
                f"task {task_id} finished: every update you submitted was rejected (round {first}: "
                f"{summary.rejected[first]}); credited {amount_text(total, self._token)}: check your data against the task's spec")
        say(f"task {task_id} finished: credited {amount_text(total, self._token)} in all; withdraw with `market trainer withdraw`")
        return summary

    def withdraw(self, task_id: int | None = None, recipient: str | None = None) -> int:
        """Withdraw everything ``task_id`` (every task joined, when None) owes this node; 0 if nothing is owed."""
        tasks = [task_id] if task_id is not None else self.contract.tasks_joined(self.address)
        total = 0
        for t in tasks:
            if self.contract.owed(t, self.address):
                total += self.contract.withdraw(self.account, t, recipient)
        return total
