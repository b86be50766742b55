"""Typed client of the ``ContributionMarket`` contract: the one place that knows its ABI.

Reads return frozen dataclasses with Python ints for wei (never floats) and
CID strings (the contract stores sha2-256 digests).  Submissions are read from
``UpdateRevealed`` events and checked against the running digest the contract
keeps, so a reader cannot be fed a forged event list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD

from market.chain.client import Chain
from market.chain.compile import load_artifact
from market.chain.registry import DEV_EXIT_DELAY, DEV_MIN_BOND, DEV_PENALTY, RegistryContract, create_address
from market.cid import cid_digest, cid_from_digest
from market.errors import ChainError, ConfigError, ContractRevert, UnknownTaskError

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
#: blocks short of the 256 whose hashes the EVM keeps, past which ``keep_seed`` no longer tries
KEEP_SEED_MARGIN = 16
ZERO32 = b"\x00" * 32
SETTLEMENT = {1: "result", 2: "fallback", 3: "refunded"}
MAX_ROUNDS = 10_000  # the contract's MAX_ROUNDS
MAX_TRAINERS = 256  # the contract's MAX_TRAINERS


@dataclass(frozen=True)
class TaskInfo:
    task_id: int
    owner: str
    token: str
    verifier: str
    rounds: int
    current_round: int
    submit_window: int
    result_window: int
    max_trainers: int
    trainer_count: int
    round_opened_at: int  # when the current round opens (fixed by the schedule)
    reward: int
    escrow: int
    credited: int
    refunded: int
    refunds_withdrawn: int
    submitted_count: int  # updates revealed in the current round
    submissions_digest: bytes
    latest_model_cid: str | None
    spec_cid: str
    validation_commitment: str
    created_block: int
    has_backup: bool = False  # a backup is drawn each round besides the panel
    fee_bps: int = 0  # the aggregators' fee, basis points of each round's pool
    panel: int = 1  # aggregators drawn each round
    quorum: int = 1  # identical results that decide a round
    fees: int = 0  # paid to aggregators, all rounds
    reveal_window: int = 0
    start_at: int = 0
    stake: int = 0
    stakes_held: int = 0
    carry: int = 0  # lost stakes carried to the next round's paid trainers
    carry_pool: int = 0  # pools nobody earned, carried to the next round's paid trainers
    committed_count: int = 0  # commitments in the current round
    seal_block: int = 0  # the block that closed the current round's reveal window (0: not yet)
    draw_block: int = 0  # the current round's first seal block: its panel is drawn as of it (a re-seal keeps it)
    empty_rounds_to_reclaim: int = 0
    empty_streak: int = 0

    @property
    def refundable(self) -> int:
        """Refunds the owner can still withdraw."""
        return self.refunded - self.refunds_withdrawn

    @property
    def finished(self) -> bool:
        return self.current_round >= self.rounds

    @property
    def period(self) -> int:
        """Seconds from one round's opening to the next's (the schedule is fixed at creation): the commit,
        reveal and result windows (the result window twice with a backup), then an availability window as
        long as the reveal window."""
        return self.results_end_offset + self.reveal_window

    @property
    def results_end_offset(self) -> int:
        """Seconds from a round's opening to the end of its last result window (the backup's, if any)."""
        backup = self.result_window if self.has_backup else 0
        return self.submit_window + self.reveal_window + self.result_window + backup

    def opens_at(self, round_: int) -> int:
        """When round ``round_`` opens (unix seconds)."""
        return self.start_at + round_ * self.period

    def round_pool(self, round_: int) -> int:
        """Round ``round_``'s share of the reward, as the contract's ``roundPool`` computes it (telescoping,
        so the pools sum to the reward exactly)."""
        if not 0 <= round_ < self.rounds:
            raise ValueError(f"task {self.task_id} has rounds 0..{self.rounds - 1}, not {round_}")
        return (self.reward * (round_ + 1)) // self.rounds - (self.reward * round_) // self.rounds


#: the phases of a round, in order (``RoundState.phase``)
PHASES = ("waiting", "open", "reveal", "closed", "backup", "availability", "settleable", "settled")


@dataclass(frozen=True)
class RoundState:
    """Where a task's current round stands, derived from the chain's state and a clock
    (:meth:`Chain.clock`, never the frozen latest block of an idle dev chain alone).

    ``waiting``: the round opens at ``opens_at`` (the schedule is fixed at creation); ``open``:
    commitments accepted until ``submit_deadline`` (or until ``max_trainers`` committed);
    ``reveal``: committers reveal until ``reveal_deadline`` (or until all of them revealed);
    ``closed``: waiting for the aggregator's result until ``result_deadline``; ``backup``: the
    backup aggregator's window, until ``final_deadline``; ``availability``: no result came, the
    revealed trainers prove their updates available (``proveAvailable``) until ``round_end``;
    ``settleable``: anyone may settle the round (``settleWithoutResult``: a refund when nothing was
    revealed, else an equal split among the updates proved available, or a carry-over when none
    was); ``settled``: the task has finished, every round is settled.
    """

    task_id: int
    round: int
    phase: str
    now: int
    submit_deadline: int
    result_deadline: int
    submitted: int  # revealed
    max_trainers: int
    opens_at: int = 0
    reveal_deadline: int = 0
    final_deadline: int = 0
    committed: int = 0
    round_end: int = 0  # the availability window closes and the next round opens

    @property
    def seconds_left(self) -> int | None:
        """Seconds until the current phase ends."""
        end = {"waiting": self.opens_at, "open": self.submit_deadline, "reveal": self.reveal_deadline,
               "closed": self.result_deadline, "backup": self.final_deadline,
               "availability": self.round_end}.get(self.phase)
        return None if end is None else max(0, end - self.now)

    @property
    def vote_commits_close(self) -> int:
        """When the drawn members' vote commitments close (``commitVote``): six eighths into the panel's window."""
        return self.reveal_deadline + (6 * (self.result_deadline - self.reveal_deadline)) // 8

    @property
    def votes_open_at(self) -> int:
        """When votes are taken even if a drawn member committed to nothing: seven eighths into the panel's window."""
        return self.reveal_deadline + (7 * (self.result_deadline - self.reveal_deadline)) // 8

    @property
    def closed_early(self) -> bool:
        """Commitments closed before the deadline because the task's full trainer count committed."""
        return self.phase not in ("settled", "waiting", "open") and self.committed >= self.max_trainers \
            and self.now < self.submit_deadline

    def text(self) -> str:
        """One line: what the round is doing and what comes next."""
        if self.phase == "waiting":
            return f"round opens in {self.seconds_left} s"
        if self.phase == "open":
            return f"submissions open (closes in {self.seconds_left} s)"
        if self.phase == "reveal":
            return f"submissions closed, {self.committed} committed; reveals open (close in {self.seconds_left} s)"
        if self.phase == "closed":
            return f"reveals closed, waiting for the aggregator's result (window ends in {self.seconds_left} s)"
        if self.phase == "backup":
            return f"the aggregator missed its window: the backup aggregator may post (window ends in {self.seconds_left} s)"
        if self.phase == "availability":
            return ("no result came: revealed trainers prove their updates available, the fallback pays only those "
                    f"(window ends in {self.seconds_left} s)")
        if self.phase == "settleable":
            return f"anyone may settle it with `market task settle {self.task_id} --round {self.round}`"
        return "settled"


