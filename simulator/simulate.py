"""``market simulate``: one owner, N trainer nodes (the last F of them attackers), one aggregator.

One round's whole path is :func:`run_round`: wait for the round's scheduled opening → train →
commit (each trainer node) → upload and reveal once submissions close → fetch, verify,
reject/robust-aggregate, value, receipt, post with the round's seed, credit (the aggregator and the
contract).  On these dev chains waiting for a time is moving the chain's clock forward. :func:`simulate` wraps the rounds
between posting the task and everyone withdrawing, and writes the report
described in DESIGN.md ("Interfaces"); every number in it is read back from
the chain or measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aggregator.service import Aggregator, PostedRound
from market.chain.devchain import dev_accounts
from market.data import Dataset, dataset_commitment, example, example_splits, parse_partition
from market.errors import ConfigError
from market.models import held_out_score, model_with_state
from market.onnx_import import read_onnx_file
from market.spec import (
    ModelSpec,
    ProofSpec,
    RobustSpec,
    TaskSpec,
    TrainingSpec,
    ValuationSpec,
    read_spec_document,
    validate_spec_document,
)
from market.store import ContentStore
from market.task import decode_model
from market.tensors import decode_state
from owner.task import TaskRequest, create_task, parse_eth
from simulator.environment import Environment, open_environment
from trainer_node.attacks import ATTACK_NAMES, Collusion, is_colluding
from trainer_node.node import TrainerNode

#: local SGD settings per architecture: logistic regression converges in 3 rounds only with a
#: large step; the MLP and the CNN diverge with it (measured on digits, 3 rounds, 5-6 trainers).
TRAINING_FOR: dict[str, TrainingSpec] = {
    "logreg": TrainingSpec(),
    "mlp": TrainingSpec(lr=0.1, momentum=0.9),
    "cnn": TrainingSpec(lr=0.1, momentum=0.9),
    "layers": TrainingSpec(lr=0.1, momentum=0.9),
}


def reward_of(text: str) -> int:
    """``--reward`` as exact integer wei; a one-line ConfigError naming the option."""
    try:
        return parse_eth(text)
    except ValueError as exc:
        raise ConfigError(f"--reward {exc}") from None


class SimulateConfig(BaseModel):
    """Every option of ``market simulate`` (recorded verbatim in the report)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trainers: int = Field(6, ge=1, le=200)
    attackers: int = Field(0, ge=0)
    attack: str = "sign_flip"
    rounds: int = Field(3, ge=1, le=1000)
    robust: str = str(RobustSpec.model_fields["rule"].default)
    f: int | None = Field(None, ge=0)
    valuation: str = "auto"
    task: str = "digits"  # an example task of market.data.EXAMPLES: its data, schema and usual model
    model: Literal["logreg", "mlp", "cnn"] | None = None  # None: the example task's usual model
    model_spec: str | None = None  # a spec file whose model (and training) tables replace --model's
    onnx: str | None = None  # an ONNX file: the model's layers and round-0 weights (market.onnx_import)
    partition: str = "iid"
    seed: int = 0
    reward: str = "1"
    stake: str = "0"  # each trainer's stake in ETH (0: none)
    chain: str = "anvil"
    rpc: str | None = None
    contract: str | None = None
    store: str = "local"
    store_dir: str | None = None
    ipfs_api: str | None = None
    proof: Literal["none", "groth16"] = "none"
    sketch_k: int = Field(16, ge=16, le=64)
    sketch_f: int = Field(0, ge=0)  # a proof task's Multi-Krum over the sketches: updates left out of each round's pay
    panel: int = Field(1, ge=1, le=7)  # aggregators drawn each round (each recomputes the round)
    quorum: int | None = Field(None, ge=1, le=7)  # identical results that settle a round (default: a majority)
    backup: bool | None = None  # draw a backup aggregator too (None: when the registry holds one more than the panel)
    fee_bps: int = Field(0, ge=0, le=5000)  # the aggregators' fee, basis points of each round's pool

    @field_validator("attack")
    @classmethod
    def _attack_known(cls, v: str) -> str:
        if v not in ATTACK_NAMES:
            raise ValueError(f"unknown attack {v!r}; choose from {', '.join(ATTACK_NAMES)}")
        return v

    @field_validator("task")
    @classmethod
    def _task_known(cls, v: str) -> str:
        example(v)
        return v

    @property
    def arch(self) -> str:
        """The model: ``--model-spec``'s, else ``--model``, else the example task's usual one."""
        if self.model_spec is not None or self.onnx is not None:
            return "layers" if self.onnx is not None else model_tables(self.model_spec or "", self.task)[0].arch
        return self.model or example(self.task).arch

    @field_validator("partition")
    @classmethod
    def _partition_ok(cls, v: str) -> str:
        parse_partition(v)
        return v

    def check(self) -> None:
        from aggregator.robust import get_rule

        get_rule(self.robust, 0)  # unknown rule names fail here, before anything starts
        if self.attackers > self.trainers:
            raise ConfigError(f"--attackers {self.attackers} is more than --trainers {self.trainers}")
        if self.attackers and self.attackers == self.trainers and is_colluding(self.attack):
            raise ConfigError(f"--attack {self.attack} colludes with honest updates: leave at least one honest trainer")
        reward_of(self.reward)
        if sum(x is not None for x in (self.model, self.model_spec, self.onnx)) > 1:
            raise ConfigError("give one of --model, --model-spec and --onnx")
        if self.model_spec is not None:
            model_tables(self.model_spec, self.task)
        if self.onnx is not None:
            onnx_tables(self.onnx, self.task)
        _ = self.stake_wei
        q = self.panel // 2 + 1 if self.quorum is None else self.quorum
        if not (self.panel < 2 * q <= 2 * self.panel):
            raise ConfigError(f"--quorum {q}: a panel of {self.panel} needs more than half of it and at most all of it")
        if self.proof != "none" and self.robust != "multikrum":
            raise ConfigError(f"--proof {self.proof} proves Multi-Krum over sketches: add --robust multikrum")

    @property
    def stake_wei(self) -> int:
        """``--stake`` as exact integer wei (0 allowed); a one-line ConfigError naming the option."""
        if str(self.stake).strip() in ("0", "0.0"):
            return 0
        try:
            return parse_eth(self.stake)
        except ValueError as exc:
            raise ConfigError(f"--stake {exc}") from None

    @property
    def aggregators(self) -> int:
        """Aggregators the simulation registers: the panel, plus the backup."""
        return self.panel + (0 if self.backup is False else 1)

    @property
    def suspected(self) -> int:
        """``f`` for the robust rule: given, else the number of attackers (at least 1)."""
        return self.f if self.f is not None else max(self.attackers, 1)


