"""Cheaters against the pay rule: "pay follows contribution".

Each test runs a small marketplace in-process on the real round code -- :func:`aggregator.round.aggregate_round`
round after round over real local training on digits (:func:`trainer_node.train.local_update`), the updates
serialised as the nodes submit them, ``prior_values`` and ``earlier`` (every update and global update published so far) chained
as the aggregator service chains them, the contract's crediting simulated in integer wei (``bench/fairness.py``) --
with one cheating trainer (or a few sybils) among six honest ones, and asserts the PROMISE:

* honest trainers with equal data earn (nearly) equal pay, and an honest trainer is not flagged when nobody attacks;
* free riders (global model returned, or plus noise) and copiers earn nothing; a copy never raises what the copied
  pair earns; a self-reported sample count buys nothing; an attacker flagged as an outlier is paid 0;
* a cheater earns no more than an honest share of its own data.

Where the attack succeeds today the test is ``xfail(strict=True)`` with the measured numbers (seed 0 unless said),
so it documents the gap and turns red when the gap is closed (then drop the mark).  Pay ratios are "x an honest
trainer": the cheater's total wei over the mean total of the honest trainers of the same run (the honest spread in
the same runs is 1.13-1.22 max/min).
"""

from __future__ import annotations

import importlib.util
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor

from aggregator.round import aggregate_round
from aggregator.service import prefilter, update_binding
from aggregator.validate import Published
from market.chain.contract import Submission
from market.cid import compute_cid
from market.commitment import submission_commitment
from market.data import Dataset, digits_splits
from market.models import build_model, state_of
from market.tensors import decode_state, encode_state, flatten, unflatten
from trainer_node.train import local_update

torch.set_num_threads(1)

_BENCH = Path(__file__).resolve().parents[2] / "bench" / "fairness.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fairness_attacks", _BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


F = _load_bench()
HONEST = 6  # honest trainers 0..5; cheaters are 6, 7, ...
D = 650  # parameters of the default logreg task (64 x 10 + 10)


def A(i: int) -> str:
    return F._address(i)


# ------------------------------------------------------------------ the market harness
@dataclass
class Ctx:
    """What a cheater can see when it submits in round ``r`` (the store and chain are public)."""

    r: int
    g: dict[str, Tensor]
    trained: dict[str, Tensor]  # this round's honest local update of every participant that has data
    honest: list[str]  # the honest participants present
    previous: dict[str, Tensor]  # the previous round's valid updates (what the service passes as ``earlier``)
    prev_global: Tensor | None  # previous round's model change (new model - old model, both public)
    own_prev: dict[str, Tensor]  # each address's last submitted update
    seed: int

    def gen(self, who: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.r * 1009 + int(who, 16))

    def mean_honest(self) -> Tensor:
        return torch.stack([self.trained[a] for a in self.honest]).mean(0)


Act = Callable[[Ctx, "Trainer"], "Tensor | None"]


@dataclass
class Trainer:
    addr: str
    data: Dataset | None = None  # None: no data, cannot train
    act: Act | None = None  # None: honest
    joins: int = 0
    leaves: int | None = None
    samples: int | None = None  # claimed sample count (default: the true one)
    seed_off: int = 0

    def present(self, r: int) -> bool:
        return r >= self.joins and (self.leaves is None or r < self.leaves)


@dataclass
class Run:
    credits: dict[str, list[int]]
    outs: list = field(default_factory=list)

    def total(self, a: str) -> int:
        return sum(self.credits[a])

    def honest_mean(self, exclude: tuple[str, ...] = (), rounds: range | None = None) -> float:
        hs = [A(i) for i in range(HONEST) if A(i) not in exclude]
        rs = rounds if rounds is not None else range(len(self.outs))
        return sum(sum(self.credits[a][r] for r in rs) for a in hs) / len(hs)

    def ratio(self, a: str, exclude: tuple[str, ...] = (), rounds: range | None = None) -> float:
        """``a``'s pay (over ``rounds``) in units of an honest trainer's."""
        rs = rounds if rounds is not None else range(len(self.outs))
        return sum(self.credits[a][r] for r in rs) / self.honest_mean(exclude, rs)

    def flagged(self, a: str) -> list[int]:
        return [r for r, o in enumerate(self.outs) if a in o.outliers]

    def rejected(self, a: str) -> list[int]:
        return [r for r, o in enumerate(self.outs) if a in o.rejected]


