"""The accuracy bench writes the JSON shape issue #4 asks for (a one-round smoke run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench" / "robustness.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_robustness", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_robustness_bench_writes_cells_clean_and_default_rule(tmp_path: Path) -> None:
    out = tmp_path / "r.json"

    _bench().main(["--json", str(out), "--rounds", "1", "--seeds", "0", "--partitions", "iid", "--attacks",
                   "sign_flip", "alie", "--rules", "cc", "cc:L=2", "--workers", "1"])

    report = json.loads(out.read_text())
    assert set(report) >= {"default_rule", "cells", "clean", "recommended_rule"}
    assert {(c["attack"], c["rule"]) for c in report["cells"]} == {
        (a, r) for a in ("sign_flip", "alie") for r in ("mean", "cc", "cc:L=2")
    }
    assert all(set(c) >= {"partition", "attack", "rule", "accuracy", "attacker_share"} for c in report["cells"])
    assert 0.0 < report["clean"]["iid"] <= 1.0 and (tmp_path / "r.md").read_text().startswith("**iid**")


def test_skip_mean_runs_the_attacks_against_the_named_rules_only(tmp_path: Path) -> None:
    """For slow tasks: no plain-FedAvg run under attack, while the clean baseline (plain FedAvg) still runs."""
    out = tmp_path / "r.json"

    _bench().main(["--json", str(out), "--rounds", "1", "--seeds", "0", "--partitions", "iid", "--attacks",
                   "sign_flip", "--rules", "ccdrop", "--workers", "1", "--skip-mean"])

    report = json.loads(out.read_text())
    assert {(c["attack"], c["rule"]) for c in report["cells"]} == {("sign_flip", "ccdrop")}
    assert report["meta"]["runs"] == 2 and 0.0 < report["clean"]["iid"] <= 1.0
    assert [e["rule"] for e in report["ranking"]] == ["ccdrop"]


def test_previous_collusion_shows_colluders_only_the_last_rounds_honest_updates(monkeypatch: Any) -> None:
    """Commit-reveal hides this round's updates until every trainer has committed: with ``--collusion previous``
    an ALIE attacker submits nothing in round 0 and, in round 1, ALIE of round 0's honest updates."""
    import torch

    from market.tensors import decode_state, flatten
    from trainer_node.attacks import Collusion, poison_update

    bench = _bench()
    seen: list[list[tuple[str, bytes]]] = []
    honest: list[list[Any]] = []
    real_aggregate, real_update = bench.aggregate_round, bench.local_update

    def aggregate(spec: Any, g: Any, subs: list[tuple[str, bytes]], *a: Any, **kw: Any) -> Any:
        seen.append(list(subs))
        return real_aggregate(spec, g, subs, *a, **kw)

    def update(spec: Any, g: Any, data: Any, seed: int) -> Any:
        out = real_update(spec, g, data, seed=seed)
        if len(honest) <= len(seen):
            honest.append([])
        honest[len(seen)].append(out)
        return out

    monkeypatch.setattr(bench, "aggregate_round", aggregate)
    monkeypatch.setattr(bench, "local_update", update)
    bench.run_cell("iid", "alie", "ccdrop", 0, 2, 5, 1, collusion="previous")

    round0 = flatten(decode_state(seen[0][-1][1])[0])
    round1 = flatten(decode_state(seen[1][-1][1])[0])
    expected = flatten(poison_update("alie", honest[0][0], seed=0, collusion=Collusion(tuple(honest[0]))))
    now = flatten(poison_update("alie", honest[1][0], seed=0, collusion=Collusion(tuple(honest[1]))))
    assert len(honest[0]) == 4 and torch.count_nonzero(round0) == 0
    assert torch.allclose(round1, expected) and not torch.allclose(round1, now)
