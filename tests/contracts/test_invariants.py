"""Stateful invariant fuzzing of the escrow (Hypothesis ``RuleBasedStateMachine``).

Random sequences over several tasks and trainers at once: create (random rounds, reward, stake, windows,
a backup or not, the aggregators' fee, empty rounds to reclaim, a panel and quorum; and a fee above 50 %, a
quorum of half the panel or less, a quorum above one with a result window under 480 s, a panel the members but
the owner cannot fill, refused), join / top up /
leave (and joins with the wrong stake, and a registered aggregator's join, refused), commit (valid, junk, wrong
round), reveal (valid, wrong salt), seal, post result (random basis points and ``lostMask``; and bad sums,
paid-and-lost entries, wrong seeds, a sender the round did not draw), commit to a vote and vote (below), prove an
update available (its bytes; and
wrong bytes, a wrong salt, the wrong round, too early, without a reveal, twice), settle without a result
(fallback split among the updates proved available, or an empty-round refund), reclaim, withdraw (to itself or
another address; a trainer's penalty credits from the registry; an aggregator's fees), withdraw refunds, and time
moving by random amounts or to a round's next scheduled time (the fixed schedule: commits, reveals, result,
backup, availability, next round).

Every valid commitment is to a random byte string (the "update"): cid = sha256(bytes), committed as
keccak(abi.encode(cid, commitment, salt, trainer, task, round)); the machine keeps the preimage per (task,
round, trainer) so that the trainer can later prove the update available by posting the bytes.

The market's registry holds four bonded aggregators: accounts 2, 3 and 8, and owner 1 (never drawn for its own
tasks, so only owner 0's tasks can have a panel of three and a backup). A task's (panel, quorum) is (1, 1) (the
first task, and the commonest), (2, 2), (3, 2) or (3, 3) (a second task, made at the start, has one of the last
three); each round the registry draws, with the round's seed as of its first seal block, never the owner, the
panel and (with a backup) one more member as its backup (the machine asks the registry whom it drew). With a
quorum of one the panel member's result settles the round at once. Above one (a result window of at least
480 s), a result is a vote: every drawn member, the backup too, first commits (``commitVote``:
keccak(abi.encode(h, member)), h = keccak(abi.encode(modelCid, seed, lostMask, bps))) before 6/8 of the panel's
window; votes are taken once every drawn member committed, or from 7/8; a vote must open its commitment; the
round settles when ``quorum`` votes agree. The machine keeps every commitment and vote (and checks the registry's
record of them, ``voteCommitmentOf`` / ``voteOf``, after each voted round); a round's two candidate results are
"A" (the honest one: it pays someone) and "B" (another model, other pay, or all lost). ``play_round`` (and
``play_quorum_round``, which picks a live quorum task) plays a quorum round: an account the round did not draw
tries to commit; the drawn members are all honest (commit to A), or one deviates (commits to B, to nothing, at
6/8 -- refused, or a second early: in time --, or commits to A and never votes), or all but one commit to B, or
each picks its own; some commit twice (refused); a vote before the votes open (refused unless all committed);
then the drawn members vote in random order (the minority first, or not; first the result they did not commit
to, refused), in the panel's window or the backup's, until a quorum agrees, else the round goes to the proofs of
availability and the fallback. The ``commit_vote`` / ``cast_vote`` / ``post_result`` rules commit and vote at
random times, by random members. Every commitment and vote goes through exactly when the model says (drawn, the
backup only in its window, committed to that very result, once, before 6/8 / once the votes are open, within
the windows).

After every step:

* money is conserved to the wei: the contract's balance equals, over every task, escrow + stakes held +
  carry + carryPool + credits and fees not withdrawn + refunds not withdrawn; withdrawn + balance equals
  everything deposited; per task, reward + stakes deposited == credited + refunded + escrow + stakes held +
  carry + carryPool + stakes returned + fees (a result pays ``feeBps`` of its round's pool, out of the pool, to
  the members that voted for it, equally, cumulative rounding, in draw order with the deciding voter last: with a
  quorum of one, its poster; the trainers share the rest); carry, carryPool, fees and each aggregator's fees are
  what the model says;
* the registry holds exactly the members' bonds, the penalties credited to trainers and those burned: a result
  costs the penalty to each drawn member that voted for another result, each drawn member (backup too) that
  committed to none, and, posted once the panel's window is over (the backup window), each silent panel member
  (with a quorum of one: the panel member, when the backup posted), the silent ones' credited to the trainers the
  result pays, the dissenters' burned (paying nobody: only the members that did not vote are fined, and it is
  burned); a fallback costs every drawn
  member that did not vote (when the round's seed can still be had, and the fallback comes less than a period
  late), to the trainers that proved their update available (burned with nobody to pay);
* no honest stake is lost: every trainer's stake is exactly what the model says -- a stake is lost only
  by a committer that did not reveal or an update marked in ``lostMask`` (a fallback marks nobody), and every
  settlement's ``StakeLost`` events are exactly those; no ``StakeLost`` ever names a revealer a result did not
  mark;
* a settlement credits exactly what the model computes, to the wei and in join order: a paying result its
  revealed updates by basis points, a fallback only the updates proved available (an unproved revealer gets
  0 and keeps its stake), each the round's pool + the stakes lost this round + carry + carryPool (cumulative
  rounding); a round that pays nobody (an all-lost result, or a fallback with nobody proved) sends its pool to
  carryPool and its lost stakes to carry; an empty round refunds its pool only and carries its lost stakes;
  nobody is credited twice for a round;
* at a task's end (its last round settled, or ``reclaimUnused``): carryPool goes back to the owner, carry is
  split equally (join order, cumulative rounding) among the trainers still holding a stake that a round paid
  since they took their seat (``Seat.paid``, read from storage and checked against the model after every
  step); lost stakes reach the owner only when there is no such trainer (asserted at the moment, and as an
  invariant: the owner's refunds never exceed the reward plus the lost stakes that went to it that way). A
  stakeholder no round paid gets no share (paying whoever merely holds a stake let late-joining sybils take
  95 % of it, and the trainer that lost it buy it back), so in a task that never paid anyone a lost stake goes
  to the owner: the event "task end: lost stakes to the owner (only unpaid stakeholders)" counts those runs;
* the fixed schedule holds: period == submit + 2*reveal + result*(1 or 2 with a backup); a commit lands
  inside its round's scheduled window, a reveal after commits closed and before the reveal deadline, a
  result from the drawn panel member in its window, or from it or the drawn backup in the next, never after
  the last result window; a vote commitment before 6/8 of the panel's window, a vote from 7/8 (or once every
  drawn member committed); a proof of availability only after the last result window;
* the calls that must fail do (wrong stake, wrong round, wrong reveal, bad basis points, wrong seed, a proof
  with the wrong bytes / salt / round, before the window, without a reveal, or twice; a commitment to a vote
  from an account not drawn, late or twice; a vote without a commitment, for another result than committed,
  before the votes open, from the backup in the panel's window, twice, or after the round was decided).

The events (``--hypothesis-show-statistics``) count the quorum rounds: "quorum: decided by ...", "quorum: fined:
dissent", "quorum: fined: uncommitted", "quorum: fined: silent panel member (late)", the refusals by reason.

At the end every task is driven to its end and everyone withdraws: every balance must reach zero (nothing
locked), and every trainer withdraws its penalty credits (the registry is left with the bonds only). The
in-process EVM runs the long campaign (transactions through eth-tester's unlocked accounts, the fastest path, with
the market's and the registry's storage read directly); a shorter one runs on Anvil.

Size: ``make test`` runs the fast profile (50 examples x 30 steps, about 75 s in-process plus 45 s on Anvil on a
quiet 2-core machine; the quorum rounds added about 40 s). The issue's campaign, 200 examples x 30 steps, is
``make test-invariants`` (``INVARIANT_PROFILE=full pytest tests/contracts/test_invariants.py``; about 410 s
in-process on the same machine). ``INVARIANT_EXAMPLES`` / ``INVARIANT_STEPS`` override either.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from web3 import Web3

from market.chain.compile import load_artifact
from market.chain.registry import create_address
from tests.contracts.helpers import cumulative

ZERO = "0x" + "00" * 20
PROFILES = {"fast": (50, 30), "full": (200, 30)}  # (examples, steps): see the module's docstring
_examples, _steps = PROFILES[os.environ.get("INVARIANT_PROFILE", "fast")]
EXAMPLES = int(os.environ.get("INVARIANT_EXAMPLES", _examples))
STEPS = int(os.environ.get("INVARIANT_STEPS", _steps))
BPS = 10_000
TRAINERS = 4  # trainer accounts the machine plays with (tasks take 1 to 5: some fill up)

# getTask's tuple (TaskView), by position: looked up by name in the ABI
_TASK_VIEW = [c["name"] for c in next(i for i in load_artifact("ContributionMarket")["abi"]
                                      if i.get("name") == "getTask")["outputs"][0]["components"]]
T_OWNER, T_START, T_CURRENT, T_ROUNDS, T_PERIOD = (_TASK_VIEW.index(n) for n in
                                                   ("owner", "startAt", "currentRound", "rounds", "period"))
T_SUBMIT, T_REVEAL_W, T_BACKUP, T_RESULT_W, T_TRAINERS = (_TASK_VIEW.index(n) for n in
                                                          ("submitWindow", "revealWindow", "backup", "resultWindow",
                                                           "trainerCount"))
T_COMMITTED, T_REVEALED, T_COUNT_ROUND, T_MAX, T_SEAL = (_TASK_VIEW.index(n) for n in
                                                         ("committedCount", "revealedCount", "countRound", "maxTrainers",
                                                          "sealBlock"))
T_REWARD, T_REFUNDED, T_ESCROW, T_CREDITED, T_REFUNDS_WITHDRAWN = (_TASK_VIEW.index(n) for n in
                                                                   ("reward", "refunded", "escrow", "credited",
                                                                    "refundsWithdrawn"))
T_STAKE, T_STAKES_HELD, T_CARRY, T_CARRY_POOL, T_FEES = (_TASK_VIEW.index(n) for n in
                                                         ("stake", "stakesHeld", "carry", "carryPool", "fees"))
T_FEE_BPS, T_PANEL, T_QUORUM, T_EMPTY_K, T_EMPTY_STREAK = (_TASK_VIEW.index(n) for n in
                                                           ("feeBps", "panel", "quorum", "emptyRoundsToReclaim",
                                                            "emptyStreak"))
T_DRAW = _TASK_VIEW.index("drawBlock")  # the block the round's panel is drawn as of (its first seal)
# the registry the machine deploys: its members' bonds (far above the minimum, so that no run's penalties take
# any out of the draw), the penalty, and the longest draw (AggregatorRegistry.MAX_DRAW)
MIN_BOND, PENALTY, EXIT_DELAY, MEMBER_BOND = 10**18, 10**17, 7 * 86400, 50 * 10**18
#: (panel, quorum) of the tasks `create` makes, (1, 1) the commonest; (2, 1) is refused (2 * quorum <= panel)
SHAPES = [(1, 1), (2, 2), (1, 1), (3, 2), (3, 3), (1, 1), (2, 1), (2, 2)]
MIN_QUORUM_RESULT_WINDOW = 480  # ContributionMarket's least result window for a quorum above one
# seat(task, trainer)'s struct (SeatView), by position
S_INDEX, S_EARNED, S_STAKE, S_AVAILABLE = 0, 3, 4, 6
S_PAID = 7  # the in-process storage read only: the seat's `paid` flag
SETTLED_BY_RESULT, SETTLED_BY_FALLBACK, SETTLED_BY_REFUND = 1, 2, 3


def _hex(b: Any) -> bytes:
    return bytes.fromhex(b[2:]) if isinstance(b, str) else bytes(b)


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + item["type"][5:]
    return str(item["type"])


#: The in-process driver reads the market's storage directly (a few microseconds a slot, where a view call
#: runs the EVM for milliseconds): ContributionMarket's state variables and its Task and Seat structs in
#: storage order, (name, bytes). The driver checks this layout against getTask and seat when it starts,
#: so a change to the contract's storage fails there, loudly, not as a wrong invariant.
SLOT_TASKS, SLOT_SEATS, SLOT_STAKES = 1, 2, 3
SLOT_DRAW_BLOCKS = 9  # mapping(taskId => mapping(round => first seal block)), written only when a round is sealed again
TASK_STORAGE = [
    ("token", 20), ("startAt", 4), ("currentRound", 4), ("rounds", 2),
    ("feeBps", 2), ("panel", 1), ("quorum", 1), ("backup", 1), ("submitWindow", 3), ("revealWindow", 3), ("period", 4),
    ("resultWindow", 3), ("trainerCount", 2), ("emptyRoundsToReclaim", 2), ("emptyStreak", 2), ("freeCount", 2),
    ("owner", 20), ("createdBlock", 4),
    ("verifier", 20), ("committedCount", 2), ("revealedCount", 2), ("countRound", 2), ("maxTrainers", 2), ("sealBlock", 4),
    ("reward", 16), ("refunded", 16), ("escrow", 16), ("credited", 16), ("refundsWithdrawn", 16), ("stake", 16),
    ("stakesHeld", 16), ("carry", 16), ("carryPool", 16), ("fees", 16),
    ("submissionsDigest", 32), ("latestModelCid", 32), ("specCid", 32), ("validationCommitment", 32),
]
SEAT_STORAGE = [("index", 2), ("committedTag", 4), ("revealedTag", 4), ("staked", 1), ("earned", 16), ("availableTag", 4),
                ("paid", 1)]
#: AggregatorRegistry's storage, read directly by the in-process driver: the `_members` array (each entry two
#: slots: account, since, leftBlock, leftTime; then bond) and the `credits` mapping. Their slots are found when the
#: driver starts (the first slots whose contents match the views; the registry is young, its layout may move).
REG_SLOTS_PROBED = 12


def _packed(fields: list[tuple[str, int]]) -> dict[str, tuple[int, int, int]]:
    """Solidity's packing: name -> (slot offset, byte offset from the low end, size)."""
    out, slot, used = {}, 0, 0
    for name, size in fields:
        if used + size > 32:
            slot, used = slot + 1, 0
        out[name] = (slot, used, size)
        used += size
    return out


