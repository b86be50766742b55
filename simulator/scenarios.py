"""The attack table of issue 14, played against the real market: one function per row.

Each ``rowNN_*`` function plays its row of the table (and variants beyond its wording) on a real chain
-- the in-process EVM by default (:func:`simulator.environment.open_environment` with ``chain="tester"``),
Anvil where time must really pass -- with the real roles: :class:`trainer_node.node.TrainerNode` for
the honest trainers, :class:`aggregator.service.Aggregator` for the task's aggregator and its backup,
the contract through :class:`market.chain.contract.MarketContract`.  Attackers are accounts that call
the same contract functions with what they crafted (a copied blob, a CID of nothing, a lying count).
Every variant is also played honestly -- the *baseline*: the same trainers, data, task and schedule
without the attack (an attacker that is also a real trainer then acts honestly; one that is not, is
absent) -- and measured against it in integer wei:

``attacker_gain_wei``
    what the attackers end with minus what they put in (stakes included), minus the same for the
    baseline; the owner, when it is the attacker, ends with its refunds and put in the reward.
``honest_loss_wei``
    the sum over honest trainers of ``max(0, baseline net - attack net)``, net being withdrawn minus
    deposited (pay and stake together: an honest trainer that lost its stake has lost).
``attacker_stake_lost_wei``
    stakes the attackers lost (``StakeLost`` events).

Gas is left out (it only makes an attack dearer).  Every run ends with every round settled and
everybody withdrawn, and checks the money identity to the wei for each task -- reward + stakes in ==
withdrawn + refunds (withdrawn or not) + escrow + stakes held + lost stakes carried + credits not
withdrawn -- and for the contract's balance (the sum over its tasks of reward + stakes in - withdrawn -
refunds withdrawn), and that nothing is left locked.

Local training is deterministic, so :class:`ScenarioNode` remembers it across the runs of one process
(a row's baseline and attack runs train the same trainers on the same data from the same model);
nothing else is shared between runs: each opens its own chain and store.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

from aggregator.round import aggregate_round
from aggregator.service import Aggregator, PostedRound, lost_mask, prefilter, valuation_seed
from market.chain.compile import load_artifact
from market.chain.contract import MarketContract, TaskInfo, commit_hash, round_state
from market.chain.devchain import dev_accounts
from market.cid import cid_digest, compute_cid
from market.commitment import submission_commitment
from market.data import Dataset, Splits, dataset_commitment, digits_splits
from market.errors import BlobNotFoundError, ChainError, ContractRevert, MalformedUpdateError, StoreError
from market.models import held_out_score, model_with_state
from market.receipt import Receipt
from market.spec import RobustSpec, TaskSpec, ValuationSpec
from market.store import put_json
from market.task import TaskView, decode_model, fetch_global_model, load_task
from market.tensors import decode_state, encode_state, flatten
from owner.task import TaskRequest, create_task, publish_spec
from simulator.environment import Environment, open_environment
from trainer_node.node import TrainerNode

REWARD = 10**18  # wei escrowed by the owner of a scenario's task
STAKE = 10**17  # wei each trainer stakes (every scenario uses a stake)
#: accounts of a scenario's chain: 0 the owner, 1 the aggregator, 2 the backup aggregator, then the
#: honest trainers, then the attackers
OWNER, AGGREGATOR, BACKUP, FIRST_TRAINER = 0, 1, 2, 3


# ------------------------------------------------------------------ what a scenario reports
@dataclass
class Outcome:
    """One attack variant, measured against its baseline (see the module docstring)."""

    name: str  # "row01_front_run_copy/leaked_cid"
    row: int
    attack: str  # one line: what the attacker did
    attacker_gain_wei: int
    honest_loss_wei: int
    attacker_stake_lost_wei: int
    #: the defence's properties, each True when it held (money identity, nothing locked, and the row's own)
    checks: dict[str, bool] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)  # further measurements, for the report
    #: an issue that is known to leave this variant open (e.g. "#15"); empty when the defence must hold
    known_gap: str = ""

    @property
    def passed(self) -> bool:
        """The goal: the attacker gains nothing, honest trainers lose nothing, every check held."""
        return self.attacker_gain_wei <= 0 and self.honest_loss_wei == 0 and all(self.checks.values())

    @property
    def failed_checks(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "row": self.row, "attack": self.attack,
            "attacker_gain_wei": str(self.attacker_gain_wei), "honest_loss_wei": str(self.honest_loss_wei),
            "attacker_stake_lost_wei": str(self.attacker_stake_lost_wei), "passed": self.passed,
            "checks": self.checks, "known_gap": self.known_gap,
            "numbers": {k: (str(v) if k.endswith("_wei") and isinstance(v, int) else v) for k, v in self.numbers.items()},
        }


# ------------------------------------------------------------------ the nodes
_TRAINED: dict[tuple[Any, ...], bytes] = {}


class ScenarioNode(TrainerNode):
    """A :class:`TrainerNode` whose deterministic local training is remembered for the process, and that
    may claim a sample count of its choosing (``samples_claim``: the attack of row 7)."""

    samples_claim: str | None = None
    _data_key: str = ""

    def prepare_update(self, view: TaskView) -> tuple[bytes, int]:
        if not self._data_key:
            self._data_key = hashlib.sha256(self.data.x.numpy().tobytes() + self.data.y.numpy().tobytes()).hexdigest()
        info, spec = view.info, view.spec
        # what training reads: the model, data and training sections of the spec (an attack also the norm bound),
        # the model it starts from, and the seed (node seed, task, round, address)
        trains = spec.model_dump_json(include={"model", "data", "training", "validation"})
        key = (self.address, self.attack, self.seed, info.task_id, info.current_round,
               info.latest_model_cid or spec.initial_model_cid, trains, self._data_key)
        if self.collusion is None and key in _TRAINED:
            blob = _TRAINED[key]
        else:
            blob = super().prepare_update(view)[0]
            if self.collusion is None:
                _TRAINED[key] = blob
        if self.samples_claim is not None:
            blob = rebind(blob, samples=self.samples_claim)
        return blob, len(self.data)


def rebind(blob: bytes, **meta: str) -> bytes:
    """The same tensors with metadata entries replaced (a re-encoded copy gets a new CID)."""
    tensors, old = decode_state(blob)
    return encode_state(tensors, {**old, **meta})


# ------------------------------------------------------------------ a scenario's world
@dataclass(frozen=True)
class Setup:
    """What a run is made of; a baseline is the same Setup played without the attack."""

    honest: int = 4
    attackers: int = 0  # accounts after the honest ones (the first ``data_attackers`` of them have data)
    data_attackers: int = 0
    attack: str | None = None  # the data attackers' trainer_node attack (e.g. "sign_flip"); None: honest training
    rounds: int = 1
    reward: int = REWARD
    stake: int = STAKE
    rule: str = "ccdrop"
    f: int = 1
    valuation: str = "auto"
    backup: bool = False
    max_trainers: int = 64
    result_window: int = 3600
    empty_rounds_to_reclaim: int = 0


@dataclass(frozen=True)
class Where:
    """Where a run plays: the chain and the store (default: the in-process EVM and a throwaway local store)."""

    chain: str = "tester"
    rpc: str | None = None
    store: str = "local"
    ipfs_api: str | None = None


@dataclass
class World:
    env: Environment
    setup: Setup
    splits: Splits
    spec: TaskSpec
    task_id: int
    owner: LocalAccount
    first_aggregator: Aggregator  # registered in the market's registry (the only one without a backup)
    second_aggregator: Aggregator | None  # registered too when the setup has a backup
    honest: list[ScenarioNode]
    attackers: list[LocalAccount]
    attack_nodes: list[ScenarioNode]  # the attackers that train (the first ``data_attackers``)
    ledger: Ledger
    operator: LocalAccount  # the market's verifier admin (not the owner: the owner cannot allow its own verifier)
    posted: list[PostedRound] = field(default_factory=list)

    @property
    def contract(self) -> MarketContract:
        return self.env.contract

    @property
    def store(self) -> Any:
        return self.env.store

    def info(self) -> TaskInfo:
        return self.contract.task(self.task_id)

    def _drawn(self) -> tuple[Aggregator, Aggregator | None] | None:
        """The current round's drawn panel member and backup (None before the round is sealed)."""
        info = self.info()
        if info.finished or not info.seal_block:
            return None
        try:
            panel, backup = self.contract.panel(self.task_id, info)
        except ChainError:
            return None
        nodes: dict[str, Aggregator] = {str(a.account.address): a for a in (self.first_aggregator, self.second_aggregator) if a is not None}
        return nodes[panel[0]], (nodes[backup] if backup else None)

    @property
    def aggregator(self) -> Aggregator:
        """The current round's drawn panel member (the first registered aggregator until the round is sealed)."""
        drawn = self._drawn()
        return drawn[0] if drawn else self.first_aggregator

    @property
    def backup(self) -> Aggregator | None:
        """The current round's drawn backup (None when the task has none)."""
        if self.second_aggregator is None:
            return None
        drawn = self._drawn()
        if drawn is None:
            return self.second_aggregator
        return drawn[1]

    @property
    def accounts(self) -> dict[str, LocalAccount]:
        """Every trainer account of the run, by address."""
        return {a.address: a for a in [*(n.account for n in self.honest), *self.attackers]}

    def join(self, accounts: Sequence[LocalAccount]) -> None:
        """``accounts`` join the task with its stake (``join`` with the stake as its value)."""
        join = self.contract.c.functions.join(self.task_id)
        for acct in accounts:
            self.env.chain.transact(acct, join, value=self.setup.stake)

    def join_honest(self) -> None:
        self.join([n.account for n in self.honest])


#: the gas limit of every transaction on the in-process EVM (see :func:`_record`)
TESTER_GAS = 12_000_000


@dataclass
class Ledger:
    """Every transaction a run sent, as (sender, value, receipt): the roles and the attackers all send
    through :meth:`Chain.transact`, so the contract's events in these receipts are all of its events."""

    txs: list[tuple[str, int, Any]] = field(default_factory=list)


def _record(chain: Any) -> Ledger:
    """Keep every receipt of ``chain.transact`` (reading them back by log queries is quadratic on the in-process
    EVM, which looks each transaction up by scanning its blocks).  On the in-process EVM, transactions also go
    with a fixed gas limit instead of an estimate (a binary search of about ten executions each, most of a
    scenario's time otherwise): what a transaction does, whether it reverts and why, and the gas it uses are
    the same."""
    ledger = Ledger()
    transact = chain.transact
    fixed = TESTER_GAS if chain.kind == "tester" else None

    def record(account: LocalAccount, call: Any, value: int = 0, gas: int | None = None) -> Any:
        receipt = transact(account, call, value, fixed if gas is None else gas)
        ledger.txs.append((str(account.address), int(value), receipt))
        return receipt

    chain.transact = record
    return ledger


def mine(chain: Any, blocks: int) -> None:
    """Mine ``blocks`` empty blocks on a dev chain."""
    if blocks <= 0:
        return
    if chain.kind == "tester":
        chain.w3.provider.ethereum_tester.mine_blocks(blocks)
    else:
        chain.w3.provider.make_request("anvil_mine", [hex(blocks)])


