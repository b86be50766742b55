"""The ``market`` parser (each command module registers its sub-commands) and the entry point ``main``.

Errors a user can cause print one line (``error: …``) and exit non-zero;
private keys are read from key files and never printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from market.errors import MarketError
from market_app.cli import data, devnet, roles, serve, simulate, task, zk
from market_app.cli.common import _OneLineParser
from market_app.settings import check_environment, load_dotenv


def build_parser() -> argparse.ArgumentParser:
    ap = _OneLineParser(prog="market", description="Proof-of-Contribution market: collaborative training paid by contribution.")
    sub = ap.add_subparsers(dest="command", required=True)
    for module in (simulate, devnet, data, task, roles, serve, zk):  # in this order: the order of `market --help`
        module.add_parser(sub)
    return ap


def _terminate(signum: int, _frame: Any) -> None:
    # turn SIGTERM into SystemExit so every `finally` (e.g. stopping a throwaway Anvil) runs
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    try:
        load_dotenv()
        check_environment()
        return int(args.func(args))
    except MarketError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

