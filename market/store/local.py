"""The default content store: an embedded folder of blobs named by CID.

Writes go to a temporary file and are renamed into place, so a crash never
leaves a half-written blob under a valid name; every read is re-hashed.

``get(cid, max_bytes)`` refuses a blob over the cap from its size on disk (``fstat`` of
the open file) before reading a byte of it, and reads at most ``max_bytes + 1`` bytes
even if the file grew in between: a stranger's junk costs a ``stat``, not a read.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from market.cid import compute_cid, normalize_cid, verify_blob
from market.errors import BlobNotFoundError, StoreError


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

    def get(self, cid: str, max_bytes: int | None = None) -> bytes:
        """The bytes of ``cid``, re-hashed; :class:`StoreError` if over ``max_bytes`` (checked before reading)."""
        path = self._path(cid)
        try:
            with path.open("rb") as fh:
                if max_bytes is None:
                    data = fh.read()
                else:
                    size = os.fstat(fh.fileno()).st_size
                    if size > max_bytes:
                        raise StoreError(f"update {cid} is {size} bytes, over the cap of {max_bytes} bytes")
                    data = fh.read(max_bytes + 1)
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {cid} is not in the store at {self.root}") from None
        except OSError as exc:  # a folder or an unreadable file under the CID's name
            raise StoreError(f"blob {cid} cannot be read from the store at {self.root}: {exc.strerror or exc}") from None
        if max_bytes is not None and len(data) > max_bytes:  # the file grew after the stat
            raise StoreError(f"update {cid} is more than {max_bytes} bytes, over the cap of {max_bytes} bytes")
        return verify_blob(cid, data)
