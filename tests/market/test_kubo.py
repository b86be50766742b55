"""The ``kubo`` store against a real IPFS daemon (js-ipfs 0.66 from node_modules).

One offline js-ipfs daemon serves the whole module (:class:`JsIpfsNode`, ~5 s to
start); it speaks the same ``/api/v0`` RPC as Kubo.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from market.cid import compute_cid
from market.errors import BlobNotFoundError, CidMismatchError, ConfigError, StoreError
from tests.support.ipfsnode import PROJECT_ROOT, JsIpfsNode
from market.store.kubo import MAX_BLOB_BYTES, KuboStore
from market.store import ContentStore

JSIPFS_CLI = PROJECT_ROOT / "node_modules" / "ipfs" / "src" / "cli.js"
needs_jsipfs = pytest.mark.skipif(
    not JSIPFS_CLI.is_file(), reason=f"js-ipfs is not installed ({JSIPFS_CLI} missing): run `make install`"
)

HELLO_CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"  # raw CID of b"hello world"


@pytest.fixture(scope="module")
def node() -> Iterator[JsIpfsNode]:
    if not JSIPFS_CLI.is_file():
        pytest.skip(f"js-ipfs is not installed ({JSIPFS_CLI} missing): run `make install`")
    with JsIpfsNode() as running:
        yield running


@pytest.fixture
def store(node: JsIpfsNode) -> KuboStore:
    # A short find_timeout: the daemon is offline, so a block it lacks can never turn up.
    return KuboStore(node.api_url, timeout=30, find_timeout=0.5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the node itself ---------------------------------------------------------


@needs_jsipfs
def test_node_answers_the_kubo_version_call(node: JsIpfsNode) -> None:
    answer = requests.post(f"{node.api_url}/api/v0/version", timeout=5).json()

    assert answer["Version"]
    assert node.api_url.startswith("http://127.0.0.1:")


@needs_jsipfs
def test_node_stops_its_process_group_and_removes_its_repo_on_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with JsIpfsNode() as other:
            pid, repo = other.pid, other.repo_path
            assert pid is not None and repo is not None and repo.is_dir()
            raise RuntimeError("boom")

    assert not repo.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process is left in the daemon's group


def test_node_without_node_modules_says_to_run_make_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `make install` first"):
        JsIpfsNode(node_modules=tmp_path / "node_modules").start()


# -- put / get -------------------------------------------------------------


@needs_jsipfs
def test_kubo_store_is_a_content_store(store: KuboStore) -> None:
    assert isinstance(store, ContentStore)


@needs_jsipfs
def test_put_returns_the_published_cid_of_hello_world(store: KuboStore) -> None:
    assert store.put(b"hello world") == HELLO_CID


@needs_jsipfs
@pytest.mark.parametrize(
    "size",
    [
        0,
        1_000,
        256 * 1024 + 1,  # just over Kubo's default 256 KiB chunk
        600 * 1024,  # a multi-chunk file under the default chunker (dag-pb root)
        MAX_BLOB_BYTES,  # the largest blob the kubo store takes: still one raw block
    ],
)
def test_round_trip_cid_equals_compute_cid(store: KuboStore, size: int) -> None:
    data = os.urandom(size)

    cid = store.put(data)

    assert cid == compute_cid(data)
    assert store.get(cid) == data


@needs_jsipfs
def test_blob_added_by_another_client_reads_back(node: JsIpfsNode, store: KuboStore) -> None:
    # A plain `ipfs add --cid-version=1 --raw-leaves` (as a user would run it) prints
    # base58btc; the store accepts the CID in any spelling.
    data = os.urandom(3_000)
    answer = requests.post(
        f"{node.api_url}/api/v0/add",
        params={"cid-version": "1", "raw-leaves": "true"},
        files={"file": ("x", data, "application/octet-stream")},
        timeout=10,
    ).json()

    assert store.get(answer["Hash"]) == data


@needs_jsipfs
def test_blob_over_the_limit_is_refused_with_a_store_error(store: KuboStore) -> None:
    with pytest.raises(StoreError, match="over the kubo store's limit of 1048576 bytes"):
        store.put(b"\x00" * (MAX_BLOB_BYTES + 1))


@needs_jsipfs
def test_never_added_cid_raises_blob_not_found_quickly(store: KuboStore) -> None:
    missing = compute_cid(os.urandom(64))
    started = time.monotonic()

    with pytest.raises(BlobNotFoundError, match=missing):
        store.get(missing)

    assert time.monotonic() - started < 10  # bounded by find_timeout, not a hang


# -- a lying node ----------------------------------------------------------


class _LyingSession(requests.Session):
    """Stands in for a malicious or corrupted IPFS node: it answers every call
    normally but flips one byte of every block it serves, or claims a different CID
    for every blob it adds. The store must catch both by re-hashing."""

    def __init__(self, *, lie_on: str) -> None:
        super().__init__()
        self.lie_on = lie_on

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().post(url, *args, **kwargs)
        path = str(url)
        if self.lie_on == "get" and path.endswith("/block/get") and response.ok:
            body = bytearray(response.content)
            body[0] ^= 0xFF
            response._content = bytes(body)
        if self.lie_on == "put" and path.endswith("/add") and response.ok:
            response._content = b'{"Name":"blob","Hash":"%s","Size":"11"}\n' % HELLO_CID.encode()
        return response


@needs_jsipfs
def test_node_serving_altered_bytes_raises_cid_mismatch(node: JsIpfsNode, store: KuboStore) -> None:
    cid = store.put(b"an honest update")
    lying = KuboStore(node.api_url, find_timeout=0.5, session=_LyingSession(lie_on="get"))

    with pytest.raises(CidMismatchError, match=cid):
        lying.get(cid)


@needs_jsipfs
def test_node_reporting_a_different_cid_on_add_raises_cid_mismatch(node: JsIpfsNode) -> None:
    lying = KuboStore(node.api_url, find_timeout=0.5, session=_LyingSession(lie_on="put"))

    with pytest.raises(CidMismatchError, match=HELLO_CID):
        lying.put(b"not hello world")


# -- unreachable node ------------------------------------------------------


@pytest.mark.parametrize("operation", ["put", "get"])
def test_connection_refused_is_a_one_line_store_error_naming_the_url(operation: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    unreachable = KuboStore(url, timeout=5, find_timeout=0.5)

    with pytest.raises(StoreError) as caught:
        if operation == "put":
            unreachable.put(b"hello world")
        else:
            unreachable.get(HELLO_CID)

    message = str(caught.value)
    assert type(caught.value) is StoreError
    assert url in message
    assert "connection refused" in message
    assert "\n" not in message


def test_node_that_never_answers_is_a_store_error_not_a_hang() -> None:
    # A socket that accepts connections but never replies (a wedged daemon).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        wedged = KuboStore(url, timeout=0.3, find_timeout=0.2)

        with pytest.raises(StoreError, match="did not answer") as caught:
            wedged.get(HELLO_CID)

    assert url in str(caught.value)
    assert not isinstance(caught.value, BlobNotFoundError)

