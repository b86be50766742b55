"""The round receipt: the JSON document (stored by CID, its CID posted on-chain) that
records every input, parameter, seed, decision and number of one round, so that
``market verify`` can replay it.
"""

from __future__ import annotations

from typing import Any

from aggregator.round import RoundOutcome
from market.contract import Submission
from market.roles import TaskView

RECEIPT_VERSION = 1


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
) -> dict[str, Any]:
    rejected = dict(prerejected)
    rejected.update(outcome.rejected)
    by_address = outcome.bps_by_address
    bps = {s.trainer: int(by_address.get(s.trainer, 0)) for s in submissions}
    body = outcome.to_dict()
    body.pop("timings", None)  # wall-clock seconds: the receipt must be byte-identical on a replay
    return {
        "version": RECEIPT_VERSION,
        "task_id": view.info.task_id,
        "round": round_,
        "spec_cid": view.info.spec_cid,
        "validation_commitment": view.info.validation_commitment,
        "input_model_cid": global_cid,
        "model_cid": model_cid,
        "submissions": [
            {"trainer": s.trainer, "cid": s.cid, "commitment": "0x" + s.commitment.hex()} for s in submissions
        ],
        "rejected": rejected,
        "outliers": list(outcome.outliers),
        # normalised shares of the round (the raw Shapley values are in details.contributions)
        "contributions": {s.trainer: float(outcome.shares.get(s.trainer, 0.0)) for s in submissions},
        "bps": bps,
        "bps_vector": [bps[s.trainer] for s in submissions],
        "valuation_seed": seed,
        "details": body,
    }
