"""Fairness properties of the contribution valuation, on small real rounds (digits, logistic regression).

Each test trains real trainers with the task's local SGD from the same
global model and values their updates with exact Shapley (and the sampling
estimators where it matters).  Shares are the payout shares: values clipped
at 0 and normalised (:func:`market.payout.contribution_shares`).

Measured, and the reason for the exact bounds below (digits, 269 validation
samples, so accuracy moves in steps of 0.0037):

- identical shards, independent shuffling (local seeds 10 and 11): shares
  differ by 0.04-1.09 percentage points over 10 iid splits, a relative
  difference of 0.2-5.6% (median 1.6%), so "within 2%" holds in points but
  not relatively.  The gap is in the updates themselves: shuffling alone moves
  the update by 10-13% of its length (``||d0 - d1|| / ||d0||``), and a smooth
  utility (validation cross-entropy instead of accuracy) shows the same 0.3-4.7%,
  so it is neither accuracy's coarse steps nor estimator noise.  Identical
  updates (same shard, same seed) get identical shares: exactly for exact
  Shapley (symmetry), and for gtg/tmc because :func:`estimate` gives
  interchangeable players the mean of their estimates (without it they
  differed by 2-5% (gtg) and 36-39% (tmc) relative on the same 10 splits).
- free rider: a zero update (the global model unchanged) is rejected by
  validation, so it earns 0 in every round and every configuration.  Before
  that, with the default ``fedavg`` utility, it got 0-0.25% of a first round
  on 4 iid splits, 0-1.4% on 4 Dirichlet(0.5) splits, up to 54% of single
  later rounds and 2.5-4.9% cumulative over five.  A rider that adds tiny
  noise (sigma 1e-3 per coordinate) passes validation and is paid like the
  zero update was: 1.42% of the Dirichlet(0.5) seed-0 first round (0-0.84%
  on 11 other iid/Dirichlet(0.5)/Dirichlet(0.1) splits), 2.5-4.9% cumulative
  over five rounds.  With the ``partial`` utility it gets 0-0.08% of a first
  round and 0-0.01% cumulative.
- copier (robust rule ``mean``): valued as a player, the pair earned 1.52-1.62x
  the original's value alone (shares 1.56-1.74x) on 6 splits, whether the copy
  was exact under a new CID (same or own sample count) or carried 1e-4 noise.
  A round now refuses an update whose cosine similarity with an earlier one is
  above ``validation.copy_cosine`` (0.99), so the round is the round without the
  copy.  An exact re-upload has the same CID and is refused before that
  (``tests/e2e/test_rounds_bad_input.py``).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from aggregator.round import aggregate_round
from aggregator.validate import Published
from aggregator.valuation.estimators import estimate
from aggregator.valuation.utility import CoalitionUtility
from market.data import Dataset, Splits, digits_splits
from market.models import build_model, state_of
from market.payout import contribution_shares
from market.spec import RobustSpec, TaskSpec, ValuationSpec
from market.tensors import decode_state, encode_state, flatten
from trainer_node.train import local_update

SPEC = TaskSpec()


def half_flipped(data: Dataset, seed: int = 0) -> Dataset:
    """The same samples with half of the labels flipped ``y -> 9 - y``."""
    y = data.y.clone()
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[: len(y) // 2]
    y[idx] = 9 - y[idx]
    return Dataset(data.x, y)


def values(
    splits: Splits,
    datas: list[Dataset],
    seeds: list[int],
    method: str = "exact",
    utility: str = "fedavg",
    zero: int | None = None,
    noise: float = 0.0,
    copy_of: dict[int, int] | None = None,
) -> list[float]:
    """Train one round from the initial model on ``datas`` and return the contribution values.

    ``zero``: that trainer is a free rider submitting ``noise`` times standard normal noise (a zero update
    for ``noise = 0``; valued here directly, as validation would reject it in a round).
    """
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    deltas = [flatten(local_update(SPEC, g, d, seed=s)) for d, s in zip(datas, seeds)]
    if zero is not None:
        deltas[zero] = noise * torch.randn(deltas[zero].shape, generator=torch.Generator().manual_seed(123))
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


@pytest.mark.parametrize(("method", "utility"), [("exact", "fedavg"), ("exact", "partial"), ("gtg", "fedavg"), ("tmc", "fedavg")])
def test_identical_updates_get_identical_shares(iid: Splits, method: str, utility: str) -> None:
    """Same shard, same seed: bit-identical updates, interchangeable players, equal Shapley values."""
    t = iid.trainers

    s = shares(iid, [t[0], t[0], t[1], t[2], t[3]], seeds=[7, 7, 1, 2, 3], method=method, utility=utility)

    assert s[0] == s[1] and s[0] > 0.1


def test_interchangeable_players_are_found_and_recorded(iid: Splits) -> None:
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    t = iid.trainers
    d = [flatten(local_update(SPEC, g, t[i], seed=i)) for i in range(3)]
    u = CoalitionUtility(SPEC, g, [d[0], d[1], d[0], d[0], d[2]], [50.0, 50.0, 50.0, 49.0, 50.0], iid.validation.x, iid.validation.y)

    record = estimate("gtg", 5, u, seed=0)

    assert record.to_dict()["symmetric"] == [[0, 2]]  # player 3 has the same update but another weight
    assert record.values[0] == record.values[2]


# --- free riders ------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5"])
@pytest.mark.parametrize("method", ["exact", "gtg", "tmc"])
def test_with_the_partial_utility_a_zero_update_gets_at_most_1_percent(partition: str, method: str) -> None:
    splits = digits_splits(5, partition, seed=0)

    s = shares(splits, splits.trainers, seeds=[0, 1, 2, 3, 4], method=method, utility="partial", zero=4)

    assert s[4] <= 0.01


ZERO_REASON = "no change from the global model (the delta is zero everywhere)"


def _submissions(spec: TaskSpec, g: dict[str, torch.Tensor], splits: Splits, r: int = 0, rider: int | None = None,
                 noise: float = 0.0) -> list[tuple[str, bytes]]:
    """One round's signed-off blobs; trainer ``rider`` submits ``noise`` * N(0, 1) (zeros for ``noise = 0``)."""
    subs = []
    for i, d in enumerate(splits.trainers):
        delta = local_update(spec, g, d, seed=100 * r + i)
        if i == rider:
            gen = torch.Generator().manual_seed(1000 + r)
            delta = OrderedDict((k, noise * torch.randn(v.shape, generator=gen)) for k, v in sorted(delta.items()))
        subs.append((f"0x{i + 1:040x}", encode_state(delta, {"samples": str(len(d)), "kind": "delta"})))
    return subs


