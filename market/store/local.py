"""The default content store: an embedded folder of blobs named by CID.

Writes go to a temporary file and are renamed into place, so a crash never
leaves a half-written blob under a valid name; every read is re-hashed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from market.cid import compute_cid, normalize_cid, verify_blob
from market.errors import BlobNotFoundError


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
