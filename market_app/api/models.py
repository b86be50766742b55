"""Typed bodies of the HTTP API (``market serve``): what goes out and what comes in.

Every amount of wei is a decimal string (wei overflow JSON numbers); addresses
are EIP-55 checksummed; CIDs are CIDv1 strings.  These models are the OpenAPI
schema at ``/openapi.json``, so their descriptions are the API's reference.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from market.chain.contract import MAX_ROUNDS, MAX_TRAINERS
from market.spec import TaskSpec
from owner.task import MAX_REWARD_WEI, parse_eth

MAX_TASK_ID = 2**63 - 1  # ids are uint256 on chain; anything above this cannot exist in practice

Wei = str  # decimal string of an integer amount of wei
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ETH = r"^[0-9]{1,20}(\.[0-9]{1,18})?$"
MAX_WINDOW = 30 * 86400  # the contract's MAX_WINDOW


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(_Out):
    """Every error the API returns: a stable code and a sentence saying what to do."""

    error: str = Field(description="machine-readable code, e.g. unknown_task, invalid_request, creation_disabled")
    message: str = Field(description="what went wrong and what to do about it")
    detail: list[dict[str, Any]] | None = Field(None, description="per-field problems of an invalid request")


class ChainStatus(_Out):
    """What the server is connected to; cheap to poll (the dashboard does, once a second)."""

    chain_id: int
    contract: str
    block: int = Field(description="latest block number; anything shown may change only when this does")
    chain_time: int = Field(description="timestamp of the latest block (unix seconds)")
    task_count: int
    can_create_tasks: bool = Field(description="true when the server was started with an owner key file")
    creator: str | None = Field(None, description="address that signs POST /api/tasks (never its key)")
    events_since: int | None = Field(
        None, description="with ?since=N: how many events the contract emitted in blocks N+1..block "
        "(0 = nothing shown anywhere has changed)",
    )


class TaskSummary(_Out):
    task_id: int
    name: str | None = Field(None, description="the task's name: the spec's `name`, else its `data.name`; "
                             "null when the spec cannot be read from the store")
    status: Literal["open", "finished"]
    owner: str
    panel: int = Field(1, description="aggregators drawn from the market's registry each round (the owner picks none)")
    quorum: int = Field(1, description="identical results that settle a round")
    fee_bps: int = Field(0, description="the aggregators' fee: basis points of each round's pool")
    token: str = Field(description="ERC-20 of the reward; the zero address means ETH")
    rounds: int
    current_round: int = Field(description="the round accepting updates (== rounds once finished)")
    rounds_settled: int
    trainer_count: int
    max_trainers: int
    reward_wei: Wei
    escrow_wei: Wei = Field(description="still held by the contract for this task")
    credited_wei: Wei = Field(description="credited to trainers so far")
    refunded_wei: Wei = Field(description="returned (or returnable) to the owner so far")
    spec_cid: str
    created_block: int


class TaskList(_Out):
    total: int = Field(description="tasks on this contract (ids 1..total)")
    tasks: list[TaskSummary]


#: a round's phase (``market.chain.contract.PHASES``)
Phase = Literal["waiting", "open", "reveal", "closed", "backup", "availability", "settleable", "settled"]

_PHASES_TEXT = (
    "waiting: the round opens at opens_at (the schedule is fixed at creation); open: accepting commitments; "
    "reveal: commitments closed (deadline passed, or max_trainers committed), committers reveal their updates; "
    "closed: reveals closed (deadline passed, or every committer revealed), waiting for the aggregator's result; "
    "backup: the aggregator's window is over, the backup aggregator may post; availability: no result came, "
    "revealed trainers prove their updates available on chain; settleable: anyone may settle the round (an equal "
    "split among the updates proved available, a carry-over of the pool to the next round when none was, or a "
    "refund of its pool when nothing was revealed); "
    "settled: the task finished")


class LayerView(_Out):
    layer: str = Field(description="the layer and its settings, e.g. conv2d(out_channels=8, kernel_size=3)")
    out_shape: list[int] = Field(description="what it gives one sample")
    parameters: int = Field(description="its trained weights")


class ModelView(_Out):
    """A task's model as the spec declares it: every party builds exactly this (market.architecture)."""

    arch: str = Field(description="logreg, mlp, cnn or layers (declared)")
    parameters: int = Field(description="trained weights in all")
    macs: int = Field(description="multiply-adds (and pooling reads) per sample")
    input_shape: list[int] = Field(description="one sample as the model sees it")
    layers: list[LayerView]
    onnx_cid: str | None = Field(None, description="the ONNX file the layers and round-0 weights were converted from")


