"""Fixtures: chain → deployed contract → funded accounts.

The in-process EVM (eth-tester / py-evm) backs the fast contract tests; a real
Anvil (from node_modules) backs the end-to-end ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from eth_account.signers.local import LocalAccount

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import AnvilProcess, dev_accounts, free_port
from market.chain.registry import DEV_BOND

MARKET = [sys.executable, "-m", "market_app.cli"]
ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a `market` subprocess: no MARKET_* setting but the test's MARKET_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_") or k == "MARKET_HOME"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture(autouse=True)
def market_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own per-user folders: never the real ~/.config/poc-market or ~/.local/share.

    ``MARKET_HOME`` is the folder (settings, devnet keys, default store); the XDG variables point
    into it too, so a subprocess started with every ``MARKET_*`` variable stripped stays inside it.
    """
    home = tmp_path_factory.mktemp("market-home")
    monkeypatch.setenv("MARKET_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg-data"))
    return home


@dataclass
class Market:
    chain: Chain
    contract: MarketContract
    owner: LocalAccount
    aggregator: LocalAccount
    trainers: list[LocalAccount]
    outsider: LocalAccount


def _market(chain: Chain) -> Market:
    accts = dev_accounts(8)
    chain.fund(accts, 1_000 * 10**18)
    contract = MarketContract.deploy(chain, accts[0])
    contract.registry.register(accts[1], DEV_BOND)  # the only registered aggregator: every round's panel of one
    return Market(chain, contract, accts[0], accts[1], accts[2:7], accts[7])


@pytest.fixture
def market() -> Market:
    """A fresh in-process chain with the contract deployed (fast, isolated)."""
    return _market(Chain.tester())


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess(accounts=12) as proc:
        yield proc


@pytest.fixture
def anvil_market(anvil: AnvilProcess) -> Market:
    return _market(Chain.connect(anvil.rpc_url))


@pytest.fixture
def devnet(tmp_path: Path, market_home: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, dict[str, object]]]:
    """`market devnet` as a process (its settings in the test's MARKET_HOME); yields (work folder, settings). A test
    marked ``@pytest.mark.devnet_args("--aggregators", "3")`` gives the devnet more arguments."""
    port = free_port()
    marker = request.node.get_closest_marker("devnet_args")
    extra = [str(a) for a in marker.args] if marker else []
    proc = subprocess.Popen(MARKET + ["devnet", "--port", str(port), "--accounts", "8", *extra], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info_file = market_home / "devnet.json"
    deadline = time.monotonic() + 60
    while not info_file.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "devnet did not start"
        time.sleep(0.2)
    time.sleep(0.2)
    try:
        yield tmp_path, json.loads(info_file.read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80" not in out  # no key printed
    assert not info_file.exists()


