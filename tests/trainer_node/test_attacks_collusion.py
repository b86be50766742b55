"""Colluding attackers in the simulator see the round's honest updates, read from the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from market.errors import ConfigError
from market.store import LocalStore
from market.tensors import decode_state, encode_state
from simulator.simulate import SimulateConfig, collusion_hook, simulate


def test_the_hook_decodes_the_honest_updates_listed_for_the_round(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    cids = [store.put(encode_state({"w": torch.tensor([float(i)])}, {"kind": "delta", "samples": "1"})) for i in (1, 2)]
    honest: list[str] = []
    seen = collusion_hook(store, honest)

    honest.extend(cids)  # the simulator fills the list as honest nodes submit

    assert [h["w"].tolist() for h in seen(1, 0).honest] == [[1.0], [2.0]]


def test_a_simulated_ipm_attacker_submits_minus_eps_times_the_honest_mean(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    cfg = SimulateConfig(trainers=4, attackers=1, attack="ipm", rounds=1, seed=2, chain="tester", robust="mean",
                         store_dir=str(store_dir))

    report = simulate(cfg)

    store = LocalStore(store_dir)
    receipt = json.loads(store.get(report["rounds"][0]["receipt_cid"]))
    attacker = next(t["address"] for t in report["trainers"] if t["attack"] == "ipm")
    deltas = {s["trainer"]: decode_state(store.get(s["cid"]))[0] for s in receipt["submissions"]}
    honest = [d for a, d in deltas.items() if a != attacker]
    assert [s["trainer"] for s in receipt["submissions"]][-1] == attacker  # honest nodes submit first
    for k, v in deltas[attacker].items():
        assert torch.allclose(v, -2.0 * torch.stack([h[k] for h in honest]).mean(dim=0), atol=1e-6)


def test_colluding_attack_without_an_honest_trainer_is_refused(tmp_path: Path) -> None:
    cfg = SimulateConfig(trainers=3, attackers=3, attack="alie", chain="tester", store_dir=str(tmp_path / "s"))

    with pytest.raises(ConfigError, match="at least one honest trainer"):
        simulate(cfg)