_SPLITS: dict[int, Splits] = {}


def _splits(n: int) -> Splits:
    n = max(n, 1)
    if n not in _SPLITS:
        _SPLITS[n] = digits_splits(n, "iid", 0)
    return _SPLITS[n]


def spec_of(setup: Setup) -> TaskSpec:
    return TaskSpec(robust=RobustSpec(rule=setup.rule, f=setup.f), valuation=ValuationSpec(rule=setup.valuation, seed=0))


@contextlib.contextmanager
def world(setup: Setup, where: Where = Where()) -> Iterator[World]:
    """A fresh chain and store with the contract deployed and the setup's task created (nobody joined yet)."""
    n_accounts = FIRST_TRAINER + setup.honest + setup.attackers + 1  # the last: the market's operator
    folder = tempfile.mkdtemp(prefix="market-scenario-") if where.store == "local" else None
    try:
        with open_environment(chain=where.chain, rpc=where.rpc, n_accounts=n_accounts, store=where.store,
                              store_dir=folder, ipfs_api=where.ipfs_api,
                              verifier_admin=dev_accounts(n_accounts)[-1].address,
                              aggregators=(AGGREGATOR, BACKUP) if setup.backup else (AGGREGATOR,)) as env:
            ledger = _record(env.chain)
            splits = _splits(setup.honest + setup.data_attackers)
            owner, agg, backup = env.accounts[OWNER], env.accounts[AGGREGATOR], env.accounts[BACKUP]
            trainers = env.accounts[FIRST_TRAINER:-1]
            spec = spec_of(setup)
            common = dict(validation_commitment=dataset_commitment(splits.validation),
                          rounds=setup.rounds, reward_wei=setup.reward, max_trainers=setup.max_trainers,
                          stake_wei=setup.stake, result_window=setup.result_window,
                          empty_rounds_to_reclaim=setup.empty_rounds_to_reclaim)
            created = create_task(env.contract, env.store, owner, TaskRequest(
                spec=spec, backup=setup.backup, **common))  # type: ignore[arg-type]
            task_id, spec = created.task_id, created.spec
            honest = [ScenarioNode(env.contract, env.store, trainers[i], splits.trainers[i]) for i in range(setup.honest)]
            attackers = list(trainers[setup.honest:setup.honest + setup.attackers])
            attack_nodes = [ScenarioNode(env.contract, env.store, attackers[j], splits.trainers[setup.honest + j],
                                         attack=setup.attack) for j in range(setup.data_attackers)]
            yield World(env, setup, splits, spec, task_id, owner,
                        Aggregator(env.contract, env.store, agg, splits.validation),
                        Aggregator(env.contract, env.store, backup, splits.validation) if setup.backup else None,
                        honest, attackers, attack_nodes, ledger, env.accounts[-1])
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ the phases of a round
def open_round(w: World) -> int:
    """Move the clock to the current round's scheduled opening; the round."""
    info = w.info()
    opens = info.opens_at(info.current_round)
    chain = w.env.chain
    chain.advance_to(opens)
    if int(chain.w3.eth.get_block("latest")["timestamp"]) < opens:
        # the in-process EVM's clock is its pending block, but calls (a trainer's pre-flight) run on the latest one
        mine(chain, 1)
    return info.current_round


def commit(w: World, nodes: Sequence[TrainerNode] | None = None) -> dict[str, str]:
    """Each node trains, uploads and commits; address -> CID."""
    out: dict[str, str] = {}
    for node in w.honest if nodes is None else nodes:
        res = node.run_round(w.task_id)
        assert res.cid is not None, res.skipped
        out[node.address] = res.cid
    return out


def close_commits(w: World) -> None:
    info = w.info()
    if info.committed_count < info.max_trainers:
        w.env.chain.advance_to(info.opens_at(info.current_round) + info.submit_window)


def reveal(w: World, nodes: Sequence[TrainerNode] | None = None) -> None:
    for node in w.honest if nodes is None else nodes:
        node.reveal_round(w.task_id)


def close_reveals(w: World) -> None:
    info = w.info()
    if not info.seal_block:
        r = info.current_round
        w.env.chain.advance_to(info.opens_at(r) + info.submit_window + info.reveal_window)


def post(w: World, by: Aggregator | None = None) -> PostedRound:
    info = w.info()
    if by is None and info.submitted_count and not info.seal_block:  # seal first: the draw needs the round's seed
        w.contract.seal(w.owner, w.task_id)
    posted = (by or w.aggregator).run_round(w.task_id)
    w.posted.append(posted)
    return posted


def to_backup_window(w: World) -> None:
    _opens, _submit, _reveal, result, _final = w.contract.schedule(w.task_id)
    w.env.chain.advance_to(result)


def settle_unposted(w: World, provers: Sequence[TrainerNode] | None = None) -> dict[str, Any]:
    """Past every result window, the ``provers`` (the honest nodes by default) that revealed prove their updates
    available; at the round's end anyone settles it (an equal split among those, a carry-over when none
    proved, or a refund if nothing was revealed)."""
    _opens, _submit, reveal_dl, _result, final = w.contract.schedule(w.task_id)
    info = w.info()
    if info.submitted_count:
        w.env.chain.advance_to(final)
        for node in w.honest if provers is None else provers:
            node.prove_available(w.task_id, info.current_round)
        w.env.chain.advance_to(info.opens_at(info.current_round + 1))
    else:
        w.env.chain.advance_to(reveal_dl)
    return w.contract.settlement(w.contract.settle_without_result(w.owner, w.task_id))


def honest_round(w: World, nodes: Sequence[TrainerNode] | None = None, by: Aggregator | None = None) -> PostedRound:
    open_round(w)
    commit(w, nodes)
    close_commits(w)
    reveal(w, nodes)
    close_reveals(w)
    return post(w, by)


def finish(w: World) -> None:
    """Everyone takes out what the task owes them (trainers: credits and stakes; the owner: refunds)."""
    assert w.info().finished, "a scenario must settle every round of its task"
    for address, acct in w.accounts.items():
        if w.contract.owed(w.task_id, address):
            w.contract.withdraw(acct, w.task_id)
    if w.info().refundable:
        w.contract.withdraw_refund(w.owner, w.task_id)


# ------------------------------------------------------------------ what an attacker crafts
@dataclass(frozen=True)
class Sealed:
    """An attacker's submission: what it commits to and later reveals, in round ``round``."""

    cid: str
    commitment: bytes
    salt: bytes
    round: int


def sealed(w: World, account: LocalAccount, blob: bytes | None = None, *, cid: str | None = None,
           commitment: bytes | None = None, upload: bool = True, round_: int | None = None) -> Sealed:
    """A submission of ``blob`` (uploaded) or of a bare ``cid``, with ``account``'s own valid commitment unless
    ``commitment`` is given (bytes that are not an update get a junk one); the current round unless ``round_``."""
    r = w.info().current_round if round_ is None else round_
    if blob is not None:
        cid = w.store.put(blob) if upload else compute_cid(blob)
        if commitment is None:
            try:
                commitment = submission_commitment(w.spec, w.task_id, r, account.address, cid, blob)
            except MalformedUpdateError:
                commitment = keccak(b"junk commitment" + blob[:64])
    assert cid is not None
    if commitment is None:
        commitment = keccak(b"junk commitment" + cid.encode())
    salt = keccak(b"scenario salt" + bytes.fromhex(account.address[2:]) + r.to_bytes(32, "big") + cid_digest(cid))
    return Sealed(cid, commitment, salt, r)


def nothing(tag: str) -> str:
    """The CID of bytes nobody ever stored."""
    return compute_cid(f"a CID of nothing: {tag}".encode())


def commit_sealed(w: World, account: LocalAccount, s: Sealed) -> None:
    w.contract.commit(account, w.task_id, s.round, commit_hash(s.cid, s.commitment, s.salt, account.address, w.task_id, s.round))


def reveal_sealed(w: World, account: LocalAccount, s: Sealed) -> None:
    w.contract.reveal(account, w.task_id, s.round, s.cid, s.commitment, s.salt)


def play_sealed(w: World, subs: Sequence[tuple[LocalAccount, Sealed]], honest: bool = True) -> None:
    """The rest of a round's commit and reveal phases: the attackers' ``subs`` are committed (after the honest
    nodes' commitments, if ``honest``), commits close, the attackers reveal first, then the honest nodes, and
    the reveals close."""
    for a, s in subs:
        commit_sealed(w, a, s)
    close_commits(w)
    for a, s in subs:
        reveal_sealed(w, a, s)
    if honest:
        reveal(w)
    close_reveals(w)


def refused(call: Callable[[], Any]) -> str:
    """The contract error name ``call`` reverted with ("" if it went through)."""
    try:
        call()
    except ContractRevert as exc:
        return exc.name or str(exc)
    return ""


# ------------------------------------------------------------------ reading the money back
@dataclass
class Books:
    """One finished run's money per party, read back from the chain."""

    deposited: dict[str, int]  # stakes paid in, per trainer (the join transactions' values)
    withdrawn: dict[str, int]
    credited: dict[str, int]
    lost: dict[str, int]
    reward: int
    refunds_withdrawn: int
    money_ok: bool
    locked: int  # the contract's balance once everybody withdrew
    money: dict[str, int]
    receipts: list[Receipt] = field(default_factory=list)
    accuracy: float | None = None  # test accuracy of the task's last model

    def net(self, address: str) -> int:
        return self.withdrawn.get(address, 0) - self.deposited.get(address, 0)


_EVENTS = ("TrainerJoined", "Withdrawn", "TrainerCredited", "StakeLost", "RefundWithdrawn")


def events(contract: MarketContract, ledger: Ledger) -> list[tuple[str, dict[str, Any], int]]:
    """The contract's money events in the run's receipts, in order: (event, arguments, value of its transaction)."""
    out: list[tuple[str, dict[str, Any], int]] = []
    for _sender, value, receipt in ledger.txs:
        for name in _EVENTS:
            for ev in getattr(contract.c.events, name)().process_receipt(receipt, errors=DISCARD):
                if ev["address"] == contract.address:
                    out.append((name, dict(ev["args"]), value))
    return out


def _per_trainer(evs: list[tuple[str, dict[str, Any], int]], name: str, task_id: int, who: str = "trainer",
                 amount: str = "amount") -> dict[str, int]:
    out: dict[str, int] = {}
    for n, args, value in evs:
        if n == name and int(args["taskId"]) == task_id:
            out[args[who]] = out.get(args[who], 0) + (value if amount == "value" else int(args[amount]))
    return out