def market(trainers: list[Trainer], rounds: int, seed: int = 0, partition: str = "iid",
           proof: dict[str, object] | None = None) -> Run:
    """``rounds`` rounds of the real round code; the money in integer wei as the contract credits it. ``proof``: run
    a proof task instead (``bench/fairness.py``'s, with these overrides, e.g. ``{"sketch_f": 1}``), its rounds as
    the circuit proves them: each update's sketch, a binder and the round seed as the chain would give them."""
    spec = F.spec_for(seed) if proof is None else F.spec_for(seed, dict(proof), proof=True)
    val = digits_splits(HONEST, partition, seed).validation
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    prior: dict[str, float] = {}
    published: list[Published] = []
    previous: dict[str, Tensor] = {}
    own_prev: dict[str, Tensor] = {}
    prev_global: Tensor | None = None
    run = Run({t.addr: [0] * rounds for t in trainers})
    for r in range(rounds):
        pool = F.round_pool(F.REWARD_WEI, rounds, r)
        live = [t for t in trainers if t.present(r)]
        trained = {t.addr: flatten(local_update(spec, g, t.data, seed=F._step_seed(seed, r, k) + t.seed_off))
                   for k, t in enumerate(trainers) if t.present(r) and t.data is not None}
        ctx = Ctx(r, g, trained, [t.addr for t in live if t.act is None], previous, prev_global, own_prev, seed)
        subs: list[tuple[str, bytes]] = []
        deltas: dict[str, Tensor] = {}
        for t in live:
            v = trained[t.addr] if t.act is None else t.act(ctx, t)
            if v is None:
                continue
            n = t.samples if t.samples is not None else (len(t.data) if t.data is not None else 100)
            blob = encode_state(unflatten(v.to(torch.float32), g), {"kind": "delta", "samples": str(n)})
            subs.append((t.addr, blob))
            deltas[t.addr] = flatten(decode_state(blob)[0])
        kw = F.proof_kwargs(spec, seed, r, deltas) if proof is not None else {}
        out = aggregate_round(spec, g, subs, val.x, val.y, seed=spec.valuation.seed + r, prior_values=prior,
                              earlier=list(published), **kw)
        assert sum(out.bps) in (0, F.BPS) and all(isinstance(b, int) and b >= 0 for b in out.bps)
        paid = F.credit(pool, out.bps)
        assert sum(paid) <= pool
        for a, c in zip(out.addresses, paid):
            run.credits[a][r] = c
        run.outs.append(out)
        prior = dict(out.cumulative_values)
        previous = {a: deltas[a] for a in out.addresses if a not in out.rejected}  # as aggregator.service passes them
        own_prev = {**own_prev, **deltas}
        prev_global = flatten(out.new_state) - flatten(g)
        published += [Published(a, f"the update of {a} in round {r}", d) for a, d in previous.items()]
        published.append(Published("", f"round {r}'s global update", prev_global.double()))
        g = out.new_state
    return run


def _shards(seed: int = 0, partition: str = "iid", ways: int = HONEST + 1) -> list[Dataset]:
    return list(digits_splits(ways, partition, seed).trainers)


def honest_plus(*cheaters: Trainer, seed: int = 0, partition: str = "iid", ways: int = HONEST + 1) -> list[Trainer]:
    """Six honest trainers on shards 0..5 of a ``ways``-way split (default 7: shard 6 is the cheater's own data),
    then the cheaters."""
    ds = _shards(seed, partition, ways)
    return [Trainer(A(i), ds[i]) for i in range(HONEST)] + list(cheaters)


def own_data(seed: int = 0, partition: str = "iid") -> Dataset:
    return _shards(seed, partition)[HONEST]


def unit(v: Tensor) -> Tensor:
    return v / v.norm()


def at_cosine(v: Tensor, cos: float, gen: torch.Generator) -> Tensor:
    """``v`` turned by a random orthogonal direction so that its cosine with ``v`` is ``cos`` (same length)."""
    z = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.dtype)
    z = z - (z @ v) / (v @ v) * v
    return (v + unit(z) * v.norm() * (1 - cos**2) ** 0.5 / cos) * cos


def noise(ctx: Ctx, t: Trainer, sigma: float = 1e-3) -> Tensor:
    return torch.randn(D, generator=ctx.gen(t.addr)) * sigma


