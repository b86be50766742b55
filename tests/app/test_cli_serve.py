"""`market serve` as users run it: a separate process answering with the data of a simulation
run against the same chain (Anvil), and one-line errors when it cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from market.chain.devchain import AnvilProcess, dev_accounts, free_port, write_key_file
from simulator.simulate import SimulateConfig, simulate
from tests.conftest import Market

ROOT = Path(__file__).resolve().parents[2]
MARKET = [sys.executable, "-m", "market_app.cli"]


def _env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_") or k == "MARKET_HOME"}
    return {**clean, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def served(anvil: AnvilProcess, anvil_market: Market, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any], str]]:
    """A simulation on the session's Anvil, then `market serve` on the same chain and store."""
    store = str(tmp_path / "store")
    contract = anvil_market.contract
    report = simulate(SimulateConfig(trainers=5, attackers=1, rounds=2, seed=1, rpc=anvil.rpc_url,
                                     contract=contract.address, store_dir=store))
    key = tmp_path / "owner.key"
    write_key_file(dev_accounts(1)[0], key)
    port = free_port()
    proc = subprocess.Popen(MARKET + ["serve", "--rpc", anvil.rpc_url, "--contract", contract.address, "--store-dir", store,
                                      "--port", str(port), "--key-file", str(key)],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                httpx.get(base + "/api/status", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        yield base, report, key.read_text().strip()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        assert "POST /api/tasks enabled: signs as " + dev_accounts(1)[0].address in out
        assert key.read_text().strip().removeprefix("0x") not in out


def test_serve_answers_with_the_simulation_data(served: tuple[str, dict[str, Any], str]) -> None:
    base, report, key = served
    tid = report["task_id"]

    spec = httpx.get(f"{base}/openapi.json").json()
    rounds = httpx.get(f"{base}/api/tasks/{tid}/rounds").json()["rounds"]
    task = httpx.get(f"{base}/api/tasks/{tid}").json()

    assert {"/api/tasks", "/api/tasks/{task_id}", "/api/tasks/{task_id}/rounds"} <= set(spec["paths"])
    assert task["status"] == "finished" and task["reward_wei"] == report["reward_wei"]
    assert [(r["model_cid"], r["receipt_cid"], r["bps"], r["outliers"]) for r in rounds] == [
        (r["model_cid"], r["receipt_cid"], r["bps"], r["outliers"]) for r in report["rounds"]
    ]
    attacker = next(t["address"] for t in report["trainers"] if t["attack"])
    assert all(attacker in r["outliers"] and r["accuracy"] > 0.5 for r in rounds)
    assert key.removeprefix("0x") not in httpx.get(f"{base}/api/status").text


def test_serve_refuses_a_busy_port_in_one_line(anvil: AnvilProcess, anvil_market: Market, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        proc = subprocess.run(MARKET + ["serve", "--rpc", anvil.rpc_url, "--contract", anvil_market.contract.address,
                                        "--port", str(port)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=60)

    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_serve_without_a_chain_says_what_to_pass(tmp_path: Path) -> None:
    proc = subprocess.run(MARKET + ["serve"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2 and proc.stderr == "error: no RPC URL: pass --rpc URL or start `market devnet`\n"


def test_serve_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from market_app.cli import build_parser
    from market_app.settings import serve_address

    monkeypatch.delenv("MARKET_HOST", raising=False)
    monkeypatch.delenv("MARKET_PORT", raising=False)
    args = build_parser().parse_args(["serve"])

    assert serve_address(args.host, args.port) == ("127.0.0.1", 8000)
