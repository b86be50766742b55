"""One aggregation round end to end: trainers train, one attacks, the round pays the honest.

Also the small pieces the round is made of (FedAvg) and its edge cases:
rejected updates, too few updates for the robust rule, nobody valid.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch

from aggregator.fedavg import apply_delta, fedavg
from aggregator.outcome import RoundOutcome
from aggregator.round import aggregate_round
from market.data import Splits, digits_splits
from market.models import accuracy, build_model, model_with_state, state_of
from market.spec import TaskSpec
from market.tensors import encode_state
from trainer_node.attacks import poison_data, poison_update
from trainer_node.train import local_update

SPEC = TaskSpec()
#: for the tests about Multi-Krum's own behaviour (FedAvg of the survivors, n > 2f + 2), whatever the default rule is
MULTIKRUM = SPEC.model_copy(update={"robust": SPEC.robust.model_copy(update={"rule": "multikrum"})})


def address(i: int) -> str:
    return f"0x{i + 1:040x}"


def blob(delta: dict[str, torch.Tensor], samples: int) -> bytes:
    return encode_state(delta, {"samples": str(samples), "kind": "delta"})


def submissions(
    splits: Splits, g: dict[str, torch.Tensor], seed: int, attackers: dict[int, str], spec: TaskSpec = SPEC
) -> list[tuple[str, bytes]]:
    """Every trainer's update for one round; ``attackers`` maps trainer index to attack name."""
    out = []
    for i, data in enumerate(splits.trainers):
        attack = attackers.get(i)
        train_on = poison_data(attack, data, spec.data.n_classes) if attack else data
        delta = local_update(spec, g, train_on, seed=seed + i)
        if attack:
            delta = poison_update(attack, delta, seed=seed + i)
        out.append((address(i), blob(delta, len(data))))
    return out


@dataclass
class Market:
    outcomes: list[RoundOutcome]
    test_accuracy: float


def run_market(
    n: int, partition: str, seed: int, attackers: dict[int, str], rounds: int = 3, spec: TaskSpec = SPEC
) -> Market:
    splits = digits_splits(n, partition, seed)
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    outcomes = []
    for r in range(rounds):
        subs = submissions(splits, g, seed=1000 * seed + 100 * r, attackers=attackers, spec=spec)
        outcome = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y, seed=spec.valuation.seed + r)
        outcomes.append(outcome)
        g = outcome.new_state
    net = model_with_state(spec.model, spec.data, g)
    return Market(outcomes, accuracy(net, splits.test.x, splits.test.y))


# --- FedAvg -----------------------------------------------------------------------------------


def test_fedavg_weights_by_sample_count() -> None:
    assert fedavg(torch.tensor([[0.0, 0.0], [4.0, 8.0]]), [3, 1]).tolist() == [1.0, 2.0]


def test_fedavg_needs_one_weight_per_vector() -> None:
    with pytest.raises(ValueError):
        fedavg(torch.zeros(2, 3), [1.0])


def test_apply_delta_adds_in_name_order() -> None:
    state = OrderedDict([("a", torch.tensor([1.0])), ("b", torch.tensor([[1.0, 1.0]]))])

    new = apply_delta(state, torch.tensor([1.0, 2.0, 3.0]))

    assert new["a"].tolist() == [2.0] and new["b"].tolist() == [[3.0, 4.0]]


# --- the marketplace, three rounds with a sign-flipping attacker ------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5"])
def test_sign_flipper_is_an_outlier_every_round_and_paid_nothing(partition: str, seed: int) -> None:
    attacker = address(5)

    market = run_market(6, partition, seed, attackers={5: "sign_flip"})

    if partition == "iid":
        assert all(o.outliers == (attacker,) for o in market.outcomes)
    else:  # honest Dirichlet updates spread wider: once (seed 0, round 3) it was not far enough to flag
        assert all(o.outliers in ((attacker,), ()) for o in market.outcomes)
        assert sum(o.outliers == (attacker,) for o in market.outcomes) >= 2
    # flagged, or valued below zero: its running sum is never positive, so it is never paid
    assert all(o.bps[5] == 0 and o.cumulative_values[attacker] <= 0.0 for o in market.outcomes)
    assert all(sum(o.bps) == 10_000 for o in market.outcomes)
    assert market.test_accuracy >= 0.90


def test_demo_five_trainers_non_iid_one_sign_flipper() -> None:
    market = run_market(5, "dirichlet:0.5", 0, attackers={4: "sign_flip"})

    assert all(o.outliers == (address(4),) and o.bps[4] == 0 and sum(o.bps) == 10_000 for o in market.outcomes)
    assert market.test_accuracy >= 0.90


def test_without_a_defence_the_sign_flipper_ruins_the_model() -> None:
    undefended = SPEC.model_copy(update={"robust": SPEC.robust.model_copy(update={"rule": "mean"})})

    market = run_market(6, "iid", 0, attackers={5: "sign_flip"}, spec=undefended)

    assert market.test_accuracy < 0.90 and all(o.outliers == () for o in market.outcomes)


@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5"])
def test_gaussian_noise_is_an_outlier_every_round(partition: str) -> None:
    market = run_market(6, partition, 0, attackers={5: "gaussian"})

    assert all(o.outliers == (address(5),) and o.bps[5] == 0 for o in market.outcomes)