def _mapping_slot(key: int | str, base: int) -> int:
    k = int(key, 16) if isinstance(key, str) else key
    return int.from_bytes(keccak(k.to_bytes(32, "big") + base.to_bytes(32, "big")), "big")



def _commit_hash(blob: bytes, commitment: bytes, salt: bytes, trainer: str, task_id: int, round_: int) -> bytes:
    """What a trainer commits to for the update ``blob``: keccak(abi.encode(sha256(blob), commitment, salt,
    trainer, task, round)) -- the CID's digest is the bytes' sha2-256, as ``proveAvailable`` recomputes it."""
    types = ["bytes32", "bytes32", "bytes32", "address", "uint256", "uint256"]
    return keccak(abi_encode(types, [hashlib.sha256(blob).digest(), commitment, salt, trainer, task_id, round_]))


def _result_hash(model: bytes, seed: bytes, mask: int, bps: list[int]) -> bytes:
    """What a panel votes for (the contract's ``h``, ``market.chain.contract.result_hash``):
    keccak256(abi.encode(modelCid, seed, lostMask, bps))."""
    return keccak(abi_encode(["bytes32", "bytes32", "uint256", "uint16[]"], [model, seed, mask, bps]))


def _vote_commitment(h: bytes, member: str) -> bytes:
    """A member's commitment to the result ``h`` it will post: keccak256(abi.encode(h, member))."""
    return keccak(abi_encode(["bytes32", "address"], [h, member]))


def _event_specs(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[tuple[str, str, bool]]]]:
    specs = {}
    for e in abi:
        if e["type"] == "event":
            inputs = [(i["name"], _abi_type(i), bool(i["indexed"])) for i in e["inputs"]]
            specs[keccak(text=f"{e['name']}({','.join(t for _, t, _ in inputs)})")] = (e["name"], inputs)
    return specs


