"""Typed client of the ``ContributionMarket`` contract: the one place that knows its ABI.

Reads return frozen dataclasses with Python ints for wei (never floats) and
CID strings (the contract stores sha2-256 digests).  Submissions are read from
``UpdateSubmitted`` events and checked against the running digest the contract
keeps, so a reader cannot be fed a forged event list.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD

from market.chain.client import Chain
from market.chain.compile import load_artifact
from market.cid import cid_digest, cid_from_digest
from market.errors import ChainError, ContractRevert, UnknownTaskError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO32 = b"\x00" * 32
SETTLEMENT = {1: "result", 2: "fallback", 3: "refunded"}
MAX_ROUNDS = 10_000  # the contract's MAX_ROUNDS
MAX_TRAINERS = 256  # the contract's MAX_TRAINERS


@dataclass(frozen=True)
class TaskInfo:
    task_id: int
    owner: str
    aggregator: str
    token: str
    verifier: str
    rounds: int
    current_round: int
    submit_window: int
    result_window: int
    max_trainers: int
    trainer_count: int
    round_opened_at: int
    reward: int
    escrow: int
    credited: int
    refunded: int
    refunds_withdrawn: int
    submitted_count: int
    submissions_digest: bytes
    latest_model_cid: str | None
    spec_cid: str
    validation_commitment: str
    created_block: int

    @property
    def refundable(self) -> int:
        """Refunds the owner can still withdraw."""
        return self.refunded - self.refunds_withdrawn

    @property
    def finished(self) -> bool:
        return self.current_round >= self.rounds

    def round_pool(self, round_: int) -> int:
        """Round ``round_``'s share of the reward, as the contract's ``roundPool`` computes it (telescoping,
        so the pools sum to the reward exactly)."""
        if not 0 <= round_ < self.rounds:
            raise ValueError(f"task {self.task_id} has rounds 0..{self.rounds - 1}, not {round_}")
        return (self.reward * (round_ + 1)) // self.rounds - (self.reward * round_) // self.rounds


@dataclass(frozen=True)
class RoundState:
    """Where a task's current round stands, derived from the chain's state and a clock
    (:meth:`Chain.clock`, never the frozen latest block of an idle dev chain alone).

    ``open``: submissions accepted until ``submit_deadline``; ``closed``: submissions closed (the
    deadline passed, or ``max_trainers`` submitted), waiting for the aggregator's result until
    ``result_deadline``; ``settleable``: the result window is over, anyone may settle the round
    (``settleWithoutResult``); ``settled``: the task has finished, every round is settled.
    """

    task_id: int
    round: int
    phase: str
    now: int
    submit_deadline: int
    result_deadline: int
    submitted: int
    max_trainers: int

    @property
    def seconds_left(self) -> int | None:
        """Seconds until the current phase ends (open: submissions close; closed: the result window ends)."""
        if self.phase == "open":
            return max(0, self.submit_deadline - self.now)
        if self.phase == "closed":
            return max(0, self.result_deadline - self.now)
        return None

    @property
    def closed_early(self) -> bool:
        """Submissions closed before the deadline because the task's full trainer count submitted."""
        return self.phase != "settled" and self.submitted >= self.max_trainers and self.now < self.submit_deadline

    def text(self) -> str:
        """One line: what the round is doing and what comes next."""
        if self.phase == "open":
            return f"submissions open (closes in {self.seconds_left} s)"
        if self.phase == "closed":
            return f"submissions closed, waiting for the aggregator's result (window ends in {self.seconds_left} s)"
        if self.phase == "settleable":
            return f"result window over: anyone may settle with `market task settle {self.task_id} --round {self.round}`"
        return "settled"


