"""Fixtures: chain → deployed contract → funded accounts.

The in-process EVM (eth-tester / py-evm) backs the fast contract tests; a real
Anvil (from node_modules) backs the end-to-end ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest
from eth_account.signers.local import LocalAccount

from market.chain import Chain
from market.contract import MarketContract
from market.devchain import AnvilProcess, dev_accounts


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
