"""``market devnet``: a local chain with the contract deployed and role key files, until Ctrl-C.

It writes its settings (RPC URL, contract, store folder, accounts and key files, absolute paths) to
``devnet.json`` in the per-user config folder (:func:`market_app.settings.devnet_file`), where every
``market`` command of the same user finds them whatever its working folder; the file is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path
from typing import Any

from market.errors import ConfigError
from market_app.cli.common import _eth, _in_range


def _say(line: str) -> None:
    """One plain line: never wrapped or styled, whatever stdout is (a terminal, a pipe, a log file)."""
    print(line, flush=True)


def cmd_devnet(args: argparse.Namespace) -> int:
    from market.chain.client import Chain
    from market.chain.contract import MarketContract
    from market.chain.devchain import DEV_CHAINS, dev_accounts, write_key_file
    from market.chain.registry import DEV_BOND
    from market_app.settings import default_keys_dir, default_store_dir, devnet_file

    _in_range(args.port, "--port", 0, 65535)
    _in_range(args.accounts, "--accounts", 3, 1000)  # owner, aggregator and at least one trainer
    keys_dir = (Path(args.keys_dir).expanduser() if args.keys_dir else default_keys_dir()).resolve()
    store_dir = (Path(args.store_dir).expanduser() if args.store_dir else default_store_dir()).resolve()
    settings = devnet_file()
    for folder, what in ((keys_dir, "--keys-dir"), (store_dir, "--store-dir"), (settings.parent, "settings folder")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{what} {folder}: {exc.strerror or exc}") from None
    _in_range(args.aggregators, "--aggregators", 1, 16)
    # the extra aggregators (`aggregator-2`, ...) come after the accounts asked for, so trainer keys keep their names
    extra = args.aggregators - 1
    accounts = dev_accounts(args.accounts + extra)
    stop = {"flag": False}

    def _on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    with DEV_CHAINS[args.chain](accounts=len(accounts), port=args.port) as anvil:
        chain = Chain.connect(anvil.rpc_url)
        market = MarketContract.deploy(chain, accounts[0])
        roles = (["owner", "aggregator"] + [f"trainer-{i}" for i in range(1, args.accounts - 1)]
                 + [f"aggregator-{i}" for i in range(2, 2 + extra)])
        entries = []
        for role, acct in zip(roles, accounts):
            path = keys_dir / f"{role}.key"
            write_key_file(acct, path)
            entries.append({"role": role, "address": acct.address, "key_file": str(path)})
            if role.startswith("aggregator"):  # bonded in the registry: drawn for rounds with no extra step
                market.registry.register(acct, DEV_BOND)
        info = {"rpc": anvil.rpc_url, "chain_id": chain.chain_id, "contract": market.address, "accounts": entries,
                "store_dir": str(store_dir)}
        _say(f"RPC URL   {anvil.rpc_url}\nchain id  {info['chain_id']}\ncontract  {market.address}")
        _say(f"store     {store_dir} (local)")
        _say(f"registry  {market.registry.address}: {market.registry.active_count()} aggregators bonded "
             f"({_eth(market.registry.min_bond())} ETH each)")
        for e in entries:
            _say(f"  {e['role']:<12} {e['address']}  {_eth(chain.balance(e['address']))} ETH  key: {e['key_file']}")
        _say(f"settings  {settings}: every `market` command of this user uses them, from any folder. "
             "Ctrl-C stops the chain.")
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        # written last: once the file exists, the chain is ready and Ctrl-C stops it cleanly
        text = json.dumps(info, indent=2) + "\n"
        try:
            tmp = settings.with_name(settings.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(settings)  # readers never see half a file
        except OSError as exc:
            raise ConfigError(f"cannot write the devnet settings {settings}: {exc.strerror or exc}") from None
        try:
            while not stop["flag"] and anvil.proc is not None and anvil.proc.poll() is None:
                time.sleep(0.2)
        finally:
            _remove_if_ours(settings, text)
    _say("devnet stopped")
    return 0


def _remove_if_ours(settings: Path, text: str) -> None:
    """Remove the settings file unless another devnet has replaced it meanwhile."""
    try:
        if settings.read_text() == text:
            settings.unlink()
    except OSError:
        pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("devnet", help="start a local Anvil on 127.0.0.1, deploy, print addresses; runs until Ctrl-C")
    p.add_argument("--chain", choices=["anvil", "ganache"], default="anvil", help="which local node to start (default anvil)")
    p.add_argument("--port", type=int, default=8545, help="port of the RPC URL (default 8545)")
    p.add_argument("--accounts", type=int, default=20, help="funded accounts: owner, aggregator, trainers (default 20)")
    p.add_argument("--aggregators", type=int, default=1, metavar="N",
                   help="aggregators bonded in the market's registry (`aggregator`, then `aggregator-2` ... as extra "
                   "accounts); each round draws its panel from them, so run `market aggregator run` for each (default "
                   "1: every round's panel is `aggregator`)")
    p.add_argument("--keys-dir", help="folder for the role key files (default: devnet/keys in the per-user data "
                                      "folder, $MARKET_HOME or ~/.local/share/poc-market)")
    p.add_argument("--store-dir", help="folder of the local store every command then uses (default: store in the "
                                       "per-user data folder)")
    p.set_defaults(func=cmd_devnet)