def honest_act(ctx: Ctx, t: Trainer) -> Tensor:
    return ctx.trained[t.addr]


ME = A(HONEST)  # the cheater
ME2 = A(HONEST + 1)
VICTIM = A(0)


@cache
def baseline(rounds: int, seed: int = 0, partition: str = "iid") -> Run:
    """Everyone honest, the cheater's identity training honestly on its own shard."""
    return market(honest_plus(Trainer(ME, own_data(seed, partition)), seed=seed, partition=partition), rounds, seed, partition)


# ------------------------------------------------------------------ money is integers
def test_money_is_integer_bps_sum_to_10000_and_pools_are_never_overspent() -> None:
    run = baseline(3)
    for o in run.outs:
        assert sum(o.bps) == 10_000 and all(type(b) is int for b in o.bps)
    assert all(type(c) is int for cs in run.credits.values() for c in cs)
    assert sum(run.total(a) for a in run.credits) <= F.REWARD_WEI


def test_honest_trainers_with_equal_data_earn_nearly_equal_pay() -> None:
    totals = [baseline(3).total(A(i)) for i in range(HONEST + 1)]
    assert max(totals) / min(totals) <= 1.5  # measured 1.16


@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_honest_trainer_is_not_flagged_when_nobody_attacks(partition: str, seed: int) -> None:
    run = baseline(4, seed, partition)
    assert [o.outliers for o in run.outs] == [()] * 4
    assert [o.rejected for o in run.outs] == [{}] * 4


# ------------------------------------------------------------------ 1. copy evasion
@cache
def copy_run(kind: str) -> Run:
    acts: dict[str, Act] = {
        "scaled_2x": lambda c, t: 2.0 * c.trained[VICTIM],
        "noise_to_cos_0.985": lambda c, t: at_cosine(c.trained[VICTIM], 0.985, c.gen(t.addr)),
        "average_of_two": lambda c, t: (c.trained[A(0)] + c.trained[A(1)]) / 2,
        "previous_round_exact": lambda c, t: c.previous[VICTIM] if c.r else noise(c, t),
        "previous_round_cos_0.985": lambda c, t: at_cosine(c.previous[VICTIM], 0.985, c.gen(t.addr)) if c.r else noise(c, t),
    }
    return market(honest_plus(Trainer(ME, None, acts[kind])), 3)


def test_copy_scaled_is_refused_and_unpaid() -> None:
    run = copy_run("scaled_2x")
    assert run.rejected(ME) == [0, 1, 2]  # cosine 1: scaling does not hide a copy
    assert run.total(ME) == 0


@pytest.mark.xfail(strict=True, reason="copy + orthogonal noise to cosine 0.985 (< copy_cosine 0.99) passes the copy check: "
                   "copier 0.90x an honest trainer, victim 0.94x, pair 1.84x (promise <= 1.05x); at cosine 0.9/0.8/0.7 "
                   "the copier still gets 0.78x/0.61x/0.43x")
def test_copy_with_noise_below_copy_cosine_does_not_raise_the_pair() -> None:
    run = copy_run("noise_to_cos_0.985")
    pair = (run.total(ME) + run.total(VICTIM)) / run.honest_mean(exclude=(VICTIM,))
    assert pair <= 1.05


@pytest.mark.xfail(strict=True, reason="the mean of two other trainers' updates (no data of its own) passes the copy check "
                   "and is paid 0.99x an honest trainer (14.2% of all pay; promise <= 1%)")
def test_copy_average_of_two_trainers_earns_nothing() -> None:
    run = copy_run("average_of_two")
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


@pytest.mark.parametrize("kind", ["previous_round_exact", "previous_round_cos_0.985"])
def test_copy_of_another_trainers_previous_round_update_earns_nothing(kind: str) -> None:
    run = copy_run(kind)
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01  # measured 0 and 0.3%


def _two_rounds_old(pick: Callable[[Ctx], Tensor | None]) -> Act:
    """Submit, from round 2 on, what ``pick`` saw two rounds earlier (outside the one-round ``earlier`` window)."""
    seen: dict[int, Tensor | None] = {}

    def act(c: Ctx, t: Trainer) -> Tensor | None:
        seen[c.r] = pick(c)
        return seen[c.r - 2] if c.r >= 2 else None

    return act