@pytest.mark.parametrize(("partition", "seed"), [("iid", 0), ("dirichlet:0.5", 0), ("dirichlet:0.5", 3), ("dirichlet:0.1", 1)])
def test_a_zero_update_is_rejected_so_the_free_rider_earns_nothing(partition: str, seed: int) -> None:
    """Dirichlet(0.5) seed 0 is where the zero update got 1.4% of the round before validation refused it."""
    splits = digits_splits(5, partition, seed=seed)
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    spec = _spec()  # plain FedAvg: no robust rule to hide behind
    rider = f"0x{5:040x}"

    out = aggregate_round(spec, g, _submissions(spec, g, splits, rider=4), splits.validation.x, splits.validation.y)

    assert out.rejected == {rider: ZERO_REASON}
    assert out.bps[4] == 0 and out.shares[rider] == 0.0 and sum(out.bps) == 10_000


@pytest.mark.parametrize(
    "partition",
    [
        "iid",
        pytest.param(
            "dirichlet:0.5",
            marks=pytest.mark.xfail(strict=True, reason="known gap: 1.42% here, as much as the zero update got"),
        ),
    ],
)
def test_with_the_fedavg_utility_a_near_zero_free_rider_gets_at_most_1_percent_of_a_first_round(partition: str) -> None:
    """Tiny noise passes validation; under ``fedavg`` it then dilutes the honest step like a zero update."""
    splits = digits_splits(5, partition, seed=0)

    s = shares(splits, splits.trainers, seeds=[0, 1, 2, 3, 4], zero=4, noise=1e-3)

    assert s[4] <= 0.01


@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5", "dirichlet:0.1"])
def test_with_the_partial_utility_a_near_zero_free_rider_gets_at_most_1_percent(partition: str) -> None:
    splits = digits_splits(5, partition, seed=1)

    s = shares(splits, splits.trainers, seeds=[0, 1, 2, 3, 4], utility="partial", zero=4, noise=1e-3)

    assert s[4] <= 0.01  # measured 0-0.08% on 12 splits


def _market(spec: TaskSpec, rounds: int, free_rider: int = 5, seed: int = 0, noise: float = 1e-3) -> list:  # type: ignore[type-arg]
    """``rounds`` rounds of 6 trainers (the last submits ``noise`` * N(0, 1): the global model plus a little noise),
    plain FedAvg, cumulative values carried over."""
    splits = digits_splits(6, "dirichlet:0.5", seed=seed)
    g: dict[str, torch.Tensor] = state_of(build_model(spec.model, spec.data, spec.model_seed))
    outcomes, prior = [], {}  # type: ignore[var-annotated]
    for r in range(rounds):
        subs = _submissions(spec, g, splits, r, rider=free_rider, noise=noise)
        out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y, seed=r, prior_values=prior)
        outcomes.append(out)
        g, prior = out.new_state, out.cumulative_values
    return outcomes