class EscrowDriver:
    """Sends transactions from unlocked dev accounts (reverts reported as None) and reads state.

    On the in-process chain it talks to eth-tester directly (no JSON-RPC formatting), which
    makes a step several times cheaper; on Anvil it uses the ordinary web3 path.
    """

    def __init__(self, w3: Web3, accounts: list[str], snapshot: Callable[[], Any], revert: Callable[[Any], None],
                 set_time: Callable[[int], None], tester: Any = None,
                 mine: Callable[[int], None] | None = None) -> None:
        art = load_artifact("ContributionMarket")
        self.mine = mine or (lambda n: tester.mine_blocks(n))
        self.w3 = w3
        self.tester = tester
        self.accounts = accounts
        contract = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        # the registry first, knowing the market's address (the deployer's next CREATE)
        reg_art = load_artifact("AggregatorRegistry")
        nonce = w3.eth.get_transaction_count(accounts[0], "pending")
        expected = create_address(accounts[0], nonce + 1)
        tx = w3.eth.contract(abi=reg_art["abi"], bytecode=reg_art["bytecode"]).constructor(
            expected, MIN_BOND, PENALTY, EXIT_DELAY).transact({"from": accounts[0], "gas": 8_000_000})
        registry = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        # the verifier admin (the deployer), empty allowlists (the machine's tasks have no verifier), the registry
        ctor = next(item for item in art["abi"] if item["type"] == "constructor")
        assert [i["type"] for i in ctor["inputs"]] == ["address", "bytes32[]", "bytes32[]", "address"]
        tx = contract.constructor(accounts[0], [], [], registry).transact({"from": accounts[0], "gas": 8_000_000})
        address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        assert address == expected, "the market is not where its registry expects it"
        self.c = w3.eth.contract(address=address, abi=art["abi"])
        self.registry = w3.eth.contract(address=registry, abi=reg_art["abi"])
        self._registry_address = bytes.fromhex(registry[2:])
        # the machine's aggregators, in this order (the registry's entries 0 to 3): accounts 2 and 3 first (the
        # layout check plays with these two), then, after it, account 8 and owner 1 (never drawn for its own tasks)
        self.members = [accounts[2], accounts[3], accounts[8], accounts[1]]
        self._register(self.members[:2])
        self.events = {**_event_specs(art["abi"]), **_event_specs(reg_art["abi"])}
        lens = load_artifact("MarketLens")
        tx = w3.eth.contract(abi=lens["abi"], bytecode=lens["bytecode"]).constructor().transact(
            {"from": accounts[0], "gas": 8_000_000})
        self.lens = w3.eth.contract(address=w3.eth.wait_for_transaction_receipt(tx)["contractAddress"], abi=lens["abi"])
        self._task_type = [_abi_type(o) for o in self.c.functions.getTask(0).abi["outputs"]]
        (seat_view,) = self.c.functions.seat(0, accounts[0]).abi["outputs"]  # a static struct: encoded flat
        self._seat_types = [_abi_type(o) for o in seat_view["components"]]
        outputs = self.c.functions.getTask(0).abi["outputs"][0]["components"]
        self._task_view = [(o["name"], o["type"]) for o in outputs]  # getTask's order
        self._task_layout = _packed(TASK_STORAGE)
        self._seat_layout = _packed(SEAT_STORAGE)
        self._address = bytes.fromhex(address[2:])
        self._revert = revert
        self._snapshot = snapshot
        self._set_time = set_time
        if tester is not None:
            self._check_layout()
        self._register(self.members[2:])
        self.base = snapshot()

    def _register(self, members: list[str]) -> None:
        for who in members:
            tx = self.registry.functions.register().transact({"from": who, "value": MEMBER_BOND, "gas": 500_000})
            assert self.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1

    # ------------------------------------------------- storage (in-process only)
    def _storage(self) -> Any:
        return self.tester.backend.chain.get_vm().state

    def _task_from(self, state: Any, task_id: int) -> tuple[Any, ...]:
        base = _mapping_slot(task_id, SLOT_TASKS)
        words: dict[int, int] = {}
        values = {}
        for name, (slot, offset, size) in self._task_layout.items():
            if slot not in words:
                words[slot] = state.get_storage(self._address, base + slot)
            values[name] = (words[slot] >> (8 * offset)) & ((1 << (8 * size)) - 1)
        # getTask's drawBlock: the round's first seal block when it was sealed again, else the seal block
        first = state.get_storage(self._address, _mapping_slot(values["currentRound"], _mapping_slot(task_id, SLOT_DRAW_BLOCKS)))
        values["drawBlock"] = first or values["sealBlock"]
        out = []
        for name, typ in self._task_view:
            v = values[name]
            if typ == "address":
                v = Web3.to_checksum_address(v.to_bytes(20, "big"))
            elif typ == "bytes32":
                v = v.to_bytes(32, "big")
            out.append(v)
        return tuple(out)

    def _seat_from(self, state: Any, task_id: int, trainer: str) -> tuple[int, int, int, int, int, bytes, int, int]:
        """``seat(task_id, trainer)`` as SeatView's tuple, without the commitment (b""), plus the seat's ``paid``
        flag (which no view returns)."""
        word = state.get_storage(self._address, _mapping_slot(trainer, _mapping_slot(task_id, SLOT_SEATS)))
        v = {n: (word >> (8 * off)) & ((1 << (8 * size)) - 1) for n, (_, off, size) in self._seat_layout.items()}
        stake = state.get_storage(self._address, _mapping_slot(trainer, _mapping_slot(task_id, SLOT_STAKES)))
        return (v["index"], v["committedTag"], v["revealedTag"], v["earned"], stake, b"", v["availableTag"], v["paid"])

    def registry_state(self, accounts: list[str]) -> tuple[list[int], dict[str, int], int]:
        """The bonds of the registry's entries (in order), the credits of ``accounts`` and the registry's balance
        (from storage in-process, else by calls)."""
        if self.tester is None:
            n = self.call(self.registry.functions.memberCount())
            bonds = [int(self.call(self.registry.functions.memberAt(i))[3]) for i in range(n)]
            credits = {a: int(self.call(self.registry.functions.credits(a))) for a in accounts}
            return bonds, credits, int(self.w3.eth.get_balance(self.registry.address))
        return self._registry_from(self._storage(), accounts, self._reg_members_slot, self._reg_credits_slot)

    def _registry_from(self, state: Any, accounts: list[str], members_slot: int, credits_slot: int
                       ) -> tuple[list[int], dict[str, int], int]:
        where = self._registry_address
        n = state.get_storage(where, members_slot)
        first = int.from_bytes(keccak(members_slot.to_bytes(32, "big")), "big")
        bonds = [state.get_storage(where, first + 2 * i + 1) & ((1 << 128) - 1) for i in range(n)]
        credits = {a: state.get_storage(where, _mapping_slot(a, credits_slot)) for a in accounts}
        return bonds, credits, int(state.get_balance(where))

    def _find_registry_slots(self, accounts: list[str]) -> None:
        """The slots of the registry's `_members` and `credits` (see REG_SLOTS_PROBED): once a penalty made a bond
        and a credit non-zero, the first slots whose reads equal the views."""
        n = int(self.call(self.registry.functions.memberCount()))
        views = ([int(self.call(self.registry.functions.memberAt(i))[3]) for i in range(n)],
                 {w: int(self.call(self.registry.functions.credits(w))) for w in accounts})
        assert all(views[0]) and any(views[1].values()), "the layout check's penalty did not happen"
        state = self._storage()
        found = [(m, c) for m in range(REG_SLOTS_PROBED) for c in range(REG_SLOTS_PROBED)
                 if self._registry_from(state, accounts, m, c)[:2] == views]
        assert found, "AggregatorRegistry's `_members` / `credits` slots not found: update REG_SLOTS_PROBED"
        self._reg_members_slot, self._reg_credits_slot = found[0]

    def _check_layout(self) -> None:
        """Play three rounds of a task with distinct values (a lost stake and a pool carried by a fallback nobody
        proved available, then an update proved available and paid, then a result that pays the aggregators' fee)
        and compare the storage reads with getTask and seat after each step, so that every field the machine reads
        (carry, carryPool, earned, availableTag, fees among them) has been non-zero once; and the registry's
        storage reads (bonds, credits) with its views once a fallback penalised the silent panel."""
        a = self.accounts
        snap = self._snapshot()
        fns = self.c.functions

        def send(sender: str, fn: Any, value: int = 0) -> None:
            self.tester.send_transaction({"from": sender, "to": self.c.address, "value": value, "gas": 5_000_000,
                                          "data": fn._encode_transaction_data()})

        def compare(what: str) -> None:
            state = self._storage()
            view = tuple(Web3.to_checksum_address(v) if isinstance(v, str) else v for v in self.call(fns.getTask(1)))
            assert self._task_from(state, 1) == view, \
                f"TASK_STORAGE does not match ContributionMarket's Task struct ({what}): update it"
            for who in a[4:6]:
                seat, view = self._seat_from(state, 1, who), tuple(self.call(fns.seat(1, who)))
                assert seat[:5] + seat[6:8] == view[:5] + view[6:8], \
                    f"SEAT_STORAGE does not match ContributionMarket's Seat struct ({what}): update it"

        try:
            reward = 10**18 + 5
            # (spec, model, validation, verifier, feeBps, panel, quorum, backup, rounds, windows, maxTrainers, k, stake)
            params = (keccak(b"s"), keccak(b"i"), keccak(b"v"), ZERO, 1234, 1, 1, True, 7, 61, 32, 63, 5, 3, 9)
            send(a[0], fns.createTask(params, ZERO, reward), reward)
            send(a[4], fns.join(1), 9)
            send(a[5], fns.join(1), 9)
            compare("joined")
            period = self.call(fns.getTask(1))[T_PERIOD]
            for r, committers in ((0, a[4:6]), (1, a[4:5])):
                opens, submit, _, _, final = self.call(fns.schedule(1))
                blob, commitment, salt = b"update %d" % r, keccak(b"c%d" % r), keccak(b"salt%d" % r)
                for who in committers:
                    send(who, fns.commit(1, r, _commit_hash(blob, commitment, salt, who, 1, r)))
                self._set_time(submit)
                send(a[4], fns.reveal(1, r, hashlib.sha256(blob).digest(), commitment, salt))
                self._set_time(final)
                if r == 1:
                    send(a[4], fns.proveAvailable(1, r, commitment, salt, blob))
                compare(f"round {r} revealed")
                self._set_time(opens + period)
                send(a[9], fns.settleWithoutResult(1))
                compare(f"round {r} settled")
            task, seat = self.call(fns.getTask(1)), self.call(fns.seat(1, a[4]))
            assert task[T_CARRY] == task[T_CARRY_POOL] == 0 and seat[S_AVAILABLE] == 2 and seat[S_EARNED] > 0, \
                "the layout check's rounds did not go as planned"
            self._find_registry_slots(a[4:6])
            bonds, credits, balance = self.registry_state(a[4:6])
            assert credits[a[4]] > 0 and bonds == [MEMBER_BOND - PENALTY] * 2  # both silent, a[4] proved
            assert balance == sum(bonds) + sum(credits.values())
            # round 2: a result from the round's drawn panel member, with a fee
            _, submit, _, _, _ = self.call(fns.schedule(1))
            blob, commitment, salt = b"update 2", keccak(b"c2"), keccak(b"salt2")
            send(a[4], fns.commit(1, 2, _commit_hash(blob, commitment, salt, a[4], 1, 2)))
            self._set_time(submit)
            send(a[4], fns.reveal(1, 2, hashlib.sha256(blob).digest(), commitment, salt))
            seed = bytes(self.call(fns.roundSeed(1)))
            panel = self.call(self.registry.functions.draw(seed, self.call(fns.getTask(1))[T_DRAW], 2, a[0]))
            send(panel[0], fns.postResult(1, 2, (keccak(b"m"), keccak(b"r"), seed, 0), [BPS], b""))
            compare("round 2 posted")
            task = self.call(fns.getTask(1))
            assert task[T_CURRENT] == 3 and task[T_FEES] > 0, "the layout check's result did not go through"
            # `paid`: a[4] was credited by round 1, a[5] lost its seat in round 0
            state = self._storage()
            assert (self._seat_from(state, 1, a[4])[S_PAID], self._seat_from(state, 1, a[5])[S_PAID]) == (1, 0), \
                "SEAT_STORAGE's `paid` does not match ContributionMarket's Seat struct: update it"
        finally:
            self._revert(snap)

    def task_state(self, task_id: int) -> tuple[Any, ...]:
        """``getTask(task_id)`` (from storage in-process)."""
        if self.tester is not None:
            return self._task_from(self._storage(), task_id)
        return tuple(self.call(self.c.functions.getTask(task_id)))

    def reset(self) -> None:
        self._revert(self.base)
        self.base = self._snapshot()

    def now(self) -> int:
        """The earliest timestamp the next transaction can run at: eth-tester's pending block (the later of
        the wall clock and the latest block's), Anvil's latest block's own (after ``evm_setNextBlockTimestamp``
        Anvil may mine the next block within the same second)."""
        if self.tester is not None:
            return int(self.tester.get_block_by_number("pending")["timestamp"])
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def now_range(self) -> tuple[int, int]:
        """The earliest and latest timestamps the next transaction may run at: :meth:`now` exactly in-process while
        the chain is ahead of the wall clock (as it is once a round's windows moved it on), a few seconds later while
        it is not (the wall clock ticks); on Anvil, whose blocks after ``evm_setNextBlockTimestamp`` follow the wall
        clock, up to half a minute later (a loaded machine)."""
        now = self.now()
        if self.tester is None:
            return now, now + 30
        return (now, now) if now > time.time() + 2 else (now, now + 3)

    def last_block(self) -> int:
        """The latest block's number (that of the last transaction)."""
        if self.tester is not None:
            return int(self.tester.get_block_by_number("latest")["number"])
        return int(self.w3.eth.block_number)

    def block_hash(self, number: int) -> bytes:
        if self.tester is not None:
            return _hex(self.tester.get_block_by_number(number)["hash"])
        return bytes(self.w3.eth.get_block(number)["hash"])

    def last_timestamp(self) -> int:
        """The latest block's timestamp (that of the last transaction)."""
        if self.tester is not None:
            return int(self.tester.get_block_by_number("latest")["timestamp"])
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        """Mine a block ``seconds`` after :meth:`now`."""
        self._set_time(self.now() + seconds)

    def advance_to(self, when: int) -> None:
        """Mine a block so that the next transaction runs at ``when`` or later."""
        if when > self.now():
            self._set_time(when)

    def call(self, fn: Any) -> Any:
        if self.tester is None:
            return fn.call()
        # "pending": the context of the next transaction (a view of the latest block runs *in* it, where the
        # block that sealed a round is not yet in the past)
        raw = self.tester.call({"from": self.accounts[0], "to": fn.address, "data": fn._encode_transaction_data()},
                               "pending")
        out = self.w3.codec.decode([_abi_type(o) for o in fn.abi["outputs"]], _hex(raw))
        return out[0] if len(out) == 1 else out

    def read_all(self, task_ids: list[int], trainers: list[str]) -> tuple[list[Any], dict[tuple[int, str], Any], int]:
        """Every task's ``getTask``, every (task, trainer) ``seat`` and the market's balance (from storage
        in-process, else in one call of the lens contract)."""
        if self.tester is not None:
            state = self._storage()
            return ([self._task_from(state, t) for t in task_ids],
                    {(t, a): self._seat_from(state, t, a) for t in task_ids for a in trainers},
                    int(state.get_balance(self._address)))
        fn = self.lens.functions.read(self.c.address, task_ids, trainers)
        if self.tester is None:
            tasks, seats, balance = fn.call()
        else:
            raw = self.tester.call({"from": self.accounts[0], "to": self.lens.address, "data": fn._encode_transaction_data()})
            tasks, seats, balance = self.w3.codec.decode(["bytes[]", "bytes[]", "uint256"], _hex(raw))
        decoded = [self.w3.codec.decode(self._task_type, bytes(b))[0] for b in tasks]
        by_seat = {}
        for k, b in enumerate(seats):
            by_seat[(task_ids[k // len(trainers)], trainers[k % len(trainers)])] = self.w3.codec.decode(self._seat_types, bytes(b))
        return decoded, by_seat, int(balance)

    def try_call(self, fn: Any) -> Any:
        try:
            return self.call(fn)
        except Exception:
            return None

    def balance(self) -> int:
        if self.tester is None:
            return int(self.w3.eth.get_balance(self.c.address))
        return int(self.tester.get_balance(self.c.address))

    def send(self, sender: str, fn: Any, value: int = 0) -> list[tuple[str, dict[str, Any]]] | None:
        """Send; None if it reverted, else every event of the contract it emitted, decoded."""
        if self.tester is not None:
            try:
                h = self.tester.send_transaction({"from": sender, "to": fn.address, "value": value, "gas": 5_000_000,
                                                  "data": fn._encode_transaction_data()})
            except Exception as exc:
                if type(exc).__name__ == "TransactionFailed":
                    return None
                raise
            receipt = self.tester.get_transaction_receipt(h)
            logs = [([_hex(t) for t in log["topics"]], _hex(log["data"])) for log in receipt["logs"]]
        else:
            try:
                tx = fn.transact({"from": sender, "value": value, "gas": 5_000_000})
            except Exception as exc:  # Anvil refuses a reverting transaction at submission
                if "revert" in str(exc).lower():
                    return None
                raise
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
            logs = [([bytes(t) for t in log["topics"]], bytes(log["data"])) for log in receipt["logs"]]
        if receipt["status"] != 1:
            return None
        events = []
        for topics, data in logs:
            spec = self.events.get(topics[0]) if topics else None
            if spec is None:
                continue
            name, inputs = spec
            indexed = [(n, t) for n, t, ix in inputs if ix]
            plain = [(n, t) for n, t, ix in inputs if not ix]
            args = {n: self.w3.codec.decode([t], topic)[0] for (n, t), topic in zip(indexed, topics[1:])}
            args.update(zip([n for n, _ in plain], self.w3.codec.decode([t for _, t in plain], data)))
            for n, t, _ in inputs:
                if t == "address":
                    args[n] = Web3.to_checksum_address(args[n])
            events.append((name, args))
        return events


def make_machine(driver_factory: Callable[[], EscrowDriver]) -> type[RuleBasedStateMachine]:
    holder: dict[str, EscrowDriver] = {}

    class EscrowMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            if "d" not in holder:
                holder["d"] = driver_factory()
            self.d = holder["d"]
            self.d.reset()
            a = self.d.accounts
            self.owners, self.trainers = a[0:2], a[4:4 + TRAINERS]
            self.members = list(self.d.members)  # the registry's four aggregators, in registration order
            self.bonds = dict.fromkeys(self.members, MEMBER_BOND)  # the model: each member's bond
            self.reg_credit: dict[str, int] = {}  # the model: penalties credited to trainers in the registry
            self.burned = 0  # the model: penalties taken in rounds that paid nobody (kept by the registry for good)
            self.fees: dict[int, int] = {}  # the model: fees paid per task
            self.agg_earned: dict[tuple[int, str], int] = {}  # the model: fees a member has not withdrawn, per task
            self.outsider = a[9]
            self.tasks: list[int] = []
            self.deposited = 0  # rewards and stakes, every task
            self.withdrawn = 0  # credits, stakes and refunds paid out, every task
            self.task_in: dict[int, int] = {}  # per task: reward + stakes deposited
            self.task_returned: dict[int, int] = {}  # per task: stakes returned (leave, end of task)
            self.stake_of: dict[tuple[int, str], int] = {}  # the model: the stake each trainer holds
            self.join_index: dict[tuple[int, str], int] = {}  # the model's seats: (task, trainer) -> index
            self.free: dict[int, list[int]] = {}  # per task: the stack of freed seats
            self.seats_made: dict[int, int] = {}  # per task: seats ever allocated (trainerCount)
            self.max_trainers: dict[int, int] = {}
            self.kept: dict[tuple[int, int], bytes] = {}  # seeds `seal` kept, by (task, round)
            # (task, round) -> committer -> (cid, commitment, salt) of a valid commit (None: junk)
            self.commits: dict[tuple[int, int], dict[str, tuple[bytes, bytes, bytes] | None]] = {}
            self.blobs: dict[tuple[int, int, str], bytes] = {}  # the update bytes each valid commit hashes
            self.reveals: dict[tuple[int, int], set[str]] = {}
            self.available: dict[tuple[int, int], set[str]] = {}  # proved available (proveAvailable)
            self.credited_keys: set[tuple[int, int, str]] = set()
            self.carry: dict[int, int] = {}  # the model: lost stakes carried (per task)
            self.carry_pool: dict[int, int] = {}  # the model: pools carried (per task)
            self.stakes_to_owner: dict[int, int] = {}  # lost stakes refunded to the owner (no paid stakeholder)
            self.paid_seat: set[tuple[int, str]] = set()  # (task, trainer): a round credited it since it took its seat
            # quorum voting, by (task, round): the result hash each member committed to (commitVote; a junk commitment
            # is a hash no result has), each member's recorded vote, and the round's two candidate results
            # (modelCid, lostMask, bps): "A" (the honest one) and "B" (another)
            self.vote_commits: dict[tuple[int, int], dict[str, bytes]] = {}
            self.votes: dict[tuple[int, int], dict[str, bytes]] = {}
            self.candidates: dict[tuple[int, int], dict[str, tuple[bytes, int, list[int]]]] = {}
            self.quorum_tasks: list[int] = []  # the tasks whose quorum is above one
            self.draws: dict[tuple[bytes, int, int, str], list[str]] = {}  # the registry's draws asked so far
            self.lost_log: set[tuple[int, int, str]] = set()  # every StakeLost: (task, round, trainer)
            self.marked_log: set[tuple[int, int, str]] = set()  # updates a result marked in lostMask
            self.nonce = 0

        # ------------------------------------------------------------ helpers
        def _bytes32(self) -> bytes:
            self.nonce += 1
            return keccak(self.nonce.to_bytes(8, "big"))

        def _blob(self) -> bytes:
            """A fresh "update": random bytes of a varying length (1 to 4 words, plus 0 to 6 bytes)."""
            word = self._bytes32()
            return word * (1 + self.nonce % 4) + word[: self.nonce % 7]

        def _task(self, i: int) -> int:
            return self.tasks[i % len(self.tasks)]

        def _state(self, task_id: int) -> tuple[Any, ...]:
            return self.d.task_state(task_id)

        def _pool(self, s: tuple[Any, ...], r: int) -> int:
            return s[T_REWARD] * (r + 1) // s[T_ROUNDS] - s[T_REWARD] * r // s[T_ROUNDS]

        def _opens(self, s: tuple[Any, ...], r: int) -> int:
            return int(s[T_START]) + r * int(s[T_PERIOD])

        def _results_end(self, s: tuple[Any, ...], r: int) -> int:
            """When round ``r``'s last result window closes (the backup's, if any): its availability window opens."""
            backup = bool(s[T_BACKUP])
            return self._opens(s, r) + s[T_SUBMIT] + s[T_REVEAL_W] + s[T_RESULT_W] * (2 if backup else 1)

        def _panel(self, s: tuple[Any, ...], seed: bytes) -> list[str]:
            """Task state ``s``'s current round's drawn members: its panel (the first ``panel``) then, with a backup,
            the backup; the registry's draw with ``seed`` as of the round's first seal (how it picks is
            test_registry's business; here: every member is in every draw, and `create` asks for no more than the
            members other than the owner, so the draw is that many distinct members, never the owner)."""
            k = int(s[T_PANEL]) + (1 if s[T_BACKUP] else 0)
            assert s[T_DRAW] and s[T_DRAW] <= s[T_SEAL], "a panel drawn as of no seal, or of a later one"
            key = (seed, int(s[T_DRAW]), k, s[T_OWNER])  # a draw as of a past block never changes
            if key not in self.draws:
                self.draws[key] = [Web3.to_checksum_address(x) for x in
                                   self.d.call(self.d.registry.functions.draw(seed, int(s[T_DRAW]), k, s[T_OWNER]))]
            drawn = self.draws[key]
            assert len(drawn) == k and len(set(drawn)) == k and set(drawn) <= set(self.members), f"drew {drawn}"
            assert s[T_OWNER] not in drawn, "the owner was drawn for its own task"
            if s[T_OWNER] in self.members:
                event("drawn: for a task of an owner that is a member (not drawn)")
            return drawn

        def _penalties(self, task_id: int, r: int, offenders: list[str], to: list[str],
                       events: list[tuple[str, dict[str, Any]]]) -> None:
            """Check a settlement's penalties against the model: each offender loses the penalty (at most its bond);
            a silent one's (no vote this round) is split among ``to`` by cumulative rounding in order, a dissenter's
            (it voted) is burned, and every one is burned (``PenaltyBurned``, once) when ``to`` is empty."""
            penalised = [(a["member"], int(a["amount"])) for n, a in events if n == "Penalised"]
            credited = [(a["account"], int(a["amount"])) for n, a in events if n == "Credited"]
            burned = [int(a["amount"]) for n, a in events if n == "PenaltyBurned"]
            expected = [(m, min(self.bonds[m], PENALTY)) for m in offenders if min(self.bonds[m], PENALTY)]
            voted = self.votes.get((task_id, r), {})
            burn = sum(x for m, x in expected if not to or m in voted)
            total = sum(x for m, x in expected if to and m not in voted)
            expected_credits = [(a, x) for a, x in zip(to, cumulative(total, [1] * len(to))) if x] if total else []
            assert penalised == expected, f"task {task_id} round {r}: penalised {penalised}, model {expected}"
            assert credited == expected_credits, f"task {task_id} round {r}: credited {credited}, model {expected_credits}"
            assert burned == ([burn] if burn else []), f"task {task_id} round {r}: burned {burned}, model {burn}"
            self.burned += sum(burned)
            if burned:
                event("penalty burned: " + ("nobody to credit it to" if not to else "a dissent"))
            assert all(int(a["taskId"]) == task_id and int(a["round"]) == r for n, a in events
                       if n in ("Penalised", "Credited", "PenaltyBurned"))
            for m, x in expected:
                self.bonds[m] -= x
            for a, x in expected_credits:
                self.reg_credit[a] = self.reg_credit.get(a, 0) + x
            if expected:
                event(f"penalised: {len(expected)} member(s)")

        def _result_blame(self, task_id: int, r: int, before: tuple[Any, ...], poster: str, drawn: list[str], h: bytes,
                          pays: bool) -> tuple[list[str], list[str]]:
            """The model of a result's offenders and fee takers (in draw order; the poster, whose vote decides, last
            among the takers). Offenders: with a quorum of one, the panel member when the backup posted (in its
            window); above one, of the drawn members (the backup last): those that voted for another result, those
            that committed to none, and, posted once the panel's window is over, the panel's members that did not
            vote (not the backup). A result that pays nobody fines only those that did not vote (a dissenter may
            have been served other bytes)."""
            k, q = int(before[T_PANEL]), int(before[T_QUORUM])
            late = self.d.last_timestamp() >= self._reveal_deadline(before, r) + before[T_RESULT_W]
            if q == 1:
                return ([drawn[0]] if poster != drawn[0] else []), [poster]
            votes = self.votes.get((task_id, r), {})
            commits = self.vote_commits.get((task_id, r), {})
            assert commits.get(poster) == h, "a deciding vote without a commitment to it"
            offenders, why = [], set()
            for i, m in enumerate(drawn):
                v = h if m == poster else votes.get(m)
                if v is not None and v != h:
                    offenders.append(m)
                    why.add("dissent")
                elif v is None and late and i < k:
                    offenders.append(m)
                    why.add("silent panel member (late)")
                elif v is None and m not in commits:
                    offenders.append(m)
                    why.add("uncommitted" + (" backup" if i >= k else ""))
            agreed = [m for m in drawn if votes.get(m) == h] + [poster]
            assert len(agreed) >= q, "decided by fewer votes than the quorum"
            event(f"quorum: decided by {len(agreed)} of panel {k} (quorum {q})" + (" in the backup window" if late else ""))
            if offenders and not pays:
                spared = [m for m in offenders if m in votes]
                offenders = [m for m in offenders if m not in votes]
                if spared:
                    event("quorum: dissent spared (the result pays nobody)")
                why = {w for w in why if w != "dissent"} if spared else why
            for w in sorted(why):
                event(f"quorum: fined: {w}")
            return offenders, agreed

        def _reveal_deadline(self, s: tuple[Any, ...], r: int) -> int:
            return self._opens(s, r) + int(s[T_SUBMIT]) + int(s[T_REVEAL_W])

        def _result_time(self, s: tuple[Any, ...], r: int, eighths: int) -> int:
            """``eighths`` eighths into round ``r``'s panel result window (the contract's ``_resultTime``): vote
            commitments close at 6, votes open at 7 (earlier once every drawn member committed), the window ends at 8."""
            return self._reveal_deadline(s, r) + int(s[T_RESULT_W]) * eighths // 8

        def _known_seed(self, task_id: int, r: int, before: tuple[Any, ...]) -> bytes | None:
            """The seed a settlement in the latest block could read (the fallback's ``_seedIfKnown``): the kept one,
            or the seal block's hash while it is readable (the 256 blocks before)."""
            if (task_id, r) in self.kept:
                return self.kept[(task_id, r)]
            seal, now = int(before[T_SEAL]), self.d.last_block()
            if before[T_COUNT_ROUND] != r or not seal or not now - 256 <= seal < now:
                return None
            return keccak(abi_encode(["bytes32", "uint256", "uint256", "uint256"],
                                     [self.d.block_hash(seal), seal, task_id, r]))

        def _holders(self, task_id: int, paid_only: bool = True) -> list[str]:
            """The trainers holding a stake in ``task_id`` (that a round paid since they took their seat, unless
            not ``paid_only``), in seat order (the model's)."""
            out = [a for a in self.trainers if self.stake_of.get((task_id, a), 0)]
            assert all((task_id, a) in self.join_index for a in out), "a stake held without a seat"
            if paid_only:
                out = [a for a in out if (task_id, a) in self.paid_seat]
            return sorted(out, key=lambda a: self.join_index[(task_id, a)])

        def _task_end(self, task_id: int, carry: int, carry_pool: int) -> tuple[int, list[tuple[str, int]]]:
            """The model of a task's end: (refund to the owner, credits): carryPool back to the owner; the carried
            lost stakes split equally among the trainers still holding a stake that a round paid since they took
            their seat (``Seat.paid``), to the owner only if there is none."""
            holders = self._holders(task_id)
            refund, credits = carry_pool, []
            if carry and holders:
                credits = [(a, x) for a, x in zip(holders, cumulative(carry, [1] * len(holders))) if x]
                event("task end: lost stakes split among the paid stakeholders")
            elif carry:
                assert not holders, "lost stakes refunded to the owner while a paid trainer holds a stake"
                refund += carry
                self.stakes_to_owner[task_id] += carry
                unpaid = self._holders(task_id, paid_only=False)
                event("task end: lost stakes to the owner" + (" (only unpaid stakeholders)" if unpaid
                                                              else " (no stakeholder)"))
            if carry_pool:
                event("task end: carried pool to the owner")
            return refund, credits

        def _send(self, sender: str, fn: Any, value: int = 0) -> list[tuple[str, dict[str, Any]]] | None:
            events = self.d.send(sender, fn, value)
            for name, args in events or []:
                if name in ("Withdrawn", "RefundWithdrawn"):
                    self.withdrawn += int(args["amount"])
                elif name == "StakeReturned":
                    key = (int(args["taskId"]), args["trainer"])
                    assert self.stake_of.get(key, 0) == int(args["amount"]), f"returned {args} but held {self.stake_of.get(key)}"
                    self.stake_of[key] = 0
                    self.task_returned[key[0]] += int(args["amount"])
                elif name == "TrainerJoined":
                    key = (int(args["taskId"]), args["trainer"])
                    if key in self.join_index:  # a top-up keeps the seat
                        expected = self.join_index[key]
                    elif self.free[key[0]]:  # a freed seat first (last freed, first taken)
                        expected = self.free[key[0]].pop()
                        event("join takes a freed seat")
                    else:
                        self.seats_made[key[0]] += 1
                        expected = self.seats_made[key[0]]
                        assert expected <= self.max_trainers[key[0]], "a join past maxTrainers"
                    assert int(args["index"]) == expected, f"joined at seat {args['index']}, model {expected}"
                    self.join_index[key] = expected
                elif name == "SeedKept":
                    self.kept[(int(args["taskId"]), int(args["round"]))] = bytes(args["seed"])
                elif name == "CreditWithdrawn":
                    assert int(args["amount"]) == self.reg_credit.get(args["account"], 0), "a credit withdrawn off the model"
                    self.reg_credit[args["account"]] = 0
                if name == "Withdrawn" and args["account"] in self.members:  # a member withdraws its fees
                    key = (int(args["taskId"]), args["account"])
                    assert int(args["amount"]) == self.agg_earned.get(key, 0), "fees withdrawn off the model"
                    self.agg_earned[key] = 0
            names = {n for n, _ in events or []}
            if "TrainerCredited" in names:  # checked against the model by _settled / reclaim
                assert names & {"RoundSettled", "TaskReclaimed"}, "a credit outside a settlement"
            return events

        def _free_seat(self, task_id: int, trainer: str) -> None:
            self.free[task_id].append(self.join_index.pop((task_id, trainer)))
            self.paid_seat.discard((task_id, trainer))

        def _settled(self, task_id: int, before: tuple[Any, ...], events: list[tuple[str, dict[str, Any]]],
                     marked: set[str], paid: dict[str, int] | None, poster: str | None = None,
                     drawn: list[str] | None = None, h: bytes | None = None) -> None:
            """Check a settlement of round ``before[T_CURRENT]`` against the model: who lost a stake, who was
            credited how much (to the wei, in order), the aggregators' fee and penalties, and where the pool, the
            lost stakes, carry and carryPool went (``paid``: a result's basis points by revealed trainer, posted by
            ``poster`` of the round's ``drawn`` (panel, then backup) with result hash ``h``, the vote that decided
            it; None for settleWithoutResult)."""
            r = int(before[T_CURRENT])
            (settled,) = [a for n, a in events if n == "RoundSettled"]
            mode = int(settled["mode"])
            event(f"settled: {('result', 'fallback', 'refund')[mode - 1]}")
            assert int(settled["round"]) == r
            committed = self.commits.get((task_id, r), {})
            revealed = self.reveals.get((task_id, r), set())
            available = self.available.get((task_id, r), set())
            assert available <= revealed, "proved available without a reveal"
            if mode == SETTLED_BY_RESULT:
                assert paid is not None and revealed
            else:
                assert paid is None and not marked
                assert (mode == SETTLED_BY_REFUND) == (not revealed), "a fallback without reveals, or a refund with"
            at_fault = (set(committed) - revealed) | marked
            expected = {t: self.stake_of.get((task_id, t), 0) for t in at_fault}
            lost = {a["trainer"]: int(a["amount"]) for n, a in events if n == "StakeLost"}
            assert lost == {t: v for t, v in expected.items() if v}, f"stakes lost {lost}, expected {expected}"
            for t in lost:
                # no honest stake lost: a revealer loses its stake only when a result marks it
                assert t not in revealed or t in marked, f"task {task_id} round {r}: {t} revealed, unmarked, lost its stake"
                self.stake_of[(task_id, t)] = 0
                self.lost_log.add((task_id, r, t))
            for t in marked:
                self.marked_log.add((task_id, r, t))
            order = {a: self.join_index[(task_id, a)] for a in revealed}  # seats before any is freed

            # the model of the round's money
            pool, lost_sum = self._pool(before, r), sum(lost.values())
            carry, carry_pool = self.carry[task_id], self.carry_pool[task_id]
            assert (before[T_CARRY], before[T_CARRY_POOL]) == (carry, carry_pool)
            refund, round_credits = 0, []
            votes = self.votes.get((task_id, r), {})  # the votes recorded before this settlement
            # penalties: a result costs the members that voted for another result, the drawn members (backup too)
            # that committed to none, and, posted late (the backup window), the panel's silent members, the silent
            # ones' to the trainers it pays, the dissenters' burned (paying nobody: only those that did not vote,
            # burned); a fallback costs every drawn
            # member that did not vote, to the trainers that proved their update, when the round's seed (its panel)
            # can still be had
            offenders: list[str] = []
            to: list[str] = []
            agreed: list[str] = []  # the members the fee goes to: those that voted for the decided result, then the poster
            if mode == SETTLED_BY_RESULT:
                assert poster is not None and drawn is not None and h is not None
                to = [a for a in sorted(revealed, key=order.__getitem__) if paid and paid[a]]
                offenders, agreed = self._result_blame(task_id, r, before, poster, drawn, h, bool(to))
                voted = [(a["member"], bytes(a["result"])) for n, a in events if n == "Voted"]
                # (a quorum of one decides at once: the registry need not record the vote)
                assert voted == ([(poster, h)] if before[T_QUORUM] > 1 else []), f"votes {voted}, poster {poster}"
                if before[T_QUORUM] > 1:
                    self.votes.setdefault((task_id, r), {})[poster] = h
            elif mode == SETTLED_BY_FALLBACK:
                seed = self._known_seed(task_id, r, before)
                if self.d.last_timestamp() >= self._opens(before, r + 2):  # the draw may have changed since
                    event("fallback: a period late, nobody to blame")
                elif seed is not None:
                    offenders = [m for m in self._panel(before, seed) if m not in votes]
                    if before[T_QUORUM] > 1:
                        event(f"quorum: fallback ({'no quorum among votes' if votes else 'nobody voted'})")
                        if votes and len(offenders) < len(self._panel(before, seed)):
                            event("quorum: fallback spares the members that voted")
                else:
                    event("fallback: no seed, no panel to blame")
                to = sorted(available, key=order.__getitem__)
            # the aggregators' fee: basis points of the round's pool, only for a result, out of the pool, split
            # equally (cumulative rounding, every share emitted) among the members that voted for it
            fee = pool * int(before[T_FEE_BPS]) // BPS if mode == SETTLED_BY_RESULT else 0
            fees = [(a["aggregator"], int(a["amount"])) for n, a in events if n == "FeeCredited"]
            shares = list(zip(agreed, cumulative(fee, [1] * len(agreed)))) if fee else []
            assert fees == shares, f"fees {fees}, model {shares}"
            if fee:
                event("fee paid" + (f" (split among {len(agreed)} voters)" if len(agreed) > 1 else ""))
                self.fees[task_id] += fee
                for m, x in shares:
                    self.agg_earned[(task_id, m)] = self.agg_earned.get((task_id, m), 0) + x
            self._penalties(task_id, r, offenders, to, events)
            if mode == SETTLED_BY_REFUND:  # empty round: its pool back, the lost stakes carried
                refund, carry = pool, carry + lost_sum
            else:
                if mode == SETTLED_BY_RESULT:
                    payees = sorted(revealed, key=order.__getitem__)
                    weights = [paid[a] for a in payees]
                    if not any(weights):  # every update lost
                        event("all-lost zero result")
                        assert marked == revealed, "a zero result without every revealed update marked lost"
                        payees = []
                else:  # the fallback: an equal split among the updates proved available
                    payees = sorted(available, key=order.__getitem__)
                    weights = [1] * len(payees)
                    event(f"fallback: {len(payees)} of {len(revealed)} revealers proved available")
                if payees:
                    total = pool - fee + carry + carry_pool + lost_sum
                    round_credits = [(a, x) for a, x in zip(payees, cumulative(total, weights)) if x]
                    carry = carry_pool = 0
                    # `Seat.paid`: every update the round pays (a weight above 0), even if its share rounds to 0 wei
                    self.paid_seat.update((task_id, a) for a, w in zip(payees, weights) if w)
                else:  # nobody paid: the pool (less the fee) and the lost stakes carry over
                    carry, carry_pool = carry + lost_sum, carry_pool + pool - fee
            # seats given up, in seat order: committers that lost a stake by not revealing, then (after the
            # credits) the updates marked lost
            for t in sorted((x for x in lost if x not in revealed), key=lambda x: self.join_index[(task_id, x)]):
                self._free_seat(task_id, t)
            for t in sorted(marked, key=lambda x: self.join_index[(task_id, x)]):
                self._free_seat(task_id, t)
            if lost:
                event("stakes lost" + (" (lostMask)" if marked & set(lost) else ""))
            end_credits: list[tuple[str, int]] = []
            if r + 1 >= before[T_ROUNDS]:
                back, end_credits = self._task_end(task_id, carry, carry_pool)
                refund += back
                carry = carry_pool = 0
            self.carry[task_id], self.carry_pool[task_id] = carry, carry_pool

            credits = [(a["trainer"], int(a["amount"])) for n, a in events if n == "TrainerCredited"]
            assert all(int(a["round"]) == r for n, a in events if n == "TrainerCredited")
            if mode == SETTLED_BY_FALLBACK:
                unproved = {a for a, _ in credits if a not in available}
                assert not unproved or (not available and {a for a, _ in end_credits} >= unproved), \
                    f"a fallback credited an update nobody proved available: {unproved}"
            elif paid is not None:
                assert {a for a, _ in round_credits} <= {t for t, b in paid.items() if b}, \
                    "a result credited an update it gave 0 bps"
            assert credits == round_credits + end_credits, \
                f"credits {credits}, model {round_credits} + task end {end_credits}"
            for a, _ in round_credits:
                assert (task_id, r, a) not in self.credited_keys, f"credited twice: {(task_id, r, a)}"
                self.credited_keys.add((task_id, r, a))
            after = self._state(task_id)
            round_sum, end_sum = sum(x for _, x in round_credits), sum(x for _, x in end_credits)
            assert int(settled["credited"]) == round_sum + end_sum  # the event counts the task end's split too
            assert after[T_CREDITED] - before[T_CREDITED] == round_sum + end_sum
            assert after[T_REFUNDED] - before[T_REFUNDED] == int(settled["refunded"]) == refund
            assert after[T_ESCROW] == before[T_ESCROW] - pool
            assert after[T_FEES] - before[T_FEES] == fee
            assert (after[T_CARRY], after[T_CARRY_POOL]) == (carry, carry_pool)
            if mode != SETTLED_BY_REFUND and round_credits:
                assert round_sum == pool - fee + lost_sum + before[T_CARRY] + before[T_CARRY_POOL], \
                    "a paid round did not pay its pool (less the fee), its lost stakes and every carried amount in full"

        # -------------------------------------------------------------- rules
        @initialize(rounds=st.integers(1, 3), reward=st.integers(3, 10**18), stake=st.sampled_from([0, 7, 10**17]),
                    backup=st.booleans(), trainers=st.sets(st.integers(0, TRAINERS - 1), min_size=1),
                    fee=st.sampled_from([0, 1, 2500, 5000]), data=st.data())
        def first_task(self, rounds: int, reward: int, stake: int, backup: bool, trainers: set[int], fee: int,
                       data: st.DataObject) -> None:
            """A task (a panel of one), some trainers in it, and its first round played."""
            self.create(0, rounds, reward, 4, 0, stake, 2, backup, fee, (1, 1), False)
            assert self.tasks, "the first task must be created"
            task = len(self.tasks) - 1  # (the initialisers run in any order)
            self.join(task, trainers, False)
            self.money_is_conserved()
            self.play_round(task, data)

        @initialize(rounds=st.integers(1, 3), reward=st.integers(3, 10**18), stake=st.sampled_from([0, 7, 10**17]),
                    backup=st.booleans(), trainers=st.sets(st.integers(0, TRAINERS - 1), min_size=1),
                    fee=st.sampled_from([2500, 1, 0, 5000]), shape=st.sampled_from([(3, 2), (2, 2), (3, 3)]),
                    windows=st.integers(0, 1), ending=st.sampled_from(["result", "backup", "result", "available"]),
                    data=st.data())
        def quorum_task(self, rounds: int, reward: int, stake: int, backup: bool, trainers: set[int], fee: int,
                        shape: tuple[int, int], windows: int, ending: str, data: st.DataObject) -> None:
            """A task whose quorum is above one (of owner 0: every shape can be drawn, backup too), some trainers in
            it, and its first round played (mostly to its votes)."""
            self.create(0, rounds, reward, 4, windows, stake, 2, backup, fee, shape, False)
            task = len(self.tasks) - 1
            assert task >= 0 and self.tasks[task] in self.quorum_tasks, "the quorum task must be created"
            self.join(task, trainers, False)
            self.money_is_conserved()
            self.play_round(task, data, ending)

        @precondition(lambda self: len(self.tasks) < 3)
        @rule(owner=st.integers(0, 1), rounds=st.integers(1, 3), reward=st.integers(0, 10**18),
              max_trainers=st.integers(1, 5), windows=st.integers(0, 1), stake=st.sampled_from([0, 1, 7, 10**17]),
              k=st.integers(0, 2), backup=st.booleans(), fee=st.sampled_from([0, 0, 0, 1, 999, 2500, 5000, 5001]),
              shape=st.sampled_from(SHAPES), short=st.sampled_from([False, False, False, False, True]))
        def create(self, owner: int, rounds: int, reward: int, max_trainers: int, windows: int, stake: int, k: int,
                   backup: bool, fee: int, shape: tuple[int, int], short: bool) -> None:
            """A task of one of two owners: a panel of ``shape`` = (panel, quorum) drawn each round from the
            registry's members other than the owner (and, with ``backup``, one more as its backup), the aggregators'
            fee ``fee`` basis points of each pool. A quorum above one needs a result window of at least 480 s
            (``short``: a second less, refused); a quorum of half the panel or less is refused, and so is a panel
            (with its backup) larger than the members other than the owner."""
            panel, quorum = shape
            submit, reveal, result = ((60, 30, 60), (90, 45, 75))[windows]
            if quorum > 1:
                result = (MIN_QUORUM_RESULT_WINDOW, 600)[windows] - int(short)
            # (spec, model, validation, verifier, feeBps, panel, quorum, backup, rounds, windows, maxTrainers, k, stake)
            params = (keccak(b"spec"), keccak(b"init"), b"\x00" * 32, ZERO, fee, panel, quorum, backup,
                      rounds, submit, reveal, result, max_trainers, k, stake)
            events = self._send(self.owners[owner], self.d.c.functions.createTask(params, ZERO, reward), value=reward)
            drawable = len([m for m in self.members if m != self.owners[owner]])  # every member is active
            ok_shape = 2 * quorum > panel and (quorum == 1 or result >= MIN_QUORUM_RESULT_WINDOW)
            assert (events is not None) == (reward >= rounds and fee <= 5000 and ok_shape
                                            and panel + backup <= drawable), \
                "createTask must accept exactly the rewards >= rounds with a fee of at most 50 %, a quorum above " \
                "half the panel (with a result window of 480 s or more above one) and enough members but the owner"
            if events is None:
                if reward >= rounds and fee <= 5000:
                    event("create refused: " + ("panel" if not ok_shape else "too few members but the owner"))
            elif quorum > 1:
                event(f"create: panel {panel}, quorum {quorum}" + (" + backup" if backup else ""))
            for name, args in events or []:
                if name == "TaskCreated":
                    task_id = int(args["taskId"])
                    self.tasks.append(task_id)
                    self.deposited += reward
                    self.task_in[task_id] = reward
                    self.task_returned[task_id] = 0
                    self.free[task_id] = []
                    self.seats_made[task_id] = 0
                    self.max_trainers[task_id] = max_trainers
                    self.carry[task_id] = self.carry_pool[task_id] = self.stakes_to_owner[task_id] = 0
                    self.fees[task_id] = 0
                    s = self._state(task_id)
                    assert (s[T_FEE_BPS], s[T_PANEL], s[T_QUORUM], bool(s[T_BACKUP])) == (fee, panel, quorum, backup)
                    if quorum > 1:
                        self.quorum_tasks.append(task_id)
                    assert s[T_PERIOD] == submit + 2 * reveal + result * (2 if backup else 1), \
                        "period != submit + reveal + result (x2 with a backup) + availability (= reveal)"
                    assert self._results_end(s, 1) + reveal == self._opens(s, 2)

        @rule(task=st.integers(0, 20), trainers=st.sets(st.integers(0, TRAINERS - 1), min_size=1), wrong_value=st.booleans())
        def join(self, task: int, trainers: set[int], wrong_value: bool) -> None:
            """Join (or top up) with the task's stake; one of them with one wei too many (refused)."""
            t = self._task(task)
            stake = self._state(t)[T_STAKE]
            for i, trainer in enumerate(sorted(trainers)):
                who = self.trainers[trainer]
                due = stake - self.stake_of.get((t, who), 0)
                wrong = wrong_value and i == 0
                full = (t, who) not in self.join_index and not self.free[t] and self.seats_made[t] >= self.max_trainers[t]
                events = self._send(who, self.d.c.functions.join(t), value=due + int(wrong))
                if full:
                    assert events is None, "a join into a full task went through"
                if wrong:
                    assert events is None, "a join with the wrong stake went through"
                elif events is not None:
                    self.deposited += due
                    self.task_in[t] += due
                    self.stake_of[(t, who)] = self.stake_of.get((t, who), 0) + due

        @rule(task=st.integers(0, 20), member=st.integers(0, 3))
        def aggregator_joins(self, task: int, member: int) -> None:
            """A registered aggregator may not join a task as a trainer (it could be drawn to judge it)."""
            t = self._task(task)
            events = self._send(self.members[member], self.d.c.functions.join(t), value=self._state(t)[T_STAKE])
            assert events is None, "a registered aggregator joined a task as a trainer"

        @rule(task=st.integers(0, 20), trainer=st.integers(0, TRAINERS - 1))
        def leave(self, task: int, trainer: int) -> None:
            t, who = self._task(task), self.trainers[trainer]
            s = self._state(t)
            committed_now = who in self.commits.get((t, int(s[T_CURRENT])), {})
            seated = (t, who) in self.join_index
            events = self._send(who, self.d.c.functions.leave(t))
            if committed_now or not seated:
                assert events is None, "left while committed to the current round, or without a seat"
            if events is not None:
                self._free_seat(t, who)
                event("left: seat freed")

        @rule(task=st.integers(0, 20), data=st.data())
        def commit(self, task: int, data: st.DataObject, joined_only: bool = False) -> None:
            """Some trainers commit to the current round: a valid hash, junk that cannot be revealed, or one
            for the wrong round (refused); with ``joined_only``, only joined trainers, the first one valid."""
            t = self._task(task)
            r = int(self._state(t)[T_CURRENT])
            joined = [i for i, a in enumerate(self.trainers) if (t, a) in self.join_index]
            pool = joined if joined and (joined_only or data.draw(st.integers(0, 5))) else list(range(TRAINERS))  # mostly joined
            for i, trainer in enumerate(sorted(data.draw(st.sets(st.sampled_from(pool), min_size=1)))):
                who = self.trainers[trainer]
                # (Hypothesis favours the ends of a list: they are the common case)
                kind = "valid" if joined_only and not i else data.draw(
                    st.sampled_from(["valid", "valid", "junk", "valid", "wrong_round", "valid", "valid"]))
                blob, commitment, salt = self._blob(), self._bytes32(), self._bytes32()
                h = _commit_hash(blob, commitment, salt, who, t, r) if kind == "valid" else self._bytes32()
                events = self._send(who, self.d.c.functions.commit(t, r + (kind == "wrong_round"), h))
                if kind == "wrong_round":
                    assert events is None, "a commit for another round went through"
                elif events is not None:
                    secret = (hashlib.sha256(blob).digest(), commitment, salt)
                    self.commits.setdefault((t, r), {})[who] = secret if kind == "valid" else None
                    if kind == "valid":
                        self.blobs[(t, r, who)] = blob
                    s = self._state(t)
                    opens, when = self._opens(s, r), self.d.last_timestamp()
                    assert opens <= when < opens + s[T_SUBMIT], "a commit outside the round's scheduled window"

        @rule(task=st.integers(0, 20), data=st.data())
        def reveal(self, task: int, data: st.DataObject, one_valid: bool = False) -> None:
            """Some committers (or others) reveal: the committed values, or a wrong salt (refused); with
            ``one_valid``, a valid committer among them reveals its values."""
            t = self._task(task)
            r = int(self._state(t)[T_CURRENT])
            committed = self.commits.get((t, r), {})
            pool = sorted(committed) or self.trainers
            revealers = data.draw(st.sets(st.sampled_from(pool), min_size=1))
            sure = next((w for w in sorted(revealers) + pool if committed.get(w)), None) if one_valid else None
            for who in sorted(revealers | ({sure} if sure else set())):
                valid = who == sure or data.draw(st.sampled_from([True, True, False, True, True]))
                secret = committed.get(who) or (self._bytes32(), self._bytes32(), self._bytes32())
                cid, commitment, salt = secret
                if not valid:
                    salt = self._bytes32()
                events = self._send(who, self.d.c.functions.reveal(t, r, cid, commitment, salt))
                if not valid or committed.get(who) is None:
                    assert events is None, "a reveal that does not match the commit went through"
                elif events is not None:
                    self.reveals.setdefault((t, r), set()).add(who)
                    s = self._state(t)
                    commit_dl, when = self._opens(s, r) + s[T_SUBMIT], self.d.last_timestamp()
                    assert when < commit_dl + s[T_REVEAL_W], "a reveal after the reveal window"
                    assert when >= commit_dl or s[T_COMMITTED] >= s[T_MAX], "a reveal while commits were open"

        @rule(task=st.integers(0, 20), caller=st.integers(0, TRAINERS - 1))
        def seal(self, task: int, caller: int) -> None:
            t = self._task(task)
            r = int(self._state(t)[T_CURRENT])
            kept = (t, r) in self.kept
            events = self._send(self.trainers[caller], self.d.c.functions.seal(t))
            if kept:
                assert events is None, "sealed again a round whose seed was kept"
            for name, _args in events or []:
                event(f"seal: {name}")

        @precondition(lambda self: self.d.tester is not None)
        @rule(task=st.integers(0, 20), keep=st.booleans(), caller=st.integers(0, TRAINERS - 1))
        def outlive_the_seal_block(self, task: int, keep: bool, caller: int) -> None:
            """Mine 257 blocks (the seal block's hash becomes unreadable), keeping the seed first or not: an
            unkept seed is refused (MarketSeedExpired) until `seal` seals the round again."""
            t = self._task(task)
            if keep:
                self.seal(task, caller)
            self.d.mine(257)
            s = self._state(t)
            r = int(s[T_CURRENT])
            if r < s[T_ROUNDS] and s[T_COUNT_ROUND] == r and s[T_SEAL] and (t, r) not in self.kept:
                assert self.d.try_call(self.d.c.functions.roundSeed(t)) is None, "an expired seed was served"
                event("seed expired")

        @rule(task=st.integers(0, 20), data=st.data())
        def post_result(self, task: int, data: st.DataObject) -> None:
            self._post(self._task(task), data,
                       ["valid", "valid", "zero", "bad_sum", "valid", "bad_length", "paid_and_lost", "wrong_seed",
                        "all_lost", "valid"])

        @rule(task=st.integers(0, 20), data=st.data())
        def commit_vote(self, task: int, data: st.DataObject) -> None:
            """A member (or a trainer, or an outsider) commits to a result of a task's current round: the honest
            candidate, the other one, or junk; exactly a drawn member's first commitment before 6/8 of the panel's
            window goes through (on any task: with a quorum of one it binds nobody, but keeps the seed)."""
            t = self._task(task)
            who = data.draw(st.sampled_from([*self.members, *self.members, self.outsider, self.trainers[0]]))
            self._commit_vote(t, who, data.draw(st.sampled_from(["A", "A", "B", "junk"])), data)

        @precondition(lambda self: self.quorum_tasks)
        @rule(task=st.integers(0, 20), member=st.integers(0, 3), which=st.sampled_from(["A", "B", "A"]), data=st.data())
        def cast_vote(self, task: int, member: int, which: str, data: st.DataObject) -> None:
            """A member votes a candidate result of a quorum task's current round, whenever: exactly what the model
            allows goes through (drawn, committed to it, votes open, in its window, once)."""
            t = self.quorum_tasks[task % len(self.quorum_tasks)]
            self._vote(t, self.members[member], self._candidates(t, int(self._state(t)[T_CURRENT]), data)[which])

        def _post(self, t: int, data: st.DataObject, kinds: list[str], right_sender: bool = False) -> None:
            """Post a result for task ``t``'s current round: random basis points over the revealed updates and a
            random ``lostMask`` over the unpaid ones (``valid``), or a result the contract must refuse."""
            task = self.tasks.index(t)
            before = self._state(t)
            r = int(before[T_CURRENT])
            if r < before[T_ROUNDS] and before[T_COUNT_ROUND] == r and before[T_REVEALED] and not before[T_SEAL]:
                self.seal(task, data.draw(st.integers(0, TRAINERS - 1)))  # mostly too early: the contract refuses
                before = self._state(t)
            revealed = self._revealed(t, r)
            n = len(revealed)
            kind = data.draw(st.sampled_from(kinds))
            bps, mask = self._split(n, data)
            if kind == "zero":
                bps = [0] * n
            elif kind == "all_lost":  # every revealed update junk: all zero, all marked
                bps, mask = [0] * n, (1 << n) - 1
            elif kind == "bad_sum" and n:
                bps[0] += 1
            elif kind == "bad_length":
                bps = bps + [0]
            elif kind == "paid_and_lost" and n:
                mask |= 1 << next(j for j in range(n) if bps[j])
            real_seed = self.d.try_call(self.d.c.functions.roundSeed(t))
            real_seed = None if real_seed is None else bytes(real_seed)
            seed = real_seed or self._bytes32()
            if (t, r) in self.kept:
                assert seed == self.kept[(t, r)], "a kept seed changed"
            if kind == "wrong_seed":
                seed = keccak(seed)
            opens = self._opens(before, min(r, int(before[T_ROUNDS]) - 1))
            result_dl = opens + before[T_SUBMIT] + before[T_REVEAL_W] + before[T_RESULT_W]
            in_primary = self.d.now() < result_dl
            # the round's panel and backup, drawn with the round's seed (when it can be had: else no post goes
            # through, and anyone is as wrong a sender as any other)
            drawn = self._panel(before, real_seed) if real_seed is not None else None
            k = int(before[T_PANEL])
            panel, backup = (drawn[:k], drawn[k] if len(drawn) > k else None) if drawn else (self.members[:1], None)
            # (drawn whatever the window: the panel depends on block hashes, which differ between replays of a run,
            # and Hypothesis needs every run of a test case to draw the same things)
            to_backup = data.draw(st.sampled_from([True, False, True]))
            right = backup if backup is not None and to_backup and not in_primary else panel[0]
            sender = right if right_sender else data.draw(
                st.sampled_from([right, right, *self.members, self.owners[0], right, right]))
            model = keccak(b"model")
            zero_ok = kind in ("zero", "all_lost") and n and mask == (1 << n) - 1
            if before[T_QUORUM] > 1:  # a vote: it must open the sender's commitment (rarely one to these bps)
                self._vote(t, sender, (model, mask, bps), seed, n > 0 and (kind == "valid" or bool(zero_ok)))
                return
            res = (model, keccak(b"receipt"), seed, mask)
            events = self._send(sender, self.d.c.functions.postResult(t, r, res, bps, b""))
            if (kind != "valid" and not zero_ok) or not n:
                assert events is None, f"a {kind} result went through"
            if events is not None:
                when = self.d.last_timestamp()
                assert drawn is not None, "a result went through without a drawn panel"
                if when < result_dl:
                    assert sender == panel[0], "a result from anyone but the panel member in its window"
                else:
                    assert backup is not None and sender in (panel[0], backup), \
                        "a result after the panel's window without a backup window, or from anyone but the drawn two"
                    event("posted in the backup window by the " + ("backup" if sender == backup else "panel member"))
                assert when < self._results_end(before, r), "a result after the round's last result window"
                assert not self.available.get((t, r)), "a result after an update was proved available"
            if events is not None:
                marked = {revealed[j] for j in range(n) if (mask >> j) & 1}
                h = _result_hash(model, seed, mask, bps)
                self._settled(t, before, events, marked, dict(zip(revealed, bps)), sender, drawn, h)

        # ----------------------------------------------------- quorum voting
        def _seed_now(self, t: int) -> bytes | None:
            """Task ``t``'s current round's seed, as the next transaction would read it (None: none to be had)."""
            seed = self.d.try_call(self.d.c.functions.roundSeed(t))
            return None if seed is None else bytes(seed)

        def _candidates(self, t: int, r: int, data: st.DataObject) -> dict[str, tuple[bytes, int, list[int]]]:
            """Round ``r``'s two candidate results (modelCid, lostMask, bps): "A", random basis points that pay
            someone, and "B", another: another model with the same pay, other random pay, or an all-lost result
            (which pays nobody). Drawn once the round is sealed (its reveals final), then kept."""
            key = (t, r)
            if key in self.candidates:
                return self.candidates[key]
            n = len(self._revealed(t, r))
            bps, mask = self._split(n, data)
            other = data.draw(st.sampled_from(["model", "pay", "all_lost", "model"]))
            if other == "pay":
                obps, omask = self._split(n, data)
            elif other == "all_lost":
                obps, omask = [0] * n, (1 << n) - 1
            else:
                obps, omask = bps, mask
            out = {"A": (keccak(b"model"), mask, bps), "B": (keccak(b"another model"), omask, obps)}
            s = self._state(t)
            if s[T_SEAL] and s[T_COUNT_ROUND] == r:
                self.candidates[key] = out
            return out

        def _commit_outcome(self, t: int, s: tuple[Any, ...], r: int, drawn: list[str] | None, who: str,
                            when: int) -> str | None:
            """The model of ``commitVote`` by ``who`` at ``when``: None (it goes through) or why it is refused."""
            if drawn is None or r >= s[T_ROUNDS]:
                return "no seed"
            if who not in drawn:
                return "not drawn"
            if who in self.vote_commits.get((t, r), {}):
                return "committed twice"
            if when >= self._result_time(s, r, 6):
                return "after 6/8 of the window"
            return None

        def _commit_vote(self, t: int, who: str, which: str, data: st.DataObject) -> None:
            """``who`` commits (``commitVote``) to the current round's candidate result ``which`` ("A", "B"), or to
            junk (a hash no result has); exactly what the model allows goes through."""
            before = self._state(t)
            r = int(before[T_CURRENT])
            seed = self._seed_now(t)
            drawn = self._panel(before, seed) if seed is not None and r < before[T_ROUNDS] else None
            if which == "junk" or seed is None:
                h = self._bytes32()
            else:
                model, mask, bps = self._candidates(t, r, data)[which]
                h = _result_hash(model, seed, mask, bps)
            lo, hi = self.d.now_range()
            expected = {self._commit_outcome(t, before, r, drawn, who, lo), self._commit_outcome(t, before, r, drawn, who, hi)}
            commitment = _vote_commitment(h, who)
            events = self._send(who, self.d.c.functions.commitVote(t, r, commitment))
            if events is None:
                assert len(expected) > 1 or expected != {None}, f"a commitment to a vote refused ({who}, round {r})"
                event(f"quorum: commitment refused: {sorted(x or '' for x in expected)[-1]}")
                return
            assert self._commit_outcome(t, before, r, drawn, who, self.d.last_timestamp()) is None, \
                f"a commitment went through that the model refuses: {expected}"
            committed = [(a["member"], int(a["round"]), bytes(a["commitment"])) for n, a in events if n == "VoteCommitted"]
            assert committed == [(who, r, commitment)], f"VoteCommitted {committed}"
            self.vote_commits.setdefault((t, r), {})[who] = h

        def _vote_outcome(self, t: int, s: tuple[Any, ...], r: int, drawn: list[str], who: str, h: bytes,
                          when: int) -> tuple[str, str]:
            """The model of a vote (``postResult`` of a valid result with the round's seed) for result hash ``h`` by
            ``who`` at ``when`` on a quorum above one: ("refused", why), ("vote", "") (recorded, no quorum yet) or
            ("decide", "") (``quorum`` votes agree with it)."""
            k, q = int(s[T_PANEL]), int(s[T_QUORUM])
            if when >= self._results_end(s, r):
                return "refused", "after the last result window"
            if who not in drawn:
                return "refused", "not drawn"
            if drawn.index(who) >= k and when < self._result_time(s, r, 8):
                return "refused", "the backup before its window"
            votes, commits = self.votes.get((t, r), {}), self.vote_commits.get((t, r), {})
            if who in votes:
                return "refused", "voted twice"
            if commits.get(who) != h:
                return "refused", ("not what it committed to" if who in commits else "no commitment")
            if when < self._result_time(s, r, 7) and not all(m in commits for m in drawn):
                return "refused", "before the votes open"
            tally = sum(1 for m in drawn if votes.get(m) == h)
            return ("decide" if tally + 1 >= q else "vote"), ""

        def _vote(self, t: int, who: str, result: tuple[bytes, int, list[int]], seed: bytes | None = None,
                  valid: bool = True) -> str:
            """``who`` posts ``result`` (modelCid, lostMask, bps; ``valid``: the contract takes its basis points)
            for task ``t``'s current round, whose quorum is above one, with ``seed`` (the round's by default): a
            vote. What the model predicts happens, exactly: refused, recorded, or the round decided (the
            settlement checked by ``_settled``). Returns "refused", "vote" or "decide"."""
            before = self._state(t)
            r = int(before[T_CURRENT])
            model, mask, bps = result
            real = self._seed_now(t)
            seed = real if seed is None else seed
            drawn = self._panel(before, real) if real is not None and r < before[T_ROUNDS] else None
            h = _result_hash(model, seed or bytes(32), mask, bps)

            def outcome(when: int) -> tuple[str, str]:
                if not valid or drawn is None or seed != real:
                    return "refused", ("an invalid result" if not valid else "no seed" if drawn is None else "wrong seed")
                return self._vote_outcome(t, before, r, drawn, who, h, when)

            lo, hi = self.d.now_range()
            expected = {outcome(lo), outcome(hi)}
            res = (model, keccak(b"receipt"), seed or bytes(32), mask)
            events = self._send(who, self.d.c.functions.postResult(t, r, res, bps, b""))
            if events is None:
                assert len(expected) > 1 or next(iter(expected))[0] == "refused", \
                    f"a vote the model takes was refused: {expected} ({who}, round {r})"
                event(f"quorum: vote refused: {max(expected)[1]}")
                return "refused"
            got, why = outcome(self.d.last_timestamp())
            assert got != "refused", f"a vote went through that the model refuses: {why}"
            assert drawn is not None and seed is not None
            settled = [a for n, a in events if n == "RoundSettled"]
            assert bool(settled) == (got == "decide"), f"settled {settled}, model {got}"
            if got == "vote":
                voted = [(a["member"], int(a["round"]), bytes(a["result"])) for n, a in events if n == "Voted"]
                assert voted == [(who, r, h)], f"Voted {voted}"
                assert {n for n, _ in events} <= {"Voted", "SeedKept"}, f"a vote did more: {events}"
                self.votes.setdefault((t, r), {})[who] = h
                event("quorum: vote recorded, no quorum yet")
                return got
            assert not self.available.get((t, r)), "a result after an update was proved available"
            revealed = self._revealed(t, r)
            marked = {revealed[j] for j in range(len(revealed)) if (mask >> j) & 1}
            self._settled(t, before, events, marked, dict(zip(revealed, bps)), who, drawn, h)
            return got

        def _quorum_round(self, t: int, data: st.DataObject, late: bool) -> bool:
            """The result of task ``t``'s current round, whose quorum is above one, voted by its drawn members (every
            transaction's outcome predicted by the model): an account the round did not draw tries to commit; each
            drawn member commits to the honest result, or another, or none, or tries at 6/8 of the panel's window
            (refused; a second before: in time); maybe one commits twice or votes before the votes open; then (in
            the backup window when ``late``) the drawn members vote in random order: each its result, or first the
            other one (refused), or not at all, until ``quorum`` agree. Returns whether the round was decided."""
            task = self.tasks.index(t)
            s = self._state(t)
            r = int(s[T_CURRENT])
            if r >= s[T_ROUNDS] or not self.reveals.get((t, r)):
                event("quorum: a round with nothing revealed")
                return False
            if not s[T_SEAL] or s[T_COUNT_ROUND] != r:
                self.d.advance_to(self._reveal_deadline(s, r))
                self.seal(task, data.draw(st.integers(0, TRAINERS - 1)))
            seed = self._seed_now(t)
            if seed is None:
                event("quorum: no seed to vote with")
                return False
            s = self._state(t)
            drawn = self._panel(s, seed)
            k = int(s[T_PANEL])
            cands = self._candidates(t, r, data)
            if data.draw(st.sampled_from([False, True, False])):  # an account the round did not draw
                self._commit_vote(t, data.draw(st.sampled_from([*(m for m in self.members if m not in drawn),
                                                                 self.outsider, self.trainers[0]])), "A", data)
            # each drawn member's plan: the honest result "A", another "B", none, late (at 6/8), or "silent" (commits to
            # A, never votes): one member deviates from an honest panel (when the others can still make the quorum), or
            # from a panel that agrees on B (the one for A then dissents: fined if B pays anyone), or each picks its
            # own, or all are honest
            style = data.draw(st.sampled_from(["one deviant", "honest", "mixed", "one deviant", "B majority"]))
            plans = dict.fromkeys(drawn, "A")
            if style == "one deviant" and len(drawn) > s[T_QUORUM]:
                plans[data.draw(st.sampled_from(drawn))] = data.draw(st.sampled_from(["none", "B", "late", "silent", "B"]))
            elif style == "B majority" and len(drawn) > s[T_QUORUM]:
                plans = dict.fromkeys(drawn, "B")
                plans[data.draw(st.sampled_from(drawn))] = "A"
            elif style == "mixed":
                plans = {m: data.draw(st.sampled_from(["B", "A", "none", "A", "late", "silent", "A"])) for m in drawn}
            for m in drawn:
                if plans[m] == "silent":
                    self._commit_vote(t, m, "A", data)
                elif plans[m] in ("A", "B"):
                    self._commit_vote(t, m, plans[m], data)
                    if data.draw(st.sampled_from([False, False, False, False, False, True])):  # twice: refused
                        self._commit_vote(t, m, "B", data)
            committed = [m for m in drawn[:k] if m in self.vote_commits.get((t, r), {})]
            early = ""
            if committed and plans[committed[0]] != "silent" and data.draw(st.sampled_from([False, True, False])):
                # before the votes open (unless every drawn member committed): refused
                early = self._vote(t, committed[0], cands["B" if plans[committed[0]] == "B" else "A"])
            for m in drawn:
                if plans[m] == "late":  # at 6/8 of the panel's window: refused (a second before: in time)
                    self.d.advance_to(self._result_time(s, r, 6) + data.draw(st.sampled_from([0, 0, 3, -1])))
                    self._commit_vote(t, m, "A", data)
                    plans[m] = "A"
            if not all(m in self.vote_commits.get((t, r), {}) for m in drawn):
                self.d.advance_to(self._result_time(s, r, 7) + data.draw(st.sampled_from([0, 0, 10, -1])))
            if late and s[T_BACKUP]:  # the panel's window over: its silent members answer for it
                self.d.advance_to(self._result_time(s, r, 8))
            decided = early == "decide"
            order = data.draw(st.permutations(drawn))
            if data.draw(st.booleans()):  # the minority first (else a quorum may end the round before it votes)
                minority = "A" if style == "B majority" else "B"
                order.sort(key=lambda m: plans[m] != minority)
            for m in order:
                if decided:
                    break
                if plans[m] == "silent":
                    continue
                how = data.draw(st.sampled_from(["vote", "vote", "other first", "vote", "vote", "vote"]))
                mine = "B" if plans[m] == "B" else "A"
                if how == "other first":  # not what it committed to: refused
                    self._vote(t, m, cands["B" if mine == "A" else "A"])
                decided = self._vote(t, m, cands[mine]) == "decide"
            assert decided == (self._state(t)[T_CURRENT] != r)
            if decided and data.draw(st.sampled_from([False, True, False])):  # a vote after it was decided: refused
                res = (keccak(b"model"), keccak(b"receipt"), seed, cands["A"][1])
                assert self._send(drawn[0], self.d.c.functions.postResult(t, r, res, cands["A"][2], b"")) is None, \
                    "a vote for a round already decided went through"
            if not decided:
                event("quorum: no quorum by the panel")
            reg = self.d.registry.functions
            for m in drawn:  # the registry's record of the round's commitments and votes is the model's
                h = self.vote_commits.get((t, r), {}).get(m)
                assert bytes(self.d.call(reg.voteCommitmentOf(t, r, m))) == (bytes(32) if h is None else _vote_commitment(h, m))
                assert bytes(self.d.call(reg.voteOf(t, r, m))) == self.votes.get((t, r), {}).get(m, bytes(32))
            return decided

        def _revealed(self, t: int, r: int) -> list[str]:
            """Round ``r``'s revealed trainers in seat order (that of a result's basis points)."""
            return sorted(self.reveals.get((t, r), set()), key=lambda a: self.join_index[(t, a)])

        def _split(self, n: int, data: st.DataObject) -> tuple[list[int], int]:
            """Random basis points over ``n`` revealed updates (some of them paid, summing to 10,000) and a random
            ``lostMask`` over the unpaid ones."""
            bps = [0] * n
            if n:
                paid_count = data.draw(st.integers(1, n))
                paid_at = sorted(data.draw(st.permutations(range(n)))[:paid_count])
                cuts = sorted(data.draw(st.lists(st.integers(0, BPS), min_size=paid_count - 1, max_size=paid_count - 1)))
                for j, share in zip(paid_at, [b - a for a, b in zip([0, *cuts], [*cuts, BPS])]):
                    bps[j] = share
            mask = 0
            for j in range(n):
                if bps[j] == 0:
                    mask |= int(data.draw(st.booleans())) << j
            return bps, mask

        @rule(task=st.integers(0, 20), data=st.data())
        def prove_available(self, task: int, data: st.DataObject) -> None:
            """Trainers prove this round's update available (``proveAvailable``: the update's bytes, which must
            hash into their commitment), mostly revealers, mostly in the availability window: the bytes
            committed to, or wrong bytes, a wrong salt, the wrong round; a second proof; too early; without a
            reveal. Exactly the valid proofs of revealers after the last result window go through."""
            t = self._task(task)
            s = self._state(t)
            r = int(s[T_CURRENT])
            revealed = sorted(self.reveals.get((t, r), set()))
            if r < s[T_ROUNDS] and data.draw(st.sampled_from([True, True, False])):
                self.d.advance_to(self._results_end(s, r) + data.draw(st.sampled_from([0, 0, 1, -1, 5])))
            candidates = revealed if revealed and data.draw(st.integers(0, 4)) else self.trainers
            self._prove(t, data, sorted(data.draw(st.sets(st.sampled_from(candidates), min_size=1))),
                        ["valid", "valid", "wrong_bytes", "twice", "valid", "wrong_salt", "wrong_round", "valid"])

        def _prove(self, t: int, data: st.DataObject, provers: list[str], kinds: list[str]) -> None:
            """``provers`` each try ``proveAvailable`` for task ``t``'s current round, the kind of try drawn from
            ``kinds``; a try must go through exactly when it is valid, by a revealer not yet proved, in the window."""
            s = self._state(t)
            r = int(s[T_CURRENT])
            for who in provers:
                kind = data.draw(st.sampled_from(kinds))
                secret = self.commits.get((t, r), {}).get(who)
                blob = self.blobs.get((t, r, who))
                _, commitment, salt = secret or (None, self._bytes32(), self._bytes32())
                if blob is None:
                    blob = self._blob()
                if kind == "wrong_bytes":  # one byte more, one less, or one flipped
                    blob = data.draw(st.sampled_from([blob + b"\x00", blob[:-1], bytes([blob[0] ^ 1]) + blob[1:]]))
                elif kind == "wrong_salt":
                    salt = self._bytes32()
                round_ = r + 1 if kind == "wrong_round" else r
                ok = (kind in ("valid", "twice") and r < s[T_ROUNDS] and who in self.reveals.get((t, r), set())
                      and who not in self.available.get((t, r), set()))
                window = self._results_end(s, r)
                earliest = self.d.now()
                fn = self.d.c.functions.proveAvailable(t, round_, commitment, salt, blob)
                events = self._send(who, fn)
                if events is None:
                    assert not ok or earliest < window, f"a valid proof of availability was refused ({kind})"
                    event("proof refused" + (": before the availability window" if ok else f": {kind}"))
                    continue
                assert ok, f"a proof of availability went through: {kind}, round {round_} of {r}"
                when = self.d.last_timestamp()
                assert when >= window, "a proof of availability before the last result window closed"
                (proved,) = [a for n, a in events if n == "UpdateAvailable"]
                assert (proved["trainer"], int(proved["round"]), bytes(proved["cid"])) == (who, r, secret[0])
                self.available.setdefault((t, r), set()).add(who)
                assert self.d.read_all([t], [who])[1][(t, who)][S_AVAILABLE] == r + 1
                event("proved available" + (" after the round's end" if when >= self._opens(s, r + 1) else ""))
                if kind == "twice":
                    assert self._send(who, fn) is None, "proved available twice"

        @rule(task=st.integers(0, 20), data=st.data())
        def play_round(self, task: int, data: st.DataObject, ending: str | None = None) -> None:
            """A round of task ``task`` played forward with random choices, every invariant checked after each
            transaction: some trainers join or top up, some commit (valid or junk), time moves to the commit
            deadline (or past the reveals), some committers reveal, then (``ending``, else drawn) a result (by the
            aggregator, or the backup in its window; with a quorum above one, the drawn members' commitments and
            votes: ``_quorum_round``), a settlement after every window, or nothing."""
            t = self._task(task)
            s = self._state(t)
            if s[T_CURRENT] >= s[T_ROUNDS]:
                return
            r = int(s[T_CURRENT])
            if self.d.now() + 20 > self._opens(s, r) + s[T_SUBMIT]:  # too late to commit: settle it first
                self.d.advance_to(self._opens(s, r + 1))
                self.settle(task, data.draw(st.integers(0, TRAINERS - 1)))
                s = self._state(t)
                if s[T_CURRENT] >= s[T_ROUNDS] or s[T_CURRENT] == r:
                    return
                r = int(s[T_CURRENT])
            self.d.advance_to(self._opens(s, r))
            unstaked = [i for i, a in enumerate(self.trainers) if self.stake_of.get((t, a), 0) < s[T_STAKE]
                        or (t, a) not in self.join_index]
            if unstaked:
                self.join(task, set(data.draw(st.lists(st.sampled_from(unstaked), max_size=3))) or {unstaked[0]}, False)
                self.money_is_conserved()
            # (a round played for its quorum's votes: its commits from joined trainers, its reveals in time)
            quorum_vote = ending is not None and s[T_QUORUM] > 1
            self.commit(task, data, joined_only=quorum_vote)
            self.money_is_conserved()
            s = self._state(t)
            opens = self._opens(s, r)
            commit_dl = opens + s[T_SUBMIT]
            reveal_dl = commit_dl + s[T_REVEAL_W]
            result_dl = reveal_dl + s[T_RESULT_W]
            # sleep through the reveal window, or not
            late = not quorum_vote and data.draw(st.sampled_from([False, False, True, False, False]))
            self.d.advance_to(reveal_dl + 1 if late else commit_dl + data.draw(st.integers(0, 10)))
            if self.commits.get((t, r)):
                self.reveal(task, data, one_valid=quorum_vote)
                self.money_is_conserved()
            ending = ending or data.draw(st.sampled_from(["result", "available", "backup", "result", "settle", "none",
                                                          "result", "available", "backup", "result"]))
            event(f"ending {ending}")
            if ending in ("result", "backup") and s[T_QUORUM] > 1:
                if not self._quorum_round(t, data, ending == "backup"):
                    ending = "available"  # no quorum: the proofs of availability and the fallback
            elif ending in ("result", "backup"):
                if not self._state(t)[T_SEAL]:
                    self.d.advance_to(reveal_dl)  # so that the round can be sealed
                if ending == "backup" and s[T_BACKUP]:
                    self.d.advance_to(result_dl)
                self._post(t, data, ["valid", "valid", "all_lost", "valid"], right_sender=True)
            # no result: some revealers prove their updates, then the fallback
            if ending in ("settle", "available") and self._state(t)[T_CURRENT] == r:
                revealed = sorted(self.reveals.get((t, r), set()))
                if revealed:
                    if ending == "available" and self.d.now() < self._results_end(s, r):  # too early: refused
                        self._prove(t, data, revealed[:1], ["valid"])
                    # each revealer proves its update or not; some late, once the round has ended
                    late = ending == "available" and data.draw(st.sampled_from([False, True]))
                    self.d.advance_to(self._opens(s, r + 1) if late else self._results_end(s, r))
                    provers = [a for a in revealed if data.draw(st.sampled_from([True, False, True]))]
                    self._prove(t, data, provers, ["valid", "valid", "wrong_bytes", "valid", "twice", "valid"])
                    self.money_is_conserved()
                self.d.advance_to(self._opens(s, r + 1))
                self.settle(task, data.draw(st.integers(0, TRAINERS - 1)))

        def _live_quorum_tasks(self) -> list[int]:
            return [t for t, s in zip(self.quorum_tasks, map(self._state, self.quorum_tasks)) if s[T_CURRENT] < s[T_ROUNDS]]

        @precondition(lambda self: self._live_quorum_tasks())
        @rule(task=st.integers(0, 20), backup=st.sampled_from([False, True, False]), data=st.data())
        def play_quorum_round(self, task: int, backup: bool, data: st.DataObject) -> None:
            """A round of a live task whose quorum is above one played to its votes (``play_round``), in the
            panel's window or (``backup``) the backup's."""
            live = self._live_quorum_tasks()
            t = live[task % len(live)]
            self.play_round(self.tasks.index(t), data, "backup" if backup else "result")

        @rule(task=st.integers(0, 20), data=st.data())
        def play_another_round(self, task: int, data: st.DataObject) -> None:
            """The same as ``play_round``: a second rule for it makes a whole round likelier in every run (the
            rules are drawn uniformly, and each run disables some of them)."""
            self.play_round(task, data)

        @rule(task=st.integers(0, 20), caller=st.integers(0, TRAINERS - 1))
        def settle(self, task: int, caller: int) -> None:
            t = self._task(task)
            before = self._state(t)
            events = self._send(self.trainers[caller], self.d.c.functions.settleWithoutResult(t))
            if events is not None:
                self._settled(t, before, events, set(), None)

        @rule(task=st.integers(0, 20), owner=st.integers(0, 1))
        def reclaim(self, task: int, owner: int) -> None:
            self._reclaim(self._task(task), self.owners[owner])

        def _reclaim(self, t: int, sender: str) -> bool:
            """``reclaimUnused`` from ``sender``; if it went through, check it against the model: the escrow and
            carryPool to the owner, the carried lost stakes to the stakeholders (the owner only if none)."""
            before = self._state(t)
            events = self._send(sender, self.d.c.functions.reclaimUnused(t))
            if events is not None:
                k, streak = before[T_EMPTY_K], before[T_EMPTY_STREAK]
                assert k and streak >= k, "reclaimed before k empty rounds in a row"
                assert (before[T_CARRY], before[T_CARRY_POOL]) == (self.carry[t], self.carry_pool[t])
                back, credits = self._task_end(t, self.carry[t], self.carry_pool[t])
                self.carry[t] = self.carry_pool[t] = 0
                after = self._state(t)
                (reclaimed,) = [a for n, a in events if n == "TaskReclaimed"]
                assert after[T_REFUNDED] - before[T_REFUNDED] == int(reclaimed["amount"]) == before[T_ESCROW] + back
                got = [(a["trainer"], int(a["amount"])) for n, a in events if n == "TrainerCredited"]
                assert got == credits, f"reclaim credited {got}, model {credits}"
                assert all(int(a["round"]) == int(before[T_CURRENT]) for n, a in events if n == "TrainerCredited")
                assert after[T_CREDITED] - before[T_CREDITED] == sum(x for _, x in credits)
                assert (after[T_ESCROW], after[T_CARRY], after[T_CARRY_POOL]) == (0, 0, 0)
                assert after[T_CURRENT] == after[T_ROUNDS]
                event("reclaimed")
            return events is not None

        @rule(task=st.integers(0, 20), trainers=st.sets(st.integers(0, TRAINERS - 1), min_size=1), to_other=st.booleans(),
              credit=st.booleans(), member=st.sampled_from([None, 0, 1, 2, 3]))
        def withdraw(self, task: int, trainers: set[int], to_other: bool, credit: bool, member: int | None) -> None:
            """Trainers withdraw what a task owes them (to themselves or another address) and, with ``credit``, the
            penalties the registry credited them; an aggregator withdraws its fees."""
            for trainer in sorted(trainers):
                who = self.trainers[trainer]
                to = self.outsider if to_other else who
                self._send(who, self.d.c.functions.withdrawTo(self._task(task), to))
                if credit:
                    owed = self.reg_credit.get(who, 0)
                    assert (self._send(who, self.d.registry.functions.withdrawCredit()) is not None) == bool(owed)
            if member is not None:
                who = self.members[member]
                owed = self.agg_earned.get((self._task(task), who), 0)
                assert (self._send(who, self.d.c.functions.withdraw(self._task(task))) is not None) == bool(owed)

        @rule(task=st.integers(0, 20), owner=st.integers(0, 1))
        def withdraw_refund(self, task: int, owner: int) -> None:
            self._send(self.owners[owner], self.d.c.functions.withdrawRefund(self._task(task)))

        @rule(seconds=st.one_of(st.integers(1, 40), st.integers(1, 400)))
        def advance_time(self, seconds: int) -> None:
            self.d.advance(seconds)

        @rule(task=st.integers(0, 20), which=st.sampled_from(["next", "commits", "reveals", "next", "result",
                                                              "availability", "final", "next"]))
        def advance_to_deadline(self, task: int, which: str) -> None:
            """To the next of the current round's scheduled times (opens, commits close, reveals close, the
            aggregator's window closes, the last result window closes = the availability window opens, the
            round ends = the next round opens), or to a given one."""
            s = self._state(self._task(task))
            r = min(int(s[T_CURRENT]), int(s[T_ROUNDS]) - 1)
            opens = self._opens(s, r)
            times = {"opens": opens, "commits": opens + s[T_SUBMIT], "reveals": opens + s[T_SUBMIT] + s[T_REVEAL_W],
                     "result": opens + s[T_SUBMIT] + s[T_REVEAL_W] + s[T_RESULT_W],
                     "availability": self._results_end(s, r), "final": self._opens(s, r + 1)}
            if which == "next":
                now = self.d.now()
                when = min((x for x in times.values() if x > now), default=now)
            else:
                when = times[which]
            self.d.advance_to(int(when))

        # --------------------------------------------------------- invariants
        @invariant()
        def money_is_conserved(self) -> None:
            held = 0
            states, seats, balance = self.d.read_all(self.tasks, self.trainers + self.members)
            for t, s in zip(self.tasks, states):
                earned = 0
                for a in self.members:  # the aggregators' fees not withdrawn (they never hold a stake)
                    seat = seats[(t, a)]
                    assert (seat[S_EARNED], seat[S_STAKE]) == (self.agg_earned.get((t, a), 0), 0), \
                        f"task {t} aggregator {a}: earned {seat[S_EARNED]}, model {self.agg_earned.get((t, a), 0)}"
                    earned += seat[S_EARNED]
                for a in self.trainers:
                    seat = seats[(t, a)]
                    earned += seat[S_EARNED]
                    if len(seat) > S_PAID:  # the in-process read has the seat's `paid` flag
                        assert bool(seat[S_PAID]) == ((t, a) in self.paid_seat), f"task {t} trainer {a}: paid flag off the model"
                    assert seat[S_STAKE] == self.stake_of.get((t, a), 0), f"task {t} trainer {a}: stake {seat[S_STAKE]}, model {self.stake_of.get((t, a), 0)}"
                assert s[T_STAKES_HELD] == sum(self.stake_of.get((t, a), 0) for a in self.trainers)
                assert (s[T_CARRY], s[T_CARRY_POOL]) == (self.carry[t], self.carry_pool[t]), "carry or carryPool off the model"
                assert s[T_FEES] == self.fees[t], "fees off the model"
                # reward + stakes deposited == credited + refunded + escrow + stakes held + carry + carryPool + stakes
                # returned + fees (a round's fee comes out of its pool)
                assert self.task_in[t] == (s[T_CREDITED] + s[T_REFUNDED] + s[T_ESCROW] + s[T_STAKES_HELD] + s[T_CARRY]
                                           + s[T_CARRY_POOL] + self.task_returned[t] + s[T_FEES])
                held += (s[T_ESCROW] + s[T_STAKES_HELD] + s[T_CARRY] + s[T_CARRY_POOL] + earned
                         + s[T_REFUNDED] - s[T_REFUNDS_WITHDRAWN])
                # lost stakes reach the owner only when no trainer holds a stake (checked at the moment in _task_end)
                assert s[T_REFUNDED] <= s[T_REWARD] + self.stakes_to_owner[t], "the owner got more than its reward back"
            assert balance == held
            assert balance + self.withdrawn == self.deposited

        @invariant()
        def registry_is_conserved(self) -> None:
            """The registry holds exactly the members' bonds, the penalties credited to trainers and those burned,
            all as the model says; both members stay in the draw (the model's draw assumes it)."""
            bonds, credits, balance = self.d.registry_state(self.trainers)
            assert bonds == [self.bonds[m] for m in self.members], f"bonds {bonds}, model {self.bonds}"
            assert credits == {a: self.reg_credit.get(a, 0) for a in self.trainers}, f"credits {credits}, model {self.reg_credit}"
            assert balance == sum(bonds) + sum(credits.values()) + self.burned
            assert all(b >= MIN_BOND for b in bonds), "a member fell out of the draw: raise MEMBER_BOND"

        @invariant()
        def no_honest_stake_lost(self) -> None:
            """Every stake ever lost was a committer's that did not reveal, or a revealed update a result marked;
            and every update proved available was revealed by its prover."""
            for t, r, who in self.lost_log:
                assert who in self.commits.get((t, r), {}), f"{who} lost a stake in round {r} of task {t} without committing"
                assert who not in self.reveals.get((t, r), set()) or (t, r, who) in self.marked_log, \
                    f"{who} revealed in round {r} of task {t}, was not marked, and lost its stake"
            for (t, r), proved in self.available.items():
                assert proved <= self.reveals.get((t, r), set())

        def teardown(self) -> None:
            for t in self.tasks:
                for _ in range(4):
                    s = self._state(t)
                    if s[T_CURRENT] >= s[T_ROUNDS]:
                        break
                    if self._reclaim(t, s[T_OWNER]):  # abandoned: the owner takes the rest back
                        continue
                    r = int(s[T_CURRENT])
                    if t % 2:  # odd tasks: every revealer proves its update (even ones: nobody does)
                        self.d.advance_to(self._results_end(s, r))
                        for who in sorted(self.reveals.get((t, r), set()) - self.available.get((t, r), set())):
                            secret = self.commits[(t, r)][who]
                            assert secret is not None
                            fn = self.d.c.functions.proveAvailable(t, r, secret[1], secret[2], self.blobs[(t, r, who)])
                            assert self._send(who, fn) is not None, "a revealer could not prove its update available"
                            self.available.setdefault((t, r), set()).add(who)
                    self.d.advance_to(self._opens(s, r + 1))
                    before = self._state(t)
                    events = self._send(self.outsider, self.d.c.functions.settleWithoutResult(t))
                    assert events is not None, "a round could not be settled after its windows"
                    self._settled(t, before, events, set(), None)
                    self.money_is_conserved()
                s = self._state(t)
                assert s[T_CURRENT] >= s[T_ROUNDS]
                if s[T_REFUNDED] > s[T_REFUNDS_WITHDRAWN]:
                    assert self._send(s[T_OWNER], self.d.c.functions.withdrawRefund(t)) is not None
                everyone = self.trainers + self.members  # the aggregators withdraw their fees
                _, seats, _ = self.d.read_all([t], everyone)
                for a in everyone:
                    if seats[(t, a)][S_EARNED] or seats[(t, a)][S_STAKE]:  # credits or a stake: owed now the task ended
                        assert self._send(a, self.d.c.functions.withdraw(t)) is not None
                _, seats, _ = self.d.read_all([t], everyone)
                assert all(seats[(t, a)][S_EARNED:S_STAKE + 1] == (0, 0) for a in everyone), \
                    "a trainer or an aggregator could not withdraw to zero"
                s = self._state(t)
                assert (s[T_ESCROW], s[T_STAKES_HELD], s[T_CARRY], s[T_CARRY_POOL], s[T_REFUNDED] - s[T_REFUNDS_WITHDRAWN]) \
                    == (0, 0, 0, 0, 0)
                self.money_is_conserved()
                self.no_honest_stake_lost()
            assert self.d.balance() == 0, "funds locked after every task ended and everyone withdrew"
            assert self.withdrawn == self.deposited
            for a in self.trainers:  # the penalties credited to trainers are withdrawable in full
                if self.reg_credit.get(a, 0):
                    assert self._send(a, self.d.registry.functions.withdrawCredit()) is not None
            self.registry_is_conserved()
            _, _, reg_balance = self.d.registry_state(self.trainers)
            assert reg_balance == sum(self.bonds.values()) + self.burned, "the registry holds more than the members' bonds"

    return EscrowMachine


def _tester_driver() -> EscrowDriver:
    from web3 import EthereumTesterProvider

    w3 = Web3(EthereumTesterProvider())
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    return EscrowDriver(w3, list(w3.eth.accounts), tester.take_snapshot, tester.revert_to_snapshot, tester.time_travel,
                        tester)


InProcessEscrowMachine = make_machine(_tester_driver)
InProcessEscrowMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_escrow_invariants_in_process = InProcessEscrowMachine.TestCase


@pytest.fixture(scope="module")
def anvil_driver_factory(anvil: Any) -> Callable[[], EscrowDriver]:
    from web3 import HTTPProvider

    def factory() -> EscrowDriver:
        w3 = Web3(HTTPProvider(anvil.rpc_url))

        def set_time(when: int) -> None:
            w3.provider.make_request("evm_setNextBlockTimestamp", [when])  # type: ignore[arg-type]
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        def snapshot() -> Any:
            return w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

        def revert(snap: Any) -> None:
            w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]

        return EscrowDriver(w3, list(w3.eth.accounts)[:10], snapshot, revert, set_time)

    return factory


def test_escrow_invariants_on_anvil(anvil_driver_factory: Callable[[], EscrowDriver]) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    machine = make_machine(anvil_driver_factory)
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=15, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
