"""Fairness properties of the contribution valuation, on small real rounds (digits, logistic regression).

Each test trains real trainers with the task's local SGD from the same
global model and values their updates with exact Shapley (and the sampling
estimators where it matters).  Shares are the payout shares: values clipped
at 0 and normalised (:func:`aggregator.payout.contribution_shares`).

Measured, and the reason for the exact bounds below (digits, 269 validation
samples, so accuracy moves in steps of 0.0037):

- identical shards, independent shuffling: shares differ by at most 1.4
  percentage points over 10 splits (relative difference 0-6.7%); identical
  updates get identical exact values (symmetry).
- free rider (zero update), default ``fedavg`` utility: 0-0.25% of a first
  round on 4 iid splits, 0-1.4% on 4 Dirichlet(0.5) splits (the 1.4% breaks
  the 1% goal), and up to 54% of single later rounds, where dividing the
  honest step by more weight helps an overshooting model.  Summed over five
  rounds its cumulative share is 2.5-4.9% on those Dirichlet splits (0.01-1%
  on iid ones), 9-15% of its best single round.  With the ``partial``
  utility a zero update is a null player: 0 in every round, by construction.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from aggregator.payout import contribution_shares
from aggregator.round import aggregate_round
from aggregator.utility import CoalitionUtility
from aggregator.valuation import estimate
from market.data import Dataset, Splits, digits_splits
from market.models import build_model, state_of
from market.spec import RobustSpec, TaskSpec, ValuationSpec
from market.tensors import encode_state, flatten
from trainer_node.train import local_update

SPEC = TaskSpec()


def half_flipped(data: Dataset, seed: int = 0) -> Dataset:
    """The same samples with half of the labels flipped ``y -> 9 - y``."""
    y = data.y.clone()
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[: len(y) // 2]
    y[idx] = 9 - y[idx]
    return Dataset(data.x, y)


def values(
    splits: Splits, datas: list[Dataset], seeds: list[int], method: str = "exact", utility: str = "fedavg", zero: int | None = None, copy_of: dict[int, int] | None = None
) -> list[float]:
    """Train one round from the initial model on ``datas`` and return the contribution values."""
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    deltas = [flatten(local_update(SPEC, g, d, seed=s)) for d, s in zip(datas, seeds)]
    if zero is not None:
        deltas[zero] = torch.zeros_like(deltas[zero])
    for i, j in (copy_of or {}).items():
        deltas[i] = deltas[j].clone()
    u = CoalitionUtility(SPEC, g, deltas, [float(len(d)) for d in datas], splits.validation.x, splits.validation.y, utility=utility)
    return estimate(method, len(datas), u, seed=0).values


def shares(splits: Splits, datas: list[Dataset], seeds: list[int], **kw: object) -> list[float]:
    """The payout shares of :func:`values`."""
    return contribution_shares(values(splits, datas, seeds, **kw), [True] * len(datas))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def iid() -> Splits:
    return digits_splits(5, "iid", seed=0)


# --- identical shards -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_trainers_with_identical_shards_get_shares_within_2_points(seed: int) -> None:
    splits = digits_splits(5, "iid", seed=seed)
    t = splits.trainers

    s = shares(splits, [t[0], t[0], t[1], t[2], t[3]], seeds=[10, 11, 12, 13, 14])  # same data, own shuffling

    assert abs(s[0] - s[1]) <= 0.02


@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_identical_updates_get_identical_exact_shares(iid: Splits, utility: str) -> None:
    t = iid.trainers

    s = shares(iid, [t[0], t[0], t[1], t[2], t[3]], seeds=[7, 7, 1, 2, 3], utility=utility)

    assert s[0] == pytest.approx(s[1], abs=1e-12) and s[0] > 0


# --- free riders ------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5"])
@pytest.mark.parametrize("method", ["exact", "gtg", "tmc"])
def test_with_the_partial_utility_a_free_rider_gets_at_most_1_percent(partition: str, method: str) -> None:
    splits = digits_splits(5, partition, seed=0)

    s = shares(splits, splits.trainers, seeds=[0, 1, 2, 3, 4], method=method, utility="partial", zero=4)

    assert s[4] <= 0.01


@pytest.mark.parametrize(
    "partition",
    [
        "iid",
        pytest.param(
            "dirichlet:0.5",
            marks=pytest.mark.xfail(strict=True, reason="known gap: 1.4% here (an honest skewed shard gets 0.08%)"),
        ),
    ],
)
def test_with_the_fedavg_utility_a_free_rider_gets_at_most_1_percent_of_a_first_round(partition: str) -> None:
    splits = digits_splits(5, partition, seed=0)

    s = shares(splits, splits.trainers, seeds=[0, 1, 2, 3, 4], zero=4)

    assert s[4] <= 0.01


def _market(spec: TaskSpec, rounds: int, free_rider: int = 5, seed: int = 0) -> list:  # type: ignore[type-arg]
    """``rounds`` rounds of 6 trainers (the last submits zero updates), plain FedAvg, cumulative values carried over."""
    splits = digits_splits(6, "dirichlet:0.5", seed=seed)
    g: dict[str, torch.Tensor] = state_of(build_model(spec.model, spec.data, spec.model_seed))
    outcomes, prior = [], {}
    for r in range(rounds):
        subs = []
        for i, d in enumerate(splits.trainers):
            delta = local_update(spec, g, d, seed=100 * r + i)
            if i == free_rider:
                delta = OrderedDict((k, torch.zeros_like(v)) for k, v in delta.items())
            subs.append((f"0x{i + 1:040x}", encode_state(delta, {"samples": str(len(d)), "kind": "delta"})))
        out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y, seed=r, prior_values=prior)
        outcomes.append(out)
        g, prior = out.new_state, out.cumulative_values
    return outcomes


def _spec(**valuation: str) -> TaskSpec:
    return SPEC.model_copy(update={"robust": RobustSpec(rule="mean"), "valuation": ValuationSpec(**valuation)})  # type: ignore[arg-type]


def test_with_the_partial_utility_a_free_rider_earns_nothing_in_any_round() -> None:
    outcomes = _market(_spec(utility="partial"), rounds=4)
    rider = f"0x{6:040x}"

    assert all(o.contributions[rider] == 0.0 and o.bps[5] == 0 for o in outcomes)
    assert outcomes[-1].cumulative_shares[rider] == 0.0


def test_the_cumulative_share_damps_a_free_riders_lucky_rounds() -> None:
    """With the fedavg utility a free rider can win a converged round; summed over the rounds it cannot."""
    outcomes = _market(_spec(), rounds=5)
    rider = f"0x{6:040x}"
    per_round = [o.shares[rider] for o in outcomes]

    assert max(per_round) > 0.2  # measured 0.25 in round 5: the weakness being damped
    assert outcomes[-1].cumulative_shares[rider] <= 0.05  # measured 0.038 (0.025-0.049 over seeds 0-3)
    assert outcomes[-1].cumulative_shares[rider] < max(per_round) / 5


def test_cumulative_payout_pays_the_free_rider_by_its_cumulative_share() -> None:
    outcomes = _market(_spec(payout="cumulative"), rounds=5)
    rider = f"0x{6:040x}"

    assert all(o.bps[5] <= 500 for o in outcomes)  # its cumulative share of each pool: at most 378 bps here
    assert all(sum(o.bps) == 10_000 for o in outcomes)


# --- poisoned labels --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "gtg"])
@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_a_trainer_with_half_its_labels_flipped_gets_less_than_with_clean_labels(iid: Splits, method: str, utility: str) -> None:
    t = iid.trainers

    clean = shares(iid, t, seeds=[0, 1, 2, 3, 4], method=method, utility=utility)
    flipped = shares(iid, t[:4] + [half_flipped(t[4])], seeds=[0, 1, 2, 3, 4], method=method, utility=utility)

    assert flipped[4] < clean[4]


# --- copiers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("utility", ["fedavg", "partial"])
def test_copying_another_trainers_update_does_not_double_what_the_pair_earns(iid: Splits, utility: str) -> None:
    """Measured: the pair's value is 1.57-1.61x the original's alone (4 splits): copying pays, but not double."""
    t = iid.trainers

    alone = values(iid, t[:4], seeds=[0, 1, 2, 3], utility=utility)
    with_copy = values(iid, t[:4] + [t[0]], seeds=[0, 1, 2, 3, 0], utility=utility, copy_of={4: 0})

    assert with_copy[0] == pytest.approx(with_copy[4], abs=1e-12)  # the copy is indistinguishable from the original
    assert with_copy[0] + with_copy[4] < 1.7 * alone[0]  # in accuracy points, before normalisation dilutes it
    assert sum(contribution_shares(with_copy, [True] * 5)[i] for i in (0, 4)) < 2 * contribution_shares(alone, [True] * 4)[0]
