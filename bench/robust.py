"""Speed of every robust rule against ByzFL's counterpart, side by side in one run.

    python bench/robust.py --json robust.json [--n 50] [--d 1000000] [--f 10] [--repeats 5]

One float32 matrix of ``n`` random updates of dimension ``d`` (N(0, 1));
each rule and ByzFL's counterpart (same parameters) run on it alternately,
after one untimed warm-up each; the reported time is the median of
``--repeats`` runs.  Writes ``{"n": 50, "d": 1000000, "rules": {"multikrum":
{"ours_s": float, "byzfl_s": float, "speedup": float, "max_abs_diff": float,
...}, ...}, "goals": {...}, "machine": {...}}``; ``max_abs_diff`` compares the
two outputs at this size.  Ours is timed as the round calls it: the whole
decision (aggregate, scores, outlier flags, per-trainer details).  ByzFL's
clipping steps (``Clipping``, ``ARC``) overwrite their input; they and ours
(with ``inplace=True``, the mode a pipeline uses on its own intermediates) get
a fresh copy of the input, made outside the timed region.  ``byzfl`` must be installed (``pip install --no-deps byzfl``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from aggregator.robust import (  # noqa: E402
    AdaptiveClip, CenteredClipping, Clip, CoordinateMedian, GeometricMedian, Krum, Mean, MultiKrum,
    NearestNeighborMixing, TrimmedMean,
)

FAST = ("krum", "multikrum")  # goal: at least 5x faster than ByzFL; every other rule: no slower


def load_byzfl() -> ModuleType:
    """``byzfl.aggregators`` without executing ``byzfl/__init__.py`` (which imports torchvision)."""
    if importlib.util.find_spec("byzfl") is None:
        raise SystemExit("byzfl is not installed: pip install --no-deps byzfl==0.0.11")
    if "byzfl" not in sys.modules:
        spec = importlib.util.find_spec("byzfl")
        assert spec is not None
        sys.modules["byzfl"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("byzfl.aggregators")


def pairs(agg: ModuleType, f: int) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], Any], bool, str]]:
    """name -> (ours, ByzFL's, whether both work in place on a fresh copy, parameters)."""

    def out(decision: Any) -> torch.Tensor:
        return decision.aggregate

    return {
        "krum": (lambda x: out(Krum(f)(x)), agg.Krum(f), False, f"f={f}"),
        "multikrum": (lambda x: out(MultiKrum(f)(x)), agg.MultiKrum(f), False, f"f={f}"),
        "cwmed": (lambda x: out(CoordinateMedian(f)(x)), agg.Median(), False, "-"),
        "cwtm": (lambda x: out(TrimmedMean(f)(x)), agg.TrMean(f), False, f"f={f}"),
        "geomed": (lambda x: out(GeometricMedian(f)(x)), agg.GeometricMedian(), False, "nu=0.1, T=3"),
        "cc": (lambda x: out(CenteredClipping(f, tau=100.0, L=1)(x)), agg.CenteredClipping(), False, "tau=100, L=1"),
        "mean": (lambda x: out(Mean()(x)), agg.Average(), False, "-"),
        "nnm": (lambda x: NearestNeighborMixing(f)(x)[0], agg.NNM(f), False, f"f={f}"),
        "clip": (lambda x: Clip(c=2.0)(x, inplace=True)[0], agg.Clipping(c=2.0), True, "c=2.0, in place"),
        "arc": (lambda x: AdaptiveClip(f)(x, inplace=True)[0], agg.ARC(f), True, f"f={f}, in place"),
    }


def _time(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, copy: bool) -> tuple[float, Any]:
    arg = x.clone() if copy else x
    t0 = time.perf_counter()
    result = fn(arg)
    return time.perf_counter() - t0, result


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "byzfl": version("byzfl")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="where to write the JSON report")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--f", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rules", nargs="+", help="subset of rules (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    agg = load_byzfl()
    x = torch.randn(args.n, args.d, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float32)
    table = pairs(agg, args.f)
    names = args.rules or list(table)
    load_before = os.getloadavg()
    rules: dict[str, Any] = {}
    for name in names:
        ours, theirs, in_place, params = table[name]
        _, a = _time(ours, x, in_place)  # warm-up (allocator, caches), untimed
        _, b = _time(theirs, x, in_place)
        diff = float((a.double() - torch.as_tensor(b).double()).abs().max())
        del a, b
        ours_runs, their_runs = [], []
        for _ in range(args.repeats):  # alternate, so load changes hit both sides alike
            ours_runs.append(_time(ours, x, in_place)[0])
            their_runs.append(_time(theirs, x, in_place)[0])
        o, t = statistics.median(ours_runs), statistics.median(their_runs)
        rules[name] = {"ours_s": o, "byzfl_s": t, "speedup": t / o, "max_abs_diff": diff, "params": params,
                       "ours_runs": ours_runs, "byzfl_runs": their_runs}
        print(f"{name:10s} ours {o:8.4f} s   byzfl {t:8.4f} s   x{t / o:6.1f}   max|diff| {diff:.1e}", flush=True)
    goals = {
        "krum_multikrum_5x_faster": all(rules[r]["speedup"] >= 5 for r in FAST if r in rules),
        "others_no_slower": all(v["ours_s"] <= v["byzfl_s"] for r, v in rules.items() if r not in FAST),
    }
    report = {
        "n": args.n, "d": args.d, "f": args.f, "dtype": "float32", "repeats": args.repeats, "rules": rules,
        "goals": goals, "machine": {**_machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(goals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
