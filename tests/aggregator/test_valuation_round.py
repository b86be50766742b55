"""The valuation inside a round: what the receipt records, replay, cumulative values, the payout basis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aggregator.outcome import RoundOutcome
from aggregator.round import aggregate_round
from aggregator.valuation import RECORD_LIMIT, table_digest
from aggregator.valuation.estimators import estimate
from aggregator.valuation.utility import CoalitionUtility
from market.data import Splits, digits_splits
from market.models import build_model, state_of
from market.spec import RobustSpec, TaskSpec, ValuationSpec
from market.tensors import encode_state, flatten
from trainer_node.train import local_update

SPEC = TaskSpec(robust=RobustSpec(rule="mean"))


def address(i: int) -> str:
    return f"0x{i + 1:040x}"


def submissions(splits: Splits, g: dict[str, torch.Tensor], spec: TaskSpec = SPEC) -> list[tuple[str, bytes]]:
    return [
        (address(i), encode_state(local_update(spec, g, d, seed=i), {"samples": str(len(d)), "kind": "delta"}))
        for i, d in enumerate(splits.trainers)
    ]


def with_valuation(**kw: object) -> TaskSpec:
    return SPEC.model_copy(update={"valuation": ValuationSpec(**kw)})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def five() -> tuple[Splits, dict[str, torch.Tensor], list[tuple[str, bytes]]]:
    splits = digits_splits(5, "iid", seed=0)
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    return splits, g, submissions(splits, g)


def run(spec: TaskSpec, five, seed: int = 3, prior: dict[str, float] | None = None) -> RoundOutcome:  # type: ignore[no-untyped-def]
    splits, g, subs = five
    return aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y, seed=seed, prior_values=prior)


def test_the_record_names_method_seed_parameters_and_stop(five) -> None:  # type: ignore[no-untyped-def]
    out = run(with_valuation(rule="gtg", params={"max_perms": 30}), five, seed=3)
    rec = out.to_dict()["valuation_record"]

    assert (rec["method"], rec["seed"], rec["utility"], rec["rule"]) == ("gtg", 3, "fedavg", "gtg")
    assert rec["params"] == {"eps": 0.005, "eps_round": None, "max_perms": 30, "convergence": 0.03, "min_cycles": 2}
    assert rec["stop"] in ("converged", "max_perms") and rec["permutations"] > 0
    assert rec["evaluations"] == out.evaluations == rec["utilities_total"] == len(out.utilities)


@pytest.mark.parametrize("rule", ["gtg", "tmc"])
def test_a_replay_from_the_record_recomputes_the_same_values(five, rule: str) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = five
    out = run(with_valuation(rule=rule), five, seed=7)
    rec = out.valuation_record
    deltas = [flatten(local_update(SPEC, g, d, seed=i)) for i, d in enumerate(splits.trainers)]
    u = CoalitionUtility(SPEC, g, deltas, [1.0] * 5, splits.validation.x, splits.validation.y, utility=rec["utility"], metric=rec["metric"])

    replay = estimate(rec["method"], 5, u, rec["seed"], rec["params"])

    assert replay.values == [out.contributions[a] for a in out.survivors]


def test_another_seed_samples_other_permutations(five) -> None:  # type: ignore[no-untyped-def]
    a = run(with_valuation(rule="gtg", params={"max_perms": 10}), five, seed=1)
    b = run(with_valuation(rule="gtg", params={"max_perms": 10}), five, seed=2)

    assert a.contributions != b.contributions


def test_exact_records_a_digest_of_the_whole_table(five) -> None:  # type: ignore[no-untyped-def]
    splits, g, subs = five
    out = run(SPEC, five)
    deltas = [flatten(local_update(SPEC, g, d, seed=i)) for i, d in enumerate(splits.trainers)]
    table = CoalitionUtility(
        SPEC, g, deltas, [1.0] * 5, splits.validation.x, splits.validation.y, metric=SPEC.valuation.metric
    ).table()  # the round's weights are equal

    assert out.valuation_record["utilities_digest"] == {"format": "table-f64le", "sha256": table_digest(table)}
    assert out.valuation_record["utilities_recorded"] == 32 and out.utilities[""] == table[0]


def test_a_large_exact_round_records_at_most_the_limit_of_utilities() -> None:
    splits = digits_splits(13, "iid", seed=0)
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))

    out = aggregate_round(SPEC, g, submissions(splits, g), splits.validation.x, splits.validation.y)

    assert out.valuation == "exact" and out.evaluations == 2**13
    assert len(out.utilities) == RECORD_LIMIT and out.valuation_record["utilities_total"] == 2**13
    sizes = [len(k.split(",")) if k else 0 for k in out.utilities]
    assert sizes == sorted(sizes) and sizes.count(5) == 1287 and max(sizes) == 6  # smallest coalitions first


def test_cumulative_values_add_this_round_to_the_prior_ones(five) -> None:  # type: ignore[no-untyped-def]
    prior = {address(0): 0.5, "0xgone": 0.25}

    out = run(SPEC, five, prior=prior)

    assert out.cumulative_values[address(0)] == pytest.approx(0.5 + out.contributions[address(0)])
    assert out.cumulative_values["0xgone"] == 0.25  # a trainer absent this round keeps its sum
    assert sum(out.cumulative_shares.values()) == pytest.approx(1.0)


def test_round_payout_ignores_the_prior_rounds(five) -> None:  # type: ignore[no-untyped-def]
    per_round = with_valuation(payout="round")
    plain = run(per_round, five)

    with_prior = run(per_round, five, prior={address(0): 1e4})

    assert with_prior.bps == plain.bps


def test_cumulative_payout_splits_the_pool_by_the_cumulative_values(five) -> None:  # type: ignore[no-untyped-def]
    out = run(with_valuation(payout="cumulative"), five, prior={address(0): 1e4})

    assert out.bps[0] > 9_900 and sum(out.bps) == 10_000


def test_the_default_pays_by_running_sums_of_gce_values_with_equal_weights(five) -> None:  # type: ignore[no-untyped-def]
    out = run(SPEC, five, prior={address(0): 1e4})

    assert out.payout == {"rule": "cumulative", "metric": "gce", "utility": "fedavg", "estimator": "exact",
                          "weights": "equal"}
    assert out.bps[0] > 9_900  # the running sum decides


def test_the_partial_utility_is_recorded_and_used(five) -> None:  # type: ignore[no-untyped-def]
    fedavg, partial = run(SPEC, five), run(with_valuation(utility="partial"), five)

    assert partial.valuation_record["utility"] == "partial"
    assert partial.accuracy_after == fedavg.accuracy_after and partial.accuracy_before == fedavg.accuracy_before
    assert partial.contributions != fedavg.contributions


def test_auto_picks_exact_within_the_time_budget_and_gtg_beyond(five) -> None:  # type: ignore[no-untyped-def]
    assert run(SPEC, five).valuation == "exact"
    assert run(with_valuation(time_budget_s=1e-9), five).valuation == "gtg"


def test_the_valuation_record_is_deterministic(five) -> None:  # type: ignore[no-untyped-def]
    a, b = run(with_valuation(rule="tmc"), five).to_dict(), run(with_valuation(rule="tmc"), five).to_dict()
    a.pop("timings"), b.pop("timings")

    assert a == b and np.isfinite(list(a["contributions"].values())).all()
