"""The whole marketplace end to end: on Anvil, Ganache 7 and the in-process EVM, with the local store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator.simulate import SimulateConfig, simulate


def _check_report(report: dict[str, Any], attackers: list[str]) -> None:
    addresses = [t["address"] for t in report["trainers"]]
    for entry in report["rounds"]:
        assert sum(entry["bps"].values()) == 10_000
        for a in attackers:
            assert a in entry["outliers"], f"round {entry['round']}: attacker {a} not an outlier"
            assert entry["bps"][a] == 0
            assert entry["credited_wei"][a] == "0"
        credited = sum(int(v) for v in entry["credited_wei"].values())
        assert credited > 0
        assert set(entry["bps"]) == set(addresses)
    fin = report["final"]
    total = sum(int(v) for v in fin["withdrawn_wei"].values()) + int(fin["refunded_wei"]) + int(fin["escrow_left_wei"])
    assert total == int(report["reward_wei"])
    assert fin["contract_balance_wei"] == "0"
    for a in attackers:
        assert fin["withdrawn_wei"][a] == "0"


@pytest.mark.parametrize("chain", ["anvil", "ganache", "tester"])
def test_sign_flip_attacker_is_excluded_and_unpaid(chain: str, tmp_path: Path) -> None:
    cfg = SimulateConfig(trainers=6, attackers=1, attack="sign_flip", rounds=3, seed=1, chain=chain,
                         store_dir=str(tmp_path / "store"))

    report = simulate(cfg)

    attackers = [t["address"] for t in report["trainers"] if t["attack"]]
    assert len(attackers) == 1
    _check_report(report, attackers)
    assert report["final"]["accuracy"] >= 0.90


def test_demo_configuration_on_dirichlet_split(tmp_path: Path) -> None:
    cfg = SimulateConfig(trainers=5, attackers=1, attack="sign_flip", rounds=3, partition="dirichlet:0.5", seed=0,
                         chain="tester", store_dir=str(tmp_path / "store"))

    report = simulate(cfg)

    _check_report(report, [t["address"] for t in report["trainers"] if t["attack"]])


@pytest.mark.parametrize(("partition", "seed"), [("iid", 3), ("dirichlet:0.5", 0)])
def test_free_rider_is_rejected_and_earns_nothing(partition: str, seed: int, tmp_path: Path) -> None:
    """Its zero update is refused by validation; before that it earned 3-14% of the reward over 3 rounds of
    plain FedAvg (seeds 0-3, iid and Dirichlet 0.5), up to 43% of one round."""
    cfg = SimulateConfig(trainers=5, attackers=1, attack="free_rider", rounds=2, seed=seed, chain="tester",
                         partition=partition, robust="mean", store_dir=str(tmp_path / "store"))

    report = simulate(cfg)

    rider = next(t["address"] for t in report["trainers"] if t["attack"])
    for entry in report["rounds"]:
        assert entry["rejected"] == {rider: "no change from the global model (the delta is zero everywhere)"}
        assert entry["bps"][rider] == 0 and entry["credited_wei"][rider] == "0"
        assert sum(entry["bps"].values()) == 10_000
    assert report["final"]["withdrawn_wei"][rider] == "0"


def test_cumulative_values_carry_over_between_rounds(tmp_path: Path) -> None:
    from market.store import LocalStore, get_json

    cfg = SimulateConfig(trainers=4, rounds=3, seed=2, chain="tester", store_dir=str(tmp_path / "store"))

    report = simulate(cfg)

    store = LocalStore(tmp_path / "store")
    details = [get_json(store, r["receipt_cid"])["details"] for r in report["rounds"]]
    for a in details[-1]["cumulative_values"]:
        per_round = sum(d["contributions"].get(a, 0.0) for d in details)
        assert abs(details[-1]["cumulative_values"][a] - per_round) < 1e-9