def money_identity(contract: MarketContract, ledger: Ledger) -> tuple[bool, dict[str, int]]:
    """The identity for every task of the contract and for its balance; (holds, its terms summed).  Stakes in
    are the values of the join transactions; the rest is read from the contract's state and events."""
    evs = events(contract, ledger)
    ok = True
    totals = {"reward": 0, "stakes_in": 0, "withdrawn": 0, "refunds_withdrawn": 0, "refunds_owed": 0, "escrow": 0,
              "stakes_held": 0, "carry": 0, "carry_pool": 0, "credits_owed": 0}
    expected_balance = 0
    for task_id in range(1, contract.task_count() + 1):
        info = contract.task(task_id)
        joined = _per_trainer(evs, "TrainerJoined", task_id, amount="value")
        stakes_in = sum(joined.values())
        withdrawn = sum(_per_trainer(evs, "Withdrawn", task_id, who="account").values())
        owed = sum(contract.seat(task_id, t).earned for t in joined)
        lhs = info.reward + stakes_in
        rhs = withdrawn + info.refunds_withdrawn + info.refundable + info.escrow + info.stakes_held + info.carry + info.carry_pool + owed
        ok = ok and lhs == rhs
        expected_balance += info.reward + stakes_in - withdrawn - info.refunds_withdrawn
        for k, v in (("reward", info.reward), ("stakes_in", stakes_in), ("withdrawn", withdrawn),
                     ("refunds_withdrawn", info.refunds_withdrawn), ("refunds_owed", info.refundable),
                     ("escrow", info.escrow), ("stakes_held", info.stakes_held), ("carry", info.carry), ("carry_pool", info.carry_pool),
                     ("credits_owed", owed)):
            totals[k] += v
    balance = contract.chain.balance(contract.address)
    totals["balance"] = balance
    return ok and balance == expected_balance, totals


def books(w: World) -> Books:
    """Check the money identity with every round settled (credits and stakes still in the contract), finish the
    run (everyone withdraws), check it again and read the run's money back."""
    settled_ok, settled = money_identity(w.contract, w.ledger)
    finish(w)
    c, t = w.contract, w.task_id
    info = w.info()
    evs = events(c, w.ledger)
    ok, money = money_identity(c, w.ledger)
    ok = ok and settled_ok
    money = {**money, **{f"settled_{k}": v for k, v in settled.items()}}
    acc = None
    if info.latest_model_cid:
        state = decode_model(w.spec, w.store.get(info.latest_model_cid), "model")
        acc = held_out_score(w.spec.data, model_with_state(w.spec.model, w.spec.data, state), w.splits.test.x, w.splits.test.y)
    return Books(_per_trainer(evs, "TrainerJoined", t, amount="value"), _per_trainer(evs, "Withdrawn", t, who="account"),
                 _per_trainer(evs, "TrainerCredited", t), _per_trainer(evs, "StakeLost", t), info.reward,
                 info.refunds_withdrawn, ok, c.chain.balance(c.address), money, [p.receipt for p in w.posted], acc)


def measure(name: str, row: int, attack: str, run: Books, base: Books, *, honest: Sequence[str],
            attackers: Sequence[str], owner_attacks: bool = False, checks: dict[str, bool] | None = None,
            numbers: dict[str, Any] | None = None, known_gap: str = "") -> Outcome:
    gain = sum(run.net(a) - base.net(a) for a in attackers)
    if owner_attacks:
        gain += (run.refunds_withdrawn - run.reward) - (base.refunds_withdrawn - base.reward)
    loss = sum(max(0, base.net(h) - run.net(h)) for h in honest)
    lost = sum(run.lost.get(a, 0) for a in attackers)
    all_checks = {"money identity to the wei": run.money_ok and base.money_ok,
                  "nothing locked": run.locked == 0 and base.locked == 0, **(checks or {})}
    nums = {"honest_trainers": len(honest),
            "honest_net_wei": sum(run.net(h) for h in honest), "honest_net_baseline_wei": sum(base.net(h) for h in honest),
            "owner_refunds_wei": run.refunds_withdrawn, "owner_refunds_baseline_wei": base.refunds_withdrawn,
            **(numbers or {})}
    return Outcome(name, row, attack, gain, loss, lost, all_checks, nums, known_gap)


_BASELINES: dict[tuple[Any, ...], Books] = {}


def baseline(setup: Setup, where: Where = Where(), *, players: str = "honest", empty_first: bool = False,
             silent_first: str = "", verifier: Callable[[World], str] | None = None, key: str = "") -> Books:
    """A run of ``setup`` without the attack: ``players`` "honest" (the honest trainers only; the attackers
    are absent), "all" (the data attackers too, training honestly) or "attacking" (the data attackers too,
    with their attack); every round is played and posted by the aggregator; ``empty_first``: nobody commits
    in round 0 (its pool is refunded); ``silent_first``: the aggregator is silent in round 0, which the fallback
    settles after every trainer ("proved") or none ("unproved") proved its update available; ``verifier``: the
    task names the verifier it deploys.  Cached for
    the process (``key`` tells apart runs the arguments do not): a run is deterministic (exact valuations)."""
    if players == "honest":  # attackers without data change nothing but the number of funded accounts
        setup = replace(setup, attackers=setup.data_attackers)
    k = (setup, where, players, empty_first, silent_first, key)
    if k in _BASELINES:
        return _BASELINES[k]
    with (world(setup, where) if verifier is None else _verifier_world(setup, where, verifier)) as w:
        if players == "all":
            for n in w.attack_nodes:
                n.attack = None
        nodes = [*w.honest, *(w.attack_nodes if players != "honest" else [])]
        w.join([n.account for n in nodes])
        for r in range(setup.rounds):
            if r == 0 and empty_first:
                settle_unposted(w)
                continue
            if r == 0 and silent_first:
                open_round(w)
                commit(w, nodes)
                close_commits(w)
                reveal(w, nodes)
                close_reveals(w)
                settle_unposted(w, provers=nodes if silent_first == "proved" else [])
                continue
            honest_round(w, nodes)
        if verifier is not None:
            _first_task_refund(w)
        _BASELINES[k] = books(w)
    return _BASELINES[k]


@contextlib.contextmanager
def _verifier_world(setup: Setup, where: Where, verifier: Callable[[World], str]) -> Iterator[World]:
    """A world whose task names the verifier ``verifier`` deploys on a first, throwaway task's chain."""
    with world(setup, where) as first:
        address = verifier(first)
        with _same_chain_world(first, setup, address) as w:
            yield w


@contextlib.contextmanager
def _same_chain_world(first: World, setup: Setup, verifier: str) -> Iterator[World]:
    """A second task on ``first``'s chain and store, naming ``verifier``; its own honest nodes and aggregator."""
    env = first.env
    spec, spec_cid = publish_spec(env.store, spec_of(setup))
    assert spec.initial_model_cid
    task_id, _ = env.contract.create_task(
        first.owner, spec_cid=spec_cid, initial_model_cid=spec.initial_model_cid,
        validation_commitment=dataset_commitment(first.splits.validation), rounds=setup.rounds, reward_wei=setup.reward, max_trainers=setup.max_trainers, stake_wei=setup.stake,
        result_window=setup.result_window, verifier=verifier,
        backup=setup.backup)
    # the first task is never joined: finish it so that the books of the chain close
    yield replace(first, spec=spec, task_id=task_id, posted=[],
                  honest=[ScenarioNode(env.contract, env.store, n.account, n.data) for n in first.honest])


def _first_task_refund(w: World) -> None:
    """Settle the unused first task of a :func:`_verifier_world` (refunds its pools) so nothing stays locked."""
    task = 1
    info = w.contract.task(task)
    while not info.finished:
        _o, _s, reveal_dl, _r, _f = w.contract.schedule(task)
        w.env.chain.advance_to(reveal_dl)
        w.contract.settle_without_result(w.owner, task)
        info = w.contract.task(task)
    if info.refundable:
        w.contract.withdraw_refund(w.owner, task)


def _addresses(nodes: Sequence[TrainerNode]) -> list[str]:
    return [n.address for n in nodes]


def _receipt(w: World) -> Receipt:
    return w.posted[-1].receipt


# ================================================================== row 1
def public_blob(w: World, cid: str) -> bytes | None:
    """What a watcher gets for ``cid`` from the public store right now (None: nothing is there)."""
    try:
        return bytes(w.store.get(cid))
    except BlobNotFoundError:
        return None


def leaked_blob(w: World, node: TrainerNode) -> bytes:
    """``node``'s committed, not yet revealed update, as if it leaked out of band (from the node's own machine,
    or published elsewhere by its trainer): nothing the protocol itself shows before submissions close."""
    pending = node._pending[(w.task_id, w.info().current_round)]
    blob = getattr(pending, "blob", b"")
    return bytes(blob) if blob else bytes(w.store.get(pending.cid))


def row01_front_run_copy(where: Where = Where()) -> list[Outcome]:
    """A watcher submits a victim's update as its own.  Under commit-reveal a copy must be committed before
    submissions close, i.e. before the victim reveals: the watcher looks for the update in the public store
    during the commit window, or is handed it out of band (leaked from the victim's side)."""
    setup = Setup(honest=4, attackers=1)
    base = baseline(setup, where)
    outs: list[Outcome] = []
    Act = Callable[[World, ScenarioNode, str], dict[str, Any]]

    def play(variant: str, attack: str, act: Act) -> None:
        with world(setup, where) as w:
            w.join_honest()
            w.join(w.attackers)
            open_round(w)
            cids = commit(w)
            victim = w.honest[0]
            extra = act(w, victim, cids[victim.address])
            rec = _receipt(w)
            run = books(w)
        copier = w.attackers[0].address
        checks = {"victim not rejected": victim.address not in rec.rejected,
                  "victim not an outlier": victim.address not in rec.outliers, **extra.pop("checks", {})}
        outs.append(measure(f"row01_front_run_copy/{variant}", 1, attack, run, base,
                            honest=_addresses(w.honest), attackers=[copier], checks=checks,
                            numbers={"victim_paid_wei": run.credited.get(victim.address, 0),
                                     "victim_paid_baseline_wei": base.credited.get(victim.address, 0),
                                     "copier_paid_wei": run.credited.get(copier, 0),
                                     "copier_rejected": rec.rejected.get(copier, ""), **extra}))

    def finish_round(w: World, copier: LocalAccount, s: Sealed | None, first: bool = True) -> Receipt:
        if s is not None:
            commit_sealed(w, copier, s)
        close_commits(w)
        if s is not None and first:
            reveal_sealed(w, copier, s)
        reveal(w)
        if s is not None and not first:
            reveal_sealed(w, copier, s)
        close_reveals(w)
        return post(w).receipt

    def leaked_cid(w: World, victim: ScenarioNode, cid: str) -> dict[str, Any]:
        copier = w.attackers[0]
        s = sealed(w, copier, leaked_blob(w, victim))  # the victim's CID, with the copier's own valid commitment
        rec = finish_round(w, copier, s)  # revealed before the victim's reveal
        return {"checks": {"copy rejected and its stake lost": copier.address in rec.rejected and copier.address in rec.lost}}

    def after_reveal(w: World, victim: ScenarioNode, cid: str) -> dict[str, Any]:
        copier = w.attackers[0]
        close_commits(w)
        reveal(w)  # the victim's reveal makes its CID and blob public ...
        blob = public_blob(w, cid)
        s = sealed(w, copier, blob) if blob is not None else sealed(w, copier, cid=cid)  # ... too late
        late_commit = refused(lambda: commit_sealed(w, copier, s))
        late_reveal = refused(lambda: reveal_sealed(w, copier, s))
        close_reveals(w)
        post(w)
        return {"late_commit": late_commit, "late_reveal": late_reveal,
                "checks": {"commit after the reveal refused": late_commit == "MarketSubmissionClosed",
                           "reveal without a commitment refused": late_reveal != ""}}

    def renamed(source: str, first: bool) -> Act:
        def act(w: World, victim: ScenarioNode, cid: str) -> dict[str, Any]:
            copier = w.attackers[0]
            blob = public_blob(w, cid) if source == "public" else leaked_blob(w, victim)
            s = None
            if blob is not None:  # the same tensors, metadata naming the copier: a new CID
                s = sealed(w, copier, rebind(blob, trainer=copier.address.lower()))
            rec = finish_round(w, copier, s, first)
            return {"copy_made": s is not None,
                    "checks": {"renamed copy refused or never made": s is None or copier.address in rec.rejected,
                               **({"the update is not public before submissions close": blob is None}
                                  if source == "public" else {})}}
        return act

    play("leaked_cid", "copier commits and reveals (first) the victim's CID and blob, leaked out of band, with its own "
         "valid commitment", leaked_cid)
    play("after_reveal", "copier sees the victim's CID in its reveal and tries to commit and reveal it", after_reveal)
    play("renamed_copy_from_public_store", "copier watches the public store for the victim's committed CID during the "
         "commit window, to re-encode it under its own name (new CID) and reveal it first", renamed("public", True))
    play("renamed_copy_of_leaked_blob_revealed_first", "the victim's blob leaks from its machine after its commit (nodes "
         "upload only at reveal); the copier re-encodes it with metadata naming itself (new CID), commits after the "
         "victim, and reveals before it: copies are decided by commit order", renamed("leak", True))
    play("renamed_copy_of_leaked_blob_revealed_after", "the same renamed copy of a leaked blob, revealed after the victim",
         renamed("leak", False))
    return outs


