"""`market simulate`'s progress bars (rounds, training, valuation) and `task results --plot`."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from market_app import cli
from market_app.api.plot import plot_task
from market_app.api.reads import MarketReader
from market.errors import ConfigError
from simulator.simulate import SimulateConfig
from tests.conftest import Market
from tests.app.test_api_scenario import build_scenario

A, B, C = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40


def _entry(r: int) -> dict[str, Any]:
    return {"round": r, "accuracy": 0.9, "outliers": [C], "rejected": {}, "bps": {A: 6000, B: 4000, C: 0},
            "seconds": {"train": 1.5, "valuation": 0.25}}


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=140, color_system=None), out


def test_bars_advance_per_round() -> None:
    console, out = _console()
    bars = cli._SimProgress(console, SimulateConfig(trainers=3, rounds=2), quiet=False)

    with bars.progress:
        bars.on_round(_entry(0))
        done = {t.description: (t.completed, t.total) for t in bars.progress.tasks}
        bars.progress.refresh()

    assert done == {"rounds": (1, 2), "training": (3, 6), "valuation": (1, 2)}
    text = out.getvalue()
    assert "round 0: accuracy 0.900" in text and "2 kept, 1 outliers, 0 rejected" in text


def test_finer_hook_moves_training_and_valuation_inside_a_round() -> None:
    console, _ = _console()
    bars = cli._SimProgress(console, SimulateConfig(trainers=3, rounds=2), quiet=False)

    bars.on_round(_entry(0))
    bars.on_progress("train", 2, 3)
    bars.on_progress("valuation", 4, 8)

    done = {t.description: t.completed for t in bars.progress.tasks}
    assert done == {"rounds": 1, "training": 5, "valuation": 1.5}


def test_simulate_command_passes_the_finer_hook_when_the_simulator_offers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {}

    def fake_simulate(cfg: Any, on_round: Any = None, on_progress: Any = None) -> dict[str, Any]:
        calls.update(on_round=on_round, on_progress=on_progress)
        on_progress("train", 1, cfg.trainers)
        on_round(_entry(0))
        return {"rounds": []}

    monkeypatch.setattr("simulator.simulate.simulate", fake_simulate)
    args = argparse.Namespace(quiet=True, report=None, trainers=3, rounds=1, chain="tester")

    assert cli.cmd_simulate(args) == 0
    assert callable(calls["on_round"]) and callable(calls["on_progress"])


def test_results_plot_is_a_png_of_accuracy_and_contributions(market: Market, tmp_path: Path) -> None:
    sc = build_scenario(market, tmp_path / "store")
    reader = MarketReader(market.contract, sc.store)

    out = plot_task(reader.task_detail(sc.task_id), reader.rounds(sc.task_id), tmp_path / "task.png")

    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == 1320


def test_results_plot_refuses_an_unknown_format(market: Market, tmp_path: Path) -> None:
    sc = build_scenario(market, tmp_path / "store")
    reader = MarketReader(market.contract, sc.store)

    with pytest.raises(ConfigError, match="ending in .png, .svg, .pdf"):
        plot_task(reader.task_detail(sc.task_id), reader.rounds(sc.task_id), tmp_path / "task.gif")


def test_the_round_table_shows_the_reveal_phase() -> None:
    from market_app.cli.simulate import _print_round

    console, out = _console()
    trainers = [{"address": a, "attack": None} for a in (A, B)] + [{"address": C, "attack": "sign_flip"}]
    entry = {**_entry(0), "outliers": [], "contributions": {A: 0.6, B: 0.4}, "bps": {A: 6000, B: 4000, C: 0},
             "credited_wei": {A: "600", B: "400"}, "payout": "cumulative",
             "reveal": {"committed": 3, "revealed": 2, "seed": "0x" + "ab" * 32, "revealed_by": [A, B],
                        "stakes_lost_wei": str(10**16)}}

    _print_round(console, trainers, entry)

    text = out.getvalue()
    assert "round 0  ·  test accuracy 0.900  ·  3 committed · 2 revealed · seed 0xabababab…" in text
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]] for ln in text.splitlines()
            if ln.startswith("│")}
    assert rows["0xaaaa…aaaa"][:3] == ["-", "revealed", "kept"]
    assert rows["0xcccc…cccc"][:3] == ["sign_flip", "no reveal", "-"]  # committed and never revealed
    assert "stakes lost this round: 0.010000 ETH" in " ".join(text.split())


def test_the_money_identity_accounts_for_stakes() -> None:
    from market_app.cli.simulate import _money_identity

    plain = {"reward_wei": "100", "final": {"withdrawn_wei": {A: "60", B: "30"}, "refunded_wei": "10", "escrow_left_wei": "0"}}
    staked = {"reward_wei": "100", "final": {"withdrawn_wei": {A: "75", B: "40"}, "refunded_wei": "10",
                                             "escrow_left_wei": "0", "stakes_returned_wei": "20", "stakes_lost_wei": "5"}}
    broken = {**staked, "final": {**staked["final"], "refunded_wei": "11"}}

    assert _money_identity(plain) == ("withdrawn + refunded + escrow left = 100 wei = reward 100 wei", True)
    assert _money_identity(staked) == ("withdrawn + refunded + escrow left = 125 wei = reward 100 + stakes returned 20 "
                                       "+ stakes lost 5 wei", True)
    assert _money_identity(broken)[1] is False and "≠" in _money_identity(broken)[0]