class TaskDetail(TaskSummary):
    verifier: str = Field(description="IRoundVerifier contract checking proofs; zero address = none")
    backup: bool = Field(False, description="a backup is drawn each round besides the panel; it may post in a "
                         "second result window when the panel did not settle the round in its own")
    fees_wei: Wei = Field("0", description="paid to aggregators, all rounds")
    submit_window: int = Field(description="seconds each round accepts commitments")
    reveal_window: int = Field(0, description="seconds committers then have to reveal")
    result_window: int = Field(description="seconds the aggregator then has to post (the backup as long again)")
    period: int = Field(0, description="seconds from one round's opening to the next's: round r opens at start_at + r * "
                        "period (commit, reveal, result windows, then an availability window as long as the reveal window)")
    start_at: int = Field(0, description="unix time round 0 opened")
    stake_wei: Wei = Field("0", description="each trainer's stake (0: none)")
    stakes_held_wei: Wei = Field("0", description="stakes deposited and neither returned nor lost")
    empty_rounds_to_reclaim: int = Field(0, description="empty rounds in a row after which the owner may reclaim (0: never)")
    empty_streak: int = Field(0, description="empty rounds in a row so far")
    validation_commitment: str
    opens_at: int | None = Field(None, description="unix time the current round opens (or opened)")
    submission_deadline: int | None = Field(None, description="unix time commitments to the current round close")
    reveal_deadline: int | None = Field(None, description="unix time reveals of the current round close")
    result_deadline: int | None = Field(None, description="unix time the current round's result window closes")
    final_deadline: int | None = Field(None, description="unix time the last result window closes (the backup's, "
                                       "or the aggregator's without one)")
    round_end: int | None = Field(None, description="unix time the availability window closes and the next round opens")
    committed_count: int = Field(0, description="commitments to the current round")
    revealed_count: int = Field(0, description="updates revealed in the current round")
    chain_time: int
    round_state: Phase = Field(
        "settled", description="the current round's phase, from the chain's state and clock (the later of the latest "
        "block's timestamp and the wall clock: an idle dev chain's latest block does not move): " + _PHASES_TEXT)
    round_state_text: str = Field("settled", description="round_state in one line, with the seconds left")
    trainers: list[str] = Field(description="joined trainers, in joining order")
    spec: dict[str, Any] | None = Field(None, description="the task spec, fetched from the store by spec_cid")
    spec_error: str | None = Field(None, description="why the spec could not be shown")
    model: ModelView | None = Field(None, description="the spec's model layer by layer, what a trainer reads before "
                                    "joining (`market task show`); null when the spec cannot be read")


class SubmissionView(_Out):
    """A trainer's commitment to a round and, once revealed, its update."""

    trainer: str
    status: Literal["revealed", "committed", "not_revealed"] = Field(
        "revealed", description="revealed: the CID is known; committed: waiting for the reveal window; not_revealed: "
        "the reveal window closed without a reveal (the stake is lost)")
    cid: str | None = Field(None, description="CID of the update (safetensors), once revealed")
    commitment: str | None = Field(None, description="the update's sketch commitment, revealed with the CID")
    commit_hash: str | None = Field(None, description="what the trainer committed in the commit window")
    block: int = Field(description="block of the reveal (of the commitment while not revealed)")


class TrainerRound(_Out):
    """One trainer's line in one round."""

    address: str
    status: Literal["kept", "outlier", "rejected", "submitted", "committed", "not_revealed", "fallback",
                    "not_submitted"] = Field(
        description="kept: aggregated and valued; outlier: removed by the robust rule; rejected: unusable update "
        "(see reason); submitted: revealed, waiting for the result; committed: committed, not revealed yet; "
        "not_revealed: committed and never revealed (stake lost); fallback: paid by the equal split of a round "
        "without result (among the updates proved available); not_submitted: did not commit"
    )
    reason: str | None = Field(None, description="why the update was rejected")
    update_cid: str | None = None
    contribution: float | None = Field(None, description="normalised share of the round's contribution (0..1)")
    bps: int | None = Field(None, description="basis points posted on chain (sum 10,000 over the round)")
    credited_wei: Wei = "0"
    stake_lost_wei: Wei = Field("0", description="stake lost in this round (no reveal, or an unavailable or invalid update)")


