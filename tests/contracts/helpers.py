"""Playing rounds of the commit–reveal protocol in the contract tests: commit, reveal, seal, seed, post.

Every helper goes through :class:`market.chain.contract.MarketContract`, so the tests exercise the
same wrapper the roles use. Times come from the contract's own ``schedule`` and ``Chain.clock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from market.chain.compile import load_artifact
from market.chain.contract import commit_hash
from market.cid import compute_cid
from market.errors import ContractRevert
from tests.conftest import Market

SPEC = compute_cid(b"spec")
VALC = b"\x11" * 32
MODEL = compute_cid(b"model")
RECEIPT = compute_cid(b"receipt")
STAKE = 10**17
#: the shortest windows the contract allows (seconds)
SHORT = {"submit_window": 60, "reveal_window": 30, "result_window": 60}
#: the shortest windows of a task whose quorum is more than one (its members commit, then vote: eighths of a minute)
QUORUM_SHORT = {**SHORT, "result_window": 480}


def revert_name(excinfo: "pytest.ExceptionInfo[ContractRevert]") -> str:
    """The contract's custom error a test's ``pytest.raises(ContractRevert)`` caught."""
    return excinfo.value.name


def create(m: Market, rounds: int = 2, reward: int = 10**18, max_trainers: int = 3, **kw: Any) -> int:
    """A task of ``m``'s owner (keyword arguments go to ``create_task``); with the fixture's one registered
    aggregator, ``m.aggregator`` is every round's panel."""
    owner = kw.pop("owner", m.owner)
    task_id, _ = m.contract.create_task(
        owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=VALC, rounds=rounds, reward_wei=reward,
        max_trainers=max_trainers, **kw,
    )
    return task_id


@dataclass(frozen=True)
class Update:
    """What a trainer commits to and later reveals."""

    cid: str
    commitment: bytes
    salt: bytes
    blob: bytes = b""  # the update's bytes (``cid`` is their CID): what ``proveAvailable`` posts

    def hash(self, trainer: str, task_id: int, round_: int) -> bytes:
        return commit_hash(self.cid, self.commitment, self.salt, trainer, task_id, round_)


def update(task_id: int, round_: int, i: int) -> Update:
    """A deterministic update of trainer ``i`` for a round."""
    tag = f"{task_id}-{round_}-{i}".encode()
    blob = b"update " + tag
    return Update(compute_cid(blob), keccak(b"commitment " + tag), keccak(b"salt " + tag), blob)


def advance_to(m: Market, when: int) -> None:
    """Move the chain's clock so that the next transaction runs at ``when`` or later."""
    gap = when - m.chain.clock()
    if gap <= 0:
        return
    if m.chain.kind == "tester":  # time_travel(t) mines a block so that the next one (the pending one) is stamped t
        m.chain.w3.provider.ethereum_tester.time_travel(when)  # type: ignore[attr-defined]
    else:
        m.chain.advance_time(gap)


def schedule(m: Market, task_id: int) -> dict[str, int]:
    """The current round's times: ``final`` ends the last result window (the availability window opens),
    ``end`` ends the availability window (the next round opens)."""
    opens, submit, reveal_, result, final = m.contract.schedule(task_id)
    end = opens + m.contract.task(task_id).period
    commits = reveal_ + (6 * (result - reveal_)) // 8  # the drawn members' vote commitments close
    votes = reveal_ + (7 * (result - reveal_)) // 8  # votes are taken even if a drawn member committed to nothing
    return {"opens": opens, "submit": submit, "reveal": reveal_, "commits": commits, "votes": votes, "result": result,
            "final": final, "end": end}


def commit(m: Market, task_id: int, round_: int, trainer: LocalAccount, upd: Update | None = None,
           i: int | None = None) -> Update:
    """``trainer`` commits to ``upd`` (default: its deterministic update); returns what it committed to."""
    if upd is None:
        upd = update(task_id, round_, m.trainers.index(trainer) if i is None else i)
    m.contract.commit(trainer, task_id, round_, upd.hash(trainer.address, task_id, round_))
    return upd


