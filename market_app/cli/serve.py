"""``market serve``: the HTTP API and live dashboard.

Spending is opt-in and guarded: only an explicit ``--key-file`` on this command line lets the server
sign (``MARKET_KEY_FILE`` is ignored here, so a variable left in a shell or ``.env`` never turns it
on), and every endpoint that signs requires ``Authorization: Bearer <token>`` (``MARKET_API_TOKEN``,
else a random token printed once at start).  It listens on loopback only unless ``--allow-remote``.
"""

from __future__ import annotations

import argparse
import sys

from market.errors import ConfigError
from market_app.cli.common import _chain_opts, _contract, _store


def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    from market.chain.devchain import read_key_file
    from market_app.api.app import is_loopback, serve
    from market_app.settings import serve_address, serve_api_token

    host, port = serve_address(args.host, args.port)
    if not is_loopback(host) and not args.allow_remote:
        raise ConfigError(f"refusing to listen on {host}: not a loopback address, so other machines could reach the "
                          "API; pass --allow-remote to do it anyway")
    key_path = args.key_file  # only the command line: MARKET_KEY_FILE never enables spending here
    creator = read_key_file(key_path) if key_path else None
    token, generated = serve_api_token() if creator is not None else (None, False)
    contract = _contract(args)
    store = _store(args)
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
        source = token if generated else "the value of MARKET_API_TOKEN"
        print(f"API token for POST /api/tasks: {source}  (send `Authorization: Bearer <token>`)")
    if not is_loopback(host):
        print(f"warning: listening on {host} makes the API reachable from other machines"
              + (" (plain HTTP: the API token crosses the network in clear; put TLS in front)" if creator else ""),
              file=sys.stderr)
    sys.stdout.flush()
    serve(contract, store, host=host, port=port, creator=creator, api_token=token, log_level=args.log_level)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="HTTP API (OpenAPI at /openapi.json) and live dashboard at /")
    _chain_opts(p, key=False)
    p.add_argument("--key-file", help="owner key file that lets POST /api/tasks create tasks (escrowing its ETH); "
                   "only this option enables it, $MARKET_KEY_FILE is ignored by serve. Every such request must "
                   "carry `Authorization: Bearer <token>`: $MARKET_API_TOKEN, else a random token printed once at start")
    p.add_argument("--host", help="address to listen on (default $MARKET_HOST or 127.0.0.1: this machine only)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host that is not a loopback address (the API becomes reachable from other machines)")
    p.add_argument("--port", type=int, help="port (default $MARKET_PORT or 8000)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="how much the HTTP server logs")
    p.set_defaults(func=cmd_serve)
