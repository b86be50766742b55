"""``market serve``: the HTTP API and live dashboard."""

from __future__ import annotations

import argparse
import sys

from market.errors import ConfigError
from market_app.cli.common import _account, _chain_opts, _contract, _store
from market_app.settings import resolve


def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    from market_app.api.app import is_loopback, serve
    from market_app.settings import serve_address

    host, port = serve_address(args.host, args.port)
    contract = _contract(args)
    store = _store(args)
    key_path = resolve(args.key_file, "MARKET_KEY_FILE")
    creator = _account(args) if key_path else None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} (pick another --port)") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"market API and dashboard on http://{shown}:{port}/  (OpenAPI: /openapi.json)")
    print(f"chain {contract.chain.chain_id}, contract {contract.address}, store {store!r}")
    if creator is not None:
        print(f"POST /api/tasks enabled: signs as {creator.address} (key file {key_path}; the key never leaves this process)")
    if not is_loopback(host):
        print(f"warning: listening on {host} makes the API reachable from other machines", file=sys.stderr)
    sys.stdout.flush()
    serve(contract, store, host=host, port=port, creator=creator, log_level=args.log_level)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="HTTP API (OpenAPI at /openapi.json) and live dashboard at /")
    _chain_opts(p)
    p.add_argument("--host", help="address to listen on (default $MARKET_HOST or 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default $MARKET_PORT or 8000)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="how much the HTTP server logs")
    p.set_defaults(func=cmd_serve)
