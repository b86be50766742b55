"""``market devnet``: a local chain with the contract deployed and role key files, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from market.errors import ConfigError
from market_app.cli.common import _console, _eth, _in_range


def cmd_devnet(args: argparse.Namespace) -> int:
    from market.chain.client import Chain
    from market.chain.contract import MarketContract
    from market.chain.devchain import DEV_CHAINS, dev_accounts, write_key_file
    from market_app.settings import DEVNET_FILE

    console = _console()
    _in_range(args.port, "--port", 0, 65535)
    _in_range(args.accounts, "--accounts", 3, 1000)  # owner, aggregator and at least one trainer
    keys_dir = Path(args.keys_dir)
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--keys-dir {keys_dir}: {exc.strerror}") from None
    accounts = dev_accounts(args.accounts)
    stop = {"flag": False}

    def _on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    with DEV_CHAINS[args.chain](accounts=args.accounts, port=args.port) as anvil:
        chain = Chain.connect(anvil.rpc_url)
        market = MarketContract.deploy(chain, accounts[0])
        roles = ["owner", "aggregator"] + [f"trainer-{i}" for i in range(1, len(accounts) - 1)]
        entries = []
        for role, acct in zip(roles, accounts):
            path = keys_dir / f"{role}.key"
            write_key_file(acct, path)
            entries.append({"role": role, "address": acct.address, "key_file": str(path)})
        info = {"rpc": anvil.rpc_url, "chain_id": chain.chain_id, "contract": market.address, "accounts": entries,
                "store_dir": str(Path(args.store_dir).resolve())}
        DEVNET_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEVNET_FILE.write_text(json.dumps(info, indent=2) + "\n")
        console.print(f"RPC URL   {anvil.rpc_url}\nchain id  {info['chain_id']}\ncontract  {market.address}")
        console.print(f"store     {info['store_dir']} (local)")
        for e in entries:
            console.print(f"  {e['role']:<12} {e['address']}  {_eth(chain.balance(e['address']))} ETH  key: {e['key_file']}")
        console.print(f"settings written to {DEVNET_FILE}; other `market` commands here use them. Ctrl-C stops the chain.")
        sys.stdout.flush()
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        try:
            while not stop["flag"] and anvil.proc is not None and anvil.proc.poll() is None:
                time.sleep(0.2)
        finally:
            DEVNET_FILE.unlink(missing_ok=True)
    console.print("devnet stopped")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("devnet", help="start a local Anvil on 127.0.0.1, deploy, print addresses; runs until Ctrl-C")
    p.add_argument("--chain", choices=["anvil", "ganache"], default="anvil", help="which local node to start (default anvil)")
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--keys-dir", default=".market/devnet/keys")
    p.add_argument("--store-dir", default=".market/store")
    p.set_defaults(func=cmd_devnet)