# closed in issue 13: the copy check compares every update published in earlier rounds
def test_copy_of_another_trainers_update_from_two_rounds_ago_earns_nothing() -> None:
    run = market(honest_plus(Trainer(ME, None, _two_rounds_old(lambda c: c.trained[VICTIM]))), 5)
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


# closed in issue 13: copies of earlier global updates are refused, and pay is the plain running sum
def test_newcomer_replaying_an_old_global_update_earns_nothing() -> None:
    run = market(honest_plus(Trainer(ME, None, _two_rounds_old(lambda c: c.prev_global))), 5)
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


# closed in issue 13: a replay of one's own earlier update (cosine > 0.9999) is refused
def test_replaying_own_previous_update_earns_less_than_training() -> None:
    run = market(honest_plus(Trainer(ME, own_data(), lambda c, t: c.own_prev[t.addr] if c.r else c.trained[t.addr])), 5)
    later = range(1, 5)
    replay = sum(run.credits[ME][r] for r in later)
    honest = sum(baseline(5).credits[ME][r] for r in later)
    assert replay <= honest


@cache
def mimic_run(kind: str) -> Run:
    acts: dict[str, Act] = {
        "previous_global_update": lambda c, t: c.prev_global,
        "previous_mean_of_updates": lambda c, t: torch.stack(list(c.previous.values())).mean(0),
    }
    return market(honest_plus(Trainer(ME, None, acts[kind], joins=1)), 5)


# closed in issue 13: copies of an earlier round's global update are refused
@pytest.mark.parametrize("kind", ["previous_global_update", "previous_mean_of_updates"])
def test_mimic_previous_round_aggregate_earns_nothing(kind: str) -> None:
    run = mimic_run(kind)
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


@pytest.mark.xfail(strict=True, reason="submitting last, a data-less trainer reads this round's updates from the store and "
                   "submits their mean: 1.084x an honest trainer (15.3% of all pay)")
def test_mimic_current_round_mean_earns_nothing() -> None:
    run = market(honest_plus(Trainer(ME, None, lambda c, t: c.mean_honest())), 3)
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


def test_front_running_copier_cannot_get_the_victim_refused() -> None:
    spec = F.spec_for(0)
    splits = digits_splits(HONEST + 1, "iid", 0)
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    ups = {A(i): local_update(spec, g, splits.trainers[i], seed=F._step_seed(0, 0, i)) for i in range(1, HONEST + 1)}
    gen = torch.Generator().manual_seed(1)
    cheater, victim = A(0), A(1)  # the cheater joined first (join index 1), it has no data
    ups[cheater] = OrderedDict((k, v + 1e-6 * torch.randn(v.shape, generator=gen)) for k, v in ups[victim].items())

    class Store(dict):
        def put(self, b: bytes) -> str:
            self[compute_cid(b)] = b
            return compute_cid(b)

        def get(self, cid: str) -> bytes:  # type: ignore[override]
            return self[cid]

    store, subs = Store(), []
    order = [A(i) for i in range(1, HONEST + 1)] + [cheater]  # everyone honest submits; the cheater submits last
    for seq, a in enumerate(order, start=1):
        blob = encode_state(ups[a], {"kind": "delta", "samples": "100", **update_binding(1, 0, a)})
        cid = store.put(blob)
        subs.append(Submission(trainer=a, cid=cid, commitment=submission_commitment(spec, 1, 0, a, cid, blob),
                               block=seq, index=int(a, 16), seq=seq))
    usable, prerejected, _ = prefilter(spec, 1, 0, subs, store)
    assert not prerejected
    # copies are decided in on-chain submission order (as aggregator.service passes it), not join order
    out = aggregate_round(spec, g, usable, splits.validation.x, splits.validation.y, seed=0,
                          order={s.trainer: s.seq for s in subs})
    bps = dict(zip(out.addresses, out.bps))
    assert victim not in out.rejected and bps[cheater] == 0


# ------------------------------------------------------------------ 2. free riding
@pytest.mark.parametrize("sigma", ["1e-3", "honest_norm"])
def test_noisy_free_rider_from_the_start_earns_nothing(sigma: str) -> None:
    def act(c: Ctx, t: Trainer) -> Tensor:
        return noise(c, t) if sigma == "1e-3" else unit(noise(c, t)) * c.trained[VICTIM].norm()

    run = market(honest_plus(Trainer(ME, None, act)), 3)
    assert run.total(ME) == 0


