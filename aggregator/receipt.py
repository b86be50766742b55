"""Build the round receipt (:class:`market.receipt.Receipt`) from a round's outcome.

The receipt records every input, parameter, seed, decision and number of one round, so that
``market verify`` can replay it; wall-clock timings stay out, so a replay is byte-identical.
"""

from __future__ import annotations

from aggregator.outcome import RoundOutcome
from market.chain.contract import Submission
from market.receipt import Receipt, ReceiptDetails, ReceiptSubmission
from market.task import TaskView


def build_receipt(
    *,
    view: TaskView,
    round_: int,
    submissions: list[Submission],
    global_cid: str,
    model_cid: str,
    prerejected: dict[str, str],
    outcome: RoundOutcome,
    seed: int,
    round_seed: bytes = b"",
) -> Receipt:
    rejected = dict(prerejected)
    rejected.update(outcome.rejected)
    # every rejection but a copy is checkable without the validation set: its trainer loses its stake
    lost = [s.trainer for s in submissions if s.trainer in rejected and s.trainer not in outcome.copies]
    by_address = outcome.bps_by_address
    bps = {s.trainer: int(by_address.get(s.trainer, 0)) for s in submissions}
    body = outcome.to_dict()
    body.pop("timings", None)  # wall-clock seconds: the receipt must be byte-identical on a replay
    return Receipt(
        task_id=view.info.task_id,
        round=round_,
        spec_cid=view.info.spec_cid,
        validation_commitment=view.info.validation_commitment,
        input_model_cid=global_cid,
        model_cid=model_cid,
        submissions=[ReceiptSubmission(trainer=s.trainer, cid=s.cid, commitment="0x" + s.commitment.hex()) for s in submissions],
        rejected=rejected,
        outliers=list(outcome.outliers),
        # normalised shares of the round (the raw Shapley values are in details.contributions)
        contributions={s.trainer: float(outcome.shares.get(s.trainer, 0.0)) for s in submissions},
        bps=bps,
        bps_vector=[bps[s.trainer] for s in submissions],
        valuation_seed=seed,
        details=ReceiptDetails.model_validate(body),
        round_seed="0x" + round_seed.hex() if round_seed else "",
        lost=lost,
    )
