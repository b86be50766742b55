"""The project owner's side of a task: publish the initial model and the spec, escrow the reward.

One typed request (:class:`TaskRequest`) serves every way a task is created: ``market task create``,
``POST /api/tasks`` and ``market simulate``.  :func:`create_task` checks what it can before anything
is sent (the owner's balance), stores the initial model and then the spec naming it (both by CID),
deploys the round verifier for proof tasks, and sends ``createTask`` with the reward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market.chain.contract import MAX_ROUNDS, MAX_TRAINERS, MarketContract, eth_text
from market.errors import ConfigError, InsufficientFunds
from market.spec import TaskSpec
from market.store import ContentStore, put_json
from market.task import initial_model_blob

WEI_PER_ETH = 10**18
MAX_REWARD_WEI = 2**127  # the contract's MAX_REWARD is 2**127 - 1 (every sum it keeps stays in 128 bits)


def parse_eth(text: str) -> int:
    """A decimal ETH amount as exact integer wei (``"1.5"`` → 1500000000000000000).

    Raises ValueError with a sentence saying what is wrong (callers name the option or field).
    """
    with localcontext(prec=200):  # exact: the default 28 digits would round large or long amounts
        try:
            value = Decimal(str(text).strip())
        except InvalidOperation:
            raise ValueError(f"{text!r}: not a number of ETH") from None
        if not value.is_finite():
            raise ValueError(f"{text!r}: not a finite number of ETH")
        wei = value * WEI_PER_ETH
    if value <= 0 or wei != wei.to_integral_value():
        raise ValueError(f"{text!r}: must be a positive amount with at most 18 decimals (1 wei = 1e-18 ETH)")
    return int(wei)


#: the contract's shortest result window for a quorum above one (its members commit by 6/8 of it and vote from 7/8)
MIN_QUORUM_RESULT_WINDOW = 480


#: the default panel (when the registry holds that many aggregators): a quorum of 2 of 3 members, each recomputing the
#: round, must agree before anything is credited; a panel of one decides the pay alone
DEFAULT_PANEL = 3


def default_panel(panel: int | None, proof_task: bool, drawable: int, result_window: int,
                  backup: bool = False) -> tuple[int, str | None]:
    """The panel a task asks for: ``panel`` when given; else :data:`DEFAULT_PANEL` when the registry holds that many
    aggregators the task can draw (``drawable``: the owner is never drawn), one more with a ``backup``, and the result
    window leaves a quorum time to commit and vote; else 1. With a note whenever the panel is one, saying what the one
    drawn member then decides unchecked (for a proof task: the coalition utilities and the rejections, which the
    proof does not bind; for any other task: everything)."""
    if panel is not None and panel > 1:
        return panel, None
    need = DEFAULT_PANEL + (1 if backup else 0)
    if panel is None and drawable >= need and result_window >= MIN_QUORUM_RESULT_WINDOW:
        return DEFAULT_PANEL, None
    why = ("asked for" if panel is not None else
           f"the registry holds {drawable} aggregators this owner's task can draw" if drawable < need else
           f"a result window of {result_window} s is under the {MIN_QUORUM_RESULT_WINDOW} s a quorum needs")
    unchecked = ("the coalition utilities and the rejections, which the round's proof does not bind" if proof_task
                 else "every trainer's pay, which nobody checks")
    return 1, (f"note: a panel of one ({why}): the drawn aggregator alone decides {unchecked}; a panel of "
               f"{DEFAULT_PANEL} needs {DEFAULT_PANEL} bonded aggregators besides the owner and a result window of at "
               f"least {MIN_QUORUM_RESULT_WINDOW} s")


class TaskRequest(BaseModel):
    """Everything ``createTask`` needs from the owner; the spec is published by :func:`create_task`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    spec: TaskSpec = Field(default_factory=TaskSpec)
    onnx: bytes | None = Field(None, description="the ONNX file the spec's model was converted from (model.onnx_cid)")
    validation_commitment: bytes = Field(description="32-byte commitment to the validation set the aggregator gets")
    rounds: int = Field(3, ge=1, le=MAX_ROUNDS)
    reward_wei: int = Field(gt=0)
    submit_window: int = Field(3600, ge=60, le=30 * 86400, description="seconds each round accepts commitments")
    reveal_window: int = Field(600, ge=30, le=30 * 86400, description="seconds committers then have to reveal")
    result_window: int = Field(3600, ge=60, le=30 * 86400, description="seconds the aggregator then has to post")
    max_trainers: int = Field(64, ge=1, le=MAX_TRAINERS)
    stake_wei: int = Field(0, ge=0, lt=2**96, description="each trainer's stake (0: none, for development; below 2**96 "
                           "wei, the contract's MAX_STAKE + 1)")
    backup: bool = Field(False, description="also draw a backup aggregator each round, who may post in a second "
                         "result window when the panel does not settle the round in its own")
    panel: int = Field(1, ge=1, le=7, description="aggregators drawn from the registry each round")
    quorum: int | None = Field(None, ge=1, le=7, description="identical results that settle a round (default: more "
                               "than half the panel)")
    fee_bps: int = Field(0, ge=0, le=5000, description="the aggregators' fee: basis points of each round's pool, "
                         "shared by the panel members that posted the accepted result")
    empty_rounds_to_reclaim: int = Field(0, ge=0, le=MAX_ROUNDS,
                                         description="empty rounds in a row after which the owner may reclaim (0: never)")
    #: proof tasks: the round sizes (valid updates) the verifier covers; default: max_trainers and one fewer
    proof_sizes: tuple[int, ...] = ()

    @field_validator("validation_commitment")
    @classmethod
    def _bytes32(cls, v: bytes) -> bytes:
        if len(v) != 32:
            raise ValueError(f"must be 32 bytes (got {len(v)})")
        return v

    @model_validator(mode="after")
    def _quorum(self) -> "TaskRequest":
        q = self.panel // 2 + 1 if self.quorum is None else self.quorum
        if not (self.panel < 2 * q and q <= self.panel):
            raise ValueError(f"a quorum of {q} does not decide a panel of {self.panel}: it must be more than half "
                             "the panel and at most all of it")
        if q > 1 and self.result_window < MIN_QUORUM_RESULT_WINDOW:
            raise ValueError(f"a result window of {self.result_window} s is too short for a quorum of {q}: the "
                             f"contract takes at least {MIN_QUORUM_RESULT_WINDOW} s (its members commit, then vote)")
        return self