def _spec(**valuation: str) -> TaskSpec:
    return SPEC.model_copy(update={"robust": RobustSpec(rule="mean"), "valuation": ValuationSpec(**valuation)})  # type: ignore[arg-type]


def test_a_zero_update_free_rider_earns_nothing_in_any_round() -> None:
    outcomes = _market(_spec(), rounds=3, noise=0.0)
    rider = f"0x{6:040x}"

    assert all(o.rejected == {rider: ZERO_REASON} and o.bps[5] == 0 for o in outcomes)
    assert outcomes[-1].cumulative_shares[rider] == 0.0


def test_with_the_partial_utility_a_near_zero_free_rider_earns_almost_nothing_in_any_round() -> None:
    outcomes = _market(_spec(utility="partial"), rounds=4)
    rider = f"0x{6:040x}"

    assert all(o.shares[rider] <= 0.01 for o in outcomes)  # measured 0.02% in round 1, then 0
    assert outcomes[-1].cumulative_shares[rider] <= 0.001


def test_the_cumulative_share_damps_a_free_riders_lucky_rounds() -> None:
    """With the fedavg utility a near-zero free rider can win a converged round; summed over the rounds it cannot."""
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


@pytest.mark.parametrize(("partition", "seed"), [("iid", 0), ("dirichlet:0.5", 0)])
@pytest.mark.parametrize("copy", ["new_cid_same_samples", "own_samples", "near_copy", "scaled"])
def test_a_copier_under_its_own_cid_is_refused_and_the_original_keeps_its_pay(partition: str, seed: int, copy: str) -> None:
    """A round as the aggregator runs it (robust rule ``mean``), the copier last.

    The same blob would have the original's CID and be refused as a duplicate before valuation; here the
    copier changes the bytes but not (or hardly) the tensors.  Before copies were refused, the pair earned
    1.52-1.62x the original's value alone (6 splits); now the copy is refused (cosine above
    ``validation.copy_cosine``) and the round is exactly the round without it.
    """
    splits = digits_splits(5, partition, seed=seed)
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    spec = _spec()
    subs = _submissions(spec, g, Splits(splits.trainers[:4], splits.validation, splits.test))
    original = subs[0][1]
    tensors, meta = decode_state(original)
    if copy == "new_cid_same_samples":
        blob = encode_state(tensors, {**meta, "note": "mine"})
    elif copy == "own_samples":
        blob = encode_state(tensors, {**meta, "samples": str(len(splits.trainers[4]))})
    elif copy == "scaled":
        blob = encode_state(OrderedDict((k, 1.5 * v) for k, v in tensors.items()), meta)
    else:
        gen = torch.Generator().manual_seed(5)
        blob = encode_state(OrderedDict((k, v + 1e-4 * torch.randn(v.shape, generator=gen)) for k, v in tensors.items()), meta)
    a, c = subs[0][0], f"0x{5:040x}"

    alone = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y)
    paired = aggregate_round(spec, g, subs + [(c, blob)], splits.validation.x, splits.validation.y)

    assert blob != original and list(paired.rejected) == [c] and "a copy of the update of " + a in paired.rejected[c]
    assert paired.bps_by_address[c] == 0 and paired.bps[:4] == alone.bps
    assert paired.contributions[a] == alone.contributions[a] and paired.new_state.keys() == alone.new_state.keys()
    assert all(torch.equal(paired.new_state[k], alone.new_state[k]) for k in alone.new_state)


def test_a_copy_of_another_trainers_update_from_an_earlier_round_is_refused(iid: Splits) -> None:
    g = state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))
    spec = _spec()
    subs = _submissions(spec, g, Splits(iid.trainers[:4], iid.validation, iid.test))
    last_round = [Published(subs[0][0], "the update of trainer 1 in round 0", flatten(decode_state(subs[0][1])[0]))]
    replayed = subs[:1] + [(f"0x{9:040x}", encode_state(decode_state(subs[0][1])[0], {"kind": "delta", "samples": "5"}))]

    out = aggregate_round(spec, g, subs[1:] + replayed[1:], iid.validation.x, iid.validation.y, earlier=last_round)
    own = aggregate_round(spec, g, subs, iid.validation.x, iid.validation.y, earlier=last_round)

    assert out.rejected[f"0x{9:040x}"].startswith("a copy of the update of trainer 1 in round 0")
    # its own earlier update, re-sent: a replay (the bar is 0.9999 there: its next honest update points almost the same way)
    assert own.rejected == {subs[0][0]: "a replay of the update of trainer 1 in round 0 (cosine 1.000000)"}
