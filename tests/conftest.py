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

MARKET = [sys.executable, "-m", "market_app.cli"]
ROOT = Path(__file__).resolve().parent.parent


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
def devnet(tmp_path: Path) -> Iterator[tuple[Path, dict[str, object]]]:
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(MARKET + ["devnet", "--port", str(port), "--accounts", "8"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info_file = tmp_path / ".market" / "devnet.json"
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