class RoundView(_Out):
    round: int
    status: Literal["open", "result", "fallback", "refunded"] = Field(
        description="open: not settled yet (see phase); result: the aggregator's result was credited; fallback: "
        "settled without a result: an equal split among the updates proved available (or a carry-over when none "
        "was); refunded: nothing was revealed, the round's pool went back to the owner"
    )
    settled: bool
    phase: Phase = Field(
        "settled", description="as TaskDetail.round_state: a settled round is `settled`, the current one by the "
        "chain's state and clock")
    phase_text: str = Field("settled", description="phase in one line, with the seconds left")
    committed: int = Field(0, description="commitments to this round (UpdateCommitted events)")
    revealed: int = Field(0, description="updates revealed in this round (UpdateRevealed events)")
    seed: str | None = Field(None, description="the round's seed (0x hex) posted with its result: every random "
                             "choice of the round was drawn from it")
    pool_wei: Wei
    stakes_lost_wei: Wei = Field("0", description="stakes lost in this round (StakeLost events), paid to its paid trainers")
    credited_wei: Wei = Field(description="credited to trainers in this round (TrainerCredited events), lost stakes included")
    refunded_wei: Wei = Field(description="returned to the owner from this round's pool (RoundSettled)")
    model_cid: str | None = Field(None, description="the round's aggregated model")
    receipt_cid: str | None = Field(None, description="the round receipt (every input, decision and score)")
    accuracy: float | None = Field(
        None, description="validation accuracy of the model this round published (model_cid, the model the next "
        "round starts from): the receipt's details.accuracy_model, or details.accuracy_after in receipts written "
        "before that field existed"
    )
    accuracy_survivors: float | None = Field(
        None, description="the survivors' coalition utility U(kept trainers) used for valuation (receipt "
        "details.accuracy_after); differs from `accuracy` when the robust rule's own aggregate became the update"
    )
    accuracy_before: float | None = Field(None, description="validation accuracy of the round's input model")
    accuracy_metric: str = "validation accuracy of the published model (receipt details.accuracy_model)"
    robust_rule: str | None = None
    valuation: str | None = None
    outliers: list[str] = Field(default_factory=list)
    rejected: dict[str, str] = Field(default_factory=dict, description="address -> reason")
    contributions: dict[str, float] = Field(default_factory=dict, description="address -> normalised share")
    bps: dict[str, int] = Field(default_factory=dict, description="address -> basis points")
    credited_by_trainer: dict[str, Wei] = Field(default_factory=dict)
    submissions: list[SubmissionView] = Field(default_factory=list, description="every commitment to the round, "
                                              "with its reveal once made; join order")
    trainers: list[TrainerRound] = Field(default_factory=list, description="one line per joined trainer")
    receipt_error: str | None = Field(None, description="why the receipt could not be read from the store")


class RoundList(_Out):
    task_id: int
    rounds: list[RoundView] = Field(description="rounds that opened so far, oldest first")


class SubmissionList(_Out):
    task_id: int
    round: int
    submissions: list[SubmissionView]


class ContributionMatrix(_Out):
    """Basis points per trainer per round: the stacked contribution bars."""

    task_id: int
    trainers: list[str]
    rounds: list[int] = Field(description="settled rounds")
    bps: list[list[int]] = Field(description="bps[i][j]: round rounds[i], trainer trainers[j]")
    shares: list[list[float]] = Field(description="normalised contribution shares, same layout")
    status: list[list[str]] = Field(description="TrainerRound.status, same layout")


class TrainerPayout(_Out):
    """One trainer's pay from this task (every amount is per task: the contract keeps each task's balance apart)."""

    address: str
    credited_wei: Wei = Field(description="credited by this task, all rounds (lost stakes of others included)")
    credited_by_round: list[Wei] = Field(description="index = round")
    owed_wei: Wei = Field(description="what the account can withdraw from this task now (the contract's owed(task, "
                          "account): credits, plus its stake once the task ended)")
    withdrawn_wei: Wei = Field(description="what the account withdrew from this task (Withdrawn events), stakes "
                               "given back included")
    stake_wei: Wei = Field("0", description="the stake the account holds in this task")
    stake_lost_wei: Wei = Field("0", description="stakes the account lost in this task (StakeLost events)")
    stake_returned_wei: Wei = Field("0", description="stakes given back to the account (StakeReturned events)")
    rounds_kept: int
    rounds_outlier: int
    rounds_rejected: int


