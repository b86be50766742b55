"""`market serve` as users run it: a separate process answering with the data of a simulation
run against the same chain (Anvil), spending only with an explicit --key-file and the API token,
and one-line errors when it cannot start."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


TOKEN_LINE = "API token for POST /api/tasks: "


@dataclass
class Server:
    """A running `market serve`: its URL, the lines it printed before listening, and (once stopped)
    everything it wrote to stdout and stderr."""

    base: str
    start: list[str]
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str:
        (line,) = [x for x in self.start if x.startswith(TOKEN_LINE)]
        return line.removeprefix(TOKEN_LINE).split()[0]


@contextlib.contextmanager
def _serving(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`market serve ARGS --port P --log-level debug` (the most it ever logs) until the block ends."""
    port = free_port()
    proc = subprocess.Popen(MARKET + ["serve", *args, "--port", str(port), "--log-level", "debug"], cwd=cwd,
                            env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    server = Server(f"http://127.0.0.1:{port}", [])
    try:
        lines = 4 if "--key-file" in args else 2  # where, which chain (then which key, which token)
        while len(server.start) < lines:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            server.start.append(line.rstrip("\n"))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                httpx.get(server.base + "/api/status", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
        server.output = "\n".join(server.start) + "\n" + out + err


@pytest.fixture
def served(anvil: AnvilProcess, anvil_market: Market, tmp_path: Path) -> Iterator[Server]:
    """A simulation on the session's Anvil, then `market serve --key-file OWNER` on the same chain and store."""
    store = str(tmp_path / "store")
    contract = anvil_market.contract
    report = simulate(SimulateConfig(trainers=5, attackers=1, rounds=2, seed=1, rpc=anvil.rpc_url,
                                     contract=contract.address, store_dir=store))
    key = tmp_path / "owner.key"
    write_key_file(dev_accounts(1)[0], key)
    args = ["--rpc", anvil.rpc_url, "--contract", contract.address, "--store-dir", store, "--key-file", str(key)]
    with _serving(args, tmp_path) as server:
        server.extra.update(report=report, key=key.read_text().strip(), contract=contract)
        yield server
    assert "POST /api/tasks enabled: signs as " + dev_accounts(1)[0].address in server.output
    assert key.read_text().strip().removeprefix("0x") not in server.output
    assert server.output.count(server.token) == 1, "the API token is printed once, on its start line, and never logged"


def _create_body(aggregator: str) -> dict[str, object]:
    """A creation body (``aggregator``, kept for the callers, is no field: the owner names no aggregator)."""
    return {"validation_commitment": "0x" + "ab" * 32, "rounds": 2, "reward_eth": "0.25"}


def test_serve_answers_with_the_simulation_data(served: Server) -> None:
    base, report, key = served.base, served.extra["report"], served.extra["key"]
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


def test_serve_spends_only_for_requests_with_its_token(served: Server) -> None:
    contract, base = served.extra["contract"], served.base
    owner, aggregator = dev_accounts(2)
    before = contract.task_count()
    nonce = contract.chain.w3.eth.get_transaction_count(owner.address)
    body = _create_body(aggregator.address)

    missing = httpx.post(f"{base}/api/tasks", json=body)
    wrong = httpx.post(f"{base}/api/tasks", json=body, headers={"Authorization": "Bearer " + served.token[::-1]})
    basic = httpx.post(f"{base}/api/tasks", json=body, headers={"Authorization": "Basic " + served.token})

    for res in (missing, wrong, basic):
        assert res.status_code == 401 and set(res.json()) == {"error", "message"} and res.json()["error"] == "unauthorized"
        assert served.token not in res.text
    assert contract.task_count() == before and contract.chain.w3.eth.get_transaction_count(owner.address) == nonce
    assert httpx.get(f"{base}/api/status").json()["can_create_tasks"] is True  # reads stay open

    created = httpx.post(f"{base}/api/tasks", json=body, headers={"Authorization": "Bearer " + served.token}, timeout=30)

    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    assert task_id == before + 1 == contract.task_count()
    info = contract.task(task_id)
    assert (info.owner, info.panel, info.reward) == (owner.address, 1, 25 * 10**16)
    assert served.extra["key"].removeprefix("0x") not in created.text


def test_market_key_file_in_the_environment_does_not_enable_spending(
    anvil: AnvilProcess, anvil_market: Market, tmp_path: Path,
) -> None:
    key = tmp_path / "owner.key"
    write_key_file(dev_accounts(1)[0], key)
    contract = anvil_market.contract
    before = contract.task_count()
    env = {**_env(), "MARKET_KEY_FILE": str(key), "MARKET_RPC": anvil.rpc_url, "MARKET_CONTRACT": contract.address}

    with _serving(["--store-dir", str(tmp_path / "store")], tmp_path, env) as server:
        status = httpx.get(f"{server.base}/api/status").json()
        res = httpx.post(f"{server.base}/api/tasks", json=_create_body(dev_accounts(2)[1].address),
                         headers={"Authorization": "Bearer anything-at-all-0123456789"})

    assert status["can_create_tasks"] is False and status["creator"] is None
    assert res.status_code == 403 and res.json()["error"] == "creation_disabled" and "--key-file" in res.json()["message"]
    assert contract.task_count() == before
    assert "enabled" not in server.output and TOKEN_LINE not in server.output
    assert key.read_text().strip().removeprefix("0x") not in server.output


def test_a_configured_token_is_used_and_never_printed(anvil: AnvilProcess, anvil_market: Market, tmp_path: Path) -> None:
    key = tmp_path / "owner.key"
    write_key_file(dev_accounts(1)[0], key)
    contract = anvil_market.contract
    token = "configured-token-" + "q" * 24
    env = {**_env(), "MARKET_API_TOKEN": token}
    args = ["--rpc", anvil.rpc_url, "--contract", contract.address, "--store-dir", str(tmp_path / "store"),
            "--key-file", str(key)]

    with _serving(args, tmp_path, env) as server:
        wrong = httpx.post(f"{server.base}/api/tasks", json={"colour": "blue"}, headers={"Authorization": "Bearer x" + token})
        right = httpx.post(f"{server.base}/api/tasks", json={"colour": "blue"}, headers={"Authorization": "Bearer " + token})

    assert wrong.status_code == 401 and right.status_code == 422  # past the token, the body is checked
    assert TOKEN_LINE + "the value of MARKET_API_TOKEN" in server.output and token not in server.output


def test_a_weak_configured_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key = tmp_path / "owner.key"
    write_key_file(dev_accounts(1)[0], key)

    proc = subprocess.run(MARKET + ["serve", "--key-file", str(key)], cwd=tmp_path,
                          env={**_env(), "MARKET_API_TOKEN": "hunter2"}, capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "MARKET_API_TOKEN" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("how", [["--host", "0.0.0.0"], ["--host", "::"], ["--host", "192.168.1.10"], "MARKET_HOST"])
def test_serve_refuses_a_remote_host_without_allow_remote(how: Any, tmp_path: Path) -> None:
    args, env = (how, _env()) if isinstance(how, list) else ([], {**_env(), "MARKET_HOST": "0.0.0.0"})

    proc = subprocess.run(MARKET + ["serve", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: refusing to listen on ") and "--allow-remote" in proc.stderr


def test_allow_remote_lets_serve_go_on_to_its_next_check(tmp_path: Path) -> None:
    proc = subprocess.run(MARKET + ["serve", "--host", "0.0.0.0", "--allow-remote"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2 and proc.stderr == "error: no RPC URL: pass --rpc URL or start `market devnet`\n"


def test_serve_help_says_the_key_file_variable_is_ignored() -> None:
    proc = subprocess.run(MARKET + ["serve", "--help"], env=_env(), capture_output=True, text=True, timeout=60)

    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and "$MARKET_KEY_FILE is ignored by serve" in text
    assert "--allow-remote" in text and "Authorization: Bearer" in text


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
