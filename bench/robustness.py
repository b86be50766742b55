"""Accuracy and attackers' pay under every attack × every robust rule, in-process.

    python bench/robustness.py --json robustness.json [--quick] [--markdown robustness.md]

The marketplace's pure pieces, no chain: an example task's data (``--task``, digits by default; see
``market.data.EXAMPLES``, with its usual model) split over ``n = 10`` trainers
(IID and Dirichlet alpha = 0.5), the last ``f = 2`` of them attackers; each round
every trainer runs :func:`trainer_node.train.local_update` from the current
global model, attackers apply :mod:`trainer_node.attacks` (colluding ones see
the round's honest updates, as in the literature), the updates are serialised
as the nodes would submit them, and :func:`aggregator.round.aggregate_round`
validates, robust-aggregates, values and pays them out with the task spec's
robust rule (``f = 2``).  After ``rounds`` rounds the global model's accuracy is
measured on the held-out test split.

Writes ``{"default_rule": str, "cells": [{"partition", "attack", "rule",
"accuracy", "attacker_share"}], "clean": {"iid": float, "dirichlet:0.5": float},
"meta": {...}}``: ``accuracy`` is the mean over seeds, ``attacker_share`` the
attackers' total share of everything credited over all rounds (mean over seeds),
``clean`` is plain FedAvg with all 10 trainers honest. A rule named ``proof`` (``proof:sketch_f=K``) runs a proof
task's rounds instead (``aggregator.provable``: its model ccdrop's with ``f``, its pay the default valuation's of
what ccdrop kept, Multi-Krum over the sketches leaving ``K`` out of the pay). Every cell passes each round's
cumulative values on to the next, as the aggregator service does, so the pay is the market's (cumulative by
default; before 2026-12-01 the bench passed none, and its attacker shares were per-round pay).  ``meta`` has the
configuration, per-seed accuracies, timings and the machine's load.  Plain
FedAvg appears as rule ``mean``.  A markdown table goes to ``--markdown`` (default:
the JSON path with ``.md``) and stdout.  ``--quick``: one seed, 5 rounds.  ``--skip-mean``: the
attacks run only against ``--rules`` (plain FedAvg still gives the clean baseline), for tasks whose
runs are slow (mnist5k).  ``--collusion previous``: the colluding attacks see only the previous round's honest
updates, which is all that the market's commit-reveal shows anyone before it commits, and the copy check gets the
updates published in earlier rounds, as the aggregator service passes them (the default ``now`` gives colluders this
round's, as the literature does, and as ``market simulate`` does, and passes no earlier updates).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from aggregator.round import aggregate_round  # noqa: E402
from aggregator.validate import Published  # noqa: E402
from bench.fairness import PROOF_TASK, proof_kwargs, task_spec  # noqa: E402
from market.data import Splits, example, example_splits  # noqa: E402
from market.models import build_model, held_out_score, model_with_state, state_of  # noqa: E402
from market.spec import RobustSpec, TaskSpec  # noqa: E402
from market.tensors import decode_state, encode_state, flatten  # noqa: E402
from trainer_node.attacks import (  # noqa: E402
    ATTACK_NAMES,
    Collusion,
    attack_seed,
    get_attack,
    poison_data,
    poison_update,
)
from trainer_node.train import local_update  # noqa: E402

PARTITIONS = ("iid", "dirichlet:0.5")
RULES = ("krum", "multikrum", "cwmed", "cwtm", "geomed", "cc", "ccdrop", "nnm+cwtm", "nnm+multikrum")
ATTACK_ORDER = ("sign_flip", "gaussian", "label_flip", "free_rider", "alie", "ipm", "mimic")
#: attacks whose submitted update does not depend on the attacker's own training (skip the training)
_NO_OWN_TRAINING = {"gaussian", "free_rider", "alie", "ipm", "mimic"}
GOALS = {"iid": 3.0, "dirichlet:0.5": 8.0}
COLLUSION = ("now", "previous")  # worst case within this many points of clean


def _address(i: int) -> str:
    return f"0x{i + 1:040x}"


def parse_rule(text: str) -> RobustSpec:
    """``name`` or ``name:key=value,key=value`` (numbers parsed) as a robust spec with ``f`` filled in later."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        params[key] = json.loads(value) if value[:1].isdigit() or value[:1] == "-" else value
    return RobustSpec(rule=name, f=0, params=params)