def example_fields(task: str, arch: str | None = None) -> dict[str, Any]:
    """A task spec's data, model and local training for example ``task`` (model ``arch``, else its usual one)."""
    arch = arch or example(task).arch
    schema = example(task).schema
    usual = arch == example(task).arch
    own = example(task).training if usual else None
    model = (example(task).model if usual else None) or ModelSpec(arch=arch)
    fields: dict[str, Any] = {"data": schema, "model": model, "training": own or TRAINING_FOR[arch]}
    if schema.regression:  # valued by R^2, the one metric a regression task takes
        fields["valuation"] = ValuationSpec(metric="r2")
    return fields


def model_tables(path: str, task: str) -> tuple[ModelSpec, TrainingSpec]:
    """The ``model`` and ``training`` tables of the spec file ``path`` (training: the model's usual one if left out),
    checked against example ``task``'s data; a file with other tables is refused (the simulation's options set those)."""
    obj = read_spec_document(path)
    other = sorted(set(obj) - {"model", "training"})
    if other:
        raise ConfigError(f"--model-spec {path}: only the model and training tables are read (the data is --task's, the "
                          f"rules are the options'); remove {', '.join(other)}")
    if "model" not in obj:
        raise ConfigError(f"--model-spec {path}: it has no model table")
    fields = example_fields(task, "logreg")
    doc = {"data": fields["data"].model_dump(), "model": obj["model"],
           **({"valuation": fields["valuation"].model_dump()} if "valuation" in fields else {})}
    if "training" in obj:
        doc["training"] = obj["training"]
    spec = validate_spec_document(doc, f"--model-spec {path} (on the {task} task's data)")
    training = spec.training if "training" in obj else TRAINING_FOR[spec.model.arch]
    return spec.model, training


def onnx_tables(path: str, task: str) -> tuple[ModelSpec, TrainingSpec]:
    """The model an ONNX file gives over example ``task``'s data (its layers and CID) and the training a declared model
    takes; a one-line ConfigError for a file that cannot be read or taken (its weights: :func:`post_task`)."""
    from market.onnx_import import onnx_model

    return onnx_model(read_onnx_file(path), example(task).schema, f"--onnx {path}"), TRAINING_FOR["layers"]