# ================================================================== row 2
def row02_junk_commitment_grief(where: Where = Where()) -> list[Outcome]:
    """A griefer claims a victim's CID with a commitment that does not match, to get the victim refused."""
    setup = Setup(honest=4, attackers=1)
    base = baseline(setup, where)
    outs: list[Outcome] = []
    variants: list[tuple[str, str]] = [
        ("junk_commitment", "griefer reveals the victim's CID (leaked out of band) with a junk commitment, before the victim"),
        ("victims_commitment", "griefer reveals the victim's leaked CID with the victim's own sketch commitment, first"),
        ("bad_reveal", "griefer commits to junk, then reveals the victim's CID (not what it committed)"),
    ]
    for variant, attack in variants:
        with world(setup, where) as w:
            w.join_honest()
            w.join(w.attackers)
            open_round(w)
            cids = commit(w)
            victim, griefer = w.honest[0], w.attackers[0]
            cid = cids[victim.address]
            blob = leaked_blob(w, victim)  # the strongest griefer: the victim's CID and blob leaked to it
            r = w.info().current_round
            if variant == "junk_commitment":
                s = sealed(w, griefer, cid=cid, commitment=keccak(b"junk"))
            elif variant == "victims_commitment":
                s = sealed(w, griefer, cid=cid, commitment=submission_commitment(w.spec, w.task_id, r, victim.address, cid, blob))
            else:
                s = sealed(w, griefer, cid=nothing("committed junk"))
            commit_sealed(w, griefer, s)
            close_commits(w)
            bad = ""
            if variant == "bad_reveal":
                bad = refused(lambda: reveal_sealed(w, griefer, replace(s, cid=cid)))
            else:
                reveal_sealed(w, griefer, s)
            reveal(w)
            close_reveals(w)
            rec = post(w).receipt
            run = books(w)
        g = griefer.address
        checks = {"victim not rejected": victim.address not in rec.rejected,
                  "griefer lost its stake": run.lost.get(g, 0) == setup.stake}
        if variant == "bad_reveal":
            checks["reveal of another CID refused"] = bad == "MarketBadReveal"
        else:
            checks["griefer rejected"] = g in rec.rejected
        outs.append(measure(f"row02_junk_commitment_grief/{variant}", 2, attack, run, base, honest=_addresses(w.honest),
                            attackers=[g], checks=checks,
                            numbers={"griefer_rejected": rec.rejected.get(g, ""), "bad_reveal": bad,
                                     "victim_paid_wei": run.credited.get(victim.address, 0),
                                     "victim_paid_baseline_wei": base.credited.get(victim.address, 0)}))
    return outs


# ================================================================== row 3
def row03_grief_disables_defence(where: Where = Where()) -> list[Outcome]:
    """Knock two honest updates out so that the robust rule runs without its defence (multikrum, f=1: valid
    n 6 -> 4 <= 2f+2 would mean plain FedAvg), and let a sign-flipper poison the model."""
    setup = Setup(honest=5, attackers=3, data_attackers=1, attack="sign_flip", rule="multikrum", f=1)
    # the honest run the griefing is measured against: the honest trainers and the sign-flipper, no griefers
    base = baseline(setup, where, players="attacking")
    alone = baseline(setup, where)  # the honest trainers alone (their model's accuracy)
    outs: list[Outcome] = []
    variants = [
        ("copied_cids", "two griefers reveal two honest trainers' CIDs (leaked out of band; junk commitments) "
                        "before them; a sign-flipper submits"),
        ("renamed_copies_from_public_store", "two copiers watch the public store for two honest trainers' committed "
                                             "updates, to re-encode them under their own names and reveal them first; a "
                                             "sign-flipper submits"),
    ]
    for variant, attack in variants:
        with world(setup, where) as w:
            w.join_honest()
            w.join(w.attackers)
            flipper, griefers = w.attack_nodes[0], w.attackers[1:]
            open_round(w)
            cids = commit(w)
            commit(w, [flipper])
            sealed_by: list[tuple[LocalAccount, Sealed]] = []
            for griefer, victim in zip(griefers, w.honest[:2]):
                cid = cids[victim.address]
                if variant == "copied_cids":
                    s: Sealed | None = sealed(w, griefer, cid=cid, commitment=keccak(b"junk" + cid.encode()))
                else:  # a watcher of the public store: it copies what it finds there before the deadline
                    found = public_blob(w, cid)
                    s = None if found is None else sealed(w, griefer, rebind(found, trainer=griefer.address.lower()))
                if s is not None:
                    commit_sealed(w, griefer, s)
                    sealed_by.append((griefer, s))
            close_commits(w)
            for griefer, s in sealed_by:
                reveal_sealed(w, griefer, s)
            reveal(w)
            reveal(w, [flipper])
            close_reveals(w)
            rec = post(w).receipt
            run = books(w)
        robust = rec.details.robust
        valid_n = len(rec.details.addresses)
        checks = {"two honest updates still valid": not any(n.address in rec.rejected for n in w.honest[:2]),
                  "defence on (f_effective >= 1)": int(robust.get("f_effective", 0)) >= 1,
                  "sign-flipper not in the model": flipper.address in rec.outliers or flipper.address in rec.rejected,
                  "accuracy within 0.02 of the honest trainers' alone": run.accuracy is not None
                  and alone.accuracy is not None and run.accuracy >= alone.accuracy - 0.02}
        outs.append(measure(f"row03_grief_disables_defence/{variant}", 3, attack, run, base, honest=_addresses(w.honest),
                            attackers=[a.address for a in w.attackers], checks=checks,
                            numbers={"valid_n": valid_n, "f_effective": robust.get("f_effective"),
                                     "rule_applied": robust.get("applied"), "accuracy": run.accuracy,
                                     "accuracy_honest_only": alone.accuracy, "accuracy_honest_and_flipper": base.accuracy,
                                     "rejected": dict(rec.rejected), "outliers": list(rec.outliers)}))
    return outs


# ================================================================== row 4
def row04_reencoded_copy(where: Where = Where()) -> list[Outcome]:
    """The same tensors under a new CID (one metadata key changed): a copy of an earlier round's published
    update, of an earlier round's global update, and of a colluder's update in the same round."""
    outs: list[Outcome] = []
    two = Setup(honest=4, attackers=1, rounds=2)
    base2 = baseline(two, where)
    for variant, attack in (("earlier_round_update", "copier re-encodes a victim's round-0 update as its round-1 update "
                                                     "and reveals it first"),
                            ("earlier_global_update", "copier submits round 0's global update (new model - old) as its own")):
        with world(two, where) as w:
            w.join_honest()
            honest_round(w)
            first = _receipt(w)
            w.join(w.attackers)
            copier = w.attackers[0]
            victim = w.honest[0]
            r = open_round(w)
            commit(w)
            if variant == "earlier_round_update":
                old = next(s.cid for s in first.submissions if s.trainer == victim.address)
                copy = rebind(w.store.get(old), trainer=copier.address.lower(), round=str(r))
            else:
                new_state, _ = decode_state(w.store.get(first.model_cid))
                old_state, _ = decode_state(w.store.get(first.input_model_cid))
                delta = {k: new_state[k] - old_state[k] for k in new_state}
                copy = encode_state(delta, {"kind": "delta", "samples": "300", "trainer": copier.address.lower(),
                                            "task": str(w.task_id), "round": str(r)})
            s = sealed(w, copier, copy)
            commit_sealed(w, copier, s)
            close_commits(w)
            reveal_sealed(w, copier, s)
            reveal(w)
            close_reveals(w)
            rec = post(w).receipt
            base_outliers = set(base2.receipts[-1].outliers) if base2.receipts else set()
            run = books(w)
        c = copier.address
        checks = {"copy refused": c in rec.rejected and "copy" in rec.rejected[c],
                  "no honest trainer refused": not any(n.address in rec.rejected for n in w.honest),
                  "no honest trainer made an outlier": set(rec.outliers) <= base_outliers}
        outs.append(measure(f"row04_reencoded_copy/{variant}", 4, attack, run, base2, honest=_addresses(w.honest),
                            attackers=[c], checks=checks,
                            numbers={"copier_rejected": rec.rejected.get(c, ""), "outliers": list(rec.outliers)}))

    one = Setup(honest=4, attackers=1)
    base1 = baseline(one, where)
    with world(one, where) as w:
        w.join_honest()
        w.join(w.attackers)
        colluder, copier = w.honest[0], w.attackers[0]
        open_round(w)
        commit(w)
        handed = leaked_blob(w, colluder)  # the colluder hands its update over before revealing it
        s = sealed(w, copier, rebind(handed, trainer=copier.address.lower()))
        commit_sealed(w, copier, s)
        close_commits(w)
        reveal_sealed(w, copier, s)
        reveal(w)
        close_reveals(w)
        rec = post(w).receipt
        run = books(w)
    pair = [colluder.address, copier.address]
    others = _addresses(w.honest[1:])
    outs.append(measure(
        "row04_reencoded_copy/colluder_same_round", 4,
        "a colluder hands its blob to a partner, who re-encodes it under its own name and reveals it first", run, base1,
        honest=others, attackers=pair,
        checks={"only one of the pair is valid": sum(a in rec.rejected for a in pair) == 1,
                "no honest trainer refused or made an outlier": not any(a in rec.rejected or a in rec.outliers for a in others)},
        numbers={"pair_paid_wei": sum(run.credited.get(a, 0) for a in pair),
                 "colluder_paid_baseline_wei": base1.credited.get(colluder.address, 0),
                 "rejected": dict(rec.rejected), "outliers": list(rec.outliers)}))
    return outs