def run_cell(partition: str, attack: str | None, rule: str, seed: int, rounds: int, n: int, f: int,
             task: str = "digits", collusion: str = "now") -> dict[str, Any]:
    """One market run; final test accuracy and the attackers' share of all basis points credited.

    ``collusion``: what colluding attackers (ALIE, IPM, mimic) see: ``now``, this round's honest updates (as in
    the literature), or ``previous``, the previous round's, all that the market's commit-reveal lets anyone see
    before committing (round 0 they have seen nothing and submit a zero update); the copy check then also gets every
    update and global update published in earlier rounds, as the aggregator service passes them."""
    if collusion not in COLLUSION:
        raise ValueError(f"collusion must be one of {', '.join(COLLUSION)}, not {collusion!r}")
    torch.set_num_threads(1)
    proof = rule.partition(":")[0] == "proof"
    if proof:  # a proof task (bench/fairness.py's PROOF_TASK): its model ccdrop's with f, its sketch rule sketch_f
        sketch_f = int(parse_rule(rule).params.get("sketch_f", 0))
        spec = TaskSpec.model_validate({**PROOF_TASK, "robust": {"rule": "multikrum", "f": f},
                                        "proof": {**PROOF_TASK["proof"], "sketch_f": sketch_f}, "model_seed": seed})
    else:
        robust = parse_rule(rule).model_copy(update={"f": f})
        spec = task_spec(task).model_copy(update={"robust": robust, "model_seed": seed})
    splits: Splits = example_splits(task, n, partition, seed)
    g = state_of(build_model(spec.model, spec.data, spec.model_seed))
    attackers = set(range(n - f, n)) if attack else set()
    attacker_bps = 0
    prior: dict[str, float] = {}
    excluded = 0  # attacker-rounds in which the attacker was an outlier or rejected
    earlier: tuple["OrderedDict[str, torch.Tensor]", ...] = ()  # the previous round's honest updates
    published: list[Published] = []  # every valid and global update published so far (collusion "previous")
    t0 = time.perf_counter()
    for r in range(rounds):
        honest: dict[int, "OrderedDict[str, torch.Tensor]"] = {}
        for i, data in enumerate(splits.trainers):
            if i not in attackers:
                honest[i] = local_update(spec, g, data, seed=1_000_003 * seed + 1000 * r + i)
        subs = []
        for i, data in enumerate(splits.trainers):
            if i in attackers:
                assert attack is not None
                step_seed = 1_000_003 * seed + 1000 * r + i
                if attack in _NO_OWN_TRAINING:
                    own = OrderedDict((k, torch.zeros_like(v)) for k, v in g.items())
                else:
                    own = local_update(spec, g, poison_data(attack, data, spec.data.label_space), seed=step_seed)
                visible = tuple(honest[j] for j in sorted(honest)) if collusion == "now" else earlier
                seen = Collusion(visible) if get_attack(attack).colluding and visible else None
                if get_attack(attack).colluding and seen is None:  # nothing seen yet: a zero update
                    delta = OrderedDict((k, torch.zeros_like(v)) for k, v in g.items())
                else:  # gaussian: one noise vector per attacker for the whole run, as long as the norm bound allows
                    delta = poison_update(attack, own, seed=attack_seed(seed, 0, i), collusion=seen,
                                          max_norm=spec.validation.max_update_norm)
            else:
                delta = honest[i]
            subs.append((_address(i), encode_state(delta, {"kind": "delta", "samples": str(len(data))})))
        # the cumulative values so far, as the service passes them: the market pays by them (valuation.payout)
        kw: dict[str, Any] = {"prior_values": prior}
        if collusion == "previous":
            kw["earlier"] = list(published)
        if proof:
            kw.update(proof_kwargs(spec, seed, r, {a: flatten(decode_state(b)[0]) for a, b in subs}))
        out = aggregate_round(spec, g, subs, splits.validation.x, splits.validation.y, seed=spec.valuation.seed + r, **kw)
        prior = dict(out.cumulative_values)
        attacker_bps += sum(out.bps[i] for i in attackers)
        excluded += sum(1 for i in attackers if _address(i) not in out.survivors)
        if collusion == "previous":  # what the service passes the copy check: the valid updates and the global one
            published += [Published(a, f"the update of {a} in round {r}", flatten(decode_state(b)[0]).double())
                          for a, b in subs if a not in out.rejected]
            published.append(Published("", f"round {r}'s global update", flatten(out.new_state).double() - flatten(g).double()))
        g = out.new_state
        earlier = tuple(honest[j] for j in sorted(honest))
    acc = held_out_score(spec.data, model_with_state(spec.model, spec.data, g), splits.test.x, splits.test.y)
    return {
        "partition": partition, "attack": attack, "rule": rule, "seed": seed, "collusion": collusion, "accuracy": acc,
        "attacker_share": attacker_bps / (10_000 * rounds),
        "excluded": excluded / (len(attackers) * rounds) if attackers else 0.0, "seconds": time.perf_counter() - t0,
    }


