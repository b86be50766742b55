"""Playing a whole round of the commit–reveal protocol with the real roles, for tests and benches.

:func:`play_round` does what the parties do, in order, moving the dev chain's clock instead of waiting:
advance to the round's scheduled opening → every node trains, uploads and commits (``TrainerNode.run_round``)
→ close the commits (at their deadline, unless every seat committed) → every node reveals
(``TrainerNode.reveal_round``) → close the reveals (at their deadline, unless every committer revealed)
→ the aggregator seals if needed, reads the seed and posts (``Aggregator.run_round``).

A test can make a party misbehave: ``drop_reveals`` names trainers that commit and never reveal;
``blobs`` gives a trainer bytes (or an existing CID) to commit to and reveal instead of training, with
the commitment and salt an honest node would use (``commit_blob``), so the chain accepts it and only the
aggregator can refuse it; like a node, it publishes the bytes only when it reveals (``unpublished``:
never).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from aggregator.service import Aggregator, PostedRound, update_binding
from market.chain.client import Chain
from market.chain.contract import MarketContract, TaskInfo, commit_hash
from market.cid import compute_cid
from market.commitment import submission_commitment
from market.errors import MalformedUpdateError
from market.store import ContentStore
from market.task import load_task
from market.tensors import encode_state
from trainer_node.node import Pending, TrainerNode, reveal_salt

ZERO32 = b"\x00" * 32


def _contract(env_or_contract: Any) -> MarketContract:
    return env_or_contract if isinstance(env_or_contract, MarketContract) else env_or_contract.contract


def _address(party: Any) -> str:
    return str(party if isinstance(party, str) else party.address).lower()


def _account(party: TrainerNode | LocalAccount) -> LocalAccount:
    return party.account if isinstance(party, TrainerNode) else party


def bound_meta(task_id: int, round_: int, trainer: str, samples: int | str = 100) -> dict[str, str]:
    """The metadata of a well-formed update blob: kind, samples and who made it for which task and round."""
    return {"kind": "delta", "samples": str(samples), **update_binding(task_id, round_, trainer)}


def delta_blob(tensors: Mapping[str, Any], task_id: int, round_: int, trainer: str, samples: int | str = 100) -> bytes:
    """An update blob bound to ``trainer``'s submission to ``round_`` of ``task_id``."""
    return encode_state(dict(tensors), bound_meta(task_id, round_, trainer, samples))


# ------------------------------------------------------------------ the clock
def advance_to(chain: Chain, when: int) -> None:
    """Move the dev chain's clock to ``when`` (a no-op if it is there already)."""
    chain.advance_to(when)


def open_round(contract: MarketContract, task_id: int) -> TaskInfo:
    """Move the clock to the current round's scheduled opening; the task as then read."""
    info = contract.task(task_id)
    contract.chain.advance_to(info.opens_at(info.current_round))
    return contract.task(task_id)


def close_commits(contract: MarketContract, task_id: int) -> TaskInfo:
    """Close the current round's commits: at their deadline, unless every seat committed already."""
    info = contract.task(task_id)
    if info.committed_count < info.max_trainers:
        contract.chain.advance_to(info.opens_at(info.current_round) + info.submit_window)
    return contract.task(task_id)


def close_reveals(contract: MarketContract, task_id: int) -> TaskInfo:
    """Close the current round's reveals: at their deadline, unless every committer revealed (then sealed)."""
    info = contract.task(task_id)
    if not info.seal_block:
        contract.chain.advance_to(info.opens_at(info.current_round) + info.submit_window + info.reveal_window)
    return contract.task(task_id)


def seal(contract: MarketContract, task_id: int, caller: LocalAccount) -> TaskInfo:
    """Close the reveals and seal the round if the last reveal did not (nothing to seal when nothing was revealed)."""
    info = close_reveals(contract, task_id)
    if not info.seal_block and info.submitted_count:
        contract.seal(caller, task_id)
        info = contract.task(task_id)
    return info


def settle_after_deadline(contract: MarketContract, task_id: int, caller: LocalAccount) -> dict[str, Any]:
    """Settle the current round without a result once every window is over (the settlement's event)."""
    info = contract.task(task_id)
    contract.chain.advance_to(info.opens_at(info.current_round + 1))
    return contract.settlement(contract.settle_without_result(caller, task_id))


# ------------------------------------------------------------- crafted blobs
def commit_blob(contract: MarketContract, store: ContentStore, account: LocalAccount, task_id: int,
                blob_or_cid: bytes | str, spec: Any = None) -> Pending:
    """Commit ``account`` to a crafted update (bytes, or the CID of bytes already stored) as an honest node
    would: the sketch commitment of the bytes (zero for bytes that are not an update) and the node's salt.
    Nothing is uploaded yet. Returns what to reveal (:func:`reveal_blob`)."""
    info = contract.task(task_id)
    r = info.current_round
    if isinstance(blob_or_cid, bytes):
        blob, cid = blob_or_cid, compute_cid(blob_or_cid)  # published when revealed, as a node does
    else:
        cid, blob = blob_or_cid, store.get(blob_or_cid)
    if spec is None:
        spec = load_task(contract, store, task_id, info).spec
    try:
        commitment = submission_commitment(spec, task_id, r, account.address, cid, blob)
    except MalformedUpdateError:
        commitment = ZERO32  # not an update at all: nothing to sketch
    pending = Pending(cid, commitment, reveal_salt(account, task_id, r, cid), blob)
    contract.commit(account, task_id, r, commit_hash(cid, commitment, pending.salt, account.address, task_id, r))
    return pending


