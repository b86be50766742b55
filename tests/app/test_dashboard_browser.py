"""The dashboard in a real browser while a simulation runs against the same chain.

Anvil (two blocks a second, so rounds take seconds as on a real chain) → the
contract → ``market serve`` (a separate process on 127.0.0.1) → headless
Chromium on the dashboard → ``market simulate --rpc … --contract …`` with the
same store folder.  The page must show each round as it settles, without
reloading, and end with the accuracy curve, the stacked contribution bars and the
attacker flagged as an outlier; the API must answer with the simulation's data.
The screenshot is left in tests/app/artifacts/dashboard.png.

Needs Debian's chromium and npm's playwright-core: ``make test`` installs both
(``make browser``, ``npm ci``); run alone, this test installs them the same way.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import AnvilProcess, dev_accounts, free_port

ROOT = Path(__file__).resolve().parents[2]
MARKET = [sys.executable, "-m", "market_app.cli"]
DRIVER = Path(__file__).with_name("test_dashboard_driver.mjs")
ARTIFACTS = Path(__file__).with_name("artifacts")
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ROUNDS = 3

pytestmark = pytest.mark.slow


def _ensure_browser() -> None:
    """What the test needs, installed the way `make test` does it."""
    if not CHROMIUM.exists():
        subprocess.run(["make", "-C", str(ROOT), "browser"], check=True, timeout=900)
    if not (ROOT / "node_modules" / "playwright-core" / "package.json").is_file():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True, timeout=900)
    assert CHROMIUM.exists(), f"{CHROMIUM} missing after `make browser`"
    assert shutil.which("node"), "node is not on PATH"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"market serve exited: {proc.stderr.read() if proc.stderr else ''}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _reader(stream: Any, out: "queue.Queue[tuple[float, dict[str, Any]]]") -> None:
    for line in stream:
        line = line.strip()
        if line.startswith("{"):
            out.put((time.monotonic(), json.loads(line)))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def slow_chain() -> Iterator[tuple[AnvilProcess, MarketContract]]:
    _ensure_browser()
    # a block every half second (Anvil takes fractions): rounds take seconds, as on a real chain
    with AnvilProcess(accounts=10, block_time=0.5) as anvil:  # type: ignore[arg-type]
        chain = Chain.connect(anvil.rpc_url)
        yield anvil, MarketContract.deploy(chain, dev_accounts(1)[0])


def test_dashboard_shows_rounds_as_they_settle(slow_chain: tuple[AnvilProcess, MarketContract], tmp_path: Path) -> None:
    anvil, contract = slow_chain
    chain_opts = ["--rpc", anvil.rpc_url, "--contract", contract.address, "--store-dir", str(tmp_path / "store")]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    report_path = tmp_path / "report.json"
    server = subprocess.Popen(MARKET + ["serve", *chain_opts, "--port", str(port)], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = sim = None
    events: "queue.Queue[tuple[float, dict[str, Any]]]" = queue.Queue()
    try:
        _wait_http(f"{base}/api/status", server)
        driver = subprocess.Popen(["node", str(DRIVER), f"{base}/?poll=250", str(shot), "150"], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=_reader, args=(driver.stdout, events), daemon=True).start()
        seen: list[tuple[float, dict[str, Any]]] = []
        while not any(e["event"] == "ready" for _, e in seen):
            seen.append(events.get(timeout=60))

        # Execute: a simulation against the same chain and store, while the page is open
        sim = subprocess.Popen(
            MARKET + ["simulate", *chain_opts, "--trainers", "5", "--attackers", "1", "--attack", "sign_flip",
                      "--rounds", str(ROUNDS), "--seed", "1", "--report", str(report_path), "--quiet"],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        _out, err = sim.communicate(timeout=180)
        assert sim.returncode == 0, err
        sim_done = time.monotonic()
        driver.stdin.write(f"finish {contract.chain.w3.eth.block_number}\n")  # type: ignore[union-attr]
        driver.stdin.flush()  # type: ignore[union-attr]
        assert driver.wait(timeout=90) == 0, [e for _, e in seen] + [events.get()[1] for _ in range(events.qsize())]
        while not events.empty():
            seen.append(events.get())

        # Assert: the API and `task results --plot` (same chain, same store) show the simulation's data
        report = json.loads(report_path.read_text())
        _check_api(base, report)
        plot = tmp_path / "task.png"
        res = subprocess.run(MARKET + ["task", "results", str(report["task_id"]), *chain_opts, "--plot", str(plot)],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert _png_size(plot) == (1320, 504)
    finally:
        for p in (sim, driver, server):
            if p is not None:
                _stop(p)

    # Assert: the page showed the rounds one by one while the simulation ran, and never reloaded
    problems = [e for _, e in seen if e["event"] in ("pageerror", "console", "requestfailed", "error")]
    assert not problems, problems
    states = [(t, e) for t, e in seen if e["event"] in ("state", "done")]
    counts = [e["settled"] for _, e in states]
    assert counts == sorted(counts), f"settled rounds went backwards: {counts}"
    assert all(k in counts for k in range(1, ROUNDS + 1)), f"not every round was shown on its own: {counts}"
    first_seen = {k: next(t for t, e in states if e["settled"] == k) for k in range(1, ROUNDS + 1)}
    assert first_seen[1] < first_seen[ROUNDS] - 1.0 and first_seen[ROUNDS - 1] < sim_done, first_seen
    assert len({e["loaded_at"] for _, e in states}) == 1, "the page reloaded"
    final = states[-1][1]
    assert final["event"] == "done" and final["live"] == "live on"
    assert final["points"] == ROUNDS  # one accuracy point per round
    assert final["bar_rounds"] == ROUNDS and final["bars"] >= 2 * ROUNDS  # contribution bars of every round
    assert final["outlier_badges"] >= ROUNDS  # the attacker, flagged in every round
    assert final["withdrawn"] != "0.0000" and final["credited"] != "0.0000"
    assert final["name"] == "digits"  # the task's name, from its spec
    width, height = _png_size(shot)
    assert width >= 1400 and height >= 900 and shot.stat().st_size > 30_000


def _check_api(base: str, report: dict[str, Any]) -> None:
    tid = report["task_id"]
    attacker = next(t["address"] for t in report["trainers"] if t["attack"])
    spec = httpx.get(f"{base}/openapi.json").json()
    assert {"/api/tasks", "/api/tasks/{task_id}", "/api/tasks/{task_id}/rounds"} <= set(spec["paths"])
    task = httpx.get(f"{base}/api/tasks/{tid}").json()
    assert task["status"] == "finished" and task["reward_wei"] == report["reward_wei"] and task["name"] == "digits"
    assert task["trainers"] == [t["address"] for t in report["trainers"]]
    rounds = httpx.get(f"{base}/api/tasks/{tid}/rounds").json()["rounds"]
    assert [r["round"] for r in rounds] == list(range(ROUNDS))
    for got, want in zip(rounds, report["rounds"]):
        assert (got["model_cid"], got["receipt_cid"]) == (want["model_cid"], want["receipt_cid"])
        assert got["bps"] == want["bps"] and got["outliers"] == want["outliers"] and attacker in got["outliers"]
        assert got["credited_by_trainer"] == {a: w for a, w in want["credited_wei"].items() if w != "0"}
        receipt = httpx.get(f"{base}/api/tasks/{tid}/rounds/{got['round']}/receipt").json()["receipt"]
        # the accuracy shown is that of the model the round published (the next round's input)
        assert got["accuracy"] == receipt["details"]["accuracy_model"] and 0.5 < got["accuracy"] <= 1.0
    payouts = httpx.get(f"{base}/api/tasks/{tid}/payouts").json()
    assert {p["address"]: p["withdrawn_wei"] for p in payouts["trainers"]} == report["final"]["withdrawn_wei"]
    assert httpx.get(f"{base}/api/tasks/{tid + 1}").status_code == 404
