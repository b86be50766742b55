"""Settings shared by every sub-command: from options, else environment variables
(``MARKET_RPC``, ``MARKET_CONTRACT``, ``MARKET_STORE``, ``MARKET_STORE_DIR``,
``MARKET_IPFS_API``, ``MARKET_KEY_FILE``, also read from a ``.env`` file in the
working directory), else the ``.market/devnet.json`` that ``market devnet`` writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from market.errors import ConfigError

DEVNET_FILE = Path(".market") / "devnet.json"


def load_dotenv(path: Path = Path(".env")) -> None:
    """Set variables from a ``KEY=value`` file without overriding the real environment."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        os.environ.setdefault(key.strip(), value.strip().strip('"').strip("'"))


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