def reveal_blob(contract: MarketContract, store: ContentStore | None, account: LocalAccount, task_id: int,
                pending: Pending) -> Any:
    """Publish the blob to ``store`` (None: never published, so the update is unavailable) and reveal what
    :func:`commit_blob` committed to."""
    if store is not None:
        store.put(pending.blob)
    r = contract.task(task_id).current_round
    return contract.reveal(account, task_id, r, pending.cid, pending.commitment, pending.salt)


# --------------------------------------------------------------- the round
@dataclass
class PlayedRound:
    """What :func:`play_round` did: the round, each trainer's committed CID, who revealed, the result."""

    task_id: int
    round: int
    committed: dict[str, str] = field(default_factory=dict)  # address -> CID committed to
    revealed: list[str] = field(default_factory=list)  # addresses that revealed, in reveal order
    commit_gas: dict[str, int] = field(default_factory=dict)
    reveal_gas: dict[str, int] = field(default_factory=dict)
    posted: PostedRound | None = None

    def cid(self, party: Any) -> str:
        return self.committed[str(party.address)]


def play_round(
    env_or_contract: Any,
    nodes: Sequence[TrainerNode | LocalAccount],
    aggregator: Aggregator | None = None,
    *,
    task_id: int | None = None,
    drop_reveals: Iterable[Any] = (),
    blobs: Mapping[str, bytes | str] | None = None,
    unpublished: Iterable[Any] = (),
    store: ContentStore | None = None,
    post: bool = True,
    seal_caller: LocalAccount | None = None,
    rejoin: bool = True,
) -> PlayedRound:
    """Play the current round of ``task_id``: open → commit (``nodes`` in order) → close commits → reveal →
    close reveals → post (``aggregator.run_round``).

    ``nodes``: trainer nodes (they train), or bare accounts (they need a blob in ``blobs``).
    ``blobs``: address -> bytes or an existing CID a trainer commits to and reveals instead of training.
    ``drop_reveals``: trainers (nodes, accounts or addresses) that commit but never reveal.
    ``unpublished``: trainers with a blob in ``blobs`` that reveal it without ever uploading it.
    ``post``: False stops once the reveals are closed and the round sealed (if anything was revealed).
    ``rejoin``: first (re)join every trainer without a seat or its full stake (False: commit as they are).
    ``task_id``: defaults to the only task on the contract.
    """
    contract = _contract(env_or_contract)
    if store is None:
        store = getattr(env_or_contract, "store", None)
        if store is None:
            store = next(n.store for n in nodes if isinstance(n, TrainerNode))
    if task_id is None:
        task_id = contract.task_count()
    crafted = {k.lower(): v for k, v in (blobs or {}).items()}
    dropped = {_address(p) for p in drop_reveals}
    hidden = {_address(p) for p in unpublished}
    info = open_round(contract, task_id)
    played = PlayedRound(task_id, info.current_round)
    pending: dict[str, Pending] = {}
    spec = load_task(contract, store, task_id, info).spec if crafted else None
    for party in nodes:
        addr = _address(party)
        if rejoin:  # a trainer whose stake was lost gave its seat up: it joins again, as `TrainerNode.run` does
            if isinstance(party, TrainerNode):
                party.join(task_id)
            else:
                seat = contract.seat(task_id, party.address)
                if not seat.index or seat.stake < info.stake:
                    contract.join(party, task_id, info)
        if addr in crafted:
            account = _account(party)
            p = commit_blob(contract, store, account, task_id, crafted[addr], spec)
            pending[addr] = p
            played.committed[account.address] = p.cid
        else:
            if not isinstance(party, TrainerNode):
                raise ValueError(f"{party.address} is an account without a blob in `blobs`")
            res = party.run_round(task_id)
            if res.cid is not None:
                played.committed[party.address] = res.cid
                played.commit_gas[party.address] = res.gas
    close_commits(contract, task_id)
    for party in nodes:
        addr = _address(party)
        if addr in dropped:
            continue
        account = _account(party)
        if addr in pending:
            tx = reveal_blob(contract, None if addr in hidden else store, account, task_id, pending[addr])
            played.reveal_gas[account.address] = int(tx["gasUsed"])
            played.revealed.append(account.address)
        elif isinstance(party, TrainerNode):
            res = party.reveal_round(task_id)
            if res.cid is not None:
                played.reveal_gas[party.address] = res.gas
                played.revealed.append(party.address)
    if aggregator is not None and post:
        close_reveals(contract, task_id)  # the aggregator seals the round itself when the deadline passed
        played.posted = aggregator.run_round(task_id)
    else:
        caller = seal_caller or (aggregator.account if aggregator is not None else _account(nodes[0]))
        seal(contract, task_id, caller)
    return played
