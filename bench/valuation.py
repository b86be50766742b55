"""Valuation benchmark: estimator quality against exact Shapley, and exact Shapley's cost as n grows.

    .venv/bin/python bench/valuation.py --json bench/results/valuation.json [--metric both]

Scenario (digits, no download): 1,000 samples are the validation set (the
utility is a score on it: ``--metric accuracy``, ``cross_entropy`` -- minus
the mean cross-entropy, the spec default -- or ``both``, the default, each
row tagged with its metric), the other 797 are dealt to ``n`` trainers whose
shard sizes grow geometrically over a 10x range; ``n // 5`` trainers (at
least one) have half their labels replaced by random ones, and the last
trainer is a free rider (zero update; it claims its shard size).  Every
trainer runs the task's local training from the initial model (round 0), or
with ``--start-round K`` from the model after K rounds of everyone's FedAvg
(nearer convergence, where accuracy stops moving; several K may be given).
Coalition weights are the shard sizes, or 1 with ``--equal-weights``.

- ``quality``: at n = 10 and 16 (logreg), exact Shapley from the batched table
  is the ground truth; every estimator runs ``--seeds`` times on a fresh
  utility (one coalition at a time, as it would in a round).  ``spearman``
  is the rank correlation of its values with the exact ones, ``mae_share``
  the mean absolute error of the payout shares (values clipped at 0 and
  normalised, :func:`market.payout.contribution_shares`), ``evaluations``
  the distinct coalitions it evaluated, ``seconds`` its wall time -- each the
  mean over seeds (``*_worst`` the worst seed).
- ``scaling``: exact Shapley (all ``2^n`` utilities, then the vectorized
  Shapley pass) with the batched method, and ``naive_seconds`` with one
  coalition model at a time (the project's ``CoalitionUtility(fast=False)``),
  measured in the same run while the previous n's naive time predicts it
  finishes within ``--naive-budget`` seconds; ``tables_equal`` says whether the
  two computed bit-identical utilities (accuracy; cross-entropy tables agree to
  float64 rounding, ``max_rel_diff``).  logreg n = 4..20, MLP (hidden 256)
  n = 4..14; with ``--metric both`` each n is timed for both metrics back to
  back, the ratio behind the cost model's cross-entropy constants
  (:data:`aggregator.valuation.estimators.EXACT_COST_PER_COALITION_SAMPLE_CE`).
  ``--validation`` changes the validation set's size (the rest trains).

- ``cost_model`` (``--cost-model``): the generic pass that values declared networks (``arch = "layers"``, the
  built-in CNN, regression): for each network, a coalition table (``CoalitionUtility.table``, the vmap pass) and
  one coalition at a time (what GTG runs), timed on the example task's validation set with random updates, and
  the seconds per multiply-add per coalition-sample they give -- the constants behind ``auto``'s prediction
  (:data:`aggregator.valuation.estimators.LAYERS_COST_PER_MAC_CONV_NET` and ``..._DENSE_NET``).

Threads: ``--threads`` (default 1).  The machine is shared; with 2 OpenMP
threads and a busy second core every parallel region waits for the
descheduled thread (measured up to 14x slower), so one thread gives steadier
numbers.  The load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from aggregator.valuation.batched import shapley_from_table
from aggregator.valuation.estimators import estimate
from aggregator.valuation.utility import CoalitionUtility
from market.data import Dataset, load_digits_arrays
from market.models import build_model, state_of
from market.payout import contribution_shares
from market.spec import ModelSpec, TaskSpec, TrainingSpec
from market.tensors import flatten, unflatten
from trainer_node.train import local_update

VALIDATION = 1000
METHODS = ("exact", "gtg", "tmc", "loo")
METRICS = ("accuracy", "cross_entropy")


@dataclass
class Scenario:
    spec: TaskSpec
    global_state: dict[str, torch.Tensor]
    deltas: list[torch.Tensor]
    weights: list[float]
    x_val: torch.Tensor
    y_val: torch.Tensor
    noisy: list[int]
    free_rider: int

    def utility(self, fast: bool | None = None, metric: str = "accuracy") -> CoalitionUtility:
        return CoalitionUtility(
            self.spec, self.global_state, self.deltas, self.weights, self.x_val, self.y_val, fast=fast, threads=None, metric=metric
        )  # threads: the process setting, --threads


def make_scenario(
    n: int, arch: str = "logreg", seed: int = 0, validation: int = VALIDATION, equal_weights: bool = False, start_round: int = 0
) -> Scenario:
    """``start_round`` rounds of everyone's FedAvg (same shards, weights as the valuation's) come first: round
    0 starts from the initial model, where every update helps a lot; later rounds start nearer convergence."""
    x, y = load_digits_arrays()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    val, pool = perm[:validation], perm[validation:]
    sizes = np.geomspace(1.0, 10.0, n)
    sizes = rng.permutation(np.floor(sizes * len(pool) / sizes.sum()).astype(int))
    free_rider = n - 1
    noisy = sorted(rng.choice(n - 1, size=max(1, n // 5), replace=False).tolist()) if n > 1 else []
    training = TrainingSpec() if arch == "logreg" else TrainingSpec(lr=0.1)
    spec = TaskSpec(model=ModelSpec(arch=arch, hidden=256 if arch == "mlp" else 64), training=training)  # type: ignore[arg-type]
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    shards, start = [], 0
    for i, size in enumerate(sizes):
        idx = pool[start : start + size]
        start += size
        xi, yi = torch.from_numpy(x[idx]), torch.from_numpy(y[idx]).clone()
        if i in noisy:
            flip = torch.from_numpy(rng.random(len(yi)) < 0.5)
            yi[flip] = torch.from_numpy(rng.integers(0, 10, int(flip.sum())))
        shards.append(Dataset(xi, yi))
    weights = [1.0] * n if equal_weights else [float(s) for s in sizes]
    for r in range(start_round + 1):
        deltas = []
        for i, shard in enumerate(shards):
            delta = flatten(local_update(spec, g, shard, seed=i + 1000 * r))
            deltas.append(torch.zeros_like(delta) if i == free_rider else delta)
        if r < start_round:
            step = sum(w * d for w, d in zip(weights, deltas)) / sum(weights)
            g = unflatten(flatten(g) + step, g)
    return Scenario(spec, g, deltas, weights, torch.from_numpy(x[val]), torch.from_numpy(y[val]), noisy, free_rider)


def quality(n: int, seeds: int, metric: str = "accuracy", validation: int = VALIDATION, equal_weights: bool = False,
            params: dict[str, dict[str, Any]] | None = None, start_round: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``params``: estimator parameters by method (default: each estimator's defaults)."""
    sc = make_scenario(n, validation=validation, equal_weights=equal_weights, start_round=start_round)
    t0 = time.perf_counter()
    full = sc.utility(metric=metric).table()
    truth = shapley_from_table(full, n)
    exact_s = time.perf_counter() - t0
    true_shares = np.array(contribution_shares(truth, [True] * n))
    tag = {"n": n, "metric": metric, "round": start_round}
    rows: list[dict[str, Any]] = [
        {**tag, "method": "exact", "spearman": 1.0, "mae_share": 0.0, "evaluations": 1 << n, "exact_evaluations": 1 << n, "seconds": exact_s, "seeds": 1}
    ]
    for method in METHODS[1:]:
        runs = []
        used: dict[str, Any] = {}
        for seed in range(seeds if method != "loo" else 1):
            u = sc.utility(metric=metric)
            t0 = time.perf_counter()
            result = estimate(method, n, u, seed, (params or {}).get(method))
            values, used = result.values, result.params
            secs = time.perf_counter() - t0
            shares = np.array(contribution_shares(values, [True] * n))
            rho = float(spearmanr(truth, values).statistic)
            runs.append((rho, float(np.abs(shares - true_shares).mean()), u.evaluations, secs))
        a = np.array(runs, dtype=np.float64)
        rows.append({
            **tag, "method": method,
            "spearman": float(a[:, 0].mean()), "mae_share": float(a[:, 1].mean()),
            "evaluations": int(round(a[:, 2].mean())), "exact_evaluations": 1 << n, "seconds": float(a[:, 3].mean()),
            "seeds": len(runs), "spearman_worst": float(a[:, 0].min()), "mae_share_worst": float(a[:, 1].max()),
            "evaluations_worst": int(a[:, 2].max()), "params": used,
        })
    info = {
        **tag, "shard_sizes": [int(w) for w in sc.weights], "noisy": sc.noisy, "free_rider": sc.free_rider,
        "u_empty": float(full[0]), "u_all": float(full[-1]), "exact_values": truth, "exact_shares": true_shares.tolist(),
    }
    return rows, info


