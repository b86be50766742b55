"""The round receipt: one typed document, written by the aggregator and read by everyone else.

A receipt (JSON, stored by CID, its CID posted on chain with the result) records every input,
parameter, seed, decision and number of one round, so that ``market verify`` can replay it.  The
aggregator builds a :class:`Receipt`; the HTTP API, the CLI, ``market verify``, the simulator and
the next round's aggregator (cumulative values) read it back with :meth:`Receipt.from_json`, which
refuses a document that is not a receipt with a one-line :class:`~market.errors.DataError`.

Proof tasks carry the round circuit's inputs as :class:`ProofInputs` (see :mod:`market.zk.statement`):
the statement is rebuilt from them by :meth:`ProofInputs.decision`, the one place that does it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from market.errors import DataError
from market.zk import statement as zs

RECEIPT_VERSION = 1


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProofInputs(_Doc):
    """The round circuit's inputs: valid submitters in slot order and what the statement is built from."""

    system: str
    slots: list[str]  # valid submitters, join order
    n: int
    k: int  # sketch length
    f: int  # outliers the circuit removes
    sketches: list[list[int]]
    binders: list[str]  # decimal field elements
    perm: list[int]  # the base permutation drawn on chain
    outlier_slots: list[int]
    utilities: list[int]  # quantised coalition utilities, circuit order
    values: list[int]

    def decision(self) -> zs.Decision | None:
        """The circuit's statement (outliers, coalitions) for these inputs; None when no update was valid."""
        if self.n == 0:
            return None
        return zs.decide(self.sketches, [int(b) for b in self.binders], self.f, self.perm)

    def rejected_mask(self, join_order: list[str]) -> int:
        """Bit j set: the j-th submitter (join order) is not a valid slot of the proof."""
        valid = set(self.slots)
        return sum(1 << j for j, trainer in enumerate(join_order) if trainer not in valid)


class ReceiptDetails(BaseModel):
    """What the round computed (``aggregator.outcome.RoundOutcome``), minus wall-clock timings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    addresses: list[str] = Field(default_factory=list)  # submission order; ``bps`` is aligned with it
    samples: dict[str, int] = Field(default_factory=dict)
    rejected: dict[str, str] = Field(default_factory=dict)
    outliers: list[str] = Field(default_factory=list)
    survivors: list[str] = Field(default_factory=list)
    robust: dict[str, Any] = Field(default_factory=dict)  # rule, applied rule, f, scores and treatment per trainer
    valuation: str | None = None
    seed: int = 0
    contributions: dict[str, float] = Field(default_factory=dict)  # raw values (metric units: nats or accuracy)
    shares: dict[str, float] = Field(default_factory=dict)
    bps: list[int] = Field(default_factory=list)
    utilities: dict[str, float | None] = Field(default_factory=dict)  # coalition "a,b,…" -> U
    evaluations: int = 0
    accuracy_before: float | None = None
    accuracy_after: float | None = None  # U(survivors): the survivors' coalition utility
    # validation accuracy (R^2 on a regression task) of the model the round published (``model_cid``, the next
    # round's input); None in receipts written before it was recorded (readers then fall back to ``accuracy_after``)
    accuracy_model: float | None = None
    valuation_record: dict[str, Any] = Field(default_factory=dict)
    cumulative_values: dict[str, float] = Field(default_factory=dict)
    cumulative_shares: dict[str, float] = Field(default_factory=dict)
    # payout rule ("cumulative" | "round"), metric, coalition utility, estimator, weights ("equal")
    payout: dict[str, str] = Field(default_factory=dict)
    proof: ProofInputs | None = None


class ReceiptSubmission(_Doc):
    trainer: str
    cid: str
    commitment: str  # 0x-prefixed hex


class Receipt(_Doc):
    """One round's receipt (see the module docstring)."""

    version: int = RECEIPT_VERSION
    task_id: int
    round: int
    spec_cid: str
    validation_commitment: str
    input_model_cid: str
    model_cid: str
    submissions: list[ReceiptSubmission]  # join order
    rejected: dict[str, str]  # trainer -> reason
    outliers: list[str]
    contributions: dict[str, float]  # normalised shares of the round (raw values in details.contributions)
    bps: dict[str, int]
    bps_vector: list[int]  # join order: what postResult carries
    valuation_seed: int
    details: ReceiptDetails
    #: the round's seed (0x hex), fixed on chain by the block that closed the reveal window; every
    #: random choice of the round (valuation sampling, the proof's permutation) is drawn from it
    round_seed: str = ""
    #: trainers whose update was unavailable or checkably invalid (lostMask): they lose their stake
    lost: list[str] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON document as stored (``put_json`` canonicalises it)."""
        return self.model_dump(mode="json", exclude_none=False)

    @classmethod
    def from_json(cls, doc: Any, what: str = "receipt") -> "Receipt":
        """Parse a stored receipt (bytes, text or parsed JSON); DataError in one line if it is not one."""
        try:
            if isinstance(doc, (bytes, str)):
                doc = json.loads(doc)
            return cls.model_validate(doc)
        except ValueError as exc:  # json and pydantic errors alike
            if isinstance(exc, ValidationError) and exc.errors():
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                raise DataError(f"{what} is not a valid round receipt: {where}: {first.get('msg')}") from None
            raise DataError(f"{what} is not a valid round receipt: {exc}") from None

    @property
    def accuracy(self) -> float | None:
        """Validation accuracy of the published model: ``details.accuracy_model``, or for a receipt written
        before that field existed, ``details.accuracy_after``."""
        d = self.details
        return d.accuracy_model if d.accuracy_model is not None else d.accuracy_after