def result_hash(model_cid: str, seed: bytes, lost_mask: int, bps: Sequence[int]) -> bytes:
    """What a panel votes for (the contract's ``h``): keccak256(abi.encode(modelCid, seed, lostMask, bps))."""
    return keccak(abi_encode(["bytes32", "bytes32", "uint256", "uint16[]"],
                             [cid_digest(model_cid), seed, lost_mask, list(bps)]))


def vote_commitment(result: bytes, member: str) -> bytes:
    """A panel member's commitment to the result it will post: keccak256(abi.encode(result, member))."""
    return keccak(abi_encode(["bytes32", "address"], [result, Web3.to_checksum_address(member)]))


def round_state(info: "TaskInfo", now: int) -> RoundState:
    """The phase of ``info``'s current round at unix time ``now`` (the contract's own rules: the round opens
    at its scheduled time; commitments close at the deadline or once ``max_trainers`` committed; reveals
    close at their deadline or once every committer revealed; then the result windows)."""
    r = min(info.current_round, info.rounds - 1)
    opens = info.opens_at(r)
    submit_dl = opens + info.submit_window
    reveal_dl = submit_dl + info.reveal_window
    result_dl = reveal_dl + info.result_window
    final_dl = opens + info.results_end_offset
    round_end = info.opens_at(r + 1)
    committed, revealed = info.committed_count, info.submitted_count
    commits_closed = now >= submit_dl or committed >= info.max_trainers
    reveals_closed = commits_closed and (now >= reveal_dl or info.seal_block != 0 or (committed and revealed == committed))
    if info.finished:
        phase = "settled"
    elif now < opens:
        phase = "waiting"
    elif not commits_closed:
        phase = "open"
    elif not reveals_closed:
        phase = "reveal" if committed else "settleable"
    elif revealed == 0:
        phase = "settleable"
    elif now < result_dl:
        phase = "closed"
    elif now < final_dl:
        phase = "backup"
    elif now < round_end:
        phase = "availability"
    else:
        phase = "settleable"
    return RoundState(info.task_id, r, phase, now, submit_dl, result_dl, revealed, info.max_trainers,
                      opens, reveal_dl, final_dl, committed, round_end)


@dataclass(frozen=True)
class Submission:
    trainer: str
    cid: str
    commitment: bytes  # the update's sketch commitment, revealed with the CID
    block: int
    index: int = 0  # the trainer's seat (1-based) when it revealed
    seq: int = 0  # position in the round's reveal order
    commit_seq: int = 0  # position in the round's commit order (who published first: copies are decided by it)


class SeedExpired(ChainError):
    """The seal block's hash is no longer readable and no seed was kept: ``seal`` seals the round again."""


