"""The ``kubo`` content store: an IPFS node reached over Kubo's HTTP RPC API.

Spec: https://docs.ipfs.tech/reference/kubo/rpc/ — every call is a ``POST`` to
``<api_url>/api/v0/<command>``. Talks plain ``requests`` (``ipfshttpclient`` 0.7
refuses every Kubo from 0.8 on). Tested against a real js-ipfs 0.66 daemon
(:class:`tests.support.ipfsnode.JsIpfsNode`), which serves the same RPC.

Which calls, and why:

* ``put`` → ``add?cid-version=1&raw-leaves=true&chunker=size-1048576&hash=sha2-256&pin=true``.
  The project's CIDs are CIDv1/raw/sha2-256 of the *whole* blob
  (:func:`market.cid.compute_cid`, and the contract stores that digest). With the
  default 256 KiB chunker a larger blob becomes a multi-block dag-pb file whose
  root CID (``bafybei…``/``zdj7…``) differs; with a 1 MiB chunker every blob up to
  :data:`MAX_BLOB_BYTES` (1 MiB) is one raw leaf, whose CID *is* the raw CID.
  1 MiB is the largest chunk Kubo accepts (boxo's ``ChunkSizeLimit``) and the
  largest block peers exchange by default, so bigger blobs are refused up front
  with a :class:`StoreError`. ``block/put`` was not used: js-ipfs ignores its
  ``cid-codec`` parameter (stores dag-pb) and caps its body below 1 MiB.
* ``get`` → ``block/get?arg=CID&timeout=…``: the exact bytes of the raw block,
  re-hashed with :func:`market.store.verify_blob`. A node that lacks a block looks
  for it (on the network, or forever when offline), so every lookup carries the
  RPC's ``timeout`` option and, with ``offline=True``, Kubo's ``offline`` option;
  a "not found"/timed-out answer becomes :class:`BlobNotFoundError`.
  The answer is streamed: with ``max_bytes`` the read stops (and the connection is
  dropped) as soon as a declared ``Content-Length`` or the bytes received exceed the
  cap, so a node (or an attacker's peer) serving junk costs at most ``max_bytes``
  of download and memory. ``block/stat`` is not asked first: it would cost a second
  round trip per blob, and a block the node lacks would be looked for twice.
  A per-call ``timeout`` (what :func:`aggregator.fetch.fetch_updates` passes from
  its round budget) bounds the whole call, lookup and transfer included.

The CID the node reports (base58btc ``zb2…`` from js-ipfs, base32 from Kubo) is
normalised with :func:`market.cid.normalize_cid` and must equal the locally
computed CID, or :class:`CidMismatchError` is raised.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from market.cid import compute_cid, normalize_cid, verify_blob
from market.errors import BlobNotFoundError, CidMismatchError, ConfigError, StoreError

#: Largest blob the kubo store accepts: one raw block / one chunk (1 MiB).
MAX_BLOB_BYTES = 1 << 20

#: connections kept open to the node (the aggregator fetches up to 16 updates at once)
POOL_CONNECTIONS = 32

#: bytes read from the node per chunk while streaming a block
_CHUNK = 64 * 1024

_NOT_FOUND = re.compile(
    r"not found|could not find|couldn't find|no such|timed out|timeout|deadline exceeded",
    re.IGNORECASE,
)


class KuboStore:
    """:class:`market.store.ContentStore` backed by a Kubo-compatible RPC API.

    ``api_url`` is the node's API base, e.g. ``http://127.0.0.1:5001`` (a trailing
    ``/api/v0`` is accepted too). ``timeout`` bounds each HTTP exchange (seconds);
    ``find_timeout`` bounds how long the node may look for a block it does not hold
    before the blob counts as missing; ``offline=True`` asks Kubo not to look on the
    network at all (js-ipfs ignores it; its daemon is started offline instead).
    The store may be shared by threads (:func:`aggregator.fetch.fetch_updates`): its own
    session keeps up to :data:`POOL_CONNECTIONS` connections to the node open.
    """

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = 60.0,
        find_timeout: float = 30.0,
        offline: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        url = api_url.strip().rstrip("/")
        if url.endswith("/api/v0"):
            url = url[: -len("/api/v0")]
        if not re.match(r"^https?://[^/]+", url):
            raise ConfigError(f"--ipfs-api must be an http(s) URL such as http://127.0.0.1:5001, not {api_url!r}")
        if find_timeout <= 0 or timeout <= 0:
            raise ConfigError("store timeouts must be positive")
        self.api_url = url
        self.timeout = timeout
        self.find_timeout = find_timeout
        self.offline = offline
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_CONNECTIONS)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session

    def __repr__(self) -> str:
        return f"KuboStore({self.api_url!r})"

    # -- ContentStore -------------------------------------------------------

    def put(self, data: bytes) -> str:
        """Add ``data`` as one raw block (pinned); return its base32 CIDv1."""
        data = bytes(data)
        if len(data) > MAX_BLOB_BYTES:
            raise StoreError(
                f"blob of {len(data)} bytes is over the kubo store's limit of {MAX_BLOB_BYTES} bytes "
                "(one raw IPFS block); use the local store or a smaller blob"
            )
        expected = compute_cid(data)
        params = {
            "cid-version": "1",
            "raw-leaves": "true",
            "chunker": f"size-{MAX_BLOB_BYTES}",
            "hash": "sha2-256",
            "pin": "true",
            "progress": "false",
        }
        files = {"file": ("blob", data, "application/octet-stream")}
        response = self._post("add", params, files=files, timeout=self.timeout)
        cid = self._added_cid(response)
        if cid != expected:
            raise CidMismatchError(
                f"IPFS node at {self.api_url} stored the blob as {cid}, but its bytes hash to {expected}"
            )
        return cid

    def get(self, cid: str, max_bytes: int | None = None, *, timeout: float | None = None) -> bytes:
        """Fetch the raw block ``cid`` and check its bytes hash to ``cid``.

        ``max_bytes``: refuse (:class:`StoreError`) a block larger than that, without reading
        past the cap. ``timeout``: bound the whole call (seconds); the node's lookup gets
        at most ``find_timeout`` and nine tenths of it, so it answers "not found" in time.
        """
        wanted = normalize_cid(cid)
        return verify_blob(wanted, self._fetch(wanted, max_bytes, timeout))

    # -- HTTP ---------------------------------------------------------------

    def _fetch(self, cid: str, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
        """The bytes the node returns for ``cid`` (unverified), at most ``max_bytes`` of them."""
        if timeout is None:
            find, total = self.find_timeout, self.timeout + self.find_timeout
        elif timeout > 0:
            find, total = min(self.find_timeout, 0.9 * timeout), timeout
        else:
            raise StoreError(f"no time was left to fetch blob {cid} from the IPFS node at {self.api_url}")
        params = {"arg": cid, "timeout": _duration(find)}
        if self.offline:
            params["offline"] = "true"
        deadline = time.monotonic() + total
        # The node answers by itself once `find` passes; `total` allows for that.
        response = self._post("block/get", params, timeout=total, cid=cid, find_timeout=find, stream=True)
        try:
            declared = response.headers.get("Content-Length", "")
            if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
                raise StoreError(f"update {cid} is {int(declared)} bytes, over the cap of {max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=_CHUNK):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise StoreError(f"update {cid} is more than {max_bytes} bytes, over the cap of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise StoreError(f"IPFS node at {self.api_url} did not finish sending blob {cid} within {_seconds(total)} s")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise StoreError(f"IPFS node at {self.api_url} broke off sending blob {cid} ({_reason(exc)})") from None
        finally:
            response.close()  # on a refusal: drop the connection rather than drain the rest
        return b"".join(chunks)

    def _post(
        self,
        command: str,
        params: dict[str, str],
        *,
        timeout: float,
        files: dict[str, Any] | None = None,
        cid: str | None = None,
        find_timeout: float | None = None,
        stream: bool = False,
    ) -> requests.Response:
        url = f"{self.api_url}/api/v0/{command}"
        try:
            response = self._session.post(
                url, params=params, files=files, timeout=(min(timeout, 10.0), timeout), stream=stream
            )
        except requests.Timeout:
            raise StoreError(f"IPFS node at {self.api_url} did not answer /api/v0/{command} within {_seconds(timeout)} s") from None
        except requests.ConnectionError as exc:
            raise StoreError(f"cannot reach the IPFS node at {self.api_url} ({_reason(exc)})") from None
        except requests.RequestException as exc:
            raise StoreError(f"request to the IPFS node at {self.api_url} failed: {_reason(exc)}") from None
        if response.ok:
            return response
        try:
            message = _error_message(response)
        except requests.RequestException as exc:
            message = f"its error answer broke off ({_reason(exc)})"
        finally:
            response.close()
        if cid is not None and (response.status_code == 404 or _NOT_FOUND.search(message)):
            find = self.find_timeout if find_timeout is None else find_timeout
            raise BlobNotFoundError(
                f"blob {cid} was not found by the IPFS node at {self.api_url} within {_seconds(find)} s ({message})"
            )
        raise StoreError(
            f"IPFS node at {self.api_url} refused /api/v0/{command} (HTTP {response.status_code}): {message}"
        )

    def _added_cid(self, response: requests.Response) -> str:
        # ``add`` streams one JSON object per line; the last one with a Hash is the file.
        cid = None
        for line in response.text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise StoreError(f"IPFS node at {self.api_url} sent a malformed /api/v0/add answer: {line[:120]!r}") from None
            if isinstance(entry, dict) and entry.get("Hash"):
                cid = str(entry["Hash"])
        if cid is None:
            raise StoreError(f"IPFS node at {self.api_url} returned no CID from /api/v0/add")
        try:
            return normalize_cid(cid)
        except ConfigError:
            raise StoreError(f"IPFS node at {self.api_url} returned an invalid CID {cid!r}") from None


def _seconds(seconds: float) -> str:
    """Seconds to the millisecond, without an exponent or trailing zeros (``30``, ``0.899``)."""
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".")


def _duration(seconds: float) -> str:
    """A duration for the RPC's ``timeout`` option: Go's ``time.ParseDuration`` takes ``1.5s`` but no exponent."""
    return f"{_seconds(seconds)}s"


def _error_message(response: requests.Response) -> str:
    """The one-line message of an RPC error answer (``{"Message": …}`` or plain text)."""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("Message"):
            return " ".join(str(body["Message"]).split())
    except ValueError:
        pass
    text = " ".join(response.text.split())
    return text[:200] or response.reason or "no message"


def _reason(exc: BaseException) -> str:
    """A short reason for a requests/urllib3 connection error (e.g. 'connection refused')."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Connection reset", "timed out", "Temporary failure in name resolution"):
        if marker.lower() in text.lower():
            return marker.lower()
    return type(exc).__name__
