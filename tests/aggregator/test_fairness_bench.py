"""The fairness bench: its statistics on known inputs, the contract's money identity, and its JSON shape."""

from __future__ import annotations

import importlib.util
import json
import math
from collections import OrderedDict
from pathlib import Path
from types import ModuleType

import pytest
import torch

from trainer_node.attacks import ATTACKS, Collusion, is_colluding, poison_update

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fairness.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fairness", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gini_of_known_amounts(bench: ModuleType) -> None:
    assert bench.gini([5, 5, 5, 5]) == 0.0
    assert bench.gini([0, 0, 0, 1]) == pytest.approx(0.75)  # one holder of n: (n - 1) / n
    assert bench.gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum |xi - xj| = 20 over 2 * 4 * 10
    assert math.isnan(bench.gini([0, 0]))


def test_max_min_ratio_of_known_amounts(bench: ModuleType) -> None:
    assert bench.max_min_ratio([2, 4, 3]) == 2.0
    assert bench.max_min_ratio([0, 1]) == math.inf
    assert math.isnan(bench.max_min_ratio([0, 0]))


def test_rank_correlations_and_constant_inputs(bench: ModuleType) -> None:
    assert bench.spearman([1, 2, 3], [10, 20, 90]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert bench.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert math.isnan(bench.spearman([1, 1, 1], [1, 2, 3])) and math.isnan(bench.pearson([1, 2, 3], [5, 5, 5]))
    assert not bench._met(float("nan"), ">=", 0.9) and bench._met(0.95, ">=", 0.9)


@pytest.mark.parametrize("rounds", [1, 3, 7])
def test_round_pools_add_up_to_the_reward_and_credits_never_exceed_a_pool(bench: ModuleType, rounds: int) -> None:
    pools = [bench.round_pool(bench.REWARD_WEI, rounds, r) for r in range(rounds)]
    assert sum(pools) == bench.REWARD_WEI
    paid = bench.credit(pools[0], [3333, 3333, 3334])
    assert sum(paid) <= pools[0] and all(isinstance(c, int) for c in paid)


def test_a_tiny_iid_market_keeps_the_money_identity(bench: ModuleType) -> None:
    run = bench.run_market("iid_equal", 0, 2, n=4)

    assert len(run["credits"]) == 4 and all(len(c) == 2 for c in run["credits"])
    for rec in run["round_records"]:
        assert sum(rec["bps"]) in (0, 10_000)
        assert sum(rec["credits"]) + rec["uncredited"] == rec["pool"] and 0 <= rec["uncredited"] < len(rec["credits"])
    assert sum(run["totals"]) <= bench.REWARD_WEI and all(t > 0 for t in run["totals"])
    m = bench.scenario_metrics("iid_equal", [run])["metrics"]
    assert m["money_identity"] and m["zero_paid_rounds"] == 0 and 0 <= m["gini"] < 1


def test_the_bench_writes_default_scenarios_goals_and_meta(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "f.json"

    assert bench.main(["--json", str(out), "--seeds", "0", "--rounds", "2", "--n", "4", "--scenarios", "iid_equal",
                       "--workers", "1"]) == 0

    report = json.loads(out.read_text())
    assert set(report) == {"default", "scenarios", "goals", "meta"}
    assert report["default"]["n"] == 4 and report["default"]["reward_wei"] == 10**18
    [s] = report["scenarios"]
    assert s["name"] == "iid_equal" and s["seeds"] == [0]
    assert set(s["metrics"]) >= {"gini", "max_min_ratio", "zero_paid_rounds"} and "totals_wei" in s["per_seed"]
    assert set(report["goals"]) == {"iid_equal.gini", "iid_equal.max_min_ratio", "iid_equal.zero_paid_rounds"}
    assert all(set(g) == {"value", "goal", "met"} for g in report["goals"].values())
    assert {"machine", "wall_s"} <= set(report["meta"]) and "loadavg_before" in report["meta"]["machine"]
    assert (tmp_path / "f.md").read_text().startswith("| scenario | metric | value | goal | met? |")


def _delta() -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict([("b", torch.zeros(3)), ("w", torch.zeros(3, 2))])


def test_noisy_free_rider_submits_only_tiny_seeded_noise() -> None:
    honest = OrderedDict((k, torch.full_like(v, 5.0)) for k, v in _delta().items())

    a = poison_update("noisy_free_rider", honest, seed=3)
    b = poison_update("noisy_free_rider", _delta(), seed=3)

    assert "noisy_free_rider" in ATTACKS and not is_colluding("noisy_free_rider")
    assert all(torch.equal(a[k], b[k]) for k in a)  # ignores its own (honest) delta
    flat = torch.cat([v.flatten() for v in a.values()])
    assert 0 < float(flat.abs().max()) < 0.01


def test_copier_reuploads_the_first_honest_update_with_different_bytes() -> None:
    first = OrderedDict([("b", torch.tensor([1.0, -2.0, 0.5])), ("w", torch.ones(3, 2))])
    other = OrderedDict((k, -v) for k, v in first.items())

    out = poison_update("copier", _delta(), seed=1, collusion=Collusion((first, other)))

    assert is_colluding("copier")
    assert all(torch.allclose(out[k], first[k], atol=1e-4) for k in first)
    assert any(not torch.equal(out[k], first[k]) for k in first)
