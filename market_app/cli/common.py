"""Helpers shared by the ``market`` sub-commands: settings-resolved chain, store and key, argument checks,
formatting, polling, and the parser pieces (``_chain_opts``, ``_OneLineParser``).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any, NoReturn

from market.errors import ConfigError
from market_app.settings import require, resolve


def _store(args: argparse.Namespace) -> Any:
    from market.store import open_store

    kind = resolve(getattr(args, "store", None), "MARKET_STORE") or "local"
    return open_store(
        kind,
        path=resolve(getattr(args, "store_dir", None), "MARKET_STORE_DIR", "store_dir"),
        api_url=resolve(getattr(args, "ipfs_api", None), "MARKET_IPFS_API"),
    )


def _contract(args: argparse.Namespace) -> Any:
    from market.chain.client import Chain
    from market.chain.contract import MarketContract

    rpc = require(resolve(args.rpc, "MARKET_RPC", "rpc"), "RPC URL", "pass --rpc URL or start `market devnet`")
    address = require(
        resolve(args.contract, "MARKET_CONTRACT", "contract"), "contract address",
        "pass --contract ADDRESS (printed by `market devnet`)",
    )
    _check_address(address, "--contract")
    return MarketContract(Chain.connect(rpc), address)


def _in_range(value: int, what: str, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else a one-line ConfigError naming the option."""
    if not low <= value <= high:
        raise ConfigError(f"{what} {value}: must be between {low} and {high}")
    return value


def _task_id(text: str) -> int:
    """argparse type of a task id: a whole number that fits the contract's uint256."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"task id {text!r} is not a whole number") from None
    if not 0 <= value < 2**256:
        raise argparse.ArgumentTypeError(f"task id {text} is out of range (task ids count from 1)")
    return value


def _writable_file(path: str, what: str) -> None:
    """Fail before any work when ``path`` cannot be written (its folder is missing, or it is a folder)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {path}: is a folder, not a file")
    if not p.parent.is_dir():
        raise ConfigError(f"{what} {path}: folder {p.parent} does not exist")


def _check_address(text: str, what: str) -> str:
    from web3 import Web3

    if not Web3.is_address(text):
        raise ConfigError(f"{what} {text!r} is not an Ethereum address")
    return Web3.to_checksum_address(text)


def _account(args: argparse.Namespace) -> Any:
    from market.chain.devchain import read_key_file

    path = require(resolve(args.key_file, "MARKET_KEY_FILE"), "key file", "pass --key-file PATH (or MARKET_KEY_FILE)")
    return read_key_file(path)


def _eth(wei: int | str) -> str:
    from owner.task import eth_text

    return eth_text(wei)


def _reward(text: str) -> int:
    return _eth_amount(text, "--reward")


def _eth_amount(text: str, option: str) -> int:
    """An ETH amount option as exact integer wei; a one-line ConfigError naming the option."""
    from owner.task import parse_eth

    try:
        return parse_eth(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {exc}") from None


def _short(addr: str) -> str:
    return addr[:6] + "…" + addr[-4:]


def _console() -> Any:
    from rich.console import Console

    return Console()



def _load_dataset(path: str, schema: Any = None) -> Any:
    """A data file checked against ``schema`` (a DataSchema; default: the built-in digits task's)."""
    from market.data import load_shard
    from market.spec import TaskSpec

    return load_shard(path, schema if schema is not None else TaskSpec().data)


def _load_validation(path: str, schema: Any) -> Any:
    """A validation set checked against ``schema`` and able to value updates (:func:`market.data.check_validation_set`)."""
    from market.data import check_validation_set

    return check_validation_set(_load_dataset(path, schema))


def _task_spec(args: argparse.Namespace, contract: Any = None, store: Any = None) -> Any:
    """Task ``args.task``'s spec as published (chain + store): the schema its data files must fit."""
    from market.task import load_task

    return load_task(contract or _contract(args), store or _store(args), args.task).spec


def _chain_opts(p: argparse.ArgumentParser, key: bool = True) -> None:
    p.add_argument("--rpc", help="JSON-RPC URL (default: $MARKET_RPC or the running `market devnet`)")
    p.add_argument("--contract", help="market contract address (default: $MARKET_CONTRACT or the devnet's)")
    p.add_argument("--store", choices=["local", "kubo"], help="content store (default local)")
    p.add_argument("--store-dir", help="folder of the local store (default: $MARKET_STORE_DIR, else the devnet's "
                   "store, else the per-user store)")
    p.add_argument("--ipfs-api", help="Kubo RPC API URL for --store kubo")
    if key:
        p.add_argument("--key-file", help="file holding this role's private key (default $MARKET_KEY_FILE)")



class _DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default after its help (or alone, if it has no help), unless the help
    already says it. Options whose default is None or False (flags) show none."""

    @staticmethod
    def _has_default(action: argparse.Action) -> bool:
        d = action.default
        return bool(action.option_strings) and d is not None and d is not False and d is not argparse.SUPPRESS

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and self._has_default(action):
            action = copy.copy(action)
            action.help = "(default %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if not text or "default" in text or not self._has_default(action):
            return text
        return f"{text} (default %(default)s)"


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line and shows defaults in ``--help`` (sub-parsers
    inherit the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")