# ================================================================== row 5
def row05_sybil_fallback(where: Where = Where(), sybils: int = 30) -> list[Outcome]:
    """Free sybils reveal CIDs of nothing and hope for the fallback's equal split."""
    outs: list[Outcome] = []

    def sybil_round(w: World, honest: bool) -> None:
        open_round(w)
        if honest:
            commit(w)
        r = w.info().current_round
        play_sealed(w, [(a, sealed(w, a, cid=nothing(f"{a.address} {r}"), round_=r)) for a in w.attackers], honest)

    # (a) the aggregator stays silent; the task's backup aggregator posts in its window
    setup = Setup(honest=4, attackers=sybils, backup=True)
    base = baseline(replace(setup, attackers=0), where)
    with world(setup, where) as w:
        w.join_honest()
        w.join(w.attackers)
        sybil_round(w, honest=True)
        to_backup_window(w)
        assert w.backup is not None
        rec = post(w, w.backup).receipt
        run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row05_sybil_fallback/backup_posts", 5, f"{sybils} sybils reveal CIDs of nothing; the aggregator is silent, "
        "the backup aggregator posts", run, base, honest=_addresses(w.honest), attackers=syb,
        checks={"every sybil rejected and its stake lost": set(syb) <= set(rec.lost),
                "no honest trainer refused": not any(n.address in rec.rejected for n in w.honest)},
        numbers={"sybils": sybils, "sybils_paid_wei": sum(run.credited.get(a, 0) for a in syb)}))

    # (b) no backup: nobody posts; the honest trainers prove their updates available on chain (the sybils
    # cannot: their CIDs name nothing), and anyone settles by the fallback's split among the available ones
    nb = Setup(honest=4, attackers=sybils)
    nb_base = baseline(replace(nb, attackers=0), where, silent_first="proved")  # the same silence, no sybils
    with world(nb, where) as w:
        w.join_honest()
        w.join(w.attackers)
        sybil_round(w, honest=True)
        mode = settle_unposted(w)["settlement"]
        proved = w.contract.available(w.task_id, 0)
        run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row05_sybil_fallback/no_backup_fallback_split", 5, f"{sybils} sybils reveal CIDs of nothing; the task has no "
        "backup and the aggregator is silent: the round falls back to a split among the updates proved available",
        run, nb_base, honest=_addresses(w.honest), attackers=syb,
        checks={"fallback pays only available updates": sum(run.credited.get(a, 0) for a in syb) == 0,
                "every honest update proved available": set(_addresses(w.honest)) <= set(proved),
                "no sybil proved available": not set(syb) & set(proved)},
        numbers={"sybils": sybils, "settlement": mode, "proved_available": len(proved),
                 "sybils_paid_wei": sum(run.credited.get(a, 0) for a in syb)}))

    # (b'') the same, but the sybils commit to junk bytes they hold and prove those available too: the
    # contract cannot tell junk from an update, so the fallback pays them (left for the aggregator issue #15:
    # a silent aggregator is replaced by the next bonded one instead of falling back)
    with world(nb, where) as w:
        w.join_honest()
        w.join(w.attackers)
        open_round(w)
        commit(w)
        r = w.info().current_round
        junk_bytes = {a.address: keccak(f"junk {a.address} {r}".encode()) * 64 for a in w.attackers}
        jsubs = [(a, sealed(w, a, junk_bytes[a.address], commitment=keccak(b"junk" + junk_bytes[a.address]), round_=r))
                 for a in w.attackers]
        play_sealed(w, jsubs)
        _o, _s, _rv, _res, final = w.contract.schedule(w.task_id)
        w.env.chain.advance_to(final)
        for a, s in jsubs:
            w.contract.prove_available(a, w.task_id, r, s.commitment, s.salt, junk_bytes[a.address])
        mode = settle_unposted(w)["settlement"]
        run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row05_sybil_fallback/no_backup_available_junk", 5, f"{sybils} sybils reveal junk bytes and prove them "
        "available; no backup and a silent aggregator: the fallback splits among every update proved available",
        run, nb_base, honest=_addresses(w.honest), attackers=syb,
        checks={"sybils paid nothing": sum(run.credited.get(a, 0) for a in syb) == 0},
        numbers={"sybils": sybils, "settlement": mode, "sybils_paid_wei": sum(run.credited.get(a, 0) for a in syb),
                 "sybil_share": sum(run.credited.get(a, 0) for a in syb) / REWARD},
        known_gap="#15"))

    # (b') the same, and nobody can prove anything (the honest nodes are offline in the availability window):
    # the pool carries to the next round, which the aggregator posts; the sybils are never paid
    nb2 = Setup(honest=4, attackers=sybils, rounds=2)
    nb2_base = baseline(replace(nb2, attackers=0), where, silent_first="unproved")
    with world(nb2, where) as w:
        w.join_honest()
        w.join(w.attackers)
        sybil_round(w, honest=True)
        mode = settle_unposted(w, provers=[])["settlement"]
        carried = w.info().carry_pool
        honest_round(w)
        run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row05_sybil_fallback/no_backup_nobody_proves", 5, f"{sybils} sybils reveal CIDs of nothing; no backup, a "
        "silent aggregator in round 0 of 2, and no update proved available: the pool carries to round 1",
        run, nb2_base, honest=_addresses(w.honest), attackers=syb,
        checks={"round 0's pool carried over": carried == nb2.reward // 2,
                "sybils paid nothing": sum(run.credited.get(a, 0) for a in syb) == 0},
        numbers={"sybils": sybils, "settlement_round0": mode, "carried_pool_wei": carried,
                 "sybils_paid_wei": sum(run.credited.get(a, 0) for a in syb)}))

    # (c) a round only sybils reveal in (the honest trainers sit it out): the aggregator marks every revealed
    # update lost and posts an all-zero result; the sybils lose their stakes and the pool carries to round 1,
    # which the honest trainers play
    few = Setup(honest=4, attackers=3, backup=True, rounds=2)
    few_base = baseline(replace(few, attackers=0), where, empty_first=True)
    with world(few, where) as w:
        w.join_honest()
        w.join(w.attackers)
        sybil_round(w, honest=False)
        primary = refused(lambda: post(w))
        junk = w.contract.round_info(w.task_id, 0)
        carried = w.info().carry + w.info().carry_pool
        rec0 = _receipt(w) if not primary else None
        honest_round(w)
        run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row05_sybil_fallback/only_junk_revealed", 5, "3 sybils reveal CIDs of nothing in a round no honest trainer "
        "takes part in (2 rounds); the aggregator posts", run, few_base, honest=_addresses(w.honest),
        attackers=syb,
        checks={"the aggregator settles a round of junk": primary == "" and junk.settlement == "result",
                "every sybil rejected and its stake lost": rec0 is not None and set(syb) <= set(rec0.lost),
                "the pool and the lost stakes carry to the next round": carried == few.reward // 2 + 3 * STAKE,
                "sybils paid nothing": sum(run.credited.get(a, 0) for a in syb) == 0},
        numbers={"aggregator_post": primary or "posted", "settlement_round0": junk.settlement,
                 "carried_wei": carried, "sybils_paid_wei": sum(run.credited.get(a, 0) for a in syb),
                 "owner_refund_baseline_wei": few_base.refunds_withdrawn, "owner_refund_wei": run.refunds_withdrawn}))

    # (d) sybils take every seat and leave at once (stake back) and withdraw: the seats are freed and the
    # honest trainers take them
    full = Setup(honest=4, attackers=8, max_trainers=8)
    full_base = baseline(full, where)
    with world(full, where) as w:
        w.join(w.attackers)
        full_refusal = refused(lambda: w.contract.join(w.honest[0].account, w.task_id))
        for a in w.attackers:
            w.contract.leave(a, w.task_id)
            w.contract.withdraw(a, w.task_id)
        refusals: list[str] = []
        for n in w.honest:
            def take_seat(node: Any = n) -> None:
                w.join([node.account])
            refusals.append(refused(take_seat))
        seats = sorted(w.contract.trainer_index(w.task_id, n.address) for n in w.honest)
        count = w.info().trainer_count
        posted = honest_round(w)
        run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row05_sybil_fallback/seats_taken_and_left", 5, "8 sybils join a task of 8 seats, leave at once (stake back) "
        "and withdraw, before the honest trainers come", run, full_base, honest=_addresses(w.honest), attackers=syb,
        checks={"the task was full": full_refusal == "MarketTaskFull",
                "honest trainers can still join": not any(refusals),
                "they take freed seats (no new seat)": count == 8 and all(1 <= i <= 8 for i in seats),
                "the round is posted": posted.receipt is not None},
        numbers={"honest_join": sorted(set(refusals)) or ["joined"], "honest_seats": seats,
                 "trainer_count": count, "owner_refund_wei": run.refunds_withdrawn}))
    return outs


# ================================================================== row 6
def row06_stall_aggregator(where: Where, *, sybils: int = 40, oversized: int = 2, left_s: int = 30) -> list[Outcome]:
    """Sybils (joined first, so their CIDs are queued before the honest ones) reveal CIDs nobody serves and
    blobs far over the size cap; the aggregator starts ``left_s`` seconds before its result deadline and must
    still post in time.  Needs a chain whose clock runs (Anvil) and a real IPFS node (``where.ipfs_api``)."""
    setup = Setup(honest=4, attackers=sybils + oversized, max_trainers=min(256, 4 + sybils + oversized))
    base = baseline(replace(setup, attackers=0), where)
    with world(setup, where) as w:
        w.join(w.attackers)  # the sybils take the first seats
        w.join_honest()
        open_round(w)
        commit(w)
        subs: list[tuple[LocalAccount, Sealed]] = []
        r = w.info().current_round
        for i, a in enumerate(w.attackers):
            if i < oversized:  # a blob far over the cap (twice the model plus 64 KiB), on the node
                blob = hashlib.sha256(a.address.encode()).digest() * (1 << 15)  # 1 MiB
                subs.append((a, sealed(w, a, blob, round_=r)))
            else:
                subs.append((a, sealed(w, a, cid=nothing(a.address), round_=r)))
        play_sealed(w, subs)
        _o, _s, _r, result_dl, _f = w.contract.schedule(w.task_id)
        w.env.chain.advance_to(result_dl - left_s)
        started = time.monotonic()
        rec = post(w).receipt
        seconds = time.monotonic() - started
        posted_at = int(w.env.chain.w3.eth.get_block("latest")["timestamp"])
        run = books(w)
    syb = [a.address for a in w.attackers]
    find_timeout = 30.0  # the kubo store's default lookup timeout: what one-at-a-time fetching waited per CID
    return [measure(
        "row06_stall_aggregator/missing_and_oversized", 6,
        f"{sybils} sybils reveal CIDs nobody serves and {oversized} reveal 1 MiB blobs; the aggregator starts "
        f"{left_s} s before its result deadline", run, base, honest=_addresses(w.honest), attackers=syb,
        checks={"posted before the result deadline": posted_at < result_dl,
                "every sybil rejected and its stake lost": set(syb) <= set(rec.lost),
                "no honest trainer refused": not any(n.address in rec.rejected for n in w.honest)},
        numbers={"sybils": sybils, "oversized": oversized, "aggregator_seconds": round(seconds, 2), "left_s": left_s,
                 "one_at_a_time_seconds": sybils * find_timeout, "posted_s_before_deadline": result_dl - posted_at,
                 "not_fetched_in_budget": sum("budget" in why for why in rec.rejected.values()),
                 "over_the_cap": sum("over the cap" in why for why in rec.rejected.values()),
                 "not_found": sum("not found" in why for why in rec.rejected.values())})]


