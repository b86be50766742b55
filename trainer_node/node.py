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
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from market.chain.contract import MarketContract, TaskInfo
from market.commitment import submission_commitment
from market.data import Dataset
from market.errors import ContractRevert, MarketError
from market.failpoints import failpoint
from market.store import ContentStore
from market.task import TaskView, fetch_global_model, load_task, wait_until
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

    def run_round(self, task_id: int, info: TaskInfo | None = None) -> SubmitResult:
        """Train and submit for the task's current round (once); ``info``: the task as just read, if the caller has it."""
        view = load_task(self.contract, self.store, task_id, info)  # the round's one read of the task
        info = view.info
        if info.finished:
            raise MarketError(f"task {task_id} has finished")
        r = info.current_round
        if self.already_submitted(task_id):  # the current round's submitters, without re-reading the task
            return SubmitResult(task_id, r, None, 0, 0.0, 0.0, skipped="already submitted this round")
        # ask the contract first (a call, no transaction): a late or unjoined node learns it before training
        self.contract.preflight_submit(self.address, task_id, r)
        t0 = time.perf_counter()
        blob, _samples = self.prepare_update(view)
        cid = self.store.put(blob)
        failpoint("trainer_after_upload")
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        receipt = self.contract.submit_update(
            self.account, task_id, r, cid, submission_commitment(view.spec, task_id, r, self.address, cid, blob)
        )
        failpoint("trainer_after_submit")
        return SubmitResult(task_id, r, cid, int(receipt["gasUsed"]), train_s, time.perf_counter() - t1)

    def run(self, task_id: int, *, once: bool = False, timeout: float = 3600.0, poll: float = 0.5,
            say: Callable[[str], None] = print) -> None:
        """Join, then train and submit every round until the task ends (``once``: the current round only).

        Waits for each round to settle before the next; a round whose submissions closed before this
        node got to it is skipped with a line saying so.  ``say`` gets one line per event.
        """
        self.join(task_id)
        while True:
            info = self.contract.task(task_id)
            if info.finished:
                say(f"task {task_id} finished")
                return
            r = info.current_round
            submitted = self.already_submitted(task_id)
            if submitted and once:
                say(f"round {r}: already submitted this round; nothing to do")
                return
            if not submitted:
                try:
                    res = self.run_round(task_id, info)
                except ContractRevert as exc:
                    if once or exc.name != "MarketSubmissionClosed":
                        raise
                    say(f"round {r}: {exc}; waiting for the next round")
                    wait_until(lambda: self.contract.task(task_id).current_round != r, timeout, f"round {r} to settle", poll)
                    continue
                if res.cid:
                    say(f"round {r}: submitted {res.cid} ({res.train_s:.1f} s training, {res.gas} gas)")
                else:
                    say(f"round {r}: skipped: {res.skipped}")
                if once:
                    return
            wait_until(lambda: self.contract.task(task_id).current_round != r, timeout,
                       f"round {r} of task {task_id} to settle", poll)

    def withdraw(self) -> int:
        """Withdraw everything this node is owed; 0 if nothing is owed."""
        if self.contract.owed(self.address) == 0:
            return 0
        return self.contract.withdraw(self.account)
