"""Content-addressed blob store: every read is re-hashed against its CID.

Two backends share one interface:

* :class:`LocalStore` (:mod:`market.store.local`) — an embedded folder of blobs named by CID (the default).
  Writes go to a temporary file and are renamed into place, so a crash never
  leaves a half-written blob under a valid name.
* :class:`KuboStore` (``market.store.kubo``) — a node speaking Kubo's HTTP RPC API.

CIDs are CIDv1 / raw / sha2-256 (see :mod:`market.cid`). ``get(cid, max_bytes)`` refuses a
blob over a size cap before reading all of it, so junk from strangers cannot make a
reader download, hold or hash more than the cap (:mod:`aggregator.fetch`).

The local store's default folder is per user, never relative to the current folder:
``store/`` in :func:`data_dir` (``$MARKET_HOME``, else ``$XDG_DATA_HOME/poc-market``, else
``~/.local/share/poc-market``); ``MARKET_STORE_DIR`` or an explicit path win over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from market.errors import ConfigError, DataError
from market.store.local import LocalStore

#: the per-user folders' name (``~/.config/poc-market``, ``~/.local/share/poc-market``)
APP_DIR_NAME = "poc-market"


def data_dir() -> Path:
    """The per-user data folder: ``$MARKET_HOME``, else ``$XDG_DATA_HOME/poc-market``, else
    ``~/.local/share/poc-market`` (absolute)."""
    home = os.environ.get("MARKET_HOME")
    if home:
        return Path(home).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"  # XDG: relative = unset
    return (base / APP_DIR_NAME).resolve()


def default_store_dir() -> Path:
    """The local store's folder when neither a path nor ``MARKET_STORE_DIR`` names one."""
    return data_dir() / "store"


@runtime_checkable
class ContentStore(Protocol):
    """What trainers, the aggregator and the API need from storage."""

    def put(self, data: bytes) -> str:
        """Store ``data``; return its CID."""
        ...

    def get(self, cid: str, max_bytes: int | None = None) -> bytes:
        """Return the bytes of ``cid``, re-hashed; raise on mismatch or absence.

        With ``max_bytes``, a blob larger than that raises :class:`market.errors.StoreError`
        ("update <cid> is N bytes, over the cap of M bytes"), decided before the whole blob
        is read where the backend can tell (the local store's file size; the kubo store
        stops reading the node's answer once more than ``max_bytes`` arrived). ``None``: no cap.
        """
        ...


def put_json(store: ContentStore, obj: Any) -> str:
    """Store a JSON document in canonical form (sorted keys, no spaces)."""
    return store.put(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def get_json(store: ContentStore, cid: str) -> Any:
    data = store.get(cid)
    try:
        return json.loads(data)
    except ValueError:
        raise DataError(f"blob {cid} is not JSON") from None


def open_store(kind: str = "local", *, path: str | None = None, api_url: str | None = None) -> ContentStore:
    """Build a store from CLI/env settings (``local`` or ``kubo``)."""
    if kind == "local":
        folder = path or os.environ.get("MARKET_STORE_DIR") or str(default_store_dir())
        try:
            return LocalStore(folder)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"store folder {folder}: a file is in the way, not a folder") from None
        except OSError as exc:
            raise ConfigError(f"store folder {folder}: {exc.strerror or exc}") from None
    if kind == "kubo":
        from market.store.kubo import KuboStore

        url = api_url or os.environ.get("MARKET_IPFS_API")
        if not url:
            raise ConfigError("--store kubo needs --ipfs-api URL (or MARKET_IPFS_API)")
        return KuboStore(url)
    raise ConfigError(f"unknown store {kind!r}: use 'local' or 'kubo'")