def scaling(arch: str, ns: range, naive_budget: float, metrics: tuple[str, ...] = ("accuracy",),
            validation: int = VALIDATION) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    naive_prev: dict[str, float | None] = dict.fromkeys(metrics)
    for n in ns:
        sc = make_scenario(n, arch, validation=validation)
        for metric in metrics:
            t0 = time.perf_counter()
            table = sc.utility(metric=metric).table()
            shapley_from_table(table, n)
            secs = time.perf_counter() - t0
            naive_s: float | None = None
            equal: bool | None = None
            rel: float | None = None
            prev = naive_prev[metric]
            if prev is None or prev * 2.2 <= naive_budget:
                t0 = time.perf_counter()
                naive = sc.utility(fast=False, metric=metric).table()
                shapley_from_table(naive, n)
                naive_s = time.perf_counter() - t0
                naive_prev[metric] = naive_s
                equal = bool(np.array_equal(naive, table))
                rel = float(np.max(np.abs(naive - table) / np.maximum(np.abs(naive), 1e-300)))
            else:
                naive_prev[metric] = float("inf")
            rows.append({
                "n": n, "model": arch, "metric": metric, "seconds": secs, "naive_seconds": naive_s,
                "speedup": (naive_s / secs) if naive_s else None, "tables_equal": equal, "max_rel_diff": rel,
                "coalitions": 1 << n, "validation_samples": validation, "loadavg_1m": os.getloadavg()[0],
            })
            naive_txt = "-" if naive_s is None else f"{naive_s:8.3f} s"
            print(f"  {arch:6s} {metric:13s} n={n:2d}  batched {secs:8.3f} s   naive {naive_txt}", flush=True)
    return rows


