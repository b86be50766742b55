"""Settings shared by every sub-command, and where ``market devnet`` leaves its settings.

Precedence, first match wins (nothing depends on the current folder except ``.env``):

1. the command's option (``--rpc``, ``--contract``, ``--store-dir``, ``--key-file``, …);
2. the environment variable (table below);
3. the same variable from a ``.env`` file in the working directory, or the file named by
   ``MARKET_ENV_FILE`` (the real environment wins over it);
4. the devnet settings file ``devnet.json`` that a running ``market devnet`` writes in the
   per-user config folder (:func:`devnet_file`): RPC URL, contract, store folder, accounts and
   their key files, all as absolute paths, so every role on the machine finds them from any folder;
5. the built-in default: the local store is ``store/`` in the per-user data folder
   (:func:`data_dir`), never a path relative to the current folder.

Per-user folders (absolute; created when first written):

* config folder (:func:`config_dir`): ``$MARKET_HOME`` if set, else ``$XDG_CONFIG_HOME/poc-market``,
  else ``~/.config/poc-market``; holds ``devnet.json``;
* data folder (:func:`data_dir`): ``$MARKET_HOME`` if set, else ``$XDG_DATA_HOME/poc-market``,
  else ``~/.local/share/poc-market``; holds the local store (``store/``) and the devnet's key files
  (``devnet/keys/``).  ``market devnet --keys-dir/--store-dir`` put them elsewhere (the file names
  where).

Environment variables:

==================  ===============================================================
``MARKET_HOME``      one folder for both of the above (tests point it at a temporary folder)
``MARKET_RPC``       JSON-RPC URL of the chain (``http://…`` or ``https://…``)
``MARKET_CONTRACT``  address of the deployed market contract
``MARKET_STORE``     content store: ``local`` (default) or ``kubo``
``MARKET_STORE_DIR`` folder of the local store (default: the devnet's, else ``<data folder>/store``)
``MARKET_IPFS_API``  Kubo RPC API URL, for ``MARKET_STORE=kubo``
``MARKET_KEY_FILE``  file holding this role's private key (never the key itself)
``MARKET_HOST``      address ``market serve`` listens on (default 127.0.0.1)
``MARKET_PORT``      port ``market serve`` listens on (default 8000)
``MARKET_API_TOKEN`` bearer token ``market serve`` requires on ``POST /api/tasks`` (default: a random
                     one printed once at start); a secret, never echoed in errors
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
from market.store import APP_DIR_NAME, data_dir, default_store_dir

__all__ = ["APP_DIR_NAME", "config_dir", "data_dir", "default_keys_dir", "default_store_dir", "devnet_file"]

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


MIN_TOKEN_CHARS = 16


def _token(v: str) -> str | None:
    if not re.fullmatch(r"[\x21-\x7e]+", v):
        return "expected printable ASCII without spaces"
    return None if len(v) >= MIN_TOKEN_CHARS else f"expected at least {MIN_TOKEN_CHARS} characters"


#: every setting: its environment variable, what it is, and how to check a value
SETTINGS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "MARKET_RPC": ("JSON-RPC URL of the chain", _url),
    "MARKET_CONTRACT": ("market contract address", _address),
    "MARKET_STORE": ("content store kind", _store),
    "MARKET_HOME": ("folder of the per-user settings, keys and store", _nonempty),
    "MARKET_STORE_DIR": ("folder of the local store", _nonempty),
    "MARKET_IPFS_API": ("Kubo RPC API URL", _url),
    "MARKET_KEY_FILE": ("key file path", _nonempty),
    "MARKET_HOST": ("address `market serve` listens on", _host),
    "MARKET_PORT": ("port `market serve` listens on", _port),
    "MARKET_API_TOKEN": ("bearer token `market serve` requires on POST /api/tasks", _token),
}

#: settings whose values are secrets (or point at one): never shown in an error
SECRET_SETTINGS = frozenset({"MARKET_KEY_FILE", "MARKET_API_TOKEN"})


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
            shown = value if name not in SECRET_SETTINGS else "…"
            problems.append(f"{name}={shown!r} ({what}): {why}")
    if problems:
        raise ConfigError("bad setting" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))


def config_dir() -> Path:
    """The per-user config folder: ``$MARKET_HOME``, else ``$XDG_CONFIG_HOME/poc-market``, else
    ``~/.config/poc-market`` (absolute)."""
    home = os.environ.get("MARKET_HOME")
    if home:
        return Path(home).expanduser().resolve()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"  # XDG: relative = unset
    return (base / APP_DIR_NAME).resolve()


def devnet_file() -> Path:
    """Where ``market devnet`` writes its settings and every command looks for them."""
    return config_dir() / "devnet.json"


def default_keys_dir() -> Path:
    """Where ``market devnet`` writes the role key files unless ``--keys-dir`` says otherwise."""
    return data_dir() / "devnet" / "keys"


def devnet_info() -> dict[str, Any] | None:
    """The running devnet's settings (see :func:`devnet_file`), or None."""
    path = devnet_file()
    if path.is_file():
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return dict(info) if isinstance(info, dict) else None
    return None


def _rpc_key(url: str) -> tuple[str, str, int | None, str]:
    from urllib.parse import urlsplit

    u = urlsplit(url.strip())
    host = (u.hostname or "").lower()
    if host == "localhost":
        host = "127.0.0.1"
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        port = None
    return u.scheme.lower(), host, port, u.path.rstrip("/")


def devnet_for_rpc(rpc: str) -> dict[str, Any] | None:
    """The running devnet's settings if they name the chain at ``rpc`` (``localhost`` = ``127.0.0.1``)
    and a contract, else None."""
    info = devnet_info()
    if not info or not info.get("rpc") or not info.get("contract"):
        return None
    return info if _rpc_key(str(info["rpc"])) == _rpc_key(rpc) else None


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


def serve_api_token() -> tuple[str, bool]:
    """The bearer token ``market serve`` requires on every endpoint that signs a transaction, and
    whether it was generated: ``MARKET_API_TOKEN`` (environment or ``.env``), else a fresh
    ``secrets.token_urlsafe(32)`` for this run only (the caller prints it once)."""
    import secrets

    configured = resolve(None, "MARKET_API_TOKEN")
    if configured:
        why = _token(configured)
        if why:
            raise ConfigError(f"MARKET_API_TOKEN: {why}")  # the value is a secret: never echoed
        return configured, False
    return secrets.token_urlsafe(32), True
