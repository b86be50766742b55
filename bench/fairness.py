"""Does pay follow contribution?  Integer wei credited per trainer, on the real round code, in-process.

    python bench/fairness.py --json fairness.json [--quick] [--markdown fairness.md] [--workers K]
                             [--seeds ...] [--rounds R] [--candidates] [--proof]

``--proof`` runs a proof task's rounds instead (``aggregator.provable.provable_round``, with each update's sketch,
a binder and a round seed as the chain gives them): its pay should be the default task's, table for table
(``bench/results/fairness-proof.md``); with ``--candidates`` it compares the proof task's settings
(``PROOF_CANDIDATES``: the old per-round accuracy split with ``proof.sketch_f = 1`` among them).

The marketplace's pure pieces, no chain: digits over ``n = 8`` trainers; each
round every trainer runs :func:`trainer_node.train.local_update` from the
current global model, the updates are serialised with
:func:`market.tensors.encode_state` exactly as the nodes submit them (submission
order = trainer index), and :func:`aggregator.round.aggregate_round` validates,
robust-aggregates, values and returns basis points, with ``prior_values`` = the
previous round's cumulative values (the marketplace's cumulative payout).  The
contract's crediting is simulated in integers: a reward of ``10**18`` wei over
``R`` rounds, round ``r``'s pool ``reward*(r+1)//R - reward*r//R``, each submitter
credited ``pool * bps // 10_000``; a trainer's pay is the sum of its credits.
The task is :class:`market.spec.TaskSpec`'s defaults with ``model_seed = seed``
and valuation seed ``spec.valuation.seed + r`` in round ``r``.

Scenarios (trainer ``i`` is ``0x...{i+1}``; the odd one out is the last trainer):

- ``iid_equal``: 8 honest, equal IID shards: Gini of pay, max/min pay, honest
  trainer-rounds credited 0.
- ``quantity``: IID shards re-split 1:1:2:2:4:4:8:8: Spearman(shard size, pay).
- ``label_noise``: equal IID shards, 0,0,10,10,30,30,60,60 % of labels replaced
  uniformly at random: Spearman(-noise, pay).
- ``dirichlet``: Dirichlet(0.5) shards: Pearson(standalone validation accuracy
  after the same rounds of local training alone, pay).
- ``free_rider`` / ``noisy_free_rider``: the last trainer submits a zero delta /
  N(0, 1e-3^2) noise: its share of all pay.
- ``copier``: the last trainer re-uploads trainer 0's update plus 1e-6 noise (new
  CID), after it: (copier + trainer 0) / mean of the other honest trainers.
- ``late_joiner``: the last trainer is absent in rounds 0-1: its credit per round
  / the mean honest credit in that round.
- ``turncoat``: the last trainer is honest, then ``sign_flip`` in the last round:
  its pay in that round and its share overall.

``--candidates`` also runs ``iid_equal``, ``quantity`` and ``label_noise`` (3 seeds)
under valuation variants (payout round/cumulative x metric accuracy/cross_entropy
with exact Shapley; gtg, tmc, loo with cumulative cross-entropy) and measures,
per round, the Spearman agreement of each variant's values with exact Shapley of
cross-entropy and of accuracy over the same survivors and updates.

Writes ``{"default", "scenarios", "candidates" (with --candidates), "goals",
"meta"}``; the Markdown table (goal per metric, met?) goes to ``--markdown``
(default: the JSON path with ``.md``) and stdout.  Exits 0 whatever the goals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from eth_abi import encode as abi_encode  # noqa: E402
from eth_utils import keccak  # noqa: E402
from scipy import stats  # noqa: E402  (a dev dependency, installed by make install)

from aggregator.round import aggregate_round  # noqa: E402
from aggregator.validate import Published  # noqa: E402
from market.data import Dataset, example, example_splits  # noqa: E402
from market.models import build_model, held_out_score, model_with_state, state_of  # noqa: E402
from market.spec import TaskSpec, ValuationSpec  # noqa: E402
from market.tensors import decode_state, encode_state, flatten  # noqa: E402
from market.zk.sketch import sketch_seed, sketch_vector  # noqa: E402
from trainer_node.attacks import Collusion, attack_seed, poison_update  # noqa: E402
from trainer_node.train import local_update  # noqa: E402

N = 8
REWARD_WEI = 10**18
BPS = 10_000
SCENARIOS = ("iid_equal", "quantity", "label_noise", "dirichlet", "free_rider", "noisy_free_rider", "copier",
             "late_joiner", "turncoat")
CANDIDATE_SCENARIOS = ("iid_equal", "quantity", "label_noise", "dirichlet")
#: shard-size ratio of ``quantity`` (trainer i: 2 ** (i // 2)) and label-noise levels of ``label_noise`` (by pairs)
NOISE_LEVELS = (0.0, 0.1, 0.3, 0.6)
NOISY_SIGMA = 1e-3
COPY_SIGMA = 1e-6
LATE_JOIN_ROUND = 2  # absent in rounds 0..1
TURNCOAT_ROUNDS = 1  # attacks in the last round(s)
METRICS = ("gce", "cross_entropy", "accuracy")
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    *((f"exact/{p}/{m}", {"rule": "exact", "payout": p, "metric": m})
      for p in ("round", "cumulative") for m in METRICS),
    ("exact/cumulative/gce/partial", {"rule": "exact", "payout": "cumulative", "metric": "gce", "utility": "partial"}),
    *((f"{r}/cumulative/gce", {"rule": r, "payout": "cumulative", "metric": "gce"})
      for r in ("gtg", "tmc", "loo")),
)


# ------------------------------------------------------------------ statistics
def gini(xs: Sequence[float]) -> float:
    """Gini coefficient of non-negative amounts (0 = equal; nan if they sum to 0)."""
    x = np.asarray(xs, dtype=np.float64)
    if x.size == 0 or x.sum() <= 0:
        return float("nan")
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size * x.sum()))


def max_min_ratio(xs: Sequence[float]) -> float:
    """max / min (inf if someone got 0, nan if nobody got anything)."""
    lo, hi = min(xs), max(xs)
    if hi <= 0:
        return float("nan")
    return float("inf") if lo <= 0 else float(hi) / float(lo)


def _correlation(fn: Any, a: Sequence[float], b: Sequence[float]) -> float:
    """``fn`` (scipy's pearsonr or spearmanr) of ``a`` and ``b``; nan if either side is constant or shorter than 2."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(x, y)[0])


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation; nan if either side is constant (or fewer than 2 points)."""
    return _correlation(stats.pearsonr, a, b)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan if either side is constant."""
    return _correlation(stats.spearmanr, a, b)


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _worst(xs: Sequence[float], high_is_bad: bool) -> float:
    """The worst value; nan counts as worst."""
    if any(math.isnan(x) for x in xs):
        return float("nan")
    return max(xs) if high_is_bad else min(xs)


# ------------------------------------------------------------------ one market run
def _address(i: int) -> str:
    return f"0x{i + 1:040x}"


def round_pool(reward: int, rounds: int, r: int) -> int:
    """The contract's pool of round ``r``: the pools add up to exactly ``reward``."""
    return reward * (r + 1) // rounds - reward * r // rounds


def credit(pool: int, bps: Sequence[int]) -> list[int]:
    """What the contract credits each submitter: ``pool * bps // 10_000`` (rounded down)."""
    return [pool * int(b) // BPS for b in bps]


#: what ``--proof`` changes in the default spec: a proof task (its pay encoded for zk/round.circom, aggregator/provable.py)
PROOF_TASK: dict[str, Any] = {"proof": {"system": "groth16"}, "robust": {"rule": "multikrum", "f": 1}}
PROOF_TASK_ID = 1  # the task id the sketches' public projection is drawn for
PROOF_CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    # a proof task's old settings: per round, accuracy, Multi-Krum over the sketches leaving 1 out of the pay (the
    # old circuit-rule valuation itself, cyclic Shapley over the coalition utilities, measured Gini 0.39, 48 zero-paid)
    ("proof/round/accuracy/sketch_f1", {"payout": "round", "metric": "accuracy", "sketch_f": 1}),
    ("proof/cumulative/accuracy/sketch_f1", {"payout": "cumulative", "metric": "accuracy", "sketch_f": 1}),
    ("proof/cumulative/accuracy", {"payout": "cumulative", "metric": "accuracy"}),
    ("proof/cumulative/gce/sketch_f1", {"payout": "cumulative", "metric": "gce", "sketch_f": 1}),
    ("proof/cumulative/gce", {"payout": "cumulative", "metric": "gce"}),  # a proof task's default now
)


def proof_kwargs(spec: TaskSpec, seed: int, r: int, deltas: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What a proof task's round takes besides the updates, as the nodes commit to it and the chain draws it:
    each update's sketch (of ``deltas``: flat, as decoded), a binder per submitter and the round's seed."""
    k, scale, at = spec.proof.sketch_k, spec.proof.sketch_scale, sketch_seed(PROOF_TASK_ID)
    return {"proof_seed": keccak(abi_encode(["uint256", "uint256"], [seed, r])),
            "binders": {a: j + 1 for j, a in enumerate(deltas)},
            "sketches": {a: sketch_vector(d, at, k, scale) for a, d in deltas.items()}}


def task_spec(task: str = "digits") -> TaskSpec:
    """The default task spec on example ``task``'s data with its usual model (and that model's local training)."""
    from simulator.simulate import example_fields

    return TaskSpec().model_copy(update=example_fields(task))


def spec_for(seed: int, valuation: dict[str, Any] | None = None, proof: bool = False, task: str = "digits") -> TaskSpec:
    base = task_spec(task)
    if proof:
        if task != "digits":
            raise ValueError(f"--proof runs the digits proof task only (not {task})")
        valuation = dict(valuation or {})
        sketch_f = valuation.pop("sketch_f", 0)
        base = TaskSpec.model_validate({**PROOF_TASK, "proof": {**PROOF_TASK["proof"], "sketch_f": sketch_f},
                                        "valuation": valuation})
        return base.model_copy(update={"model_seed": seed})
    update: dict[str, Any] = {"model_seed": seed}
    if valuation:
        update["valuation"] = ValuationSpec(**{**base.valuation.model_dump(), **valuation})
    return TaskSpec.model_validate({**base.model_dump(), **{k: (v.model_dump() if hasattr(v, "model_dump") else v)
                                                            for k, v in update.items()}})


def _concat(shards: Sequence[Dataset]) -> Dataset:
    return Dataset(torch.cat([s.x for s in shards]), torch.cat([s.y for s in shards]))


def scenario_setup(name: str, seed: int, n: int, rounds: int, task: str = "digits") -> dict[str, Any]:
    """Shards, each trainer's behaviour (None = honest) and first round, and what the metric compares pay with."""
    partition = "dirichlet:0.5" if name == "dirichlet" else "iid"
    splits = example_splits(task, n, partition, seed)
    datas = list(splits.trainers)
    behaviour: list[str | None] = [None] * n
    joins = [0] * n
    extra: dict[str, Any] = {}
    last = n - 1
    if name == "quantity":
        pooled = _concat(datas)
        units = [2 ** (i // 2) for i in range(n)]
        perm = torch.from_numpy(np.random.default_rng(seed + 104_729).permutation(len(pooled)))
        cuts = np.floor(np.cumsum(units) / sum(units) * len(pooled)).astype(int)
        starts = [0, *cuts[:-1]]
        datas = [Dataset(pooled.x[perm[s:e]], pooled.y[perm[s:e]]) for s, e in zip(starts, cuts)]
        extra["sizes"] = [len(d) for d in datas]
    elif name == "label_noise":
        noise = [NOISE_LEVELS[(i // 2) % len(NOISE_LEVELS)] for i in range(n)]
        rng = np.random.default_rng(seed + 15_485_863)
        noisy = []
        for d, frac in zip(datas, noise):
            y = d.y.clone()
            k = int(round(frac * len(d)))
            idx = torch.from_numpy(rng.choice(len(d), size=k, replace=False))
            schema = example(task).schema
            if schema.regression:  # a noisy label: anywhere in the label range
                y[idx] = torch.from_numpy(rng.uniform(*schema.label_range, size=k).astype(np.float32))
            else:
                y[idx] = torch.from_numpy(rng.integers(0, schema.n_classes, size=k))
            noisy.append(Dataset(d.x, y))
        datas = noisy
        extra["noise"] = noise
    elif name in ("free_rider", "noisy_free_rider", "copier", "turncoat"):
        behaviour[last] = name
    elif name == "late_joiner":
        joins[last] = min(LATE_JOIN_ROUND, rounds - 1)
    elif name not in ("iid_equal", "dirichlet"):
        raise ValueError(f"unknown scenario {name!r}")
    return {"datas": datas, "validation": splits.validation, "test": splits.test, "behaviour": behaviour,
            "joins": joins, "extra": extra, "partition": partition}


def _step_seed(seed: int, r: int, i: int) -> int:
    return 1_000_003 * seed + 1000 * r + i


def _cosines(vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    m = torch.stack([v.to(torch.float64) for v in vectors])
    m = m / m.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return m @ m.T


def exact_values(spec: TaskSpec, g: dict[str, torch.Tensor], deltas: Sequence[torch.Tensor], weights: Sequence[float],
                 val: Dataset, metric: str) -> tuple[list[float], np.ndarray]:
    """Exact Shapley values (and the utility table) of ``metric`` over these updates."""
    from aggregator.valuation.batched import shapley_from_table
    from aggregator.valuation.utility import CoalitionUtility

    u = CoalitionUtility(spec, g, list(deltas), list(weights), val.x, val.y, utility=spec.valuation.utility, metric=metric)
    table = u.table()
    return shapley_from_table(table, len(deltas)), table


def _table_matches(table: np.ndarray, survivors: Sequence[str], recorded: dict[str, float]) -> bool | None:
    """Whether a recomputed utility table equals the round's recorded utilities (None if nothing to compare)."""
    n = len(survivors)
    if not recorded:
        return None
    seen = 0
    for m in range(1 << n):
        key = ",".join(sorted(survivors[i] for i in range(n) if m >> i & 1))
        if key in recorded:
            seen += 1
            if abs(recorded[key] - float(table[m])) > 1e-9 * max(1.0, abs(float(table[m]))):
                return False
    return True if seen else None


def run_market(scenario: str, seed: int, rounds: int, n: int = N, candidate: str | None = None,
               valuation: dict[str, Any] | None = None, reference: bool = False,
               earlier: bool = True, proof: bool = False, task: str = "digits") -> dict[str, Any]:
    """One market run of ``rounds`` rounds: every trainer's credits (wei) per round and what decided them.

    ``valuation``: overrides of the spec's valuation (a candidate rule); ``reference``: also compare each
    round's values with exact Shapley of cross-entropy and of accuracy over the same updates; ``earlier``:
    pass the updates published in earlier rounds (valid and global) to the copy check, as the service does.
    """
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    spec = spec_for(seed, valuation, proof, task)
    setup = scenario_setup(scenario, seed, n, rounds, task)
    datas, val, behaviour, joins = setup["datas"], setup["validation"], setup["behaviour"], setup["joins"]
    g0 = state_of(build_model(spec.model, spec.data, spec.model_seed))
    g = g0
    prior: dict[str, float] = {}
    previous: dict[str, torch.Tensor] = {}
    published: list[Published] = []
    rounds_out: list[dict[str, Any]] = []
    credits = [[0] * rounds for _ in range(n)]
    max_norm = spec.validation.max_update_norm
    for r in range(rounds):
        pool = round_pool(REWARD_WEI, rounds, r)
        present = [i for i in range(n) if joins[i] <= r]
        trained: dict[int, OrderedDict[str, torch.Tensor]] = {}
        for i in present:
            if behaviour[i] in (None, "turncoat"):
                trained[i] = local_update(spec, g, datas[i], seed=_step_seed(seed, r, i))
        honest = {i: d for i, d in trained.items() if behaviour[i] is None}
        attacking = {i for i in present if behaviour[i] is not None
                     and (behaviour[i] != "turncoat" or r >= rounds - TURNCOAT_ROUNDS)}
        subs: list[tuple[str, bytes]] = []
        deltas: dict[str, torch.Tensor] = {}
        for i in present:
            b = behaviour[i]
            if b is None or (b == "turncoat" and i not in attacking):
                delta = trained[i]
            elif b == "turncoat":
                delta = poison_update("sign_flip", trained[i], seed=attack_seed(seed, 0, i), collusion=None,
                                      max_norm=max_norm)
            else:
                zeros = OrderedDict((k, torch.zeros_like(v)) for k, v in g.items())
                seen = Collusion(tuple(honest[j] for j in sorted(honest))) if b == "copier" else None
                delta = poison_update(b, zeros, seed=attack_seed(seed, r, i), collusion=seen, max_norm=max_norm)
            blob = encode_state(delta, {"kind": "delta", "samples": str(len(datas[i]))})
            subs.append((_address(i), blob))
            deltas[_address(i)] = flatten(decode_state(blob)[0])  # exactly what the round decodes
        kw: dict[str, Any] = {"earlier": list(published)} if earlier else {}
        if proof:
            kw.update(proof_kwargs(spec, seed, r, deltas))
        out = aggregate_round(spec, g, subs, val.x, val.y, seed=spec.valuation.seed + r, prior_values=prior, **kw)
        bps = list(out.bps)
        assert len(bps) == len(subs) and sum(bps) in (0, BPS), bps
        paid = credit(pool, bps)
        for a, c in zip(out.addresses, paid):
            credits[int(a, 16) - 1][r] = c
        honest_vecs = [deltas[_address(i)] for i in sorted(honest)]
        cos = _cosines(honest_vecs) if len(honest_vecs) > 1 else None
        same_max = float((cos - 2 * torch.eye(len(honest_vecs), dtype=torch.float64)).max()) if cos is not None else float("nan")
        # honest updates vs the previous round's: another trainer's (what the copy check compares) and their own
        prev_other, prev_own = float("nan"), float("nan")
        if previous and honest_vecs:
            olds = list(previous)
            both = _cosines([*honest_vecs, *previous.values()])[: len(honest_vecs), len(honest_vecs):]
            who = [_address(i) for i in sorted(honest)]
            other = [float(both[a, b]) for a in range(len(who)) for b in range(len(olds)) if olds[b] != who[a]]
            own = [float(both[a, b]) for a in range(len(who)) for b in range(len(olds)) if olds[b] == who[a]]
            prev_other = max(other, default=float("nan"))
            prev_own = max(own, default=float("nan"))
        rec: dict[str, Any] = {
            "round": r, "pool": pool, "addresses": list(out.addresses), "bps": bps, "credits": paid,
            "uncredited": pool - sum(paid), "survivors": list(out.survivors), "outliers": list(out.outliers),
            "rejected": dict(out.rejected), "contributions": {a: float(v) for a, v in out.contributions.items()},
            "valuation": out.valuation, "accuracy_model": out.accuracy_model,
            "honest_cosine_same_round_max": same_max, "honest_cosine_previous_round_other_max": prev_other,
            "honest_cosine_previous_round_own_max": prev_own,
            "attacking": [_address(i) for i in sorted(attacking)],
        }
        if reference and out.survivors:
            rec["agreement"] = _agreement(spec, g, out, [deltas[a] for a in out.survivors], val)
        rounds_out.append(rec)
        prior = dict(out.cumulative_values)
        previous = {a: deltas[a] for a in out.addresses if a not in out.rejected}
        # what the service passes: every valid update and every global update published so far
        published += [Published(a, f"the update of {a} in round {r}", d) for a, d in previous.items()]
        published.append(Published("", f"round {r}'s global update",
                                   flatten(out.new_state).double() - flatten(g).double()))
        g = out.new_state
    result: dict[str, Any] = {
        "scenario": scenario, "seed": seed, "candidate": candidate, "rounds": rounds, "n": n,
        "addresses": [_address(i) for i in range(n)], "behaviour": behaviour, "joins": joins,
        "extra": setup["extra"], "credits": credits, "totals": [sum(c) for c in credits],
        "round_records": rounds_out, "earlier_passed": earlier,
        "test_accuracy": held_out_score(spec.data, model_with_state(spec.model, spec.data, g), setup["test"].x, setup["test"].y),
    }
    if scenario == "dirichlet":
        result["standalone_accuracy"] = standalone_accuracy(spec, g0, datas, val, seed, rounds)
    result["seconds"] = time.perf_counter() - t0
    return result


def standalone_accuracy(spec: TaskSpec, g0: dict[str, torch.Tensor], datas: Sequence[Dataset], val: Dataset,
                        seed: int, rounds: int) -> list[float]:
    """Each trainer alone (FedAvg with one client) for ``rounds`` rounds from the same initial model: validation accuracy."""
    out = []
    for i, data in enumerate(datas):
        g = OrderedDict((k, v.clone()) for k, v in g0.items())
        for r in range(rounds):
            delta = local_update(spec, g, data, seed=_step_seed(seed, r, i))
            g = OrderedDict((k, g[k] + delta[k]) for k in g)
        out.append(held_out_score(spec.data, model_with_state(spec.model, spec.data, g), val.x, val.y))
    return out


def _agreement(spec: TaskSpec, g: dict[str, torch.Tensor], out: Any, kept: list[torch.Tensor],
               val: Dataset) -> dict[str, Any]:
    """Spearman of this round's values (survivors) with exact Shapley of each metric over the same updates."""
    survivors = list(out.survivors)
    weights = [1.0] * len(survivors)  # the round weighs every update equally
    mine = [out.contributions[a] for a in survivors]
    res: dict[str, Any] = {}
    for metric in (("r2",) if spec.data.regression else METRICS):  # a regression task has the one metric
        values, table = exact_values(spec, g, kept, weights, val, metric)
        res[metric] = spearman(mine, values)
        if metric == spec.valuation.metric:
            res["table_matches_round"] = _table_matches(table, survivors, dict(out.utilities))
    return res


# ------------------------------------------------------------------ summaries
def _honest(run: dict[str, Any]) -> list[int]:
    return [i for i, b in enumerate(run["behaviour"]) if b is None]


def scenario_metrics(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The scenario's metrics over seeds, and per seed."""
    runs = sorted(runs, key=lambda r: r["seed"])
    per_seed: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "totals_wei": [r["totals"] for r in runs],
                                "test_accuracy": [r["test_accuracy"] for r in runs]}
    shares = [[t / max(1, sum(r["totals"])) for t in r["totals"]] for r in runs]
    per_seed["shares"] = shares
    m: dict[str, Any] = {}
    last = runs[0]["n"] - 1
    if name == "iid_equal":
        g = [gini(r["totals"]) for r in runs]
        mm = [max_min_ratio(r["totals"]) for r in runs]
        zero = [sum(1 for i in _honest(r) for t in range(r["rounds"]) if t >= r["joins"][i] and r["credits"][i][t] == 0)
                for r in runs]
        per_seed.update(gini=g, max_min_ratio=mm, zero_paid_rounds=zero)
        m.update(gini=_mean(g), max_min_ratio=_worst(mm, True), zero_paid_rounds=sum(zero))
    elif name == "quantity":
        rho = [spearman(r["extra"]["sizes"], r["totals"]) for r in runs]
        per_seed.update(spearman=rho, sizes=[r["extra"]["sizes"] for r in runs])
        m.update(spearman_min=_worst(rho, False), spearman_mean=_mean(rho))
    elif name == "label_noise":
        rho = [spearman([-x for x in r["extra"]["noise"]], r["totals"]) for r in runs]
        per_seed.update(spearman=rho, noise=runs[0]["extra"]["noise"])
        m.update(spearman_min=_worst(rho, False), spearman_mean=_mean(rho))
    elif name == "dirichlet":
        rho = [pearson(r["standalone_accuracy"], r["totals"]) for r in runs]
        sp = [spearman(r["standalone_accuracy"], r["totals"]) for r in runs]
        per_seed.update(pearson=rho, spearman=sp, standalone_accuracy=[r["standalone_accuracy"] for r in runs])
        m.update(pearson_mean=_mean(rho), pearson_min=_worst(rho, False), spearman_mean=_mean(sp))
    elif name in ("free_rider", "noisy_free_rider"):
        s = [sh[last] for sh in shares]
        per_seed.update(share=s)
        m.update(share_max=_worst(s, True))
    elif name == "copier":
        ratio = []
        for r in runs:
            others = [r["totals"][i] for i in _honest(r) if i != 0]
            base = _mean(others)
            ratio.append((r["totals"][0] + r["totals"][last]) / base if base > 0 else float("inf"))
        s = [sh[last] for sh in shares]
        # context: how far any honest trainer's pay lies above the mean of the other honest ones (pay noise)
        spread = [max(r["totals"][k] / _mean([r["totals"][i] for i in _honest(r) if i != k]) for k in _honest(r))
                  for r in runs]
        refused = sum(1 for r in runs for rec in r["round_records"] if _address(last) not in rec["survivors"])
        per_seed.update(pair_over_honest=ratio, copier_share=s, honest_max_over_others=spread)
        m.update(pair_over_honest_max=_worst(ratio, True), copier_share_max=_worst(s, True),
                 honest_max_over_others_max=_worst(spread, True), copier_rounds_unpaid_or_refused=refused,
                 copier_rounds=sum(r["rounds"] for r in runs))
    elif name == "late_joiner":
        per, mine, theirs = [], [], []
        for r in runs:
            j0 = r["joins"][last]
            row, own, base_row = [], [], []
            for t in range(j0, r["rounds"]):
                base = _mean([r["credits"][i][t] for i in range(r["n"]) if i != last])
                row.append(r["credits"][last][t] / base if base > 0 else float("nan"))
                own.append(r["credits"][last][t])
                base_row.append(base)
            per.append(row)
            mine.append(own)
            theirs.append(base_row)
        per_seed.update(ratio_per_round=per, newcomer_credits_wei=mine, honest_mean_credits_wei=theirs,
                        joined_round=runs[0]["joins"][last])
        cols = list(zip(*per))
        m.update(ratio_per_round_mean=[_mean(list(c)) for c in cols], ratio_first_round_min=_worst([p[0] for p in per], False),
                 ratio_last_round_mean=_mean([p[-1] for p in per]), joined_round=runs[0]["joins"][last])
    elif name == "turncoat":
        attack_pay, excluded = [], []
        for r in runs:
            att = [t for t, rec in enumerate(r["round_records"]) if _address(last) in rec["attacking"]]
            attack_pay.append(sum(r["credits"][last][t] for t in att))
            excluded.append(sum(1 for t in att if _address(last) not in r["round_records"][t]["survivors"]))
        s = [sh[last] for sh in shares]
        per_seed.update(attack_pay_wei=attack_pay, attack_rounds_excluded=excluded, share=s)
        m.update(attack_pay_wei_max=max(attack_pay), share_max=_worst(s, True),
                 attack_rounds_excluded=sum(excluded), attack_rounds=TURNCOAT_ROUNDS * len(runs))
    # for every scenario: how many honest trainer-rounds were refused or flagged, and how close honest updates get
    flagged = sum(1 for r in runs for i in _honest(r) for rec in r["round_records"]
                  if _address(i) in rec["addresses"] and _address(i) not in rec["survivors"])
    m["honest_rounds_flagged"] = flagged
    for key in ("honest_cosine_same_round_max", "honest_cosine_previous_round_other_max",
                "honest_cosine_previous_round_own_max"):
        xs = [rec[key] for r in runs for rec in r["round_records"]]
        m[key] = max((x for x in xs if not math.isnan(x)), default=float("nan"))
    m["honest_rounds_refused"] = sum(1 for r in runs for i in _honest(r) for rec in r["round_records"]
                                     if _address(i) in rec["rejected"])
    m["money_identity"] = all(sum(rec["credits"]) + rec["uncredited"] == rec["pool"] and rec["uncredited"] >= 0
                              for r in runs for rec in r["round_records"])
    return {"name": name, "seeds": [r["seed"] for r in runs], "metrics": m, "per_seed": per_seed}


#: (scenario, metric, comparison, target)
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("iid_equal", "gini", "<=", 0.05),
    ("iid_equal", "max_min_ratio", "<=", 1.5),
    ("iid_equal", "zero_paid_rounds", "==", 0),
    ("quantity", "spearman_min", ">=", 0.9),
    ("label_noise", "spearman_min", ">=", 0.9),
    ("dirichlet", "pearson_mean", ">=", 0.8),
    ("free_rider", "share_max", "<=", 0.01),
    ("noisy_free_rider", "share_max", "<=", 0.01),
    ("copier", "pair_over_honest_max", "<=", 1.05),
    ("turncoat", "attack_pay_wei_max", "==", 0),
)
#: metrics reported without a goal, per scenario (the markdown table shows them too)
REPORTED = {"late_joiner": ("ratio_per_round_mean", "ratio_first_round_min"), "turncoat": ("share_max",),
            "copier": ("copier_share_max", "honest_max_over_others_max")}


def _met(value: float, op: str, target: float) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return {"<=": value <= target, ">=": value >= target, "==": value == target}[op]


def evaluate_goals(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {s["name"]: s for s in scenarios}
    out: dict[str, Any] = {}
    for name, metric, op, target in GOALS:
        if name in by_name:
            value = by_name[name]["metrics"].get(metric)
            out[f"{name}.{metric}"] = {"value": value, "goal": f"{op} {target:g}", "met": _met(value, op, target)}
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:.3g}" if abs(v) >= 10**6 else str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    d = report["default"]
    lines = ["| scenario | metric | value | goal | met? |", "|---|---|---|---|---|"]
    goals = report["goals"]
    for s in report["scenarios"]:
        for key, g in goals.items():
            name, metric = key.split(".", 1)
            if name == s["name"]:
                lines.append(f"| {name} | {metric} | {_fmt(g['value'])} | {g['goal']} | {'yes' if g['met'] else '**no**'} |")
        for metric in REPORTED.get(s["name"], ()):
            lines.append(f"| {s['name']} | {metric} | {_fmt(s['metrics'].get(metric))} | – | – |")
    lines.append("")
    lines.append(f"n = {d['n']} trainers, {d['rounds']} rounds, seeds {d['seeds']}, {d.get('task', 'digits')}/{d['model']['arch']}{'; a proof task (Multi-Krum over sketches)' if d.get('proof_task') else ''}; robust "
                 f"{d['robust']['rule']} f = {d['robust']['f']}, valuation {d['valuation']['rule']} "
                 f"(metric {d['valuation']['metric']}, payout {d['valuation']['payout']}); reward {d['reward_wei']} wei; "
                 f"{report['meta']['wall_s']:.0f} s wall.")
    if report.get("candidates"):
        lines.append("")
        lines.append(candidates_markdown(report["candidates"]))
    return "\n".join(lines)


def candidates_markdown(cands: list[dict[str, Any]]) -> str:
    lines = ["| candidate | iid gini | iid max/min | iid zero-paid | quantity ρ min | label-noise ρ min "
             "| dirichlet pearson | vs exact GCE ρ mean (worst) | vs exact CE ρ mean (worst) "
             "| vs exact acc ρ mean (worst) | goals met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cands:
        m = {s["name"]: s["metrics"] for s in c["scenarios"]}
        ag = c["agreement"]

        def pair(k: str) -> str:
            a = ag.get(k) or {}
            return f"{_fmt(a.get('mean'))} ({_fmt(a.get('worst'))})" if a.get("rounds") else "n/a"
        lines.append(
            f"| {c['name']} | {_fmt(m.get('iid_equal', {}).get('gini'))} | {_fmt(m.get('iid_equal', {}).get('max_min_ratio'))} "
            f"| {_fmt(m.get('iid_equal', {}).get('zero_paid_rounds'))} | {_fmt(m.get('quantity', {}).get('spearman_min'))} "
            f"| {_fmt(m.get('label_noise', {}).get('spearman_min'))} | {_fmt(m.get('dirichlet', {}).get('pearson_mean'))} "
            f"| {pair('gce')} | {pair('cross_entropy')} | {pair('accuracy')} "
            f"| {sum(g['met'] for g in c['goals'].values())}/{len(c['goals'])} |")
    return "\n".join(lines)


def summarise_candidate(name: str, valuation: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    scen = [scenario_metrics(s, [r for r in runs if r["scenario"] == s]) for s in CANDIDATE_SCENARIOS
            if any(r["scenario"] == s for r in runs)]
    agreement: dict[str, Any] = {}
    for metric in METRICS:
        vals = [rec["agreement"][metric] for r in runs for rec in r["round_records"]
                if "agreement" in rec and rec["agreement"].get(metric) is not None]
        ok = [v for v in vals if not math.isnan(v)]
        agreement[metric] = {"rounds": len(vals), "nan_rounds": len(vals) - len(ok), "mean": _mean(ok),
                             "worst": min(ok) if ok else float("nan")}
    matches = [rec["agreement"].get("table_matches_round") for r in runs for rec in r["round_records"] if "agreement" in rec]
    agreement["reference_matches_round_table"] = (
        None if all(m is None for m in matches) else all(m for m in matches if m is not None))
    return {"name": name, "valuation": valuation, "scenarios": scen, "agreement": agreement,
            "goals": evaluate_goals(scen)}


def _run(job: tuple[Any, ...]) -> dict[str, Any]:
    return run_market(*job)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="where to write the JSON report")
    ap.add_argument("--markdown", help="where to write the markdown table (default: JSON path with .md)")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 3 rounds")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0-4; --quick: 0 1)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5; --quick: 3)")
    ap.add_argument("--n", type=int, default=N, help=f"trainers (default {N})")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    ap.add_argument("--candidates", action="store_true", help="also run the candidate valuation rules")
    ap.add_argument("--candidate-seeds", type=int, nargs="+", help="seeds for --candidates (default: the first 3)")
    ap.add_argument("--no-earlier", action="store_true",
                    help="do not pass the previous round's updates to the round's copy check")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: CPU count)")
    ap.add_argument("--proof", action="store_true",
                    help="a proof task's rounds (as zk/round.circom proves them: aggregator/provable.py); "
                         "--candidates then compares its settings")
    ap.add_argument("--task", default="digits", help="the example task (market.data.EXAMPLES; default digits)")
    args = ap.parse_args(argv)
    example(args.task)
    if args.proof and args.task != "digits":
        ap.error(f"--proof runs the digits proof task only (not --task {args.task})")
    args.seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    args.rounds = args.rounds or (3 if args.quick else 5)
    cand_seeds = args.candidate_seeds or args.seeds[:3]
    earlier = not args.no_earlier

    candidates = PROOF_CANDIDATES if args.proof else CANDIDATES
    jobs: list[tuple[Any, ...]] = [(s, seed, args.rounds, args.n, None, None, False, earlier, args.proof, args.task)
                                   for s in args.scenarios for seed in args.seeds]
    if args.candidates:
        jobs += [(s, seed, args.rounds, args.n, name, val, not args.proof, earlier, args.proof, args.task)
                 for name, val in candidates for s in CANDIDATE_SCENARIOS for seed in cand_seeds]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(_run, jobs))
    else:
        results = [_run(j) for j in jobs]
    wall = time.perf_counter() - t0

    base = spec_for(0, None, args.proof, args.task)
    default = [r for r in results if r["candidate"] is None]
    report: dict[str, Any] = {
        "default": {
            "task": args.task, "n": args.n, "rounds": args.rounds, "seeds": args.seeds, "reward_wei": REWARD_WEI,
            "valuation": base.valuation.model_dump(mode="json"), "robust": base.robust.model_dump(mode="json"),
            "validation": base.validation.model_dump(mode="json"), "model": base.model.model_dump(mode="json"),
            "training": base.training.model_dump(mode="json"),
            "valuation_used": sorted({rec["valuation"] for r in default for rec in r["round_records"]}),
            "earlier_passed": any(r["earlier_passed"] for r in results),
            "noisy_free_rider_sigma": NOISY_SIGMA, "copier_sigma": COPY_SIGMA, "late_join_round": LATE_JOIN_ROUND,
            "turncoat_rounds": TURNCOAT_ROUNDS,
            "proof_task": args.proof,
        },
        "scenarios": [scenario_metrics(s, [r for r in default if r["scenario"] == s]) for s in args.scenarios],
    }
    if args.candidates:
        report["candidates"] = [summarise_candidate(name, val, [r for r in results if r["candidate"] == name])
                                for name, val in candidates]
        report["candidate_seeds"] = cand_seeds
    report["goals"] = evaluate_goals(report["scenarios"])
    report["meta"] = {
        "runs": len(jobs), "workers": args.workers, "quick": args.quick, "wall_s": wall,
        "cpu_s_per_run": _mean([r["seconds"] for r in results]),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "platform": platform.platform(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    Path(args.markdown or str(Path(args.json).with_suffix(".md"))).write_text(table + "\n")
    print(table)
    failed = [k for k, g in report["goals"].items() if not g["met"]]
    for k, g in report["goals"].items():
        print(f"{'PASS' if g['met'] else 'FAIL'}  {k} = {_fmt(g['value'])} (goal {g['goal']})")
    if failed:
        print(f"\n{len(failed)} of {len(report['goals'])} goals NOT met: {', '.join(failed)}")
    else:
        print(f"\nall {len(report['goals'])} goals met")
    print(f"{len(jobs)} runs in {wall:.0f} s ({args.workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