@cache
def late_free_rider(seed: int) -> Run:
    return market(honest_plus(Trainer(ME, None, noise, joins=2), seed=seed), 5, seed)


# closed in issue 13: pay is the plain running sum, so a late noisy free rider starts from nothing
@pytest.mark.parametrize("seed", [0, 1])
def test_noisy_free_rider_joining_late_earns_nothing(seed: int) -> None:
    run = late_free_rider(seed)
    # measured 0.0 / 1.1% of an honest trainer's pay (seeds 0 / 1): under 0.2% of all pay, the 1 % goal
    assert run.ratio(ME, rounds=range(2, 5)) <= 0.05
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


@pytest.mark.parametrize("scale, xfail", [(0.05, False), (0.1, False), (0.3, True)])
def test_a_small_fraction_of_others_work_earns_nothing(scale: float, xfail: bool, request: pytest.FixtureRequest) -> None:
    if xfail:
        request.applymarker(pytest.mark.xfail(strict=True, reason="0.3 x this round's mean of the honest updates (no data) "
                                              "is paid 0.50x an honest trainer (7.8% of all pay); 0.05x and 0.1x copy+noise: 0"))
    if scale == 0.1:
        act: Act = lambda c, t: 0.1 * at_cosine(c.trained[VICTIM], 0.98, c.gen(t.addr))  # noqa: E731
    else:
        act = lambda c, t: scale * c.mean_honest()  # noqa: E731
    run = market(honest_plus(Trainer(ME, None, act)), 3)
    assert run.total(ME) / sum(run.total(a) for a in run.credits) <= 0.01


# ------------------------------------------------------------------ 3. outliers, boosting, sign flips
@pytest.mark.parametrize("scale", [-1.0, -0.3])
def test_sign_flip_from_the_start_is_flagged_and_unpaid(scale: float) -> None:
    run = market(honest_plus(Trainer(ME, own_data(), lambda c, t: scale * c.trained[t.addr])), 3)
    assert 0 in run.flagged(ME)
    assert run.total(ME) == 0
    for r in run.flagged(ME):
        assert run.credits[ME][r] == 0  # flagged: paid 0


@pytest.mark.parametrize("k", [2.0, 4.0])
def test_boosting_own_update_earns_no_more_than_honest(k: float) -> None:
    run = market(honest_plus(Trainer(ME, own_data(), lambda c, t: k * c.trained[t.addr])), 3)
    # measured 1.013x (k = 2) and 0.56x (k = 4, flagged in round 2) of its own honest pay
    assert run.total(ME) <= 1.05 * baseline(3).total(ME)


@cache
def banked(kind: str) -> Run:
    acts: dict[str, Act] = {
        "noise_after_r0": lambda c, t: c.trained[t.addr] if c.r < 1 else noise(c, t),
        "flip_0.3_after_r1": lambda c, t: c.trained[t.addr] if c.r < 2 else -0.3 * c.trained[t.addr],
    }
    return market(honest_plus(Trainer(ME, own_data(), acts[kind])), 5)


@pytest.mark.xfail(strict=True, reason="bank then free-ride: honest in round 0, then global model + 1e-3 noise in rounds "
                   "1-4: never flagged, paid 0.98x of its own honest pay in those rounds (118.8e15 vs 121.4e15 wei). The "
                   "running score is cumulative value / cumulative scale and round 0's value is ~30-90x any later round's, "
                   "so pay is set by round 0 for the rest of the task")
def test_bank_then_free_ride_is_not_paid_for_the_free_rounds() -> None:
    run = banked("noise_after_r0")
    later = range(1, 5)
    assert run.ratio(ME, rounds=later) <= 0.01


@pytest.mark.xfail(strict=True, reason="turncoat: honest in rounds 0-1, then -0.3 x its own update in rounds 2-4: never "
                   "flagged (too close to the centre) and paid 0.97x of its honest pay in the attack rounds (89.0e15 vs "
                   "91.0e15 wei) although its values there are negative")
def test_unflagged_sign_flipper_is_not_paid_in_attack_rounds() -> None:
    run = banked("flip_0.3_after_r1")
    attack = range(2, 5)
    harmful = [r for r in attack if run.outs[r].contributions[ME] < 0]
    assert harmful  # it did harm the model in these rounds
    assert all(run.credits[ME][r] == 0 for r in harmful)


