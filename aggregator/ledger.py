"""What a receipt carries to the next round, checked against what its round paid.

The cumulative payout pays each round by every trainer's sum of per-round values, and the next round reads the
earlier rounds' values back from their receipts. A receipt is not part of what the chain checks (the proof and the
panel's vote cover the model, the seed, the lost stakes and the basis points), so the values it hands on must follow
from what its round paid: the next round sums each receipt's per-round ``contributions`` (never its
``cumulative_values``, which anyone can write), and takes a receipt's values only when they give the basis points the
receipt paid (:func:`split_problem`); the values of a receipt that does not are left out, by every aggregator and by
``market verify`` alike. (Values forged so that they still give the paid basis points, e.g. an unpaid survivor's
value made more negative, are caught by the replay, ``market verify --validation``.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aggregator.provable import proven_bps, proven_split
from aggregator.round import pay_split
from market.payout import cumulative_values
from market.receipt import Receipt
from market.spec import TaskSpec


def _first_difference(name: str, a: Mapping[str, object], b: Mapping[str, object]) -> str:
    key = next((k for k in [*a, *b] if a.get(k) != b.get(k)), "")
    return f"{name} of {key}: receipt {a.get(key)!r}, from its values {b.get(key)!r}"


def split_problem(spec: TaskSpec, receipt: Receipt, prior: Mapping[str, float], revealed: Sequence[str] | None = None,
                  stored: bool = True) -> str | None:
    """None when ``receipt`` paid what its values give; else what does not hold, in a line (never an exception: a
    malformed receipt is left out, not a crash of every round after it).

    What must hold: its submitters are ``revealed`` (the round's revealed trainers on chain, join order; None: not
    checked) and its lists follow from them (the submitters less the updates refused before validation, the valid
    ones, the survivors and outliers among them, a proof task's slots); its contributions name every submitter, 0
    for every update the round did not value; its basis points (``receipt.bps``, which ``market verify`` checks
    against the posted ones) are the split of ``prior`` (the earlier receipts' sums) plus the contributions, by the
    task's settlement (the proven split on a proof task); and (``stored``) its cumulative values are that sum. The
    next round passes ``stored=False``: it never reads the stored sums, so a wrong one costs the round nothing."""
    try:
        return _problem(spec, receipt, prior, revealed, stored)
    except Exception as exc:  # noqa: BLE001  # anything a doctored receipt can raise: it is left out, named
        return f"it cannot be read as a round's pay: {type(exc).__name__}: {exc}"


def _problem(spec: TaskSpec, receipt: Receipt, prior: Mapping[str, float], revealed: Sequence[str] | None,
             stored: bool) -> str | None:
    d = receipt.details
    order = [s.trainer for s in receipt.submissions]
    if revealed is not None and order != list(revealed):
        extra, missing = sorted(set(order) - set(revealed)), sorted(set(revealed) - set(order))
        return (f"its submitters are not the ones revealed on chain (listed, not revealed: {extra or 'none'}; "
                f"revealed, not listed: {missing or 'none'}; or not in join order)")
    refused_early = set(receipt.rejected) - set(d.rejected)  # unavailable, wrong metadata, ...: before validation
    if d.addresses != [a for a in order if a not in refused_early] or not set(d.rejected) <= set(d.addresses):
        return "its addresses are not its submitters less the updates it refused before validating them"
    valid = [a for a in d.addresses if a not in d.rejected]
    survivors, outliers = list(d.survivors), list(d.outliers)
    if sorted(survivors + outliers) != sorted(valid) or outliers != list(receipt.outliers):
        return "its survivors and outliers are not its valid updates, each once"
    if (d.proof is not None) != (spec.proof.system != "none"):
        return f"it {'carries' if d.proof is not None else 'lacks'} a proof's inputs on a task settled " + (
            "by a proof" if spec.proof.system != "none" else "without one")
    flagged = d.robust.get("full_rule_flagged", [])
    if not isinstance(flagged, list) or not set(flagged) <= set(valid) or (flagged and d.proof is None):
        return "its updates flagged by the model's rule are not valid updates of a proof task's round"
    players = [a for a in survivors if a not in flagged]
    if set(d.contributions) != set(d.addresses):
        return "its contributions do not name exactly the round's submitters"
    unvalued = {a: v for a, v in d.contributions.items() if a not in players and v != 0}
    if unvalued:
        return f"it gives a value to updates the round did not value: {unvalued}"
    cumulative = cumulative_values(prior, d.contributions)
    if stored and cumulative != d.cumulative_values:
        return "its cumulative values are not the earlier rounds' plus this round's: " + _first_difference(
            "the cumulative value", d.cumulative_values, cumulative)
    if d.proof is None:
        _, bps = pay_split(spec, d.addresses, survivors, d.contributions, prior)
    else:
        if d.proof.slots != valid:
            return "its proof's slots are not its valid updates"
        values = [0] * len(valid)
        if players:
            _, values = proven_split(spec, valid, d.proof.perm, players, d.contributions, prior)
        if values != list(d.proof.values):
            return f"its proven values {list(d.proof.values)} are not the split of its values {values}"
        bps = proven_bps(d.addresses, valid, values, survivors)
    paid = [receipt.bps.get(a, 0) for a in d.addresses]
    if bps != paid:
        return f"it paid {paid} bps, its values give {bps}"
    return None