def _cost_networks() -> list[tuple[str, str, ModelSpec, int]]:
    """(name, example task, model, players) of the cost-model rows: conv nets and dense ones, small and large."""
    from market.architecture import Activation, Flatten, Linear
    from market.data import MNIST_CNN

    def dense(width: int) -> ModelSpec:
        return ModelSpec(arch="layers", layers=(Flatten(type="flatten"), Linear(type="linear", out_features=width),
                                                Activation(type="relu"), Linear(type="linear")))

    return [("cnn (built-in)", "digits", ModelSpec(arch="cnn"), 8), ("mnist5k CNN", "mnist5k", MNIST_CNN, 6),
            ("cnn (built-in)", "mnist5k", ModelSpec(arch="cnn"), 6), ("dense 64", "digits", dense(64), 8),
            ("dense 512", "mnist5k", dense(512), 6)]


def cost_model(metric: str = "gce") -> list[dict[str, Any]]:
    """Seconds per multiply-add per coalition-sample of the generic pass, as a table and one coalition at a time."""
    from aggregator.valuation.estimators import model_cost
    from market.data import example, example_splits
    from market.spec import ValuationSpec

    rows = []
    networks = _cost_networks()
    validation = {task: example_splits(task, 2).validation for task in {task for _, task, _, _ in networks}}
    for name, task, model, n in networks:
        spec = TaskSpec(model=model, data=example(task).schema, valuation=ValuationSpec(metric=metric))
        state = state_of(build_model(spec.model, spec.data))
        d = sum(v.numel() for v in state.values())
        g = torch.Generator().manual_seed(0)
        deltas = [0.01 * torch.randn(d, generator=g) for _ in range(n)]
        x, y = validation[task].x, validation[task].y
        conv, other = model_cost(spec.model, spec.data)["macs"]
        t = time.perf_counter()
        CoalitionUtility(spec, state, deltas, [1.0] * n, x, y, metric=metric).table()
        table_s = time.perf_counter() - t
        single = CoalitionUtility(spec, state, deltas, [1.0] * n, x, y, metric=metric)
        coalitions = [frozenset(range(k)) for k in range(1, n + 1)]
        t = time.perf_counter()
        single.evaluate_many(coalitions)
        one_s = (time.perf_counter() - t) / len(coalitions)
        per = (conv + other) * len(y)
        rows.append({"model": name, "task": task, "n": n, "validation_samples": len(y), "macs_conv": conv, "macs_other": other,
                     "table_seconds": table_s, "table_s_per_mac": table_s / ((1 << n) * per),
                     "one_coalition_seconds": one_s, "one_coalition_s_per_mac": one_s / per})
        print(f"  {name:15} {task:8} n={n} table {table_s:.2f} s ({rows[-1]['table_s_per_mac']:.2e} s/MAC), "
              f"one coalition {one_s:.3f} s ({rows[-1]['one_coalition_s_per_mac']:.2e} s/MAC)", flush=True)
    return rows