def spec_for(cfg: SimulateConfig) -> TaskSpec:
    """The task spec a simulation posts: the example task's data and the simulation's options."""
    fields = example_fields(cfg.task, cfg.arch if cfg.model_spec is None and cfg.onnx is None else None)
    if cfg.model_spec is not None:
        fields["model"], fields["training"] = model_tables(cfg.model_spec, cfg.task)
    if cfg.onnx is not None:
        fields["model"], fields["training"] = onnx_tables(cfg.onnx, cfg.task)
    valuation = fields.pop("valuation", ValuationSpec()).model_copy(update={"rule": cfg.valuation, "seed": cfg.seed})
    return TaskSpec(
        **fields,
        robust=RobustSpec(rule=cfg.robust, f=cfg.suspected),
        valuation=valuation,
        proof=ProofSpec(system=cfg.proof, sketch_k=cfg.sketch_k, sketch_f=cfg.sketch_f),
        model_seed=cfg.seed,
    )


def post_task(
    env: Environment, owner: LocalAccount, cfg: SimulateConfig, validation: Dataset, reward: int,
    on_note: Callable[[str], None] | None = None,
) -> tuple[int, TaskSpec]:
    """The owner's step of a simulation: :func:`owner.task.create_task` with the simulation's spec
    (``on_note`` hears its one-time steps, such as building a proof setup)."""
    request = TaskRequest(
        spec=spec_for(cfg), onnx=read_onnx_file(cfg.onnx) if cfg.onnx else None, validation_commitment=dataset_commitment(validation), rounds=cfg.rounds, reward_wei=reward,
        max_trainers=max(cfg.trainers, 1), stake_wei=cfg.stake_wei, panel=cfg.panel, quorum=cfg.quorum,
        backup=env.contract.registry.active_count() > cfg.panel if cfg.backup is None else cfg.backup, fee_bps=cfg.fee_bps,
    )
    created = create_task(env.contract, env.store, owner, request, progress=on_note)
    return created.task_id, created.spec


@dataclass
class Simulation:
    cfg: SimulateConfig
    env: Environment
    task_id: int
    trainers: list[TrainerNode]
    aggregators: dict[str, Aggregator]  # every registered aggregator's node, by address
    spec: TaskSpec
    test_x: Any
    test_y: Any
    rounds: list[dict[str, Any]] = field(default_factory=list)
    honest_cids: list[str] = field(default_factory=list)  # this round's honest submissions, for colluding attackers
    honest_blobs: dict[str, bytes] = field(default_factory=dict)  # their bytes (unpublished until the reveals)


def collusion_hook(store: ContentStore, honest_cids: list[str],
                   blobs: dict[str, bytes] | None = None) -> Callable[[int, int], Collusion]:
    """What a colluding attacker node sees: the honest updates already committed this round.  Nodes publish an
    update only when they reveal it, so the simulator hands the bytes over (``blobs``, by CID: the omniscient
    attacker of the robustness literature); a CID not in ``blobs`` is read from the store."""

    def seen(task_id: int, round_: int) -> Collusion:
        got = blobs or {}
        return Collusion(tuple(decode_state(got[cid] if cid in got else store.get(cid))[0] for cid in honest_cids))

    return seen


def post_by_panel(sim: Simulation) -> tuple[PostedRound, list[int], dict[str, Any]]:
    """The round's drawn panel members each recompute the round and post, until the quorum settles it; the deciding
    post, the gas of every transaction (commitments and votes), and who was drawn and agreed."""
    contract = sim.env.contract
    info = contract.task(sim.task_id)
    if info.seal_block == 0:  # the reveal deadline passed with some committers silent: anyone seals the round
        contract.seal(next(iter(sim.aggregators.values())).account, sim.task_id)
    panel, backup = contract.panel(sim.task_id)
    gas: list[int] = []
    agreed: list[str] = []
    nodes = []
    for member in panel + ([backup] if backup else []):
        node = sim.aggregators.get(member)
        if node is None:
            raise ConfigError(f"aggregator {member} was drawn for task {sim.task_id} but is not one of this simulation's "
                              "(an --rpc chain with other aggregators registered)")
        nodes.append((member, node))
    if info.quorum == 1:  # the panel's member posts at once
        nodes = nodes[:1]
    # with a quorum of more than one, every drawn member (the backup too) first commits to its result; the last
    # commitment opens the votes, and that member posts at once; then the panel's others post theirs
    for member, node in nodes + nodes[:len(panel)]:
        if node.voted(sim.task_id, info.current_round):
            continue
        posted = node.run_round(sim.task_id)
        if posted.commit_gas:
            gas.append(posted.commit_gas)
        if posted.stage == "committed":
            continue
        gas.append(posted.gas)
        agreed.append(member)
        if posted.decided:
            return posted, gas, {"drawn": panel, "backup": backup, "agreed": agreed, "fee_wei": str(posted.fee_wei)}
    raise ConfigError(f"task {sim.task_id}: the panel's {len(panel)} results did not agree; the round was not settled")


