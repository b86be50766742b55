"""Typed client of the ``AggregatorRegistry``: bonded aggregators, the per-round draw, votes and penalties.

Each round of each task, the market draws that round's panel (and, when the task asks for one, a backup)
from the registry with the round's seed, as of the block that sealed the round; nobody picks them. A
panel member posts the result it computed; once ``quorum`` identical results are in, the round settles.
A member that voted against the decided result, or stayed silent when it was its turn, loses
``penalty`` wei of its bond to the round's paid trainers (``credits``, withdrawn from the registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp  # type: ignore[import-untyped]
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD

from market.chain.client import Chain
from market.chain.compile import load_artifact

#: the development defaults `market devnet`, `simulate` and the tests deploy with (wei, seconds)
DEV_MIN_BOND = 10**18
DEV_PENALTY = 10**17
DEV_EXIT_DELAY = 300 * 86400  # twice the longest round the market allows (30-day windows)
#: what the dev tools (devnet, simulate, the tests) bond each aggregator with: ten penalties of room before the
#: bond falls below the least and the member leaves the draw
DEV_BOND = 2 * 10**18


def create_address(sender: str, nonce: int) -> str:
    """The address a contract deployed by ``sender`` with ``nonce`` gets (CREATE)."""
    raw = keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:]
    return Web3.to_checksum_address(raw)


@dataclass(frozen=True)
class Member:
    """One registry entry (an account that left and registered again has two)."""

    account: str
    since_block: int
    left_block: int  # 0: in the draw
    bond: int

    @property
    def active(self) -> bool:
        return self.left_block == 0


class RegistryContract:
    def __init__(self, chain: Chain, address: str) -> None:
        art = load_artifact("AggregatorRegistry")
        self.chain = chain
        self.address = Web3.to_checksum_address(address)
        self.c = chain.w3.eth.contract(address=self.address, abi=art["abi"])
        chain.decoder.add(art["abi"], art.get("userdoc"))

    # ------------------------------------------------------------------ writes
    def register(self, account: LocalAccount, bond_wei: int | None = None) -> Any:
        """Join the draw with ``bond_wei`` (the registry's minimum by default), or add to a bond."""
        return self.chain.transact(account, self.c.functions.register(), value=self.min_bond() if bond_wei is None else bond_wei)

    def exit(self, account: LocalAccount) -> Any:
        return self.chain.transact(account, self.c.functions.exit())

    def withdraw_bond(self, account: LocalAccount) -> int:
        receipt = self.chain.transact(account, self.c.functions.withdrawBond())
        return sum(int(e["args"]["amount"]) for e in self.c.events.BondWithdrawn().process_receipt(receipt, errors=DISCARD))

    def withdraw_credit(self, account: LocalAccount) -> int:
        receipt = self.chain.transact(account, self.c.functions.withdrawCredit())
        return sum(int(e["args"]["amount"]) for e in self.c.events.CreditWithdrawn().process_receipt(receipt, errors=DISCARD))

    # ------------------------------------------------------------------- reads
    def market(self) -> str:
        return str(self.chain.call(self.c.functions.market()))

    def min_bond(self) -> int:
        return int(self.chain.call(self.c.functions.minBond()))

    def penalty(self) -> int:
        return int(self.chain.call(self.c.functions.penalty()))

    def active_count(self) -> int:
        return int(self.chain.call(self.c.functions.activeCount()))

    def drawable_count(self, owner: str) -> int:
        """Members a task of ``owner`` can draw from: those in the draw, but the owner (never drawn for its tasks)."""
        return self.active_count() - (1 if self.is_active(owner) else 0)

    def is_active(self, account: str) -> bool:
        return bool(self.chain.call(self.c.functions.isActive(Web3.to_checksum_address(account))))

    def members(self) -> list[Member]:
        n = int(self.chain.call(self.c.functions.memberCount()))
        out = []
        for i in range(n):
            account, since, left, bond = self.chain.call(self.c.functions.memberAt(i))
            out.append(Member(Web3.to_checksum_address(account), int(since), int(left), int(bond)))
        return out

    def member(self, account: str) -> Member | None:
        """``account``'s latest entry, or None if it never registered."""
        entry = int(self.chain.call(self.c.functions.entryOf(Web3.to_checksum_address(account))))
        if entry == 0:
            return None
        a, since, left, bond = self.chain.call(self.c.functions.memberAt(entry - 1))
        return Member(Web3.to_checksum_address(a), int(since), int(left), int(bond))

    def burned(self) -> int:
        """Wei of penalties taken in rounds that paid nobody to credit them to (kept out of circulation)."""
        return int(self.chain.call(self.c.functions.burned()))

    def credit(self, account: str) -> int:
        """Wei of penalties owed to ``account`` (withdraw with :meth:`withdraw_credit`)."""
        return int(self.chain.call(self.c.functions.credits(Web3.to_checksum_address(account))))

    def draw(self, seed: bytes, at_block: int, k: int, exclude: str) -> list[str]:
        return [Web3.to_checksum_address(a) for a in
                self.chain.call(self.c.functions.draw(seed, at_block, k, Web3.to_checksum_address(exclude)))]

    def vote_of(self, task_id: int, round_: int, member: str) -> bytes:
        return bytes(self.chain.call(self.c.functions.voteOf(task_id, round_, Web3.to_checksum_address(member))))

    def vote_commitment_of(self, task_id: int, round_: int, member: str) -> bytes:
        """The commitment ``member`` made to its result (``commitVote``), or 32 zero bytes."""
        return bytes(self.chain.call(self.c.functions.voteCommitmentOf(task_id, round_,
                                                                       Web3.to_checksum_address(member))))

    def penalties(self, task_id: int | None = None, from_block: int = 0) -> list[dict[str, Any]]:
        """Every ``Penalised`` event (of one task), oldest first: task, round, member, amount."""
        filters = {} if task_id is None else {"taskId": task_id}
        logs = self.c.events.Penalised().get_logs(from_block=from_block, argument_filters=filters)
        return [{"task": int(e["args"]["taskId"]), "round": int(e["args"]["round"]),
                 "member": Web3.to_checksum_address(e["args"]["member"]), "amount": int(e["args"]["amount"])}
                for e in logs]