def round_state(info: "TaskInfo", now: int) -> RoundState:
    """The phase of ``info``'s current round at unix time ``now`` (the contract's own rules: submissions
    close at the deadline or once ``max_trainers`` have submitted; the result window follows the deadline)."""
    submit_dl = info.round_opened_at + info.submit_window
    result_dl = submit_dl + info.result_window
    if info.finished:
        phase = "settled"
    elif now < submit_dl and info.submitted_count < info.max_trainers:
        phase = "open"
    elif now < result_dl:
        phase = "closed"
    else:
        phase = "settleable"
    return RoundState(info.task_id, min(info.current_round, info.rounds - 1), phase, now, submit_dl, result_dl,
                      info.submitted_count, info.max_trainers)


@dataclass(frozen=True)
class Submission:
    trainer: str
    cid: str
    commitment: bytes
    block: int
    index: int = 0  # the trainer's 1-based join index
    seq: int = 0  # position in the round's submission order


@dataclass(frozen=True)
class RoundInfo:
    submissions_digest: bytes
    model_cid: str | None
    receipt_cid: str | None
    settlement: str  # open | result | fallback | refunded
    tx_hash: Any = None  # the transaction that settled the round
    credited: int = 0  # wei credited to trainers by the settlement
    refunded: int = 0  # wei refunded to the owner by the settlement


def eth_text(wei: int | str) -> str:
    """Wei as ETH with six decimals, for the lines roles print (exact amounts stay in wei)."""
    return f"{Decimal(int(wei)) / Decimal(10**18):.6f}"


def amount_text(wei: int | str, token: str = ZERO_ADDRESS, exact: bool = False) -> str:
    """An amount of a task's reward for people: ``X.XXXXXX ETH`` (``exact``: with `` (N wei)``) for an
    ETH task, ``N units of token 0x…`` for an ERC-20 task -- never shown as ETH, whatever its decimals."""
    if int(token, 16) == 0:
        return f"{eth_text(wei)} ETH" + (f" ({int(wei)} wei)" if exact else "")
    return f"{int(wei)} units of token {Web3.to_checksum_address(token)}"


def amount_number(wei: int | str, token: str = ZERO_ADDRESS) -> str:
    """The number of :func:`amount_text` without its unit (ETH with six decimals, or raw token units)."""
    return eth_text(wei) if int(token, 16) == 0 else str(int(wei))


def digest_seed(task_id: int) -> bytes:
    """The running submissions digest of a new task."""
    return keccak(abi_encode(["uint256"], [task_id]))


def submissions_digest(start: bytes, subs: list[Submission]) -> bytes:
    """The contract's running digest from ``start`` over (join index, cid, commitment) in submission order."""
    digest = start
    for s in sorted(subs, key=lambda s: s.seq):
        digest = keccak(abi_encode(["bytes32", "uint256", "bytes32", "bytes32"], [digest, s.index, cid_digest(s.cid), s.commitment]))
    return digest