def run_round(sim: Simulation) -> dict[str, Any]:
    """One round, end to end, returned as the report's round entry."""
    contract = sim.env.contract
    info = contract.task(sim.task_id)
    r = info.current_round
    sim.env.chain.advance_to(info.opens_at(r))
    train_s = chain_s = 0.0
    commit_gas: list[int] = []
    reveal_gas: list[int] = []
    sim.honest_cids.clear()
    sim.honest_blobs.clear()
    # each trainer: train → commit (uploaded at its reveal); honest ones first, so colluding attackers can see their updates
    for node in sorted(sim.trainers, key=lambda t: t.attack is not None):
        node.join(sim.task_id)  # a trainer whose stake was lost gave its seat up: it joins again (a no-op otherwise)
        res = node.run_round(sim.task_id)
        train_s += res.train_s
        chain_s += res.chain_s
        if res.cid:
            commit_gas.append(res.gas)
            if node.attack is None:
                sim.honest_cids.append(res.cid)
                sim.honest_blobs[res.cid] = node._pending[(sim.task_id, r)].blob  # simulation only: see collusion_hook
    info = contract.task(sim.task_id)
    if info.committed_count < info.max_trainers:  # submissions close at the deadline unless every seat committed
        sim.env.chain.advance_to(info.opens_at(r) + info.submit_window)
    for node in sim.trainers:  # the reveal phase
        res = node.reveal_round(sim.task_id)
        chain_s += res.chain_s
        if res.cid:
            reveal_gas.append(res.gas)
    info = contract.task(sim.task_id)
    if info.seal_block == 0:  # not every committer revealed: the reveal window runs to its deadline
        sim.env.chain.advance_to(info.opens_at(r) + info.submit_window + info.reveal_window)
    committed, revealed = info.committed_count, info.submitted_count
    posted, votes_gas, panel = post_by_panel(sim)  # seed → fetch → reject/robust → value → receipt → post → credit
    chain_s += posted.seconds["chain"]
    credited = contract.credited(sim.task_id, r)  # read back from the chain's events
    receipt = posted.receipt
    spec = sim.spec
    state = decode_model(spec, sim.env.store.get(posted.model_cid), "new model")
    acc = held_out_score(spec.data, model_with_state(spec.model, spec.data, state), sim.test_x, sim.test_y)
    addresses = [n.address for n in sim.trainers]
    shown = {s.trainer for s in receipt.submissions}
    entry = {
        "round": r,
        "model_cid": posted.model_cid,
        "receipt_cid": posted.receipt_cid,
        "accuracy": acc,  # the test score: accuracy, or R^2 for a regression task ("score")
        "score": "r2" if spec.data.regression else "accuracy",
        "outliers": list(receipt.outliers),
        # a proof task's updates its model's rule (ccdrop) left out: paid nothing that round (aggregator.provable)
        "flagged": list(receipt.details.robust.get("full_rule_flagged", [])),
        "rejected": dict(receipt.rejected),
        "contributions": {a: float(receipt.contributions.get(a, 0.0)) for a in addresses},
        "bps": {a: int(receipt.bps.get(a, 0)) for a in addresses},
        "payout": receipt.details.payout.get("rule", spec.valuation.payout),
        "credited_wei": {a: str(credited.get(a, 0)) for a in addresses},
        "reveal": {"committed": committed, "revealed": revealed, "seed": receipt.round_seed,
                   "revealed_by": [a for a in addresses if a in shown], "stakes_lost_wei": str(posted.stakes_lost_wei)},
        "gas": {"submit": max(commit_gas) if commit_gas else 0, "reveal": max(reveal_gas) if reveal_gas else 0,
                "post_result": posted.gas, "panel_votes": votes_gas},
        "proof": posted.proof,
        "panel": panel,
        "seconds": {
            "train": train_s,
            "aggregate": posted.seconds["aggregate"],
            "valuation": posted.seconds["valuation"],
            "prove": float(posted.proof["prove_s"]) if posted.proof else 0.0,
            "chain": chain_s,
        },
    }
    sim.rounds.append(entry)
    return entry


