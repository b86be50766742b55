"""Content-addressed blob store: every read is re-hashed against its CID.

Two backends share one interface:

* :class:`LocalStore` — an embedded folder of blobs named by CID (the default).
  Writes go to a temporary file and are renamed into place, so a crash never
  leaves a half-written blob under a valid name.
* :class:`KuboStore` (``market.kubo``) — a node speaking Kubo's HTTP RPC API.

CIDs are CIDv1 / raw / sha2-256 (see :mod:`market.cid`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from market.cid import compute_cid, normalize_cid
from market.errors import BlobNotFoundError, CidMismatchError, ConfigError


@runtime_checkable
class ContentStore(Protocol):
    """What trainers, the aggregator and the API need from storage."""

    def put(self, data: bytes) -> str:
        """Store ``data``; return its CID."""
        ...

    def get(self, cid: str) -> bytes:
        """Return the bytes of ``cid``, re-hashed; raise on mismatch or absence."""
        ...


def verify_blob(cid: str, data: bytes) -> bytes:
    """Raise :class:`CidMismatchError` unless ``data`` hashes to ``cid``."""
    actual = compute_cid(data)
    if actual != normalize_cid(cid):
        raise CidMismatchError(f"blob {cid} failed its hash check: its bytes hash to {actual}")
    return data


def put_json(store: ContentStore, obj: Any) -> str:
    """Store a JSON document in canonical form (sorted keys, no spaces)."""
    return store.put(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def get_json(store: ContentStore, cid: str) -> Any:
    data = store.get(cid)
    try:
        return json.loads(data)
    except ValueError:
        raise ConfigError(f"blob {cid} is not JSON") from None


class LocalStore:
    """Blobs in a folder, one file per CID."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, cid: str) -> Path:
        return self.root / normalize_cid(cid)

    def put(self, data: bytes) -> str:
        cid = compute_cid(data)
        path = self._path(cid)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return cid

    def get(self, cid: str) -> bytes:
        path = self._path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {cid} is not in the store at {self.root}") from None
        return verify_blob(cid, data)


def open_store(kind: str = "local", *, path: str | None = None, api_url: str | None = None) -> ContentStore:
    """Build a store from CLI/env settings (``local`` or ``kubo``)."""
    if kind == "local":
        folder = path or os.environ.get("MARKET_STORE_DIR", ".market/store")
        try:
            return LocalStore(folder)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"store folder {folder}: a file is in the way, not a folder") from None
        except OSError as exc:
            raise ConfigError(f"store folder {folder}: {exc.strerror or exc}") from None
    if kind == "kubo":
        from market.kubo import KuboStore

        url = api_url or os.environ.get("MARKET_IPFS_API")
        if not url:
            raise ConfigError("--store kubo needs --ipfs-api URL (or MARKET_IPFS_API)")
        return KuboStore(url)
    raise ConfigError(f"unknown store {kind!r}: use 'local' or 'kubo'")
