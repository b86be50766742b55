"""A trainer node: one data owner's side of every round.

fetch the global model by CID → train locally on private data (which never
leaves this process) → serialise the update with safetensors → upload it →
commit its CID on-chain.  Restarting a node mid-round is safe: it first asks
the chain whether it already submitted this round and, if so, does nothing.
Attack modes exist only for simulation (``trainer_node.attacks``); a colluding
attack gets the round's honest updates from the optional ``collusion`` hook.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from market.chain.contract import ZERO_ADDRESS, MarketContract, TaskInfo, amount_text, round_state
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
    task_id: int
    round: int
    cid: str | None
    gas: int
    train_s: float
    chain_s: float
    skipped: str | None = None  # why nothing was submitted


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

    @property
    def address(self) -> str:
        return str(self.account.address)

    def join(self, task_id: int) -> bool:
        """Join the task unless already joined; True if a transaction was sent."""
        if self.contract.is_trainer(task_id, self.address):
            return False
        self.contract.join(self.account, task_id)
        return True

    def already_submitted(self, task_id: int, round_: int | None = None) -> bool:
        """Whether this node submitted to ``round_`` (the current round when None: no task read needed)."""
        return self.address in self.contract.submitters(task_id, round_)

    def prepare_update(self, view: TaskView) -> tuple[bytes, int]:
        """Train on the local data from the current global model; return (blob, samples)."""
        spec = view.spec
        _cid, global_state = fetch_global_model(self.store, view)
        data = self.data
        if self.attack:
            data = poison_data(self.attack, data, spec.data.n_classes)
        seed = round_seed(self.seed, view.info.task_id, view.info.current_round, self.address)
        delta = local_update(spec, global_state, data, seed)
        if self.attack:
            seen = None
            if self.collusion is not None and is_colluding(self.attack):
                seen = self.collusion(view.info.task_id, view.info.current_round)
            # one noise seed per task (gaussian repeats its noise), sized to the spec's published norm bound
            delta = poison_update(self.attack, delta, attack_seed(self.seed, view.info.task_id, self.address),
                                  collusion=seen, max_norm=spec.validation.max_update_norm)
        return encode_state(delta, {"kind": "delta", "samples": str(len(self.data))}), len(self.data)

    def run_round(self, task_id: int, info: TaskInfo | None = None,
                  say: Callable[[str], None] | None = None) -> SubmitResult:
        """Train and submit for the task's current round (once); ``info``: the task as just read, if the caller
        has it; ``say``: gets ``round r: trained (N s)`` before the update is submitted.

        A round whose submissions have closed (by :meth:`Chain.clock`, the time the submission would be
        mined at) raises :class:`SubmissionsClosed` before any training or gas is spent."""
        view = load_task(self.contract, self.store, task_id, info)  # the round's one read of the task
        info = view.info
        if info.finished:
            raise MarketError(f"task {task_id} has finished")
        r = info.current_round
        if self.already_submitted(task_id):  # the current round's submitters, without re-reading the task
            return SubmitResult(task_id, r, None, 0, 0.0, 0.0, skipped="already submitted this round")
        state = round_state(info, self.contract.chain.clock())
        if state.phase != "open":
            raise SubmissionsClosed(r, state.submit_deadline, state.now)
        # ask the contract too (a call, no transaction): an unjoined node learns it before training
        try:
            self.contract.preflight_submit(self.address, task_id, r)
        except ContractRevert as exc:
            if exc.name == "MarketSubmissionClosed":
                raise SubmissionsClosed(r, state.submit_deadline, state.now) from None
            raise
        t0 = time.perf_counter()
        blob, _samples = self.prepare_update(view)
        cid = self.store.put(blob)
        failpoint("trainer_after_upload")
        train_s = time.perf_counter() - t0
        if say is not None:
            say(f"round {r}: trained ({train_s:.1f} s)")
        t1 = time.perf_counter()
        receipt = self.contract.submit_update(
            self.account, task_id, r, cid, submission_commitment(view.spec, task_id, r, self.address, cid, blob)
        )
        failpoint("trainer_after_submit")
        return SubmitResult(task_id, r, cid, int(receipt["gasUsed"]), train_s, time.perf_counter() - t1)

    def run(self, task_id: int, *, once: bool = False, timeout: float = 3600.0, poll: float = 0.5,
            say: Callable[[str], None] = print) -> RunSummary:
        """Join, then train and submit every round until the task ends (``once``: the current round only).

        ``say`` gets one line per phase: training, trained (N s), submitted CID, and once the round
        settles what this node got (credited X ETH, flagged as an outlier, rejected: reason); at the end
        the total credited.  A round whose submissions closed before this node got to it is skipped
        with a line saying so, before any training (``once``: :class:`SubmissionsClosed`).  When
        waiting ``timeout`` seconds for a round this node submitted to does not see it settle, it says
        it stopped waiting and returns (the update stays submitted).  If every update it submitted was
        rejected, it raises :class:`UpdatesRejected` (one line) after the task finishes.
        """
        if self.join(task_id):
            say(f"joined task {task_id} as {self.address}")
        summary = RunSummary(task_id)
        while True:
            info = self.contract.task(task_id)
            self._token = info.token  # amounts are ETH, or units of the task's ERC-20 token
            if info.finished:
                return self._finish(summary, say)
            r = info.current_round
            if self.already_submitted(task_id):
                if once:
                    say(f"round {r}: already submitted this round; nothing to do")
                    return summary
                summary.submitted.setdefault(r, None)
                say(f"round {r}: already submitted; waiting for round {r} to settle")
            else:
                state = round_state(info, self.contract.chain.clock())
                if state.phase == "open":
                    say(f"round {r}: training on {len(self.data)} samples (submissions close in {state.seconds_left} s)")
                try:
                    res = self.run_round(task_id, info, say=say)
                except SubmissionsClosed as exc:
                    if once:
                        raise SubmissionsClosed(exc.round, exc.deadline, exc.now, "run again once the next round opens") from None
                    say(exc.line("waiting for the next round"))
                    wait_until(lambda: self.contract.task(task_id).current_round != r, timeout,
                               f"round {r} of task {task_id} to settle", poll)
                    continue
                except ContractRevert as exc:  # closed between the check and the transaction
                    if once or exc.name != "MarketSubmissionClosed":
                        raise
                    say(f"round {r}: {exc} — waiting for the next round")
                    wait_until(lambda: self.contract.task(task_id).current_round != r, timeout,
                               f"round {r} of task {task_id} to settle", poll)
                    continue
                if not res.cid:
                    say(f"round {r}: skipped: {res.skipped}")
                    if once:
                        return summary
                else:
                    summary.submitted[r] = res.cid
                    if once:
                        say(f"round {r}: submitted {res.cid} ({res.gas} gas)")
                        return summary
                    say(f"round {r}: submitted {res.cid} ({res.gas} gas); waiting for round {r} to settle")
            try:
                wait_until(lambda: self.contract.task(task_id).current_round != r, timeout,
                           f"round {r} of task {task_id} to settle", poll)
            except MarketError:
                summary.stopped_waiting = True
                say(f"round {r}: stopped waiting after {timeout:.0f} s (--timeout) for the round to settle; your update "
                    f"stays submitted: see `market task status {task_id}`, or run again to keep going")
                return summary
            say(self._settled_line(task_id, r, summary))

    def _settled_line(self, task_id: int, r: int, summary: "RunSummary") -> str:
        """What this node got in settled round ``r`` (its receipt by CID, its credit from ``TrainerCredited``)."""
        done = self.contract.round_info(task_id, r)
        paid = self.contract.credited(task_id, r).get(self.address, 0)
        summary.credited_wei += paid
        if done.settlement == "fallback":
            summary.outcomes[r] = "fallback"
            return f"round {r}: settled without the aggregator's result (equal split): credited {amount_text(paid, self._token)}"
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

    def withdraw(self) -> int:
        """Withdraw everything this node is owed; 0 if nothing is owed."""
        if self.contract.owed(self.address) == 0:
            return 0
        return self.contract.withdraw(self.account)