# ================================================================== row 7
def row07_sample_inflation(where: Where = Where()) -> list[Outcome]:
    """An honest update claiming an absurd sample count, to become the global model."""
    outs: list[Outcome] = []
    for variant, rule, claim in (("claim_1e30_mean", "mean", str(10**30)),
                                 ("claim_1e18_mean", "mean", "9" * 18),
                                 ("claim_1e18_multikrum", "multikrum", "9" * 18)):
        setup = Setup(honest=4, attackers=1, data_attackers=1, rule=rule, f=1)
        base = baseline(setup, where, players="all")  # the attacker trains honestly and claims its true count
        with world(setup, where) as w:
            w.join_honest()
            w.join(w.attackers)
            attacker = w.attack_nodes[0]
            attacker.samples_claim = claim
            before = flatten(fetch_global_model(w.store, load_task(w.contract, w.store, w.task_id))[1]).double()
            posted = honest_round(w, [*w.honest, attacker])
            rec = posted.receipt
            after = flatten(decode_state(w.store.get(rec.model_cid))[0]).double()
            deltas = {s.trainer: flatten(decode_state(w.store.get(s.cid))[0]).double() for s in rec.submissions}
            run = books(w)
        a = attacker.address
        step = after - before
        kept = [deltas[t] for t in rec.details.survivors]
        mean = torch.stack(kept).mean(0) if kept else torch.zeros_like(step)
        gap_to_attacker = float((step - deltas[a]).norm() / deltas[a].norm())
        checks: dict[str, bool] = {"the model is not the attacker's update": gap_to_attacker > 0.05}
        if a in rec.rejected:
            checks["an impossible count is rejected and the stake lost"] = a in rec.lost
        else:
            checks["the model step is the equal-weight mean of the kept updates"] = bool(torch.allclose(step, mean, atol=1e-5))
        outs.append(measure(f"row07_sample_inflation/{variant}", 7, f"a real update claiming {claim[:6]}… ({len(claim)} "
                            f"digits) samples under {rule}", run, base, honest=_addresses(w.honest), attackers=[a],
                            checks=checks,
                            numbers={"rule": rule, "attacker_rejected": rec.rejected.get(a, ""),
                                     "step_vs_attacker_relative_gap": round(gap_to_attacker, 4),
                                     "attacker_paid_wei": run.credited.get(a, 0),
                                     "attacker_paid_baseline_wei": base.credited.get(a, 0)}))
    return outs


# ================================================================== row 8
def row08_empty_round_reclaim(where: Where = Where()) -> list[Outcome]:
    """After one round without submissions the owner tries to take the whole reward back."""
    outs: list[Outcome] = []
    base = baseline(Setup(honest=4, rounds=3), where, empty_first=True)
    for variant, k in (("k0_after_one_empty", 0), ("k2_after_one_empty", 2)):
        setup = Setup(honest=4, rounds=3, empty_rounds_to_reclaim=k)
        with world(setup, where) as w:
            w.join_honest()
            pool0 = w.info().round_pool(0)
            paid = settle_unposted(w)  # round 0: nobody committed
            reclaim = refused(lambda: w.contract.reclaim_unused(w.owner, w.task_id))
            still_live = not w.info().finished
            # round 1: the trainers revealed; the owner tries to force the fallback while the result window is open
            open_round(w)
            commit(w)
            close_commits(w)
            reveal(w)
            early = refused(lambda: w.contract.settle_without_result(w.owner, w.task_id))
            reclaim2 = refused(lambda: w.contract.reclaim_unused(w.owner, w.task_id))
            post(w)
            honest_round(w)
            run = books(w)
        outs.append(measure(
            f"row08_empty_round_reclaim/{variant}", 8, f"the owner (emptyRoundsToReclaim={k}) settles an empty round 0, "
            "then calls reclaimUnused; in round 1 it tries to force the fallback and to reclaim", run, base,
            honest=_addresses(w.honest), attackers=[], owner_attacks=True,
            checks={"the empty round refunds only its pool": paid["refunded"] == pool0,
                    "reclaim after one empty round refused": reclaim == "MarketNotAbandoned" and still_live,
                    "early fallback refused": early != "", "reclaim with submissions refused": reclaim2 != ""},
            numbers={"pool0_wei": pool0, "refunded_round0_wei": paid["refunded"], "reclaim": reclaim,
                     "early_fallback": early, "reclaim_in_round1": reclaim2}))
    return outs


# ================================================================== row 9
def row09_round_timing(where: Where = Where()) -> list[Outcome]:
    """The aggregator posts as early (or as late) as it can, to pick when the next round opens."""
    setup = Setup(honest=4, rounds=2)
    base = baseline(setup, where)
    outs: list[Outcome] = []
    for variant in ("early_post", "late_post"):
        with world(setup, where) as w:
            w.join_honest()
            info0 = w.info()
            scheduled = info0.opens_at(1)
            open_round(w)
            commit(w)
            close_commits(w)
            reveal(w)
            close_reveals(w)
            if variant == "late_post":
                _o, _s, _r, result_dl, _f = w.contract.schedule(w.task_id)
                w.env.chain.advance_to(result_dl - 2)
            post(w)
            posted_at = int(w.env.chain.w3.eth.get_block("latest")["timestamp"])
            info1 = w.info()
            node = w.honest[0]
            early = ""
            opens1 = w.contract.schedule(w.task_id)[0]
            too_early = w.env.chain.clock() < scheduled
            if too_early:
                early = refused(lambda: w.contract.commit(node.account, w.task_id, 1, keccak(b"too early")))
            phase = round_state(info1, w.env.chain.clock()).phase
            honest_round(w)
            run = books(w)
        outs.append(measure(
            f"row09_round_timing/{variant}", 9, f"the aggregator posts round 0 {'as soon as reveals close' if variant == 'early_post' else 'at the end of its window'}",
            run, base, honest=_addresses(w.honest), attackers=[],
            checks={"round 1 opens at its scheduled time": opens1 == scheduled == info0.start_at + info0.period,
                    "a commit before it is refused": early == "MarketRoundNotOpen" or not too_early,
                    "round 1 waits for its time": phase == "waiting" or not too_early},
            numbers={"posted_s_before_round1": scheduled - posted_at, "commit_before_opening": early, "phase_after_post": phase}))
    return outs


# ================================================================== row 10
def _deploy(w: World, name: str, *args: Any) -> str:
    return w.env.chain.deploy(w.owner, load_artifact(name), *args)


def row10_dud_verifier_hostile_token(where: Where = Where()) -> list[Outcome]:
    """The owner names a verifier or token that makes every result fail, and farms the fallback with sybils."""
    outs: list[Outcome] = []
    setup = Setup(honest=4, attackers=4)
    with world(replace(setup, attackers=1), where) as w:
        eoa = w.attackers[0].address
        spec, spec_cid = publish_spec(w.store, w.spec)
        assert spec.initial_model_cid
        before_tasks, before_balance = w.contract.task_count(), w.env.chain.balance(w.contract.address)
        no_iface = _deploy(w, "MockVerifier", False, True)
        unvetted = _deploy(w, "MockVerifier", True, True)  # implements the interface; its code is not allowed
        # a RoundVerifier (code allowed by the operator) over a Groth16 "verifier" the operator never vetted
        wrapper = _deploy(w, "RoundVerifier", 8, [2], [_deploy(w, "MockVerifier", True, False)])
        w.contract.allow_verifier_code(w.operator, [w.contract.code_hash(wrapper)])
        owner_allows = refused(lambda: w.contract.allow_verifier_code(w.owner, [w.contract.code_hash(unvetted)]))

        def create(**kw: Any) -> str:
            return refused(lambda: w.contract.create_task(
                w.owner, spec_cid=spec_cid, initial_model_cid=spec.initial_model_cid or "", validation_commitment=b"\x11" * 32,
                rounds=1, reward_wei=REWARD, stake_wei=STAKE, **kw))

        attempts = {"eoa_verifier": (create(verifier=eoa), "MarketBadVerifier", "a verifier address with no code"),
                    "verifier_denies_interface": (create(verifier=no_iface), "MarketBadVerifier",
                                                  "a verifier contract that does not implement IRoundVerifier"),
                    "not_erc165_verifier": (create(verifier=w.contract.address), "MarketBadVerifier",
                                            "a contract without ERC-165 (the market itself) as verifier"),
                    "verifier_code_not_allowed": (create(verifier=unvetted), "MarketVerifierNotAllowed",
                                                  "a verifier whose code is not on the market's allowlist (and fails "
                                                  "to add it: " + owner_allows + ")"),
                    "component_not_allowed": (create(verifier=wrapper), "MarketVerifierNotAllowed",
                                              "an allowed RoundVerifier whose Groth16 verifier is not allowed"),
                    "eoa_token": (create(token=eoa), "MarketBadToken", "a reward token address with no code")}
        unchanged = w.contract.task_count() == before_tasks and w.env.chain.balance(w.contract.address) == before_balance
        _first_task_refund(w)
        ok, _money = money_identity(w.contract, w.ledger)
    for variant, (got, want, what) in attempts.items():
        outs.append(Outcome(f"row10_dud_verifier_hostile_token/{variant}", 10, f"the owner names {what}", 0, 0, 0,
                            {"createTask refused": got == want, "nothing escrowed": unchanged, "money identity to the wei": ok},
                            {"revert": got}))

    # a verifier whose code the operator allowed, that answers "no" to everything (the same code as the
    # truthful one: a MockVerifier's answer is set in storage); the owner's sybils reveal junk
    def truthful(first: World) -> str:
        address = _deploy(first, "MockVerifier", True, True)
        first.contract.allow_verifier_code(first.operator, [first.contract.code_hash(address)])
        return address

    # compared with the same round settled by the fallback without sybils: a verifier that fails every proof
    # leaves the round to the fallback whoever is paid; what is measured is whether the owner or its sybils gain
    base = baseline(replace(setup, attackers=0), where, verifier=truthful, key="truthful verifier", silent_first="proved")
    shapley = baseline(replace(setup, attackers=0), where, verifier=truthful, key="truthful verifier")
    with world(setup, where) as first:
        liar = _deploy(first, "MockVerifier", True, False)
        first.contract.allow_verifier_code(first.operator, [first.contract.code_hash(liar)])
        with _same_chain_world(first, setup, liar) as w:
            w.join_honest()
            w.join(w.attackers)
            open_round(w)
            commit(w)
            r = w.info().current_round
            play_sealed(w, [(a, sealed(w, a, cid=nothing(a.address), round_=r)) for a in w.attackers])
            posting = refused(lambda: post(w))
            mode = settle_unposted(w)["settlement"] if not w.info().finished else "result"
            _first_task_refund(w)
            run = books(w)
    syb = [a.address for a in w.attackers]
    outs.append(measure(
        "row10_dud_verifier_hostile_token/lying_verifier", 10, "a verifier whose code the market's operator allowed "
        "rejects every proof (the owner cannot name one the operator did not allow: see the two variants above); "
        "4 of the owner's sybils reveal CIDs of nothing", run, base,
        honest=_addresses(w.honest), attackers=syb, owner_attacks=True,
        checks={"the fallback pays only the updates proved available": mode == "fallback",
                "sybils paid nothing": sum(run.credited.get(a, 0) for a in syb) == 0},
        numbers={"post": posting or "posted", "settlement": mode, "sybils_paid_wei": sum(run.credited.get(a, 0) for a in syb),
                 "honest_moved_from_contribution_pay_wei": sum(abs(run.net(h) - shapley.net(h)) for h in _addresses(w.honest))}))
    return outs