def reveal(m: Market, task_id: int, round_: int, trainer: LocalAccount, upd: Update) -> Any:
    return m.contract.reveal(trainer, task_id, round_, upd.cid, upd.commitment, upd.salt)


def close_commits(m: Market, task_id: int) -> None:
    """Wait for the current round's commit deadline (a no-op if already past)."""
    advance_to(m, schedule(m, task_id)["submit"])


def seal(m: Market, task_id: int, caller: LocalAccount | None = None) -> None:
    """Seal the current round if the last reveal did not: wait for the reveal deadline and call ``seal``."""
    if m.contract.task(task_id).seal_block == 0:
        advance_to(m, schedule(m, task_id)["reveal"])
        m.contract.seal(caller or m.outsider, task_id)


def seed(m: Market, task_id: int) -> bytes:
    """The current round's seed, as the next block's ``postResult`` checks it."""
    return m.contract.round_seed(task_id)


def expected_seed(m: Market, task_id: int, round_: int, seal_block: int) -> bytes:
    """keccak256(abi.encode(blockhash(sealBlock), sealBlock, taskId, round)), computed off chain."""
    block_hash = bytes(m.chain.w3.eth.get_block(seal_block)["hash"])
    return keccak(m.chain.w3.codec.encode(["bytes32", "uint256", "uint256", "uint256"],
                                          [block_hash, seal_block, task_id, round_]))


def register(m: Market, *accounts: LocalAccount, bond: int | None = None) -> None:
    """Register ``accounts`` as aggregators (bonded with the registry's minimum unless ``bond``): register them
    before creating a task that needs more than the fixture's one member (a panel above 1, or a backup)."""
    for a in accounts:
        m.contract.registry.register(a, bond)


def account(m: Market, address: str) -> LocalAccount:
    """The fixture's account with ``address``."""
    for a in (m.owner, m.aggregator, *m.trainers, m.outsider):
        if a.address == address:
            return a
    raise KeyError(address)


def drawn(m: Market, task_id: int) -> tuple[list[LocalAccount], LocalAccount | None]:
    """The current round's panel and its backup (None without one), as accounts: needs the round sealed (and
    the seal block mined); call it after ``seal``."""
    members, backup = m.contract.panel(task_id)
    return [account(m, a) for a in members], None if backup is None else account(m, backup)


def post(m: Market, task_id: int, round_: int, bps: list[int], *, lost_mask: int = 0, seed_: bytes | None = None,
         sender: LocalAccount | None = None, proof: bytes = b"") -> Any:
    """Post a result for the current round (sealing it first when needed) with the round's seed."""
    seal(m, task_id)
    s = seed(m, task_id) if seed_ is None else seed_
    return m.contract.post_result(sender or m.aggregator, task_id, round_, MODEL, RECEIPT, bps, proof,
                                  seed=s, lost_mask=lost_mask)


def commit_votes(m: Market, task_id: int, round_: int, votes: dict[LocalAccount, list[int]], *, lost_mask: int = 0,
                 model: str = MODEL) -> None:
    """Drawn members commit to the results :func:`post` will post for them (``commitVote``; sealing first)."""
    seal(m, task_id)
    s = seed(m, task_id)
    for member, bps in votes.items():
        m.contract.commit_vote(member, task_id, round_, model, bps, seed=s, lost_mask=lost_mask)


def join_all(m: Market, task_id: int, trainers: list[LocalAccount]) -> None:
    for t in trainers:
        m.contract.join(t, task_id)


def play_round(m: Market, task_id: int, round_: int, committers: list[LocalAccount],
               revealers: list[LocalAccount] | None = None) -> dict[str, Update]:
    """Open round ``round_`` (waiting for its scheduled time), commit for every committer, close the
    commits, reveal for ``revealers`` (default: every committer) and leave the round ready to post."""
    advance_to(m, m.contract.task(task_id).opens_at(round_))
    updates = {t.address: commit(m, task_id, round_, t) for t in committers}
    if revealers is None:
        revealers = committers
    info = m.contract.task(task_id)
    if info.committed_count < info.max_trainers:
        close_commits(m, task_id)
    for t in revealers:
        reveal(m, task_id, round_, t, updates[t.address])
    return updates


