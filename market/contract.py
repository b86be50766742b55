"""Typed client of the ``ContributionMarket`` contract: the one place that knows its ABI.

Reads return frozen dataclasses with Python ints for wei (never floats) and
CID strings (the contract stores sha2-256 digests).  Submissions are read from
``UpdateSubmitted`` events and checked against the running digest the contract
keeps, so a reader cannot be fed a forged event list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from market.chain import Chain
from market.cid import cid_digest, cid_from_digest
from market.compile import load_artifact
from market.errors import ChainError, ContractRevert, UnknownTaskError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO32 = b"\x00" * 32
SETTLEMENT = {0: "open", 1: "result", 2: "fallback", 3: "refunded"}


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
    spec_cid: str
    validation_commitment: str
    created_block: int

    @property
    def finished(self) -> bool:
        return self.current_round >= self.rounds


@dataclass(frozen=True)
class Submission:
    trainer: str
    cid: str
    commitment: bytes
    block: int


@dataclass(frozen=True)
class RoundInfo:
    submissions_digest: bytes
    model_cid: str | None
    receipt_cid: str | None
    settlement: str


def submissions_digest(subs: list[Submission]) -> bytes:
    """The contract's running digest over (trainer, cid, commitment) in order."""
    digest = ZERO32
    for s in subs:
        digest = keccak(abi_encode(["bytes32", "address", "bytes32", "bytes32"], [digest, s.trainer, cid_digest(s.cid), s.commitment]))
    return digest