def task_request(**fields: Any) -> TaskRequest:
    """A :class:`TaskRequest`, or a one-line ConfigError naming the first field that is wrong."""
    try:
        return TaskRequest(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise ConfigError(f"{where}: {str(first.get('msg', 'invalid')).removeprefix('Value error, ')}") from None


@dataclass(frozen=True)
class CreatedTask:
    task_id: int
    spec: TaskSpec
    spec_cid: str
    tx: Any  # the createTask transaction receipt

    @property
    def tx_hash(self) -> str:
        return "0x" + bytes(self.tx["transactionHash"]).hex().removeprefix("0x")

    @property
    def gas_used(self) -> int:
        return int(self.tx["gasUsed"])


def publish_spec(store: ContentStore, spec: TaskSpec, onnx: bytes | None = None) -> tuple[TaskSpec, str]:
    """Store the initial model, then the spec naming it; return (spec, spec CID).

    A model converted from an ONNX file (``model.onnx_cid``) takes that file's weights as its round-0 model, and the
    file is stored too, so that every trainer can convert it again (``market task show``)."""
    model_cid = store.put(initial_model_blob(spec, onnx))
    if spec.model.onnx_cid is not None:
        assert onnx is not None and store.put(onnx) == spec.model.onnx_cid
    spec = TaskSpec.model_validate({**spec.model_dump(mode="json"), "initial_model_cid": model_cid})
    return spec, put_json(store, spec.model_dump(mode="json"))


def check_funds(contract: MarketContract, owner: str, reward_wei: int) -> None:
    """Raise :class:`InsufficientFunds` unless ``owner`` can pay ``reward_wei`` (checked before anything is sent)."""
    balance = contract.chain.balance(owner)
    if reward_wei > balance:
        raise InsufficientFunds(
            f"the owner {owner} holds {eth_text(balance)} ETH, less than the reward of {eth_text(reward_wei)} ETH "
            "(a reward more than the owner's balance): fund the account or ask for a smaller reward"
        )
    if reward_wei >= MAX_REWARD_WEI:
        raise ConfigError(f"a reward of {reward_wei} wei is over the contract's most, 2**127 - 1 wei")


def create_task(
    contract: MarketContract,
    store: ContentStore,
    owner: LocalAccount,
    request: TaskRequest,
    progress: Callable[[str], None] | None = None,
) -> CreatedTask:
    """Publish the spec and escrow the reward; return the new task."""
    check_funds(contract, owner.address, request.reward_wei)
    spec, spec_cid = publish_spec(store, request.spec, request.onnx)
    assert spec.initial_model_cid
    verifier: dict[str, str] = {}
    if spec.proof.system != "none":
        from market.zk.deploy import deploy_round_verifier

        # by default: rounds where every trainer's update is valid, or all but one
        sizes = set(request.proof_sizes) or {request.max_trainers, request.max_trainers - 1}
        verifier["verifier"] = deploy_round_verifier(contract.chain, owner, spec, sizes, progress=progress)
        # the market takes only verifiers whose code (and each Groth16 verifier's) is on its allowlist
        if contract.ensure_verifier_allowed(owner, verifier["verifier"]) and progress is not None:
            progress("allowed the verifier's code on the market (this key is its verifier admin)")
    task_id, tx = contract.create_task(
        owner,
        spec_cid=spec_cid,
        initial_model_cid=spec.initial_model_cid,
        validation_commitment=request.validation_commitment,
        rounds=request.rounds,
        reward_wei=request.reward_wei,
        submit_window=request.submit_window,
        reveal_window=request.reveal_window,
        result_window=request.result_window,
        max_trainers=request.max_trainers,
        stake_wei=request.stake_wei,
        empty_rounds_to_reclaim=request.empty_rounds_to_reclaim,
        backup=request.backup,
        panel=request.panel,
        quorum=request.quorum,
        fee_bps=request.fee_bps,
        **verifier,
    )
    return CreatedTask(task_id, spec, spec_cid, tx)
