"""`market simulate --store kubo` against a real IPFS node (js-ipfs speaking Kubo's RPC API)."""

from __future__ import annotations

from pathlib import Path

from tests.support.ipfsnode import JsIpfsNode
from market.store.kubo import KuboStore
from simulator.simulate import SimulateConfig, simulate


def test_simulate_with_the_kubo_store(tmp_path: Path) -> None:
    with JsIpfsNode() as node:
        cfg = SimulateConfig(trainers=4, attackers=1, attack="gaussian", rounds=2, seed=2, chain="tester",
                             store="kubo", ipfs_api=node.api_url)

        report = simulate(cfg)

        store = KuboStore(node.api_url)
        for entry in report["rounds"]:
            assert sum(entry["bps"].values()) == 10_000
            assert store.get(entry["receipt_cid"])  # the receipt is on the node, re-hashed on read
            assert store.get(entry["model_cid"])