def simulate(cfg: SimulateConfig, on_round: Callable[[dict[str, Any]], None] | None = None,
             on_note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the marketplace end to end and return the report (``on_round`` after each settled round,
    ``on_note`` for one-time set-up steps such as a proof task's development setup)."""
    cfg.check()
    splits = example_splits(cfg.task, cfg.trainers, cfg.partition, cfg.seed)
    n_accounts = cfg.trainers + 1 + cfg.aggregators
    with open_environment(
        chain=cfg.chain, rpc=cfg.rpc, contract=cfg.contract, n_accounts=n_accounts,
        store=cfg.store, store_dir=cfg.store_dir, ipfs_api=cfg.ipfs_api,
        # accounts: the owner, the first aggregator, the trainers, then the other aggregators
        aggregators=[1, *range(2 + cfg.trainers, n_accounts)],
    ) as env:
        owner, trainer_accounts = env.accounts[0], env.accounts[2:2 + cfg.trainers]
        agg_accounts = [env.accounts[1], *env.accounts[2 + cfg.trainers:]]
        reward = reward_of(cfg.reward)
        start_block = env.chain.w3.eth.block_number
        task_id, spec = post_task(env, owner, cfg, splits.validation, reward, on_note)
        attack_of = [cfg.attack if i >= cfg.trainers - cfg.attackers else None for i in range(cfg.trainers)]
        honest_cids: list[str] = []
        honest_blobs: dict[str, bytes] = {}
        hook = collusion_hook(env.store, honest_cids, honest_blobs)
        nodes = [
            TrainerNode(env.contract, env.store, acct, shard, attack=attack_of[i], seed=cfg.seed,
                        collusion=hook if attack_of[i] else None)
            for i, (acct, shard) in enumerate(zip(trainer_accounts, splits.trainers))
        ]
        for node in nodes:
            node.join(task_id)
        aggregators = {str(a.address): Aggregator(env.contract, env.store, a, splits.validation) for a in agg_accounts}
        if cfg.rpc:  # a chain someone else set up (`market devnet`): its registered dev-key aggregators serve too
            registered = {m.account for m in env.contract.registry.members() if m.active}
            for acct in dev_accounts(max(n_accounts, 64)):
                if acct.address in registered and str(acct.address) not in aggregators:
                    aggregators[str(acct.address)] = Aggregator(env.contract, env.store, acct, splits.validation)
        sim = Simulation(cfg, env, task_id, nodes, aggregators, spec, splits.test.x, splits.test.y,
                         honest_cids=honest_cids, honest_blobs=honest_blobs)
        for _ in range(cfg.rounds):
            entry = run_round(sim)
            if on_round:
                on_round(entry)
        withdrawn = {n.address: n.withdraw(task_id) for n in nodes}
        if env.contract.task(task_id).refundable:
            env.contract.withdraw_refund(owner, task_id)
        info = env.contract.task(task_id)
        withdrawn_chain = {a: str(env.contract.withdrawn(a, task_id, start_block)) for a in withdrawn}
        returned = env.contract.stakes_returned(task_id, info)
        lost = env.contract.stakes_lost(task_id, info)
        return {
            "task_id": task_id,
            "chain_id": env.chain.chain_id,
            "contract": env.contract.address,
            "reward_wei": str(info.reward),
            "config": cfg.model_dump(),
            "trainers": [
                {"address": n.address, "attack": attack_of[i], "samples": len(n.data)} for i, n in enumerate(nodes)
            ],
            "rounds": sim.rounds,
            "final": {
                "accuracy": sim.rounds[-1]["accuracy"] if sim.rounds else None,
                "withdrawn_wei": withdrawn_chain,
                "refunded_wei": str(info.refunded),
                "escrow_left_wei": str(info.escrow),
                "owner_withdrawn_wei": str(info.refunds_withdrawn),
                "contract_balance_wei": str(env.chain.balance(env.contract.address)),
                # withdrawn + refunded + escrow left == reward + stakes returned + stakes lost (to the wei)
                "stake_wei": str(info.stake),
                "stakes_returned_wei": str(sum(returned.values())),
                "stakes_returned_by": {a: str(returned.get(a, 0)) for a in withdrawn},
                "stakes_lost_wei": str(sum(v for per in lost.values() for v in per.values())),
                "fees_wei": str(info.fees),  # paid to aggregators (not in withdrawn_wei)
            },
        }