def print_tables(result: dict[str, Any]) -> None:
    if not result["quality"] and not result["scaling"]:
        return
    print("\nquality against exact Shapley (logreg, digits; mean over seeds, worst in brackets)")
    print(f"{'metric':13} {'round':>5} {'n':>3} {'method':6} {'spearman':>16} {'MAE share':>16} {'evaluations':>20} {'% of exact':>10} {'seconds':>8}")
    for r in result["quality"]:
        pct = 100 * r["evaluations"] / r["exact_evaluations"]
        rho = f"{r['spearman']:.3f}" + (f" [{r['spearman_worst']:.3f}]" if "spearman_worst" in r else "")
        mae = f"{r['mae_share']:.4f}" + (f" [{r['mae_share_worst']:.4f}]" if "mae_share_worst" in r else "")
        ev = f"{r['evaluations']}" + (f" [{r['evaluations_worst']}]" if "evaluations_worst" in r else "")
        metric = r.get("metric", "accuracy")
        print(f"{metric:13} {r.get('round', 0):>5} {r['n']:>3} {r['method']:6} {rho:>16} {mae:>16} {ev:>20} {pct:>9.1f}% {r['seconds']:>8.3f}")
    print("\nexact Shapley, all 2^n coalitions")
    print(f"{'model':6} {'metric':13} {'n':>3} {'val':>5} {'coalitions':>10} {'batched s':>10} {'naive s':>10} {'speedup':>8} {'equal':>6} {'max rel':>8}")
    for r in result["scaling"]:
        naive = "-" if r["naive_seconds"] is None else f"{r['naive_seconds']:.3f}"
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.1f}x"
        rel = "-" if r.get("max_rel_diff") is None else f"{r['max_rel_diff']:.1e}"
        print(f"{r['model']:6} {r.get('metric', 'accuracy'):13} {r['n']:>3} {r['validation_samples']:>5} {r['coalitions']:>10} "
              f"{r['seconds']:>10.3f} {naive:>10} {speed:>8} {str(r['tables_equal']):>6} {rel:>8}")
    print(f"\nload average before {result['machine']['loadavg_before']}, after {result['machine']['loadavg_after']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="write the results here")
    ap.add_argument("--seeds", type=int, default=5, help="estimator seeds per quality row (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--naive-budget", type=float, default=180.0, help="skip a naive run predicted to take longer (s)")
    ap.add_argument("--logreg-max", type=int, default=20)
    ap.add_argument("--mlp-max", type=int, default=14)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--metric", choices=[*METRICS, "both"], default="both", help="utility metric (default: both)")
    ap.add_argument("--validation", type=int, default=VALIDATION, help=f"validation samples (default {VALIDATION})")
    ap.add_argument("--equal-weights", action="store_true", help="coalition weights 1 instead of the shard sizes")
    ap.add_argument("--cost-model", action="store_true", help="only the generic pass's cost per multiply-add (declared networks)")
    ap.add_argument("--quality-n", type=int, nargs="+", default=[10, 16])
    ap.add_argument("--start-round", type=int, nargs="+", default=[0], help="quality rounds: FedAvg rounds run first (default 0)")
    args = ap.parse_args(argv)
    metrics = METRICS if args.metric == "both" else (args.metric,)
    torch.set_num_threads(args.threads)
    machine: dict[str, Any] = {
        "loadavg_before": list(os.getloadavg()), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    result: dict[str, Any] = {"quality": [], "scaling": [], "scenarios": [], "machine": machine,
                              "settings": {"validation": args.validation, "equal_weights": args.equal_weights, "metrics": list(metrics)}}
    t_start = time.perf_counter()
    if args.cost_model:
        print("cost model (generic pass, gce) ...", flush=True)
        result["cost_model"] = cost_model()
        args.skip_quality = args.skip_scaling = True
    if not args.skip_quality:
        for start_round in args.start_round:
            for metric in metrics:
                for n in args.quality_n:
                    print(f"quality {metric} n={n} round {start_round} ...", flush=True)
                    rows, info = quality(n, args.seeds, metric, args.validation, args.equal_weights, start_round=start_round)
                    result["quality"] += rows
                    result["scenarios"].append(info)
    if not args.skip_scaling:
        print("scaling ...", flush=True)
        result["scaling"] += scaling("logreg", range(4, args.logreg_max + 1), args.naive_budget, metrics, args.validation)
        result["scaling"] += scaling("mlp", range(4, args.mlp_max + 1), args.naive_budget, metrics, args.validation)
    machine["loadavg_after"] = list(os.getloadavg())
    machine["total_seconds"] = time.perf_counter() - t_start
    Path(args.json).write_text(json.dumps(result, indent=1))
    print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