@cache
def framed(kind: str, seed: int = 0) -> Run:
    def perp(c: Ctx, t: Trainer) -> Tensor | None:  # the honest mean with the victim's direction taken out
        if c.r < 1:
            return None
        m, v = c.mean_honest(), c.trained[VICTIM]
        return at_cosine(unit(m - (m @ v) / (v @ v) * v) * m.norm(), 0.985, c.gen(t.addr))

    if kind == "anti_victim":
        cheaters = [Trainer(ME, None, lambda c, t: -0.2 * c.trained[VICTIM])]
    else:
        cheaters = [Trainer(ME, None, perp), Trainer(ME2, None, perp)]
    # a 6-way split: the cheaters have no data of their own
    return market(honest_plus(*cheaters, seed=seed, partition="dirichlet:0.5", ways=HONEST), 4, seed, "dirichlet:0.5")


# closed in issue 13: an update pointing against the others' centre (cosine < -0.5) is the outlier itself
def test_one_attacker_cannot_get_an_honest_trainer_flagged() -> None:
    run = framed("anti_victim")
    assert run.flagged(VICTIM) == []


@pytest.mark.xfail(strict=True, reason="Dirichlet(0.5), two data-less sybils from round 1 submitting the honest mean "
                   "minus its component along the victim (cosine 0.985 with it, so not copies of each other): the honest "
                   "victim is flagged in rounds 2 and 3 (0 bps), its pay falls from 1.23x to 0.57x an honest trainer "
                   "(0.43x of the attack-free run; seed 1 also 0.43x), while the sybils are paid 0.53x and 0.55x")
def test_colluding_sybils_cannot_get_an_honest_trainer_flagged() -> None:
    run = framed("perp_sybils")
    assert run.flagged(VICTIM) == []


# ------------------------------------------------------------------ 4. identities, sybils, running score
@cache
def sybils(kind: str) -> Run:
    d = own_data()
    if kind == "halves":
        h = len(d) // 2
        parts = [Dataset(d.x[:h], d.y[:h]), Dataset(d.x[h:], d.y[h:])]
        cheaters = [Trainer(A(HONEST + k), p, honest_act) for k, p in enumerate(parts)]
    elif kind == "full_and_80pct":
        idx = torch.randperm(len(d), generator=torch.Generator().manual_seed(5))[: int(0.8 * len(d))]
        cheaters = [Trainer(ME, d, honest_act), Trainer(ME2, Dataset(d.x[idx], d.y[idx]), honest_act, seed_off=1)]
    else:  # the same data, reshuffled
        cheaters = [Trainer(ME, d, honest_act), Trainer(ME2, d, honest_act, seed_off=777)]
    return market(honest_plus(*cheaters), 3)


@pytest.mark.xfail(strict=True, reason="sybil split: the cheater's shard split over 2 identities is paid 0.82x + 0.80x = "
                   "1.61x an honest trainer with a whole shard (3 thirds: 0.56 + 0.46 + 0.50 = 1.51x); FedAvg and coalition "
                   "weights are per identity")
def test_splitting_own_data_over_sybils_earns_no_more() -> None:
    run = sybils("halves")
    assert (run.total(ME) + run.total(ME2)) / run.honest_mean() <= 1.1


@pytest.mark.xfail(strict=True, reason="sybils with overlapping data (whole shard + an 80% subset, cosine < 0.99) are paid "
                   "1.05x + 0.96x = 2.01x an honest trainer for one shard of data")
def test_reusing_own_data_over_sybils_earns_no_more() -> None:
    run = sybils("full_and_80pct")
    assert (run.total(ME) + run.total(ME2)) / run.honest_mean() <= 1.1


def test_same_data_reshuffled_under_a_second_identity_earns_no_more() -> None:
    run = sybils("same_data_reshuffled")
    assert run.rejected(ME2)  # cosine > 0.99 with the first identity's update
    assert (run.total(ME) + run.total(ME2)) / run.honest_mean() <= 1.1


# closed in issue 13: pay is the plain running sum, so a fresh identity starts from nothing
def test_rejoining_as_a_new_identity_does_not_change_pay_for_the_same_work() -> None:
    ds = own_data()
    keep = market(honest_plus(Trainer(ME, ds, lambda c, t: c.trained[t.addr] if c.r else noise(c, t))), 4)
    fresh = market(honest_plus(Trainer(ME, None, noise, leaves=1), Trainer(ME2, ds, honest_act, joins=1)), 4)
    later = range(1, 4)
    a, b = sum(keep.credits[ME][r] for r in later), sum(fresh.credits[ME2][r] for r in later)
    assert min(a, b) >= 0.5 * max(a, b)


