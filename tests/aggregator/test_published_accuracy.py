"""The accuracy a round reports is that of the model it published (the next round's input), recorded in
the receipt as ``details.accuracy_model``; ``accuracy_after`` stays the accuracy of the survivors' coalition
(their FedAvg), the model whose utility is ``U(survivors)``."""

from __future__ import annotations

import pytest
import torch

from aggregator.round import aggregate_round
from market.data import Splits, digits_splits
from market.models import build_model, model_with_state, state_of
from market.receipt import Receipt, ReceiptDetails
from market.spec import TaskSpec
from tests.aggregator.test_round import SPEC, submissions


def _spec(rule: str, arch: str = "logreg") -> TaskSpec:
    return SPEC.model_copy(update={"robust": SPEC.robust.model_copy(update={"rule": rule}),
                                   "model": SPEC.model.model_copy(update={"arch": arch})})


@pytest.fixture(scope="module")
def inputs() -> tuple[Splits, dict[str, torch.Tensor], list[tuple[str, bytes]]]:
    splits = digits_splits(5, "iid", seed=0)
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    return splits, g, submissions(splits, g, seed=0, attackers={})


def _exact_accuracy(spec: TaskSpec, state: dict[str, torch.Tensor], splits: Splits) -> float:
    with torch.no_grad():
        net = model_with_state(spec.model, spec.data, state)
        correct = int((net(splits.validation.x).argmax(dim=1) == splits.validation.y).sum())
    return correct / int(splits.validation.y.numel())


@pytest.mark.parametrize("rule", ["ccdrop", "cwmed", "multikrum", "mean"])
def test_the_round_records_the_published_models_validation_accuracy(inputs, rule: str) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = inputs
    spec = _spec(rule)

    out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y)

    assert out.accuracy_model == _exact_accuracy(spec, out.new_state, splits)
    assert out.to_dict()["accuracy_model"] == out.accuracy_model


def test_with_the_rules_own_aggregate_the_published_accuracy_is_not_the_survivors_utility(inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = inputs
    spec = _spec("ccdrop")  # the default rule: its own aggregate (centered clipping) becomes the update

    out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y)

    assert out.robust["update"] == "rule"
    assert out.valuation_record["utility_after"] == out.utilities[",".join(sorted(out.survivors))]  # U(survivors), a FedAvg
    assert out.accuracy_model != out.accuracy_after  # 0.926 vs 0.914 here: the published model is another one


def test_a_proof_round_records_the_published_accuracy_too(inputs) -> None:  # type: ignore[no-untyped-def]
    from market.cid import compute_cid
    from market.commitment import update_sketch
    from market.zk.sketch import binder

    splits, g, subs = inputs
    spec = SPEC.model_copy(update={"robust": SPEC.robust.model_copy(update={"rule": "multikrum", "f": 1}),
                                   "proof": SPEC.proof.model_copy(update={"system": "groth16"}),
                                   "valuation": SPEC.valuation.model_copy(update={"payout": "round"})})
    sketches = {a: update_sketch(spec, 1, b) for a, b in subs}
    binders = {a: binder(1, 0, a, compute_cid(b)) for a, b in subs}

    out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y, proof_seed=b"\x01" * 32,
                          binders=binders, sketches=sketches)

    assert out.proof is not None and out.accuracy_model == _exact_accuracy(spec, out.new_state, splits)


def test_a_cnn_round_records_the_published_accuracy(inputs) -> None:  # type: ignore[no-untyped-def]
    splits, _, _ = inputs
    spec = _spec("cwmed", "cnn")
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    subs = submissions(splits, g, seed=0, attackers={}, spec=spec)[:3]

    out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y)

    assert out.accuracy_model == _exact_accuracy(spec, out.new_state, splits)


def test_receipts_fall_back_to_accuracy_after_when_written_before_accuracy_model() -> None:
    base = dict(task_id=1, round=0, spec_cid="s", validation_commitment="0x", input_model_cid="a", model_cid="b",
                submissions=[], rejected={}, outliers=[], contributions={}, bps={}, bps_vector=[], valuation_seed=0)

    old = Receipt(**base, details=ReceiptDetails(accuracy_after=0.9))  # type: ignore[arg-type]
    new = Receipt(**base, details=ReceiptDetails(accuracy_after=0.9, accuracy_model=0.85))  # type: ignore[arg-type]

    assert (old.accuracy, new.accuracy) == (0.9, 0.85)
    assert Receipt.from_json({**old.to_json(), "details": {"accuracy_after": 0.9}}).accuracy == 0.9