def prove(m: Market, task_id: int, round_: int, trainer: LocalAccount, upd: Update) -> Any:
    """``trainer`` proves its revealed update available (posts its bytes) in the availability window,
    waiting for the window to open first."""
    advance_to(m, schedule(m, task_id)["final"])
    return m.contract.prove_available(trainer, task_id, round_, upd.commitment, upd.salt, upd.blob)


def settle_after_deadline(m: Market, task_id: int) -> Any:
    """Settle the current round without a result once every window is over (the availability window too)."""
    advance_to(m, schedule(m, task_id)["end"])
    return m.contract.settle_without_result(m.outsider, task_id)


def deploy(m: Market, name: str, *args: Any, sender: LocalAccount | None = None) -> Any:
    """Deploy a test contract (artifacts/test) and return it bound to web3."""
    art = load_artifact(name)
    address = m.chain.deploy(sender or m.outsider, art, *args)
    return m.chain.w3.eth.contract(address=address, abi=art["abi"])


def allow_code(m: Market, *contracts: Any, component: bool = False) -> Any:
    """The market's verifier admin (``m``'s deployer, the owner) allows the code of ``contracts`` as a task's
    verifier, or with ``component`` as a contract a verifier calls; returns the receipt."""
    hashes = [m.contract.code_hash(c.address) for c in contracts]
    return m.contract.allow_verifier_code(m.owner, [] if component else hashes, hashes if component else [])


def mock_verifier(m: Market, answer: bool = True, *, allowed: bool = True) -> Any:
    """A MockVerifier implementing IRoundVerifier that answers ``answer``, its code allowed unless ``allowed`` is false."""
    verifier = deploy(m, "MockVerifier", True, answer)
    if allowed:
        allow_code(m, verifier)
    return verifier


def equal_bps(n: int) -> list[int]:
    bps = [10_000 // n] * n
    bps[-1] += 10_000 - sum(bps)
    return bps


def cumulative(total: int, weights: list[int]) -> list[int]:
    """The contract's cumulative rounding: floor(total * W_j / W) - floor(total * W_{j-1} / W)."""
    whole, cum, paid, out = sum(weights), 0, 0, []
    for w in weights:
        cum += w
        amount = total * cum // whole - paid
        paid += amount
        out.append(amount)
    return out


def logs(m: Market, event: str, task_id: int) -> list[Any]:
    """Every ``event`` log of ``task_id`` (from the task's creation block)."""
    start = m.contract.task(task_id).created_block
    return list(getattr(m.contract.c.events, event)().get_logs(from_block=start, argument_filters={"taskId": task_id}))


def stakes_deposited(m: Market, task_id: int) -> int:
    """Every stake deposited into a task, from events: ``TrainerJoined`` carries the stake held after the
    call, so a deposit is its rise over what was held before (zero after a ``StakeLost``/``StakeReturned``)."""
    found = [(e, "join") for e in logs(m, "TrainerJoined", task_id)]
    found += [(e, "out") for name in ("StakeLost", "StakeReturned") for e in logs(m, name, task_id)]
    found.sort(key=lambda x: (x[0]["blockNumber"], x[0]["logIndex"]))
    held: dict[str, int] = {}
    deposited = 0
    for e, kind in found:
        who = e["args"]["trainer"]
        if kind == "join":
            deposited += int(e["args"]["stake"]) - held.get(who, 0)
            held[who] = int(e["args"]["stake"])
        else:
            held[who] = 0
    return deposited


def assert_conserved(m: Market, task_id: int) -> None:
    """Per task, to the wei: reward + stakes deposited == credited + refunded + escrow + stakes held + carry
    + carry pool + stakes returned + the aggregators' fees, and every deposited stake is held, lost or returned."""
    t = m.contract.task(task_id)
    deposited = stakes_deposited(m, task_id)
    returned = sum(m.contract.stakes_returned(task_id).values())
    lost = sum(sum(per.values()) for per in m.contract.stakes_lost(task_id).values())
    assert lost + returned + t.stakes_held == deposited
    assert t.reward + deposited == (t.credited + t.refunded + t.escrow + t.stakes_held + t.carry + t.carry_pool + returned
                                    + t.fees)