# ================================================================== row 11
def _seed_of(block_hash: bytes, seal: int, task_id: int, round_: int) -> bytes:
    return keccak(abi_encode(["bytes32", "uint256", "uint256", "uint256"], [block_hash, seal, task_id, round_]))


def posted_result(w: World, round_: int) -> dict[str, Any]:
    """The ``res`` argument (modelCid, receiptCid, seed, lostMask) of the ``postResult`` that settled ``round_``,
    decoded from the transaction's calldata."""
    done = w.contract.settled_rounds(w.task_id)[round_]
    tx = w.env.chain.w3.eth.get_transaction(done.tx_hash)
    _fn, args = w.contract.c.decode_function_input(tx["input"])
    res = args["res"]
    if not isinstance(res, dict):  # a tuple, in the struct's field order
        res = dict(zip(("modelCid", "receiptCid", "seed", "lostMask"), res))
    return {k: v if k == "lostMask" else bytes(v) for k, v in res.items()}


def posted_seal(w: World, round_: int) -> int:
    """The seal block of a settled round: the last ``RoundSealed`` of ``round_``."""
    evs = w.contract.c.events.RoundSealed().get_logs(
        from_block=w.info().created_block, argument_filters={"taskId": w.task_id, "round": round_})
    return int(evs[-1]["args"]["sealBlock"])


def _sealed_block(w: World) -> int:
    info = w.info()
    return int(info.seal_block)


def row11_last_submitter_grinding(where: Where = Where(), candidates: int = 8) -> list[Outcome]:
    """The last revealer sees every other update and tries to re-roll the round's randomness in its favour:
    by revealing another CID, by withholding its reveal, and -- when the result comes more than 256 blocks after
    the seal, so that the seed no longer depends on a block hash -- by choosing the block it reveals in
    (:func:`row11_stale_seed_grind`, ``candidates`` blocks tried)."""
    setup = Setup(honest=4)
    base = baseline(setup, where)
    outs: list[Outcome] = []
    for variant in ("change_cid", "withhold_reveal", "stale_seed"):
        with world(setup, where) as w:
            w.join_honest()
            grinder = w.honest[-1]
            others = w.honest[:-1]
            r = open_round(w)
            commit(w)
            close_commits(w)
            reveal(w, others)
            changed = ""
            if variant == "change_cid":  # another update (slightly scaled), with its own valid commitment
                tensors, meta = decode_state(leaked_blob(w, grinder))  # its own update
                other = encode_state({k: v * 0.999 for k, v in tensors.items()}, meta)
                s = sealed(w, grinder.account, other)
                changed = refused(lambda: reveal_sealed(w, grinder.account, s))
            if variant != "withhold_reveal":
                reveal(w, [grinder])
                seal = _sealed_block(w)
                reveal_block = int(w.env.chain.w3.eth.get_block("latest")["number"])
            else:
                close_reveals(w)
                w.contract.seal(w.owner, w.task_id)
                seal = _sealed_block(w)
                reveal_block = -1
            stale_post = ""
            first_seal = seal
            if variant == "stale_seed":  # the result comes more than 256 blocks after the seal
                mine(w.env.chain, 257)
                stale = _seed_of(b"\x00" * 32, seal, w.task_id, r)  # what the old contract accepted
                model = w.info().latest_model_cid or ""
                agg_account = w.aggregator.account
                stale_post = refused(lambda: w.contract.post_result(
                    agg_account, w.task_id, r, model, model, [2500, 2500, 2500, 2500], b"", seed=stale, lost_mask=0))
            rec = post(w).receipt  # the aggregator seals the round again when the seed expired
            seal = _sealed_block(w) if not w.info().finished else posted_seal(w, r)
            block_hash = bytes(w.env.chain.w3.eth.get_block(seal)["hash"])
            posted_seed = posted_result(w, r)["seed"]
            run = books(w)
        predictable = _seed_of(b"\x00" * 32, first_seal, w.task_id, r)
        expected = _seed_of(block_hash, seal, w.task_id, r)
        checks = {"seed from the seal block": posted_seed == expected,
                  "receipt records the chain's seed": rec.round_seed == "0x" + posted_seed.hex(),
                  "valuation seed derived from it": rec.valuation_seed == valuation_seed(posted_seed)}
        if variant == "change_cid":
            checks["a different CID cannot be revealed"] = changed == "MarketBadReveal"
            checks["the last reveal seals the round"] = seal == reveal_block
        if variant == "withhold_reveal":
            checks["withholding costs the stake"] = run.lost.get(grinder.address, 0) == STAKE
        if variant == "stale_seed":
            checks["the seed was not known before the last reveal"] = posted_seed != predictable
            checks["a result with the expired seed is refused"] = stale_post == "MarketSeedExpired"
            checks["the round was sealed again after the hash expired"] = seal > first_seal + 256
        g = grinder.address
        outs.append(measure(
            f"row11_last_submitter_grinding/{variant}", 11,
            {"change_cid": "the last revealer tries to reveal another CID than the one it committed",
             "withhold_reveal": "the last revealer withholds its reveal to re-roll the seed",
             "stale_seed": "the aggregator posts more than 256 blocks after the seal, when the seal block's hash is "
                           "unreadable: a result with keccak(0, sealBlock, task, round) -- which the last revealer could "
                           "compute before choosing its reveal block -- is refused and the round is sealed again"}[variant],
            run, base, honest=_addresses(others), attackers=[g], checks=checks,
            numbers={**({"first_seal_block": first_seal, "stale_post": stale_post} if variant == "stale_seed" else {}),
                     "seal_block": seal, "seed": "0x" + posted_seed.hex(), "valuation_seed": rec.valuation_seed,
                     "grinder_paid_wei": run.credited.get(g, 0), "grinder_paid_baseline_wei": base.credited.get(g, 0)}))
    outs.append(row11_stale_seed_grind(where, candidates))
    return outs


def row11_stale_seed_grind(where: Where = Where(), candidates: int = 8) -> Outcome:
    """The stale seed used: under a sampled valuation (``tmc``) the last revealer evaluates the round for each
    block it could reveal in (with the public digits test split as a stand-in for the aggregator's validation
    set), reveals in the block it likes best, and the aggregator posts more than 256 blocks later."""
    setup = Setup(honest=4, valuation="tmc")

    def play(choose: bool) -> tuple[Books, World, dict[str, Any]]:
        with world(setup, where) as w:
            w.join_honest()
            grinder, others = w.honest[-1], w.honest[:-1]
            r = open_round(w)
            commit(w)
            close_commits(w)
            reveal(w, others)
            chain = w.env.chain
            now = int(chain.w3.eth.get_block("latest")["number"])
            pick = now + 1
            picked: dict[str, Any] = {}
            if choose:
                view = load_task(w.contract, w.store, w.task_id)
                snap = w.contract.round_snapshot(w.task_id)
                own = grinder._pending[(w.task_id, r)]
                subs = [*snap.submissions, replace(snap.submissions[0], trainer=grinder.address, cid=own.cid,
                                                    commitment=own.commitment, index=len(w.honest), seq=len(others))]
                _cid, state = fetch_global_model(w.store, view)
                own_blob: dict[str, bytes | StoreError] = {own.cid: leaked_blob(w, grinder)}  # not uploaded yet
                usable, _rej, _sk = prefilter(view.spec, w.task_id, r, subs, w.store, own_blob)
                proxy = w.splits.test
                scores = {}
                for b in range(now + 1, now + 1 + candidates):
                    seed = valuation_seed(_seed_of(b"\x00" * 32, b, w.task_id, r))
                    out = aggregate_round(view.spec, state, usable, proxy.x, proxy.y, seed=seed)
                    scores[b] = int(out.bps_by_address.get(grinder.address, 0))
                assert any(scores.values()), "the grinder could not value its own update"
                pick = max(scores, key=lambda b: scores[b])
                picked = {"proxy_bps_by_block": {str(k): v for k, v in scores.items()}, "picked_block": pick}
            if pick > now + 1:
                mine(chain, pick - now - 1)
            reveal(w, [grinder])
            first_seal = _sealed_block(w)
            mine(chain, 257)
            post(w)  # the seal block's hash is gone: the aggregator seals the round again
            posted_seed = posted_result(w, r)["seed"]
            picked.update({"first_seal_block": first_seal, "seal_block": posted_seal(w, r),
                           "ground_seed": "0x" + _seed_of(b"\x00" * 32, first_seal, w.task_id, r).hex(),
                           "posted_seed": "0x" + posted_seed.hex()})
            run = books(w)
        return run, w, picked

    unground, _w0, _ = play(False)
    run, w, picked = play(True)
    g = w.honest[-1].address
    # The seed now comes from the block that seals the round again, after every reveal: the grinder's choice of
    # reveal block no longer moves it, so the run is its own reference (the unground run drew another seed, so
    # its pay differs by the sampled valuation's noise only; it is reported, not counted).
    return measure("row11_last_submitter_grinding/stale_seed_grind", 11,
                   f"tmc valuation; the last revealer tries {candidates} reveal blocks against a proxy validation set "
                   "(seed keccak(0, block, ...)) and reveals in the best; the result comes more than 256 blocks after "
                   "the seal", run, run, honest=_addresses(w.honest[:-1]), attackers=[g],
                   checks={"the round was sealed again": picked["seal_block"] > picked["first_seal_block"] + 256,
                           "the ground seed is not the posted one": picked["ground_seed"] != picked["posted_seed"]},
                   numbers={"grinder_paid_wei": run.credited.get(g, 0),
                            "grinder_paid_unground_wei": unground.credited.get(g, 0), **picked})