class Payouts(_Out):
    task_id: int
    token: str
    reward_wei: Wei
    credited_wei: Wei
    refunded_wei: Wei
    escrow_wei: Wei
    refundable_wei: Wei = Field(description="this task's refunds the owner has not withdrawn yet")
    stake_wei: Wei = Field("0", description="each trainer's stake")
    stakes_held_wei: Wei = Field("0", description="stakes deposited and neither returned nor lost")
    stakes_lost_wei: Wei = Field("0", description="stakes lost so far, paid to the rounds' paid trainers")
    trainers: list[TrainerPayout]


class TaskOverview(_Out):
    """A task's detail, rounds and payouts read from one chain state: everything the dashboard draws."""

    task: TaskDetail
    rounds: list[RoundView]
    payouts: Payouts


class CreateTaskRequest(BaseModel):
    """``POST /api/tasks``: the same fields as ``market task create``; signed with the server's key file."""

    model_config = ConfigDict(extra="forbid")

    validation_commitment: str = Field(
        description="0x + 64 hex digits: commitment to the validation set you give the aggregator "
        "(print it with `market data commitment FILE`)", pattern=_BYTES32.pattern,
    )
    rounds: int = Field(3, ge=1, le=MAX_ROUNDS)
    reward_eth: str = Field("1", description="reward in ETH, a decimal with at most 18 decimals", examples=["0.5"],
                            pattern=_ETH)
    submit_window: int = Field(3600, ge=60, le=MAX_WINDOW, description="seconds each round accepts commitments (60 s to 30 days)")
    reveal_window: int = Field(600, ge=30, le=MAX_WINDOW, description="seconds committers then have to reveal (30 s to 30 days)")
    result_window: int = Field(3600, ge=60, le=MAX_WINDOW, description="seconds the aggregator then has to post (60 s to 30 days)")
    max_trainers: int = Field(64, ge=1, le=MAX_TRAINERS)
    stake_eth: str = Field("0", description="each trainer's stake in ETH (0: none, for development)", pattern=_ETH)
    backup: bool = Field(False, description="also draw a backup aggregator each round (the registry must hold panel + 1)")
    panel: int | None = Field(None, ge=1, le=7, description="aggregators drawn from the market's registry each round "
                              "(default: 3, quorum 2, when the registry holds 3 and result_window leaves a quorum time "
                              "to commit and vote; else 1, and the one drawn member decides the pay unchecked: see "
                              "the response's note)")
    quorum: int | None = Field(None, ge=1, le=7, description="identical results that settle a round (default: more than "
                               "half the panel)")
    fee_bps: int = Field(0, ge=0, le=5000, description="the aggregators' fee: basis points of each round's pool")
    empty_rounds_to_reclaim: int = Field(0, ge=0, le=MAX_ROUNDS,
                                         description="empty rounds in a row after which the owner may reclaim (0: never)")
    spec: TaskSpec | None = Field(None, description="task spec; default: the built-in digits spec")

    @field_validator("validation_commitment")
    @classmethod
    def _bytes32(cls, v: str) -> str:
        if not _BYTES32.match(v):
            raise ValueError("must be 0x followed by 64 hex digits (`market data commitment FILE` prints it)")
        return v

    @field_validator("reward_eth")
    @classmethod
    def _eth(cls, v: str) -> str:
        reward_wei(v)
        return v

    @field_validator("stake_eth")
    @classmethod
    def _stake(cls, v: str) -> str:
        stake_wei(v)
        return v


def reward_wei(text: str) -> int:
    """``reward_eth`` as exact integer wei (:func:`owner.task.parse_eth`, capped at the contract's MAX_REWARD)."""
    wei = parse_eth(text)
    if wei >= MAX_REWARD_WEI:
        raise ValueError("too large: the contract takes rewards below 2**127 wei")
    return wei


def stake_wei(text: str) -> int:
    """``stake_eth`` as exact integer wei: 0, or :func:`owner.task.parse_eth` (at most the contract's MAX_STAKE)."""
    from decimal import Decimal, InvalidOperation

    try:
        if Decimal(str(text).strip()) == 0:
            return 0
    except InvalidOperation:
        pass
    wei = parse_eth(text)
    if wei >= 2**96:
        raise ValueError("too large: the contract takes stakes below 2**96 wei")
    return wei


class CreatedTask(_Out):
    task_id: int
    owner: str
    spec_cid: str
    reward_wei: Wei
    tx_hash: str
    gas_used: int
    panel: int = Field(description="aggregators drawn each round (quorum: more than half of them, unless asked)")
    note: str | None = Field(None, description="why the task got a panel of one, and what that leaves unchecked")