class MarketContract:
    def __init__(self, chain: Chain, address: str) -> None:
        art = load_artifact("ContributionMarket")
        self.chain = chain
        self.address = Web3.to_checksum_address(address)
        self.c = chain.w3.eth.contract(address=self.address, abi=art["abi"])
        chain.decoder.add(art["abi"], art.get("userdoc"))
        if chain.kind != "tester" and not chain.w3.eth.get_code(self.address):
            raise ChainError(f"no contract at {self.address} on this chain (wrong --contract or chain restarted?)")

    @classmethod
    def deploy(cls, chain: Chain, account: LocalAccount) -> "MarketContract":
        return cls(chain, chain.deploy(account, load_artifact("ContributionMarket")))

    # ------------------------------------------------------------------ writes
    def create_task(
        self,
        owner: LocalAccount,
        *,
        spec_cid: str,
        initial_model_cid: str,
        validation_commitment: bytes,
        aggregator: str,
        rounds: int,
        reward_wei: int,
        submit_window: int = 3600,
        result_window: int = 3600,
        max_trainers: int = 64,
        verifier: str = ZERO_ADDRESS,
        token: str = ZERO_ADDRESS,
    ) -> tuple[int, Any]:
        """Create a task; for an ERC-20 ``token`` the owner must have approved ``reward_wei`` first."""
        params = (
            cid_digest(spec_cid), cid_digest(initial_model_cid), validation_commitment, Web3.to_checksum_address(aggregator),
            Web3.to_checksum_address(verifier), rounds, submit_window, result_window, max_trainers,
        )
        token = Web3.to_checksum_address(token)
        value = reward_wei if token == ZERO_ADDRESS else 0
        receipt = self.chain.transact(owner, self.c.functions.createTask(params, token, reward_wei), value=value)
        (ev,) = self.c.events.TaskCreated().process_receipt(receipt, errors=DISCARD)
        return int(ev["args"]["taskId"]), receipt

    def join(self, trainer: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(trainer, self.c.functions.join(task_id))

    def submit_update(self, trainer: LocalAccount, task_id: int, round_: int, cid: str, commitment: bytes) -> Any:
        return self.chain.transact(trainer, self.c.functions.submitUpdate(task_id, round_, cid_digest(cid), commitment))

    def preflight_submit(self, trainer: str, task_id: int, round_: int) -> None:
        """Simulate ``submitUpdate`` in the next block (no transaction): raises the contract's error if it would revert."""
        placeholder = b"\x01" * 32
        call = self.c.functions.submitUpdate(task_id, round_, placeholder, ZERO32)
        self.chain.call(call, {"from": Web3.to_checksum_address(trainer)}, block=self.chain.next_block)

    def post_result(
        self, aggregator: LocalAccount, task_id: int, round_: int, model_cid: str, receipt_cid: str,
        bps: list[int], proof: bytes = b"",
    ) -> Any:
        call = self.c.functions.postResult(task_id, round_, cid_digest(model_cid), cid_digest(receipt_cid), bps, proof)
        return self.chain.transact(aggregator, call)

    def settle_without_result(self, caller: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(caller, self.c.functions.settleWithoutResult(task_id))

    def reclaim_unused(self, owner: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(owner, self.c.functions.reclaimUnused(task_id))

    def reclaimed(self, receipt: Any) -> int:
        """Wei a ``reclaimUnused`` receipt moved back to the owner's refunds (its ``TaskReclaimed`` event)."""
        return sum(int(e["args"]["amount"]) for e in self.c.events.TaskReclaimed().process_receipt(receipt, errors=DISCARD))

    def settlement(self, receipt: Any) -> dict[str, Any]:
        """The ``RoundSettled`` event of a settling receipt: round, settlement (result | fallback | refunded),
        credited and refunded wei, and how many trainers were credited (``TrainerCredited`` events)."""
        (ev,) = self.c.events.RoundSettled().process_receipt(receipt, errors=DISCARD)
        paid = self.c.events.TrainerCredited().process_receipt(receipt, errors=DISCARD)
        a = ev["args"]
        return {"round": int(a["round"]), "settlement": SETTLEMENT.get(int(a["mode"]), str(a["mode"])),
                "credited": int(a["credited"]), "refunded": int(a["refunded"]), "trainers": len(paid)}

    def withdraw(self, account: LocalAccount, token: str = ZERO_ADDRESS) -> int:
        """Withdraw everything owed; return the amount (read from the Withdrawn event)."""
        receipt = self.chain.transact(account, self.c.functions.withdraw(token))
        return sum(int(e["args"]["amount"]) for e in self.c.events.Withdrawn().process_receipt(receipt, errors=DISCARD))

    def withdraw_refund(self, owner: LocalAccount, task_id: int) -> int:
        """The owner withdraws a task's refunds; return the amount."""
        receipt = self.chain.transact(owner, self.c.functions.withdrawRefund(task_id))
        return sum(int(e["args"]["amount"]) for e in self.c.events.RefundWithdrawn().process_receipt(receipt, errors=DISCARD))

    # ------------------------------------------------------------------- reads
    def task_count(self) -> int:
        return int(self.chain.call(self.c.functions.taskCount()))

    def task(self, task_id: int) -> TaskInfo:
        try:
            t = self.chain.call(self.c.functions.getTask(task_id))
        except ContractRevert as exc:
            if exc.name == "MarketUnknownTask":
                raise UnknownTaskError(f"unknown task {task_id} (this contract has {self.task_count()} tasks)") from None
            raise
        (owner, created_block, submitted, count_round, aggregator, rounds, current, opened, token, sw, rw, maxt,
         verifier, count, reward, refunded, escrow, credited, refunds_withdrawn, digest, latest, spec, valc) = t
        if count_round != current:
            submitted = 0
        latest_b = bytes(latest)
        return TaskInfo(
            task_id=task_id, owner=owner, aggregator=aggregator, token=token, verifier=verifier, rounds=rounds,
            current_round=current, submit_window=sw, result_window=rw, max_trainers=maxt, trainer_count=count,
            round_opened_at=opened, reward=reward, escrow=escrow, credited=credited, refunded=refunded,
            refunds_withdrawn=refunds_withdrawn, submitted_count=submitted, submissions_digest=bytes(digest),
            latest_model_cid=cid_from_digest(latest_b) if latest_b != ZERO32 else None,
            spec_cid=cid_from_digest(bytes(spec)), validation_commitment="0x" + bytes(valc).hex(),
            created_block=created_block,
        )

    def deadlines(self, task_id: int) -> tuple[int, int]:
        s, r = self.chain.call(self.c.functions.deadlines(task_id))
        return int(s), int(r)

    def round_pool(self, task_id: int, round_: int) -> int:
        return int(self.chain.call(self.c.functions.roundPool(task_id, round_)))

    def submitters(self, task_id: int, round_: int | None = None, info: TaskInfo | None = None) -> list[str]:
        """Submitters of a round in join order (the order ``bps`` follows); the current round by default."""
        if round_ is not None:
            task = self._info(task_id, info)
            if round_ != task.current_round:
                return [s.trainer for s in self.submissions(task_id, round_, task)]
        return list(self.chain.call(self.c.functions.getSubmitters(task_id)))

    def trainer_index(self, task_id: int, address: str) -> int:
        return int(self.chain.call(self.c.functions.trainerIndex(task_id, Web3.to_checksum_address(address))))

    def is_trainer(self, task_id: int, address: str) -> bool:
        return self.trainer_index(task_id, address) != 0

    def owed(self, address: str, token: str = ZERO_ADDRESS) -> int:
        return int(self.chain.call(self.c.functions.owed(token, Web3.to_checksum_address(address))))

    # ------------------------------------------------------------------ events
    # Every read below takes the task's ``TaskInfo`` when the caller already has it (one ``getTask``
    # per round, not one per read); without it, it reads the task once.
    def _info(self, task_id: int, info: TaskInfo | None) -> TaskInfo:
        return info if info is not None and info.task_id == task_id else self.task(task_id)

    def _logs(self, event: str, from_block: int, **filters: Any) -> list[Any]:
        ev = getattr(self.c.events, event)
        return list(
            self.chain.with_retry(
                lambda: ev.get_logs(from_block=from_block, argument_filters=filters or None), what=f"read {event} logs"
            )
        )

    def settled_rounds(self, task_id: int, info: TaskInfo | None = None) -> dict[int, RoundInfo]:
        """Every settled round of the task (one log query): round -> settlement, result CIDs, final digest."""
        task = self._info(task_id, info)
        out: dict[int, RoundInfo] = {}
        for e in self._logs("RoundSettled", task.created_block, taskId=task_id):
            ev = e["args"]
            model = receipt = None
            if bytes(ev["modelCid"]) != ZERO32:
                model = cid_from_digest(bytes(ev["modelCid"]))
                receipt = cid_from_digest(bytes(ev["receiptCid"]))
            out[int(ev["round"])] = RoundInfo(bytes(ev["submissionsDigest"]), model, receipt,
                                              SETTLEMENT.get(int(ev["mode"]), str(ev["mode"])), e["transactionHash"],
                                              int(ev["credited"]), int(ev["refunded"]))
        return out

    def round_info(self, task_id: int, round_: int, info: TaskInfo | None = None) -> RoundInfo:
        """A round's settlement, result CIDs and final submissions digest (from events; open rounds from state)."""
        task = self._info(task_id, info)
        return self.settled_rounds(task_id, task).get(round_) or RoundInfo(task.submissions_digest, None, None, "open")

    def join_order(self, task_id: int, info: TaskInfo | None = None) -> dict[str, int]:
        """Each trainer's 1-based join index (one log query)."""
        task = self._info(task_id, info)
        return {e["args"]["trainer"]: int(e["args"]["index"])
                for e in self._logs("TrainerJoined", task.created_block, taskId=task_id)}

    def submissions(self, task_id: int, round_: int, info: TaskInfo | None = None,
                    settled: dict[int, RoundInfo] | None = None) -> list[Submission]:
        """A round's submissions from events, checked against the on-chain digest; join order."""
        task = self._info(task_id, info)
        logs = self._logs("UpdateSubmitted", task.created_block, taskId=task_id, round=round_)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        order = self.join_order(task_id, task)
        subs = [
            Submission(e["args"]["trainer"], cid_from_digest(bytes(e["args"]["cid"])), bytes(e["args"]["commitment"]),
                       e["blockNumber"], order[e["args"]["trainer"]], seq)
            for seq, e in enumerate(logs)
        ]
        if settled is None:
            settled = self.settled_rounds(task_id, task)
        done = settled.get(round_)
        expected = task.submissions_digest if round_ == task.current_round or done is None else done.submissions_digest
        if submissions_digest(_digest_before(task_id, round_, settled), subs) != expected:
            raise ChainError(f"task {task_id} round {round_}: submission events do not match the on-chain digest")
        return sorted(subs, key=lambda s: s.index)

    def all_submissions(self, task_id: int, info: TaskInfo | None = None, settled: dict[int, RoundInfo] | None = None,
                        order: dict[str, int] | None = None) -> dict[int, list[Submission]]:
        """Every round's submissions from one log query (plus the join order), each round checked
        against its on-chain digest; join order within a round."""
        task = self._info(task_id, info)
        if settled is None:
            settled = self.settled_rounds(task_id, task)
        if order is None:
            order = self.join_order(task_id, task)
        logs = self._logs("UpdateSubmitted", task.created_block, taskId=task_id)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        by_round: dict[int, list[Submission]] = {r: [] for r in range(min(task.current_round + 1, task.rounds))}
        for e in logs:
            subs = by_round.setdefault(int(e["args"]["round"]), [])
            subs.append(Submission(e["args"]["trainer"], cid_from_digest(bytes(e["args"]["cid"])), bytes(e["args"]["commitment"]),
                                   e["blockNumber"], order[e["args"]["trainer"]], len(subs)))
        for r, subs in by_round.items():
            done = settled.get(r)
            expected = task.submissions_digest if r == task.current_round or done is None else done.submissions_digest
            if submissions_digest(_digest_before(task_id, r, settled), subs) != expected:
                raise ChainError(f"task {task_id} round {r}: submission events do not match the on-chain digest")
            subs.sort(key=lambda s: s.index)
        return by_round

    def round_snapshot(self, task_id: int, round_: int | None = None, info: TaskInfo | None = None) -> "RoundSnapshot":
        """Everything a round's readers need, read once: the task (one ``getTask``), its settled rounds,
        and the round's digest-checked submissions (three log queries in all)."""
        task = self._info(task_id, info)
        r = task.current_round if round_ is None else round_
        settled = self.settled_rounds(task_id, task)
        subs = self.submissions(task_id, r, task, settled) if r < task.rounds else []
        return RoundSnapshot(task, r, tuple(subs), settled)

    def result_call(self, task_id: int, round_: int, info: TaskInfo | None = None) -> dict[str, Any]:
        """The arguments of the ``postResult`` transaction that settled ``round_`` (read back from the chain)."""
        done = self.settled_rounds(task_id, info).get(round_)
        if done is None or done.settlement != "result" or done.tx_hash is None:
            raise ChainError(f"task {task_id} round {round_} was not settled by a posted result")
        tx_hash = done.tx_hash
        tx = self.chain.with_retry(lambda: self.chain.w3.eth.get_transaction(tx_hash), what="read the result transaction")
        _, args = self.c.decode_function_input(tx["input"])
        return dict(args)

    def digest_before(self, task_id: int, round_: int, info: TaskInfo | None = None) -> bytes:
        """The running submissions digest before ``round_``'s first submission."""
        if round_ == 0:
            return digest_seed(task_id)
        return _digest_before(task_id, round_, self.settled_rounds(task_id, info))

    def credited(self, task_id: int, round_: int | None = None, info: TaskInfo | None = None) -> dict[str, int]:
        """Wei credited per trainer in ``round_`` (every round if None), from ``TrainerCredited`` events."""
        return {a: sum(v.values()) for a, v in self.credited_by_round(task_id, round_, info).items()}

    def credited_by_round(self, task_id: int, round_: int | None = None,
                          info: TaskInfo | None = None) -> dict[str, dict[int, int]]:
        """trainer -> round -> wei credited (one log query; one round or all of them)."""
        task = self._info(task_id, info)
        filters: dict[str, Any] = {"taskId": task_id} if round_ is None else {"taskId": task_id, "round": round_}
        out: dict[str, dict[int, int]] = {}
        for e in self._logs("TrainerCredited", task.created_block, **filters):
            per = out.setdefault(e["args"]["trainer"], {})
            r = int(e["args"]["round"])
            per[r] = per.get(r, 0) + int(e["args"]["amount"])
        return out

    def withdrawn(self, address: str, from_block: int = 0, token: str = ZERO_ADDRESS) -> int:
        logs = self._logs("Withdrawn", from_block, account=Web3.to_checksum_address(address), token=token)
        return sum(int(e["args"]["amount"]) for e in logs)

    def settlements(self, task_id: int, info: TaskInfo | None = None) -> list[dict[str, int]]:
        task = self._info(task_id, info)
        return [
            {"round": int(e["args"]["round"]), "mode": int(e["args"]["mode"]), "credited": int(e["args"]["credited"]),
             "refunded": int(e["args"]["refunded"])}
            for e in self._logs("RoundSettled", task.created_block, taskId=task_id)
        ]


def _digest_before(task_id: int, round_: int, settled: dict[int, RoundInfo]) -> bytes:
    if round_ == 0:
        return digest_seed(task_id)
    prev = settled.get(round_ - 1)
    if prev is None:
        raise ChainError(f"task {task_id} round {round_ - 1} is not settled")
    return prev.submissions_digest


@dataclass(frozen=True)
class RoundSnapshot:
    """One read of a round (:meth:`MarketContract.round_snapshot`), passed along instead of re-read."""

    info: TaskInfo
    round: int
    submissions: tuple[Submission, ...]  # digest-checked, join order
    settled: dict[int, RoundInfo]  # every settled round of the task

    @property
    def task_id(self) -> int:
        return self.info.task_id

    @property
    def result(self) -> RoundInfo:
        """This round's settlement (``open`` with the running digest while it is not settled)."""
        return self.settled.get(self.round) or RoundInfo(self.info.submissions_digest, None, None, "open")

    @property
    def digest_before(self) -> bytes:
        """The running submissions digest before this round's first submission."""
        return _digest_before(self.info.task_id, self.round, self.settled)

    def prior_receipt_cid(self) -> str | None:
        """The receipt of the latest earlier round settled by a result (cumulative values chain through it)."""
        for r in range(self.round - 1, -1, -1):
            done = self.settled.get(r)
            if done is not None and done.receipt_cid:
                return done.receipt_cid
        return None