@dataclass(frozen=True)
class Seat:
    """A trainer's place in a task (``MarketContract.seat``); rounds are -1 when it never committed/revealed."""

    index: int
    committed_round: int
    revealed_round: int
    earned: int
    stake: int
    commitment: bytes
    available_round: int = -1  # last round whose update it proved available
    paid: bool = False  # a round paid it since it took this seat (it shares the lost stakes left at the task's end)


def commit_hash(cid: str, commitment: bytes, salt: bytes, trainer: str, task_id: int, round_: int) -> bytes:
    """What a trainer commits: ``keccak256(abi.encode(cidDigest, commitment, salt, trainer, taskId, round))``."""
    return keccak(abi_encode(["bytes32", "bytes32", "bytes32", "address", "uint256", "uint256"],
                             [cid_digest(cid), commitment, salt, Web3.to_checksum_address(trainer), task_id, round_]))


@dataclass(frozen=True)
class RoundInfo:
    submissions_digest: bytes
    model_cid: str | None
    receipt_cid: str | None
    settlement: str  # open | result | fallback | refunded
    tx_hash: Any = None  # the transaction that settled the round
    credited: int = 0  # wei credited to trainers by the settlement
    refunded: int = 0  # wei refunded to the owner by the settlement
    seed: bytes = ZERO32  # the round's seed (results only)


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
    """The contract's running digest from ``start`` over (join index, cid, commitment) in reveal order."""
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
        self._registry: RegistryContract | None = None
        if chain.kind != "tester" and not chain.w3.eth.get_code(self.address):
            raise ChainError(f"no contract at {self.address} on this chain (wrong --contract or chain restarted?)")

    @classmethod
    def deploy(
        cls, chain: Chain, account: LocalAccount, *, verifier_admin: str | None = None,
        verifiers: Sequence[bytes] = (), components: Sequence[bytes] = (), min_bond: int = DEV_MIN_BOND,
        penalty: int = DEV_PENALTY, exit_delay: int = DEV_EXIT_DELAY,
    ) -> "MarketContract":
        """Deploy a market and its aggregator registry (``min_bond`` wei to be drawn, ``penalty`` wei lost per
        offence, ``exit_delay`` seconds from leaving the draw to taking the bond back); ``verifier_admin``
        (the deployer by default; the zero address: nobody) may extend the allowlist of verifier code hashes,
        which starts as ``verifiers`` (a task's verifier) and ``components`` (the Groth16 verifiers a verifier
        calls). The registry is deployed first, knowing the market's address (the deployer's next CREATE)."""
        admin = Web3.to_checksum_address(verifier_admin or account.address)
        nonce = int(chain.w3.eth.get_transaction_count(account.address, "pending"))
        expected = create_address(account.address, nonce + 1)
        registry = chain.deploy(account, load_artifact("AggregatorRegistry"), expected, min_bond, penalty, exit_delay)
        address = chain.deploy(account, load_artifact("ContributionMarket"), admin, list(verifiers), list(components),
                               registry)
        if Web3.to_checksum_address(address) != expected:
            raise ChainError(f"the market landed at {address}, not at {expected} its registry expects (a transaction "
                             "from the deployer came in between): deploy again")
        return cls(chain, address)

    @property
    def registry(self) -> RegistryContract:
        """The aggregator registry this market draws its panels from."""
        if self._registry is None:
            self._registry = RegistryContract(self.chain, str(self.chain.call(self.c.functions.registry())))
        return self._registry

    def panel(self, task_id: int, info: TaskInfo | None = None, seed: bytes | None = None) -> tuple[list[str], str | None]:
        """The current round's drawn panel and its backup (None without one), as the contract draws them: with the
        round's seed, as of the block that sealed the round, never the owner. Needs the round sealed."""
        task = self._info(task_id, info)
        seed = self.round_seed(task_id, task) if seed is None else seed
        drawn = self.registry.draw(seed, task.draw_block, task.panel + (1 if task.has_backup else 0), task.owner)
        backup = drawn[task.panel] if task.has_backup and len(drawn) > task.panel else None
        return drawn[:task.panel], backup

    # ------------------------------------------------------------ verifier allowlist
    def verifier_admin(self) -> str:
        return str(self.chain.call(self.c.functions.verifierAdmin()))

    def code_hash(self, address: str) -> bytes:
        return keccak(bytes(self.chain.w3.eth.get_code(Web3.to_checksum_address(address))))

    def round_verifier(self, verifier: str) -> Any:
        """The RoundVerifier at ``verifier``, as a web3 contract."""
        return self.chain.w3.eth.contract(address=Web3.to_checksum_address(verifier), abi=load_artifact("RoundVerifier")["abi"])

    def components(self, verifier: str) -> list[str]:
        """The contracts ``verifier`` calls (its ``components()``: the Groth16 verifiers of a RoundVerifier)."""
        c = self.round_verifier(verifier)
        return [Web3.to_checksum_address(a) for a in self.chain.call(c.functions.components())]

    def code_kind(self, code_hash: bytes) -> int:
        """What the allowlist takes ``code_hash`` as: 1 a verifier, 2 a verifier's component, 0 nothing."""
        return int(self.chain.call(self.c.functions.verifierCodeKind(code_hash)))

    def allow_verifier_code(self, admin: LocalAccount, verifiers: Sequence[bytes], components: Sequence[bytes] = ()) -> Any:
        return self.chain.transact(admin, self.c.functions.allowVerifierCode(list(verifiers), list(components)))

    def ensure_verifier_allowed(self, account: LocalAccount, verifier: str) -> list[bytes]:
        """Make sure a proof task may name ``verifier``: the code hashes it and its components lack are added
        when ``account`` is the market's verifier admin (a development chain's deployer); otherwise a one-line
        error names them. Returns the hashes added."""
        try:
            parts = self.components(verifier)
        except ChainError:
            raise ConfigError(f"verifier {verifier} does not answer components(): it is not a RoundVerifier") from None
        own = self.code_hash(verifier)
        want = {own: 1}
        for part in parts:
            h = self.code_hash(part)
            if h == own:
                raise ConfigError(f"verifier {verifier} calls a contract with its own code hash 0x{own.hex()}: the market "
                                  "allows a hash as a verifier or as a Groth16 verifier, not both")
            want[h] = 2
        kinds = {h: self.code_kind(h) for h in want}
        clash = [h for h, kind in want.items() if kinds[h] not in (0, kind)]
        if clash:
            raise ConfigError(f"verifier {verifier}: code hash 0x{clash[0].hex()} is already allowed as the other kind "
                              "(a verifier, or a Groth16 verifier); the market allows a hash as one kind only")
        missing = {h: kind for h, kind in want.items() if kinds[h] != kind}
        if not missing:
            return []
        admin = self.verifier_admin()
        if Web3.to_checksum_address(account.address) != Web3.to_checksum_address(admin):
            raise ConfigError(
                f"verifier {verifier} has code this market does not allow ({', '.join('0x' + h.hex() for h in missing)}): "
                f"its verifier admin {admin} must add these code hashes first"
            )
        self.allow_verifier_code(account, [h for h, k in missing.items() if k == 1], [h for h, k in missing.items() if k == 2])
        return list(missing)

    # ------------------------------------------------------------------ writes
    def create_task(
        self,
        owner: LocalAccount,
        *,
        spec_cid: str,
        initial_model_cid: str,
        validation_commitment: bytes,
        rounds: int,
        reward_wei: int,
        submit_window: int = 3600,
        reveal_window: int = 600,
        result_window: int = 3600,
        max_trainers: int = 64,
        verifier: str = ZERO_ADDRESS,
        token: str = ZERO_ADDRESS,
        backup: bool = False,
        stake_wei: int = 0,
        empty_rounds_to_reclaim: int = 0,
        fee_bps: int = 0,
        panel: int = 1,
        quorum: int | None = None,
    ) -> tuple[int, Any]:
        """Create a task; for an ERC-20 ``token`` the owner must have approved ``reward_wei`` first. Each round,
        ``panel`` aggregators (plus a backup with ``backup``) are drawn from the registry; ``quorum`` identical
        results (default: more than half the panel) decide it, and those who posted them share ``fee_bps`` of
        the round's pool."""
        quorum = panel // 2 + 1 if quorum is None else quorum
        params = (
            cid_digest(spec_cid), cid_digest(initial_model_cid), validation_commitment, Web3.to_checksum_address(verifier),
            fee_bps, panel, quorum, bool(backup), rounds, submit_window, reveal_window, result_window, max_trainers,
            empty_rounds_to_reclaim, stake_wei,
        )
        token = Web3.to_checksum_address(token)
        value = reward_wei if token == ZERO_ADDRESS else 0
        receipt = self.chain.transact(owner, self.c.functions.createTask(params, token, reward_wei), value=value)
        (ev,) = self.c.events.TaskCreated().process_receipt(receipt, errors=DISCARD)
        return int(ev["args"]["taskId"]), receipt

    def join(self, trainer: LocalAccount, task_id: int, info: TaskInfo | None = None) -> Any:
        """Join (or top the stake up): ETH stakes are sent with the call; ERC-20 stakes must be approved first."""
        task = self._info(task_id, info)
        held = self.seat(task_id, trainer.address).stake
        due = max(task.stake - held, 0)
        value = due if int(task.token, 16) == 0 else 0
        return self.chain.transact(trainer, self.c.functions.join(task_id), value=value)

    def commit(self, trainer: LocalAccount, task_id: int, round_: int, sealed: bytes) -> Any:
        return self.chain.transact(trainer, self.c.functions.commit(task_id, round_, sealed))

    def reveal(self, trainer: LocalAccount, task_id: int, round_: int, cid: str, commitment: bytes, salt: bytes) -> Any:
        return self.chain.transact(trainer, self.c.functions.reveal(task_id, round_, cid_digest(cid), commitment, salt))

    def preflight_commit(self, trainer: str, task_id: int, round_: int) -> None:
        """Simulate ``commit`` in the next block (no transaction): raises the contract's error if it would revert."""
        call = self.c.functions.commit(task_id, round_, b"\x01" * 32)
        self.chain.call(call, {"from": Web3.to_checksum_address(trainer)}, block=self.chain.next_block)

    def seal(self, caller: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(caller, self.c.functions.seal(task_id))

    def leave(self, trainer: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(trainer, self.c.functions.leave(task_id))

    def prove_available(
        self, trainer: LocalAccount, task_id: int, round_: int, commitment: bytes, salt: bytes, blob: bytes,
    ) -> Any:
        """Post the revealed update's bytes (their sha2-256 is the revealed CID) so the fallback may pay it."""
        return self.chain.transact(trainer, self.c.functions.proveAvailable(task_id, round_, commitment, salt, blob))

    def post_result(
        self, aggregator: LocalAccount, task_id: int, round_: int, model_cid: str, receipt_cid: str,
        bps: list[int], proof: bytes = b"", *, seed: bytes, lost_mask: int = 0,
    ) -> Any:
        res = (cid_digest(model_cid), cid_digest(receipt_cid), seed, lost_mask)
        return self.chain.transact(aggregator, self.c.functions.postResult(task_id, round_, res, bps, proof))

    def commit_vote(
        self, aggregator: LocalAccount, task_id: int, round_: int, model_cid: str, bps: list[int], *, seed: bytes,
        lost_mask: int = 0,
    ) -> Any:
        """Commit to the result :meth:`post_result` will post (a drawn member of a task whose quorum is more than one)."""
        commitment = vote_commitment(result_hash(model_cid, seed, lost_mask, bps), aggregator.address)
        return self.chain.transact(aggregator, self.c.functions.commitVote(task_id, round_, commitment))

    def settle_without_result(self, caller: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(caller, self.c.functions.settleWithoutResult(task_id))

    def reclaim_unused(self, owner: LocalAccount, task_id: int) -> Any:
        return self.chain.transact(owner, self.c.functions.reclaimUnused(task_id))

    def reclaimed(self, receipt: Any) -> int:
        """Wei a ``reclaimUnused`` receipt moved back to the owner's refunds (its ``TaskReclaimed`` event)."""
        return sum(int(e["args"]["amount"]) for e in self.c.events.TaskReclaimed().process_receipt(receipt, errors=DISCARD))

    def settlement(self, receipt: Any) -> dict[str, Any]:
        """:meth:`settlement_if_any` of a receipt that settled a round (``settleWithoutResult`` always does)."""
        out = self.settlement_if_any(receipt)
        if out is None:
            raise ChainError("the transaction settled no round")
        return out

    def settlement_if_any(self, receipt: Any) -> dict[str, Any] | None:
        """The ``RoundSettled`` event of a settling receipt: round, settlement (result | fallback | refunded),
        credited and refunded wei, how many trainers were credited (``TrainerCredited`` events), the stakes
        lost (``StakeLost``), the aggregators' fee (``FeeCredited``) and the bond penalties (the registry's
        ``Penalised``; ``penalties_burned``: the part taken in a round that paid nobody to credit it to). None for a
        ``postResult`` that was only a vote (the quorum not reached yet)."""
        settled = self.c.events.RoundSettled().process_receipt(receipt, errors=DISCARD)
        if not settled:
            return None
        (ev,) = settled
        paid = self.c.events.TrainerCredited().process_receipt(receipt, errors=DISCARD)
        lost = self.c.events.StakeLost().process_receipt(receipt, errors=DISCARD)
        fees = self.c.events.FeeCredited().process_receipt(receipt, errors=DISCARD)
        penalties = self.registry.c.events.Penalised().process_receipt(receipt, errors=DISCARD)
        burned = self.registry.c.events.PenaltyBurned().process_receipt(receipt, errors=DISCARD)
        a = ev["args"]
        return {"round": int(a["round"]), "settlement": SETTLEMENT.get(int(a["mode"]), str(a["mode"])),
                "credited": int(a["credited"]), "refunded": int(a["refunded"]), "trainers": len(paid),
                "stakes_lost": sum(int(e["args"]["amount"]) for e in lost),
                "fee": sum(int(e["args"]["amount"]) for e in fees),
                "penalties": {Web3.to_checksum_address(e["args"]["member"]): int(e["args"]["amount"]) for e in penalties},
                "penalties_burned": sum(int(e["args"]["amount"]) for e in burned)}

    def withdraw(self, account: LocalAccount, task_id: int, recipient: str | None = None) -> int:
        """Withdraw everything ``task_id`` owes ``account`` (to ``recipient``, default itself); return the amount
        (read from the Withdrawn event)."""
        to = Web3.to_checksum_address(recipient or account.address)
        receipt = self.chain.transact(account, self.c.functions.withdrawTo(task_id, to))
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
        (owner, created_block, draw_block, start_at, current, fee_bps, panel, quorum, backup, rounds, sw, rvw, _period, rw, count,
         empty_k, empty_streak, token, verifier, committed, revealed, count_round, maxt, seal_block, reward, refunded,
         escrow, credited, refunds_withdrawn, stake, stakes_held, carry, carry_pool, fees, digest, latest, spec, valc) = t
        if count_round != current:
            committed = revealed = seal_block = draw_block = 0
        latest_b = bytes(latest)
        info = TaskInfo(
            task_id=task_id, owner=owner, token=token, verifier=verifier, rounds=rounds,
            current_round=current, submit_window=sw, result_window=rw, max_trainers=maxt, trainer_count=count,
            round_opened_at=0, reward=reward, escrow=escrow, credited=credited, refunded=refunded,
            refunds_withdrawn=refunds_withdrawn, submitted_count=revealed, submissions_digest=bytes(digest),
            latest_model_cid=cid_from_digest(latest_b) if latest_b != ZERO32 else None,
            spec_cid=cid_from_digest(bytes(spec)), validation_commitment="0x" + bytes(valc).hex(),
            created_block=created_block, has_backup=bool(backup), fee_bps=fee_bps, panel=panel, quorum=quorum, fees=fees,
            reveal_window=rvw, start_at=start_at, stake=stake,
            stakes_held=stakes_held, carry=carry, carry_pool=carry_pool, committed_count=committed, seal_block=seal_block,
            draw_block=draw_block,
            empty_rounds_to_reclaim=empty_k, empty_streak=empty_streak,
        )
        return replace(info, round_opened_at=info.opens_at(min(current, rounds - 1)))

    def deadlines(self, task_id: int) -> tuple[int, int]:
        """The current round's submission deadline and the aggregator's result deadline."""
        _opens, submit, _reveal, result, _final = self.schedule(task_id)
        return submit, result

    def schedule(self, task_id: int) -> tuple[int, int, int, int, int]:
        """The current round's times: opens, submissions close, reveals close, result window closes,
        backup window closes (the next round opens then)."""
        return tuple(int(x) for x in self.chain.call(self.c.functions.schedule(task_id)))  # type: ignore[return-value]

    def moved_on(self, task_id: int, round_: int, phase: str) -> bool:
        """Whether ``task_id`` has left round ``round_``'s ``phase`` (another round, or another phase by
        :meth:`Chain.clock`): what a role waiting out a phase polls."""
        info = self.task(task_id)
        return info.current_round != round_ or round_state(info, self.chain.clock()).phase != phase

    def round_seed(self, task_id: int, info: TaskInfo | None = None) -> bytes:
        """The current round's seed as a transaction in the next block sees it (the contract's ``roundSeed``):
        ``keccak256(abi.encode(blockhash(sealBlock), sealBlock, taskId, round))``, or the seed ``seal`` kept.
        Raises :class:`SeedExpired` when the seal block's hash is no longer readable and nobody kept the
        seed: ``seal`` then seals the round again."""
        task = self._info(task_id, info)
        if not task.seal_block:
            raise ChainError(f"task {task_id} round {task.current_round}: its reveal window is not closed yet")
        seal = task.seal_block
        latest = int(self.chain.with_retry(lambda: self.chain.w3.eth.block_number, what="read the block number"))
        if latest < seal:
            raise ChainError(f"task {task_id}: the node is behind the block that sealed round {task.current_round}")
        if latest + 1 - seal > 256:  # the hash is gone: only a kept seed is left
            try:
                return bytes(self.chain.call(self.c.functions.roundSeed(task_id)))
            except ContractRevert as exc:
                if exc.name == "MarketSeedExpired":
                    raise SeedExpired(str(exc)) from None
                raise
        block_hash = bytes(self.chain.with_retry(lambda: self.chain.w3.eth.get_block(seal)["hash"], what="read the seal block"))
        return keccak(abi_encode(["bytes32", "uint256", "uint256", "uint256"], [block_hash, seal, task_id, task.current_round]))

    def seed_kept(self, task_id: int, round_: int) -> bool:
        """Whether ``round_``'s seed is kept in storage (``seal`` keeps it; the first vote of a panel does too)."""
        return bool(self.chain.call(self.c.functions.seedKept(task_id, round_)))

    def keep_seed(self, caller: LocalAccount, task_id: int, info: TaskInfo | None = None) -> bool:
        """Keep the current round's seed in storage while the seal block's hash is readable, so that nobody can seal
        the round again (and draw another panel); False when there was nothing to do (kept already, not sealed,
        or the hash is gone)."""
        task = self._info(task_id, info)
        r = task.current_round
        if task.finished or not task.seal_block or self.seed_kept(task_id, r):
            return False
        latest = int(self.chain.with_retry(lambda: self.chain.w3.eth.block_number, what="read the block number"))
        # a margin of blocks before the hash is gone: a keep mined past it would seal the round again (a new panel)
        if not task.seal_block < latest + 1 <= task.seal_block + 256 - KEEP_SEED_MARGIN:
            return False
        try:
            self.seal(caller, task_id)
        except ContractRevert as exc:
            if exc.name in ("MarketAlreadySealed", "MarketWrongRound", "MarketTaskFinished", "MarketResultWindowClosed"):
                return False  # another party kept it first, the round moved on, or its windows ended meanwhile
            raise
        return True

    def round_pool(self, task_id: int, round_: int) -> int:
        return int(self.chain.call(self.c.functions.roundPool(task_id, round_)))

    def submitters(self, task_id: int, round_: int | None = None, info: TaskInfo | None = None) -> list[str]:
        """Trainers that revealed in a round, in join order (the order ``bps`` follows); the current round by default."""
        if round_ is not None:
            task = self._info(task_id, info)
            if round_ != task.current_round:
                return [s.trainer for s in self.submissions(task_id, round_, task)]
        return list(self.chain.call(self.c.functions.getRevealed(task_id)))

    def seat(self, task_id: int, address: str) -> "Seat":
        """A trainer's seat: join index, last rounds committed and revealed, credits, stake, last commitment."""
        index, committed, revealed, earned, stake, sealed, available, paid = self.chain.call(
            self.c.functions.seat(task_id, Web3.to_checksum_address(address)))
        return Seat(int(index), int(committed) - 1, int(revealed) - 1, int(earned), int(stake), bytes(sealed),
                    int(available) - 1, bool(paid))

    def trainer_index(self, task_id: int, address: str) -> int:
        return int(self.chain.call(self.c.functions.trainerIndex(task_id, Web3.to_checksum_address(address))))

    def is_trainer(self, task_id: int, address: str) -> bool:
        return self.trainer_index(task_id, address) != 0

    def owed(self, task_id: int, address: str) -> int:
        """What ``address`` can withdraw from ``task_id`` now (credits; the stake too once the task ended)."""
        return int(self.chain.call(self.c.functions.owed(task_id, Web3.to_checksum_address(address))))

    def tasks_joined(self, address: str) -> list[int]:
        """Ids of the tasks ``address`` joined (from ``TrainerJoined`` events)."""
        logs = self._logs("TrainerJoined", 0, trainer=Web3.to_checksum_address(address))
        return sorted({int(e["args"]["taskId"]) for e in logs})

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
                                              int(ev["credited"]), int(ev["refunded"]), bytes(ev["seed"]))
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

    def _commit_order(self, task: TaskInfo, round_: int | None = None) -> dict[tuple[int, str], int]:
        """(round, trainer) -> position in the round's commit order (``UpdateCommitted`` events)."""
        filters: dict[str, Any] = {"taskId": task.task_id} if round_ is None else {"taskId": task.task_id, "round": round_}
        logs = self._logs("UpdateCommitted", task.created_block, **filters)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        out: dict[tuple[int, str], int] = {}
        seen: dict[int, int] = {}
        for e in logs:
            r = int(e["args"]["round"])
            out[(r, e["args"]["trainer"])] = seen.get(r, 0)
            seen[r] = seen.get(r, 0) + 1
        return out

    def _checked(self, task: TaskInfo, r: int, subs: list[Submission], settled: dict[int, RoundInfo]) -> list[Submission]:
        done = settled.get(r)
        expected = done.submissions_digest if done is not None else task.submissions_digest  # a settled round: its own
        if submissions_digest(_digest_before(task.task_id, r, settled), subs) != expected:
            raise ChainError(f"task {task.task_id} round {r}: submission events do not match the on-chain digest")
        return sorted(subs, key=lambda s: s.index)

    def submissions(self, task_id: int, round_: int, info: TaskInfo | None = None,
                    settled: dict[int, RoundInfo] | None = None) -> list[Submission]:
        """A round's revealed submissions from events, checked against the on-chain digest; join order."""
        task = self._info(task_id, info)
        logs = self._logs("UpdateRevealed", task.created_block, taskId=task_id, round=round_)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        committed = self._commit_order(task, round_)
        subs = [_submission(e, seq, committed) for seq, e in enumerate(logs)]
        return self._checked(task, round_, subs, settled if settled is not None else self.settled_rounds(task_id, task))

    def all_submissions(self, task_id: int, info: TaskInfo | None = None,
                        settled: dict[int, RoundInfo] | None = None) -> dict[int, list[Submission]]:
        """Every round's revealed submissions (two log queries), each round checked against its on-chain
        digest; join order within a round."""
        task = self._info(task_id, info)
        if settled is None:
            settled = self.settled_rounds(task_id, task)
        committed = self._commit_order(task)
        logs = self._logs("UpdateRevealed", task.created_block, taskId=task_id)
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        by_round: dict[int, list[Submission]] = {r: [] for r in range(min(task.current_round + 1, task.rounds))}
        for e in logs:
            subs = by_round.setdefault(int(e["args"]["round"]), [])
            subs.append(_submission(e, len(subs), committed))
        return {r: self._checked(task, r, subs, settled) for r, subs in by_round.items()}

    def round_snapshot(self, task_id: int, round_: int | None = None, info: TaskInfo | None = None) -> "RoundSnapshot":
        """Everything a round's readers need, read once: the task (one ``getTask``), its settled rounds,
        and the round's digest-checked submissions (three log queries in all)."""
        task = self._info(task_id, info)
        r = task.current_round if round_ is None else round_
        settled = self.settled_rounds(task_id, task)
        subs = self.submissions(task_id, r, task, settled) if r < task.rounds else []
        return RoundSnapshot(task, r, tuple(subs), settled)

    def result_call(self, task_id: int, round_: int, info: TaskInfo | None = None) -> dict[str, Any]:
        """The arguments of the ``postResult`` transaction that settled ``round_`` (read back from the chain):
        taskId, round, bps, proof, and the result's modelCid, receiptCid, seed and lostMask; ``sender``: who sent it."""
        done = self.settled_rounds(task_id, info).get(round_)
        if done is None or done.settlement != "result" or done.tx_hash is None:
            raise ChainError(f"task {task_id} round {round_} was not settled by a posted result")
        tx_hash = done.tx_hash
        tx = self.chain.with_retry(lambda: self.chain.w3.eth.get_transaction(tx_hash), what="read the result transaction")
        fn, args = self.c.decode_function_input(tx["input"])
        if fn.fn_name != "postResult":
            raise ChainError(f"task {task_id} round {round_}: the settling transaction is not a postResult call")
        out = dict(args)
        out["sender"] = Web3.to_checksum_address(tx["from"])
        res = out.pop("res")  # web3 decodes the Result struct as a dict (a tuple on older versions)
        model, receipt, seed, mask = (res["modelCid"], res["receiptCid"], res["seed"], res["lostMask"]) \
            if isinstance(res, dict) else res
        out.update(modelCid=bytes(model), receiptCid=bytes(receipt), seed=bytes(seed), lostMask=int(mask))
        return out

    def draw_block_of(self, task_id: int, round_: int, info: TaskInfo | None = None) -> int | None:
        """The block ``round_``'s panel was drawn as of: its first ``RoundSealed`` event (a re-seal keeps it), or None."""
        task = self._info(task_id, info)
        logs = self._logs("RoundSealed", task.created_block, taskId=task_id, round=round_)
        return int(logs[0]["args"]["sealBlock"]) if logs else None

    def votes(self, task_id: int, round_: int, info: TaskInfo | None = None) -> dict[str, bytes]:
        """member -> the result hash it posted for ``round_`` (the registry's ``Voted`` events)."""
        task = self._info(task_id, info)
        ev = self.registry.c.events.Voted
        logs = self.chain.with_retry(lambda: ev.get_logs(from_block=task.created_block,
                                                         argument_filters={"taskId": task_id, "round": round_}),
                                     what="read the registry's votes")
        return {Web3.to_checksum_address(e["args"]["member"]): bytes(e["args"]["result"]) for e in logs}

    def commitments(self, task_id: int, round_: int, info: TaskInfo | None = None) -> dict[str, bytes]:
        """trainer -> the hash it committed in ``round_`` (``UpdateCommitted`` events)."""
        task = self._info(task_id, info)
        return {e["args"]["trainer"]: bytes(e["args"]["commitment"])
                for e in self._logs("UpdateCommitted", task.created_block, taskId=task_id, round=round_)}

    def stakes_lost(self, task_id: int, info: TaskInfo | None = None) -> dict[str, dict[int, int]]:
        """trainer -> round -> stake lost (``StakeLost`` events)."""
        task = self._info(task_id, info)
        out: dict[str, dict[int, int]] = {}
        for e in self._logs("StakeLost", task.created_block, taskId=task_id):
            per = out.setdefault(e["args"]["trainer"], {})
            per[int(e["args"]["round"])] = per.get(int(e["args"]["round"]), 0) + int(e["args"]["amount"])
        return out

    def available(self, task_id: int, round_: int, info: TaskInfo | None = None) -> list[str]:
        """Trainers that proved their update of ``round_`` available (``UpdateAvailable`` events), in order."""
        task = self._info(task_id, info)
        return [str(e["args"]["trainer"]) for e in self._logs("UpdateAvailable", task.created_block, taskId=task_id,
                                                              round=round_)]

    def stakes_returned(self, task_id: int, info: TaskInfo | None = None) -> dict[str, int]:
        """trainer -> stake given back (``StakeReturned`` events)."""
        task = self._info(task_id, info)
        out: dict[str, int] = {}
        for e in self._logs("StakeReturned", task.created_block, taskId=task_id):
            out[e["args"]["trainer"]] = out.get(e["args"]["trainer"], 0) + int(e["args"]["amount"])
        return out

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

    def withdrawn(self, address: str, task_id: int | None = None, from_block: int = 0) -> int:
        """Wei ``address`` withdrew (from one task, or all of them), from ``Withdrawn`` events."""
        filters: dict[str, Any] = {"account": Web3.to_checksum_address(address)}
        if task_id is not None:
            filters["taskId"] = task_id
        return sum(int(e["args"]["amount"]) for e in self._logs("Withdrawn", from_block, **filters))

    def settlements(self, task_id: int, info: TaskInfo | None = None) -> list[dict[str, int]]:
        task = self._info(task_id, info)
        return [
            {"round": int(e["args"]["round"]), "mode": int(e["args"]["mode"]), "credited": int(e["args"]["credited"]),
             "refunded": int(e["args"]["refunded"])}
            for e in self._logs("RoundSettled", task.created_block, taskId=task_id)
        ]


def _submission(e: Any, seq: int, committed: dict[tuple[int, str], int]) -> Submission:
    """A ``Submission`` from an ``UpdateRevealed`` event (``seq``: its place in the reveal order)."""
    a = e["args"]
    return Submission(a["trainer"], cid_from_digest(bytes(a["cid"])), bytes(a["commitment"]), e["blockNumber"],
                      int(a["index"]), seq, committed.get((int(a["round"]), a["trainer"]), seq))


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