# ------------------------------------------------------------------ 5. sample-count claims
def test_claimed_sample_count_buys_nothing() -> None:
    t = Trainer(ME, own_data(), samples=10**18 - 1)
    run = market(honest_plus(t), 3)
    assert run.outs[0].samples[ME] == 10**18 - 1  # recorded ...
    assert run.credits == baseline(3).credits  # ... and decides nothing: every credit identical to the wei


# ------------------------------------------------------------------ 6. a proof task pays as the default task pays
# A proof task's circuit (zk/round.circom) splits each round's pool by cyclic-permutation Shapley values of the
# utilities the aggregator publishes, over the survivors of Multi-Krum on the sketches. Before, that split was what
# a proof task paid: per round, accuracy, Multi-Krum leaving robust.f = 1 update out of every round. Measured
# (bench/fairness.py --proof, 8 equal honest trainers, 5 seeds): Gini 0.39, 48 honest trainer-rounds paid 0, and
# Spearman(shard size, pay) 0.01. Now the published utilities carry an additive game that makes each slot's circuit
# value its cumulative value under the task's own valuation, over the updates the model's rule kept (flagged ones
# are null players, paid 0): the split an unproven round of the default rule pays.
PROOF_NOW: dict[str, object] = {}
PROOF_BEFORE: dict[str, object] = {"sketch_f": 1, "payout": "round", "metric": "accuracy"}


def _cheater(kind: str) -> Trainer:
    acts: dict[str, Act] = {
        "sign_flip": lambda c, t: -1.0 * c.trained[t.addr],
        "noise": noise,
        "scaled_copy": lambda c, t: 2.0 * c.trained[VICTIM],
        "fraction_of_mean": lambda c, t: 0.3 * c.mean_honest(),
    }
    if kind == "honest":
        return Trainer(ME, own_data())
    return Trainer(ME, own_data() if kind == "sign_flip" else None, acts[kind])


@pytest.mark.parametrize("kind", ["honest", "sign_flip", "noise", "scaled_copy", "fraction_of_mean"])
def test_a_proof_task_pays_every_round_what_the_default_task_pays(kind: str) -> None:
    """Every trainer's basis points, every round: the proof task's equal the unproven default task's (to within 1
    bp of rounding); so whatever the default rule pays a cheater (0 for these but the xfailed fraction of the mean,
    0.5x an honest trainer in both), the proof task pays it too, and the equal honest trainers are paid alike."""
    proven = market(honest_plus(_cheater(kind)), 3, proof=PROOF_NOW)
    unproven = market(honest_plus(_cheater(kind)), 3)
    for r, (p, u) in enumerate(zip(proven.outs, unproven.outs)):
        got, want = dict(zip(p.addresses, p.bps)), dict(zip(u.addresses, u.bps))
        assert set(got) == set(want) and all(abs(got[a] - want[a]) <= 1 for a in got), f"round {r}: {got} vs {want}"
        assert p.proof is not None and list(p.proof.values) and p.proof.utilities  # the circuit's statement is filled
    honest = [proven.total(A(i)) for i in range(HONEST)]
    assert max(honest) / min(honest) <= 1.5
    if kind in ("sign_flip", "noise", "scaled_copy"):
        assert proven.total(ME) == 0


def test_a_proof_tasks_old_split_was_a_lottery_among_equal_honest_trainers() -> None:
    """The attack on the old split, kept measurable (``proof.sketch_f = 1``, per-round accuracy): Multi-Krum over
    the sketches leaves an update out of every round, honest or not, and pays it 0."""
    before = market(honest_plus(Trainer(ME, own_data())), 3, proof=PROOF_BEFORE)
    zero = sum(1 for o in before.outs for a, b in zip(o.addresses, o.bps) if b == 0)
    now = market(honest_plus(Trainer(ME, own_data())), 3, proof=PROOF_NOW)
    assert zero >= 3  # one honest trainer paid nothing each round
    assert all(b > 0 for o in now.outs for b in o.bps)
    totals = [now.total(A(i)) for i in range(HONEST + 1)]
    assert max(totals) / min(totals) <= 1.5