class MarketContract:
    def __init__(self, chain: Chain, address: str) -> None:
        art = load_artifact("ContributionMarket")
        self.chain = chain
        self.address = Web3.to_checksum_address(address)
        self.c = chain.w3.eth.contract(address=self.address, abi=art["abi"])
        chain.decoder.add(art["abi"])
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
        validation_commitment: bytes,
        aggregator: str,
        rounds: int,
        reward_wei: int,
        submit_window: int = 3600,
        result_window: int = 3600,
        max_trainers: int = 64,
        verifier: str = ZERO_ADDRESS,
    ) -> tuple[int, Any]:
        params = (
            cid_digest(spec_cid), validation_commitment, Web3.to_checksum_address(aggregator),
            Web3.to_checksum_address(verifier), rounds, submit_window, result_window, max_trainers,
        )
        receipt = self.chain.transact(owner, self.c.functions.createTask(params, ZERO_ADDRESS, reward_wei), value=reward_wei)
        (ev,) = self.c.events.TaskCreated().process_receipt(receipt)
        return int(ev["args"]["taskId"]), receipt

    def join(self, trainer: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(trainer, self.c.functions.join(task_id))

    def submit_update(self, trainer: LocalAccount, task_id: int, round_: int, cid: str, commitment: bytes) -> Any:
        return self.chain.transact(trainer, self.c.functions.submitUpdate(task_id, round_, cid_digest(cid), commitment))

    def preflight_submit(self, trainer: str, task_id: int, round_: int) -> None:
        """Simulate ``submitUpdate`` (no transaction): raises the contract's error if it would revert."""
        placeholder = b"\x01" * 32
        call = self.c.functions.submitUpdate(task_id, round_, placeholder, ZERO32)
        self.chain.call(call, {"from": Web3.to_checksum_address(trainer)})

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

    def withdraw(self, account: LocalAccount, token: str = ZERO_ADDRESS) -> int:
        """Withdraw everything owed; return the amount (read from the Withdrawn event)."""
        receipt = self.chain.transact(account, self.c.functions.withdraw(token))
        return sum(int(e["args"]["amount"]) for e in self.c.events.Withdrawn().process_receipt(receipt))

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
        (owner, created_block, aggregator, rounds, current, token, sw, rw, maxt, verifier, opened, count,
         reward, escrow, credited, refunded, spec, valc) = t
        return TaskInfo(
            task_id=task_id, owner=owner, aggregator=aggregator, token=token, verifier=verifier, rounds=rounds,
            current_round=current, submit_window=sw, result_window=rw, max_trainers=maxt, trainer_count=count,
            round_opened_at=opened, reward=reward, escrow=escrow, credited=credited, refunded=refunded,
            spec_cid=cid_from_digest(bytes(spec)), validation_commitment="0x" + bytes(valc).hex(),
            created_block=created_block,
        )

    def deadlines(self, task_id: int) -> tuple[int, int]:
        s, r = self.chain.call(self.c.functions.deadlines(task_id))
        return int(s), int(r)

    def round_pool(self, task_id: int, round_: int) -> int:
        return int(self.chain.call(self.c.functions.roundPool(task_id, round_)))

    def submitters(self, task_id: int, round_: int) -> list[str]:
        return list(self.chain.call(self.c.functions.getSubmitters(task_id, round_)))

    def round_info(self, task_id: int, round_: int) -> RoundInfo:
        digest, _mask, model, receipt, settlement = self.chain.call(self.c.functions.getRound(task_id, round_))
        model_b, receipt_b = bytes(model), bytes(receipt)
        return RoundInfo(
            submissions_digest=bytes(digest),
            model_cid=cid_from_digest(model_b) if model_b != ZERO32 else None,
            receipt_cid=cid_from_digest(receipt_b) if receipt_b != ZERO32 else None,
            settlement=SETTLEMENT.get(int(settlement), str(settlement)),
        )

    def is_trainer(self, task_id: int, address: str) -> bool:
        return bool(self.chain.call(self.c.functions.isTrainer(task_id, Web3.to_checksum_address(address))))

    def owed(self, address: str, token: str = ZERO_ADDRESS) -> int:
        return int(self.chain.call(self.c.functions.owed(token, Web3.to_checksum_address(address))))

    def _logs(self, event: str, from_block: int, **filters: Any) -> list[Any]:
        ev = getattr(self.c.events, event)
        return list(
            self.chain.with_retry(
                lambda: ev.get_logs(from_block=from_block, argument_filters=filters or None), what=f"read {event} logs"
            )
        )

    def submissions(self, task_id: int, round_: int) -> list[Submission]:
        """This round's submissions from events, checked against the on-chain digest."""
        task = self.task(task_id)
        logs = self._logs("UpdateSubmitted", task.created_block, taskId=task_id, round=round_)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        subs = [
            Submission(e["args"]["trainer"], cid_from_digest(bytes(e["args"]["cid"])), bytes(e["args"]["commitment"]), e["blockNumber"])
            for e in logs
        ]
        if submissions_digest(subs) != self.round_info(task_id, round_).submissions_digest:
            raise ChainError(f"task {task_id} round {round_}: submission events do not match the on-chain digest")
        return subs

    def credited(self, task_id: int, round_: int) -> dict[str, int]:
        task = self.task(task_id)
        out: dict[str, int] = {}
        for e in self._logs("TrainerCredited", task.created_block, taskId=task_id, round=round_):
            out[e["args"]["trainer"]] = out.get(e["args"]["trainer"], 0) + int(e["args"]["amount"])
        return out

    def withdrawn(self, address: str, from_block: int = 0, token: str = ZERO_ADDRESS) -> int:
        logs = self._logs("Withdrawn", from_block, account=Web3.to_checksum_address(address), token=token)
        return sum(int(e["args"]["amount"]) for e in logs)

    def settlements(self, task_id: int) -> list[dict[str, int]]:
        task = self.task(task_id)
        return [
            {"round": int(e["args"]["round"]), "mode": int(e["args"]["mode"]), "credited": int(e["args"]["credited"]),
             "refunded": int(e["args"]["refunded"])}
            for e in self._logs("RoundSettled", task.created_block, taskId=task_id)
        ]

    def global_model_cid(self, task_id: int, initial_model_cid: str) -> str:
        """The model trainers start the current round from: the latest posted model, else the initial one."""
        task = self.task(task_id)
        for r in range(min(task.current_round, task.rounds) - 1, -1, -1):
            info = self.round_info(task_id, r)
            if info.model_cid:
                return info.model_cid
        return initial_model_cid
