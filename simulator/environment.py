"""Where a simulation runs: a chain (throwaway Anvil or Ganache, the in-process EVM, or ``--rpc``) and a store.

A throwaway chain process is stopped on exit whatever happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import DEV_CHAINS, dev_accounts
from market.chain.registry import DEV_BOND
from market.errors import ConfigError
from market.store import ContentStore, open_store


@dataclass
class Environment:
    chain: Chain
    contract: MarketContract
    store: ContentStore
    accounts: list[LocalAccount]


@contextlib.contextmanager
def open_environment(
    *,
    chain: str = "anvil",
    rpc: str | None = None,
    contract: str | None = None,
    n_accounts: int,
    store: str = "local",
    store_dir: str | None = None,
    ipfs_api: str | None = None,
    verifier_admin: str | None = None,
    aggregators: Sequence[int] = (1,),
) -> Iterator[Environment]:
    """Start (or connect to) a chain, deploy (or attach to) the contract, open the store.  The deployer (the
    first account) is the market's verifier admin unless ``verifier_admin`` names another; the accounts at the
    positions ``aggregators`` (the second account by default) are registered aggregators (bonded in the
    market's registry) when they are not yet."""
    accounts = dev_accounts(n_accounts)
    content = open_store(store, path=store_dir, api_url=ipfs_api)
    with contextlib.ExitStack() as stack:
        if chain == "tester":
            if rpc:
                raise ConfigError("--chain tester runs in-process: drop --rpc")
            ch = Chain.tester()
            ch.fund(accounts, 1_000 * 10**18)
        elif chain in DEV_CHAINS:
            if rpc:
                ch = Chain.connect(rpc)
            else:
                node = stack.enter_context(DEV_CHAINS[chain](accounts=n_accounts))
                ch = Chain.connect(node.rpc_url)
        else:
            raise ConfigError(f"--chain {chain!r}: use 'anvil', 'ganache' or 'tester'")
        if contract:
            market = MarketContract(ch, contract)
        else:
            market = MarketContract.deploy(ch, accounts[0], verifier_admin=verifier_admin)
        for i in aggregators:
            if market.registry.member(accounts[i].address) is None:
                market.registry.register(accounts[i], DEV_BOND)
        yield Environment(ch, market, content, accounts)
