"""Settings shared by every sub-command: from options, else environment variables,
else the ``.market/devnet.json`` that ``market devnet`` writes.

Environment variables (also read from a ``.env`` file in the working directory,
or the file named by ``MARKET_ENV_FILE``; the real environment wins):

==================  ===============================================================
``MARKET_RPC``       JSON-RPC URL of the chain (``http://…`` or ``https://…``)
``MARKET_CONTRACT``  address of the deployed market contract
``MARKET_STORE``     content store: ``local`` (default) or ``kubo``
``MARKET_STORE_DIR`` folder of the local store (default ``.market/store``)
``MARKET_IPFS_API``  Kubo RPC API URL, for ``MARKET_STORE=kubo``
``MARKET_KEY_FILE``  file holding this role's private key (never the key itself)
``MARKET_HOST``      address ``market serve`` listens on (default 127.0.0.1)
``MARKET_PORT``      port ``market serve`` listens on (default 8000)
==================  ===============================================================

:func:`check_environment` validates the ones that are set and names every bad one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from market.errors import ConfigError

DEVNET_FILE = Path(".market") / "devnet.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url(v: str) -> str | None:
    return None if re.match(r"^https?://[^\s/]+", v) else "expected an http:// or https:// URL"


def _address(v: str) -> str | None:
    return None if re.fullmatch(r"0x[0-9a-fA-F]{40}", v) else "expected a contract address (0x and 40 hex digits)"


def _store(v: str) -> str | None:
    return None if v in ("local", "kubo") else "expected 'local' or 'kubo'"


def _port(v: str) -> str | None:
    return None if v.isdigit() and 1 <= int(v) <= 65535 else "expected a port number from 1 to 65535"


def _host(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", v) else "expected a host name or IP address"


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "is empty"


#: every setting: its environment variable, what it is, and how to check a value
SETTINGS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "MARKET_RPC": ("JSON-RPC URL of the chain", _url),
    "MARKET_CONTRACT": ("market contract address", _address),
    "MARKET_STORE": ("content store kind", _store),
    "MARKET_STORE_DIR": ("folder of the local store", _nonempty),
    "MARKET_IPFS_API": ("Kubo RPC API URL", _url),
    "MARKET_KEY_FILE": ("key file path", _nonempty),
    "MARKET_HOST": ("address `market serve` listens on", _host),
    "MARKET_PORT": ("port `market serve` listens on", _port),
}


def parse_dotenv(text: str, source: str = ".env") -> dict[str, str]:
    """``KEY=value`` lines (optionally ``export KEY=value``); ``#`` comments; single or double quotes.

    A line that is neither blank, a comment nor an assignment is a :class:`ConfigError`
    naming its line number (its content is not echoed: it could be a secret).
    """
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"{source} line {n}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()  # an unquoted value ends at ' #'
        out[key] = value
    return out


def load_dotenv(path: Path | None = None) -> None:
    """Set variables from a ``.env`` file without overriding the real environment."""
    if path is None:
        path = Path(os.environ.get("MARKET_ENV_FILE") or ".env")
        if "MARKET_ENV_FILE" in os.environ and not path.is_file():
            raise ConfigError(f"MARKET_ENV_FILE={path}: no such file")
    if not path.is_file():
        return
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    for key, value in parse_dotenv(text, str(path)).items():
        os.environ.setdefault(key, value)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise one :class:`ConfigError` naming every set ``MARKET_*`` setting whose value is malformed."""
    env = os.environ if environ is None else environ
    problems = []
    for name, (what, check) in SETTINGS.items():
        value = env.get(name)
        if value is None or value == "":
            continue
        why = check(value)
        if why:
            shown = value if name != "MARKET_KEY_FILE" else "…"
            problems.append(f"{name}={shown!r} ({what}): {why}")
    if problems:
        raise ConfigError("bad setting" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))


def devnet_info() -> dict[str, Any] | None:
    if DEVNET_FILE.is_file():
        try:
            return dict(json.loads(DEVNET_FILE.read_text()))
        except ValueError:
            return None
    return None


def resolve(option: str | None, env: str, devnet_key: str | None = None) -> str | None:
    if option:
        return option
    if os.environ.get(env):
        return os.environ[env]
    if devnet_key:
        info = devnet_info()
        if info and info.get(devnet_key):
            return str(info[devnet_key])
    return None


def require(value: str | None, what: str, hint: str) -> str:
    if not value:
        raise ConfigError(f"no {what}: {hint}")
    return value


def serve_address(host: str | None, port: int | None) -> tuple[str, int]:
    """Host and port of ``market serve``: option, else MARKET_HOST / MARKET_PORT, else 127.0.0.1:8000."""
    h = host or os.environ.get("MARKET_HOST") or DEFAULT_HOST
    if port is None:
        raw = os.environ.get("MARKET_PORT")
        if raw and _port(raw):
            raise ConfigError(f"MARKET_PORT={raw!r}: {_port(raw)}")
        port = int(raw) if raw else DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected a port number from 1 to 65535")
    return h, port