def _jobs(args: argparse.Namespace) -> list[tuple[Any, ...]]:
    jobs: list[tuple[Any, ...]] = []
    for seed in args.seeds:
        for p in args.partitions:
            jobs.append((p, None, "mean", seed, args.rounds, args.n, args.f, args.task, args.collusion))
            for attack in args.attacks:
                for rule in _compared(args):
                    jobs.append((p, attack, rule, seed, args.rounds, args.n, args.f, args.task, args.collusion))
    return jobs


def _compared(args: argparse.Namespace) -> tuple[str, ...]:
    """The rules each attack runs against: plain FedAvg (``mean``) first unless ``--skip-mean``, then ``--rules``."""
    return tuple(args.rules) if args.skip_mean else ("mean", *args.rules)


def summarise(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    clean = {p: _mean([r["accuracy"] for r in results if r["partition"] == p and r["attack"] is None])
             for p in args.partitions}
    cells = []
    for p in args.partitions:
        for attack in args.attacks:
            for rule in _compared(args):
                rs = [r for r in results if (r["partition"], r["attack"], r["rule"]) == (p, attack, rule)]
                cells.append({
                    "partition": p, "attack": attack, "rule": rule,
                    "accuracy": _mean([r["accuracy"] for r in rs]),
                    "attacker_share": _mean([r["attacker_share"] for r in rs]),
                    "attackers_excluded": _mean([r["excluded"] for r in rs]),
                    "accuracy_per_seed": [r["accuracy"] for r in sorted(rs, key=lambda r: r["seed"])],
                })
    drops = {p: {a: 100 * (clean[p] - c["accuracy"]) for c in cells for a in ("sign_flip", "gaussian")
                 if (c["partition"], c["attack"], c["rule"]) == (p, a, "mean")} for p in args.partitions}
    return {"clean": clean, "cells": cells, "ranking": rank_rules(cells, clean, args), "mean_drop_points": drops}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def rank_rules(cells: list[dict[str, Any]], clean: dict[str, float], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per rule: worst accuracy over the attacks and its gap to clean (points), per partition; goals met?"""
    out = []
    for rule in _compared(args):
        entry: dict[str, Any] = {"rule": rule, "meets_goals": True, "worst_gap_points": {}}
        for p in args.partitions:
            accs = {c["attack"]: c["accuracy"] for c in cells if c["rule"] == rule and c["partition"] == p}
            worst = min(accs, key=lambda a: accs[a])
            gap = 100 * (clean[p] - accs[worst])
            entry["worst_gap_points"][p] = {"attack": worst, "accuracy": accs[worst], "gap": gap}
            if p in GOALS and gap > GOALS[p]:
                entry["meets_goals"] = False
        entry["max_gap"] = max(v["gap"] for v in entry["worst_gap_points"].values())
        excluded = [c for c in cells if c["rule"] == rule and c["attackers_excluded"] >= 1.0]
        entry["fully_excluded_cells"] = len(excluded)
        entry["max_share_when_excluded"] = max((c["attacker_share"] for c in excluded), default=0.0)
        entry["share_goal"] = entry["max_share_when_excluded"] <= 0.01
        out.append(entry)
    return sorted(out, key=lambda e: (not e["meets_goals"], e["max_gap"]))


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    rules = _compared(args)
    lines = []
    score = "test R² × 100" if example(args.task).schema.regression else "test accuracy %"
    for p in args.partitions:
        clean = report["clean"][p]
        lines.append(f"**{p}** — clean (plain FedAvg, nobody attacking): {100 * clean:.1f}{'' if '×' in score else '%'}. "
                     f"Cells: {score} (attackers' share of the pay %); * = attackers excluded in every round.")
        lines.append("")
        lines.append("| rule | " + " | ".join(args.attacks) + " | worst − clean |")
        lines.append("|---|" + "---|" * (len(args.attacks) + 1))
        for rule in rules:
            row = []
            accs = []
            for attack in args.attacks:
                c = next(c for c in report["cells"] if (c["partition"], c["attack"], c["rule"]) == (p, attack, rule))
                accs.append(c["accuracy"])
                mark = "*" if c["attackers_excluded"] >= 1.0 else ""
                row.append(f"{100 * c['accuracy']:.1f} ({100 * c['attacker_share']:.1f}){mark}")
            name = f"**{rule}**" if rule == report["default_rule"] else rule
            lines.append(f"| {name} | " + " | ".join(row) + f" | {100 * (min(accs) - clean):+.1f} |")
        lines.append("")
    meta = report.get("meta", {})
    lines.append(f"n = {args.n} trainers, f = {args.f} attackers, {args.rounds} rounds, seeds {args.seeds}, "
                 f"{example(args.task).arch} on {args.task}; default rule in bold; recommended by this evidence: {report['recommended_rule']}. "
                 f"{meta.get('runs', '?')} runs, {meta.get('wall_s', 0):.0f} s wall."
                 + (" Colluding attacks (alie, ipm, mimic) saw the previous round's honest updates (--collusion previous)."
                    if meta.get("collusion") == "previous" else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True, help="where to write the JSON report")
    ap.add_argument("--markdown", help="where to write the markdown table (default: JSON path with .md)")
    ap.add_argument("--quick", action="store_true", help="one seed, 5 rounds")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2; --quick: 0)")
    ap.add_argument("--rounds", type=int, help="rounds (default 10; --quick: 5)")
    ap.add_argument("--rules", nargs="+", default=list(RULES), help="rule names, or name:key=value,... for parameters")
    ap.add_argument("--attacks", nargs="+", default=list(ATTACK_ORDER), choices=ATTACK_NAMES)
    ap.add_argument("--partitions", nargs="+", default=list(PARTITIONS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: CPU count)")
    ap.add_argument("--n", type=int, default=10, help="trainers (default 10)")
    ap.add_argument("--f", type=int, default=2, help="attackers, the last f trainers, and the rules' f (default 2)")
    ap.add_argument("--task", default="digits", help="the example task (market.data.EXAMPLES; default digits)")
    ap.add_argument("--collusion", choices=COLLUSION, default="now",
                    help="what colluding attacks see: this round's honest updates (now, the default, as in the literature) "
                         "or the previous round's (previous: all that commit-reveal shows before a trainer commits)")
    ap.add_argument("--skip-mean", action="store_true",
                    help="no plain-FedAvg run under each attack (the clean run stays): half the runs, for slow tasks")
    args = ap.parse_args(argv)
    example(args.task)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.rounds = args.rounds or (5 if args.quick else 10)

    jobs = _jobs(args)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(run_cell, *zip(*jobs)))
    else:
        results = [run_cell(*j) for j in jobs]
    wall = time.perf_counter() - t0
    report: dict[str, Any] = {"default_rule": TaskSpec().robust.rule, **summarise(results, args)}
    report["recommended_rule"] = report["ranking"][0]["rule"]  # goals met first, then the smallest worst-case gap
    report["meta"] = {
        "n": args.n, "f": args.f, "rounds": args.rounds, "seeds": args.seeds, "quick": args.quick,
        "partitions": args.partitions, "attacks": args.attacks, "rules": list(_compared(args)),
        "task": args.task, "collusion": args.collusion, "model": example(args.task).arch, "valuation": TaskSpec().valuation.rule, "runs": len(jobs), "workers": args.workers,
        "wall_s": wall, "cpu_s_per_run": _mean([r["seconds"] for r in results]),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report, args)
    Path(args.markdown or str(Path(args.json).with_suffix(".md"))).write_text(table + "\n")
    print(table)
    for e in report["ranking"]:
        gaps = ", ".join(f"{p} {v['gap']:+.1f} ({v['attack']})" for p, v in e["worst_gap_points"].items())
        print(f"{e['rule']:>16s}: worst gap {gaps}; accuracy goals {'met' if e['meets_goals'] else 'NOT met'}; "
              f"max attacker share where excluded every round {100 * e['max_share_when_excluded']:.2f}%")
    print(f"plain FedAvg drop (points): {json.dumps(report['mean_drop_points'])}")
    print(f"{len(jobs)} runs in {wall:.0f} s ({args.workers} workers); recommended by evidence: "
          f"{report['recommended_rule']}; default rule: {report['default_rule']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
