"""The accuracy bench writes the JSON shape issue #4 asks for (a one-round smoke run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

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