# --- one round's edge cases -------------------------------------------------------------------


@pytest.fixture(scope="module")
def round_inputs() -> tuple[Splits, dict[str, torch.Tensor], list[tuple[str, bytes]]]:
    splits = digits_splits(5, "iid", seed=0)
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    return splits, g, submissions(splits, g, seed=0, attackers={})


def _nan_blob(g: dict[str, torch.Tensor]) -> bytes:
    delta = {k: torch.zeros_like(v) for k, v in g.items()}
    delta["linear.bias"][0] = float("nan")
    return blob(delta, 100)


def test_nan_update_is_rejected_and_the_round_completes(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs
    subs = subs[:4] + [("0xbad", _nan_blob(g))]

    out = aggregate_round(SPEC, g, subs, splits.validation.x, splits.validation.y)

    assert out.rejected == {"0xbad": "tensor linear.bias contains NaN or Inf"}
    assert out.bps[4] == 0 and sum(out.bps) == 10_000
    assert all(bool(torch.isfinite(v).all()) for v in out.new_state.values())


def test_too_few_updates_for_f_means_no_outlier_removal(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs

    out = aggregate_round(MULTIKRUM, g, subs[:4], splits.validation.x, splits.validation.y)  # 4 <= 2f + 2
    default = aggregate_round(SPEC, g, subs[:2], splits.validation.x, splits.validation.y)  # ccdrop: 2 <= 2f

    assert out.robust["f_effective"] == 0 and out.robust["applied"] == "mean" and out.outliers == ()
    assert default.robust["f_effective"] == 0 and default.robust["applied"] == "mean" and default.outliers == ()


def test_with_no_valid_update_the_model_is_unchanged_and_nobody_is_paid(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, _ = round_inputs
    subs = [("0xa", b"not safetensors"), ("0xb", _nan_blob(g))]

    out = aggregate_round(SPEC, g, subs, splits.validation.x, splits.validation.y)

    assert out.bps == (0, 0) and out.survivors == () and out.evaluations == 0
    assert all(torch.equal(out.new_state[k], g[k]) for k in g)


def test_bps_follow_the_submission_order(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs

    forward = aggregate_round(SPEC, g, subs, splits.validation.x, splits.validation.y)
    backward = aggregate_round(SPEC, g, subs[::-1], splits.validation.x, splits.validation.y)

    assert list(forward.bps) == list(backward.bps)[::-1]


def test_the_new_model_is_the_sample_weighted_average_of_the_survivors(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs
    out = aggregate_round(MULTIKRUM, g, subs, splits.validation.x, splits.validation.y)
    kept = [i for i, (a, _) in enumerate(subs) if a in out.survivors]
    sizes = [len(splits.trainers[i]) for i in kept]
    deltas = [local_update(SPEC, g, splits.trainers[i], seed=i) for i in kept]  # as ``submissions`` trained them

    expected = {k: g[k] + sum(n * d[k] for n, d in zip(sizes, deltas)) / sum(sizes) for k in g}

    assert all(torch.allclose(out.new_state[k], expected[k], atol=1e-6) for k in g)


def test_the_grand_coalition_utility_is_the_new_models_validation_accuracy(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs

    spec = MULTIKRUM.model_copy(update={"valuation": SPEC.valuation.model_copy(update={"metric": "accuracy"})})
    out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y)  # the new model is a FedAvg

    assert out.accuracy_after == out.utilities[",".join(sorted(out.survivors))]
    assert out.accuracy_after == pytest.approx(accuracy(model_with_state(SPEC.model, SPEC.data, out.new_state), splits.validation.x, splits.validation.y), abs=1 / 269 + 1e-9)


def test_the_outcome_is_json_and_deterministic(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs

    a = aggregate_round(SPEC, g, subs, splits.validation.x, splits.validation.y).to_dict()
    b = aggregate_round(SPEC, g, subs, splits.validation.x, splits.validation.y).to_dict()
    a.pop("timings"), b.pop("timings")

    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["evaluations"] == len(a["utilities"]) == 2**5 and "" in a["utilities"]  # 5 survivors, exact Shapley


def test_bps_by_address_pairs_addresses_with_points(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs

    out = aggregate_round(SPEC, g, subs, splits.validation.x, splits.validation.y)

    assert list(out.bps_by_address) == [a for a, _ in subs] and list(out.bps_by_address.values()) == list(out.bps)


def test_gtg_valuation_also_pays_out_exactly(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs
    spec = SPEC.model_copy(update={"valuation": SPEC.valuation.model_copy(update={"rule": "gtg"})})

    out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y)

    assert out.valuation == "gtg" and sum(out.bps) == 10_000
    gain = out.utilities[",".join(sorted(out.survivors))] - out.utilities[""]  # in the metric's units (nats)
    assert math.isclose(sum(out.contributions.values()), gain, rel_tol=0.05)  # type: ignore[operator]


def test_duplicate_addresses_are_an_error(round_inputs) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = round_inputs

    with pytest.raises(ValueError, match="distinct"):
        aggregate_round(SPEC, g, subs[:3] + subs[:1], splits.validation.x, splits.validation.y)