# ================================================================== row 12
def row12_unauthenticated_spending(create_app: Callable[..., Any], where: Where = Where()) -> list[Outcome]:
    """A local process (or anyone, on a public interface) asks ``POST /api/tasks`` of a server that holds a key
    to escrow the owner's ETH to an aggregator of its choosing.  ``create_app``: ``market_app.api.app.create_app``
    (passed in: the simulator sits below the apps)."""
    import warnings

    with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    token = "scenario-token-" + keccak(b"row 12").hex()[:24]
    setup = Setup(honest=0, attackers=1)
    with world(setup, where) as w:
        app = create_app(w.contract, w.store, creator=w.owner, api_token=token)
        client = TestClient(app)
        body = {"validation_commitment": "0x" + "11" * 32, "rounds": 1, "reward_eth": "5"}
        tasks0 = w.contract.task_count()
        owner0 = w.env.chain.balance(w.owner.address)
        answers = {
            "no_token": client.post("/api/tasks", json=body).status_code,
            "wrong_token": client.post("/api/tasks", json=body, headers={"Authorization": "Bearer not-the-token"}).status_code,
            "token_as_query": client.post(f"/api/tasks?token={token}", json=body).status_code,
            "basic_auth": client.post("/api/tasks", json=body, auth=("owner", token)).status_code,
        }
        tasks1 = w.contract.task_count()
        owner1 = w.env.chain.balance(w.owner.address)
        with_token = client.post("/api/tasks", json=body, headers={"Authorization": f"Bearer {token}"}).status_code
        escrowed = sum(w.contract.task(t).reward for t in range(tasks0 + 1, w.contract.task_count() + 1))
        ok, _money = money_identity(w.contract, w.ledger)
    outs = []
    for variant, status in answers.items():
        outs.append(Outcome(f"row12_unauthenticated_spending/{variant}", 12,
                            f"POST /api/tasks ({variant.replace('_', ' ')}) for 5 ETH",
                            0 if tasks1 == tasks0 else 5 * 10**18, max(0, owner0 - owner1), 0,
                            {"refused with 401": status == 401, "no task created": tasks1 == tasks0,
                             "owner's balance untouched": owner1 == owner0, "money identity to the wei": ok,
                             "the token holder can create (baseline)": with_token == 201 and escrowed == 5 * 10**18},
                            {"status": status, "status_with_token": with_token}))
    return outs


# ================================================================== row 13
class WithholdingStore:
    """A store that answers every CID but one as ``store`` does: what a lying aggregator pretends to see, or what an
    honest one sees when a trainer serves its update to the others only."""

    def __init__(self, store: Any, withheld: str) -> None:
        self.store, self.withheld = store, withheld

    def put(self, data: bytes) -> str:
        return str(self.store.put(data))

    def get(self, cid: str, max_bytes: int | None = None) -> bytes:
        if cid == self.withheld:
            raise BlobNotFoundError(f"blob {cid} is not in the store")
        return bytes(self.store.get(cid, max_bytes))



def row13_verify_tampered(verify: Callable[[MarketContract, Any, int, int, Dataset], bool],
                          where: Where = Where()) -> list[Outcome]:
    """A dishonest aggregator posts a round ``market verify`` must refuse: the chain pays 100 % to the round's
    outlier (a sign-flipper) while the receipt says otherwise; or the receipt's input model is random weights
    and the whole round is recomputed from them (self-consistent, but not from the chain's model).
    ``verify(contract, store, task, round, validation) -> ok`` runs ``market_app.verify`` (passed in: the
    simulator sits below the apps).

    The chain pays what the aggregator posts until the aggregator issue (#15) lets someone dispute it; what
    this row measures is whether ``market verify`` catches it: the gain and the loss counted are the ones
    verify let through (0 when it fails the round); the amounts moved on chain are in ``numbers``."""
    flip = Setup(honest=4, attackers=1, data_attackers=1, attack="sign_flip")
    outs: list[Outcome] = []
    base: Books | None = None
    for variant in ("honest_round", "pays_the_outlier", "random_input_model", "honest_update_called_unavailable"):
        with world(flip, where) as w:
            w.join_honest()
            w.join(w.attackers)
            nodes = [*w.honest, *w.attack_nodes]
            r = open_round(w)
            commit(w, nodes)
            close_commits(w)
            reveal(w, nodes)
            close_reveals(w)
            agg = w.aggregator
            snap = w.contract.round_snapshot(w.task_id)
            view = load_task(w.contract, w.store, w.task_id, snap.info)
            seed = agg.round_seed(snap)
            flipper = w.attack_nodes[0].address
            if variant == "random_input_model":
                g = torch.Generator().manual_seed(13)
                _cid, state = fetch_global_model(w.store, view)
                fake = encode_state({k: torch.randn(v.shape, generator=g) for k, v in state.items()}, {"kind": "model"})
                view = TaskView(replace(view.info, latest_model_cid=w.store.put(fake)), view.spec)
            if variant == "honest_update_called_unavailable":  # the aggregator "cannot fetch" an honest update
                victim = next(sub for sub in snap.submissions if sub.trainer == w.honest[0].address)
                agg = Aggregator(w.contract, WithholdingStore(w.store, victim.cid), agg.account, w.splits.validation)
            _outcome, model_cid, receipt = agg.compute_round(view, snap, seed)
            receipt_cid = put_json(w.store, receipt.to_json())
            bps, mask = list(receipt.bps_vector), lost_mask(receipt)
            if variant == "pays_the_outlier":
                bps = [10_000 if s.trainer == flipper else 0 for s in receipt.submissions]
                mask = 0
            w.contract.post_result(agg.account, w.task_id, r, model_cid, receipt_cid, bps, b"", seed=seed, lost_mask=mask)
            ok = verify(w.contract, w.store, w.task_id, r, w.splits.validation)
            run = books(w)
        if base is None:
            base = run
        honest = _addresses(w.honest)
        on_chain = measure("", 13, "", run, base, honest=honest, attackers=[flipper])
        expect_ok = variant == "honest_round"
        outs.append(Outcome(
            f"row13_verify_tampered/{variant}", 13,
            {"honest_round": "an honest round (verify must pass it)",
             "pays_the_outlier": "the aggregator posts 100 % to the round's outlier (a sign-flipper) with the honest receipt",
             "random_input_model": "the aggregator recomputes the round from random starting weights and posts it",
             "honest_update_called_unavailable": "the aggregator says an honest update could not be fetched (its trainer "
                                                 "paid 0 and its stake taken) and posts the round computed without it"}[variant],
            on_chain.attacker_gain_wei if ok else 0, on_chain.honest_loss_wei if ok else 0, 0,
            {**{k: v for k, v in on_chain.checks.items()}, ("verify passes" if expect_ok else "verify fails"): ok == expect_ok},
            {"verify_ok": ok, "moved_on_chain_to_attacker_wei": on_chain.attacker_gain_wei,
             "honest_loss_on_chain_wei": on_chain.honest_loss_wei}))
    return outs


# ================================================================== row 14
def row14_rounding_dust(where: Where = Where()) -> list[Outcome]:
    """Tiny pools and rounding remainders: every wei of a round goes to its paid trainers, none to the owner."""
    outs: list[Outcome] = []
    for variant, setup, how in (
        ("pool_4wei_result", Setup(honest=5, reward=4), "result"),
        ("pool_4wei_fallback", Setup(honest=5, reward=4), "fallback"),
        ("odd_stake_lost", Setup(honest=5, reward=10**18 + 2, stake=10**17 + 1), "non-revealer"),
    ):
        with world(setup, where) as w:
            w.join_honest()
            open_round(w)
            commit(w)
            close_commits(w)
            revealers = w.honest if how != "non-revealer" else w.honest[:-1]
            reveal(w, revealers)
            close_reveals(w)
            if how == "fallback":
                settle_unposted(w)
            else:
                post(w)
            pool = w.info().reward
            run = books(w)
        paid = sum(run.credited.get(a, 0) for a in _addresses(revealers))
        due = pool + (setup.stake if how == "non-revealer" else 0)
        outs.append(Outcome(
            f"row14_rounding_dust/{variant}", 14,
            {"result": "a 4-wei pool, 5 paid trainers, the aggregator posts",
             "fallback": "a 4-wei pool, 5 revealed trainers, settled by the fallback",
             "non-revealer": "an odd reward and an odd stake lost by a non-revealer, split among 4 paid trainers"}[how],
            run.refunds_withdrawn, max(0, due - paid), 0,
            {"trainers get every wei": paid == due, "owner gets nothing": run.refunds_withdrawn == 0,
             "money identity to the wei": run.money_ok, "nothing locked": run.locked == 0},
            {"pool_wei": pool, "paid_wei": paid, "per_trainer_wei": [run.credited.get(a, 0) for a in _addresses(w.honest)]}))

    # the last round pays nobody (its only committer never reveals): its pool is refunded (an empty round),
    # and the lost stake goes to the trainers round 0 paid that still hold a stake, not to the owner
    setup = Setup(honest=5, stake=10**17 + 1, rounds=2)
    with world(setup, where) as w:
        w.join_honest()
        honest_round(w)
        open_round(w)
        commit(w, w.honest[:1])
        close_commits(w)
        settle_unposted(w)
        round1 = w.contract.credited(w.task_id, 1)
        run = books(w)
    others = _addresses(w.honest[1:])
    to_others = sum(round1.get(a, 0) for a in others)
    pool = setup.reward - setup.reward // 2
    outs.append(Outcome(
        "row14_rounding_dust/lost_stake_in_an_empty_last_round", 14,
        "the last round's only committer does not reveal: the round is empty (its pool refunded) and the lost "
        "stake has no paid trainer of that round to go to", max(0, run.refunds_withdrawn - pool), setup.stake - to_others, 0,
        {"the lost stake goes to the paid trainers holding a stake": to_others == setup.stake,
         "the owner gets its empty round's pool only": run.refunds_withdrawn == pool,
         "money identity to the wei": run.money_ok, "nothing locked": run.locked == 0},
        {"stake_wei": setup.stake, "to_stakeholders_wei": to_others, "owner_refund_wei": run.refunds_withdrawn,
         "per_trainer_round1_wei": [round1.get(a, 0) for a in others]}))
    return outs


#: every row in table order (rows 6, 12 and 13 need arguments: see their docstrings)
ROWS: dict[int, Callable[..., Any]] = {
    1: row01_front_run_copy, 2: row02_junk_commitment_grief, 3: row03_grief_disables_defence, 4: row04_reencoded_copy,
    5: row05_sybil_fallback, 6: row06_stall_aggregator, 7: row07_sample_inflation, 8: row08_empty_round_reclaim,
    9: row09_round_timing, 10: row10_dud_verifier_hostile_token, 11: row11_last_submitter_grinding,
    12: row12_unauthenticated_spending, 13: row13_verify_tampered, 14: row14_rounding_dust,
}

__all__ = ["REWARD", "ROWS", "STAKE", "Books", "Outcome", "Setup", "Where", "World", "money_identity", "world"]
