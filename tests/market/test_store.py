"""LocalStore, CID computation and store selection (no network, no processes)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from multiformats import CID, multihash

from market import store as store_module
from market.cid import compute_cid
from market.errors import BlobNotFoundError, CidMismatchError, ConfigError, DataError
from market.errors import StoreError
from market.store.kubo import KuboStore
from market.cid import verify_blob
from market.store import ContentStore, LocalStore, get_json, open_store, put_json

HELLO = b"hello world"
# CIDv1 raw sha2-256 of b"hello world", as `ipfs add --cid-version=1 --raw-leaves` prints it.
HELLO_CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blobs")


def _blob_files(store: LocalStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir())


# -- CIDs ------------------------------------------------------------------


def test_compute_cid_matches_a_cid_built_by_multiformats_from_hashlib() -> None:
    data = os.urandom(4096)
    digest = hashlib.sha256(data).digest()
    expected = CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256"))

    assert compute_cid(data) == str(expected)


def test_compute_cid_of_hello_world_is_the_published_ipfs_cid() -> None:
    assert compute_cid(HELLO) == HELLO_CID


def test_verify_blob_accepts_the_base58_spelling_of_the_same_cid() -> None:
    base58 = str(CID.decode(HELLO_CID).set(base="base58btc"))
    assert base58.startswith("zb2")

    assert verify_blob(base58, HELLO) == HELLO


def test_verify_blob_rejects_other_bytes() -> None:
    with pytest.raises(CidMismatchError, match=HELLO_CID):
        verify_blob(HELLO_CID, b"hello world!")


# -- LocalStore ------------------------------------------------------------


def test_local_store_is_a_content_store(local: LocalStore) -> None:
    assert isinstance(local, ContentStore)


@pytest.mark.parametrize("size", [0, 1, 1000, 600 * 1024])
def test_local_round_trip(local: LocalStore, size: int) -> None:
    data = os.urandom(size)

    cid = local.put(data)

    assert cid == compute_cid(data)
    assert local.get(cid) == data


def test_local_put_twice_keeps_one_file(local: LocalStore) -> None:
    first = local.put(HELLO)
    second = local.put(HELLO)

    assert first == second == HELLO_CID
    assert _blob_files(local) == [HELLO_CID]


def test_local_get_accepts_any_spelling_of_the_cid(local: LocalStore) -> None:
    local.put(HELLO)
    base58 = str(CID.decode(HELLO_CID).set(base="base58btc"))

    assert local.get(base58) == HELLO


def test_local_tampered_blob_on_disk_raises_cid_mismatch(local: LocalStore) -> None:
    cid = local.put(HELLO)
    (local.root / cid).write_bytes(b"jello world")

    with pytest.raises(CidMismatchError, match=cid):
        local.get(cid)


def test_local_truncated_blob_on_disk_raises_cid_mismatch(local: LocalStore) -> None:
    data = os.urandom(10_000)
    cid = local.put(data)
    (local.root / cid).write_bytes(data[:5_000])

    with pytest.raises(CidMismatchError):
        local.get(cid)


def test_local_missing_blob_raises_blob_not_found(local: LocalStore) -> None:
    with pytest.raises(BlobNotFoundError, match=HELLO_CID):
        local.get(HELLO_CID)


def test_local_invalid_cid_is_a_config_error(local: LocalStore) -> None:
    with pytest.raises(ConfigError, match="not a valid CID"):
        local.get("not-a-cid")


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
@pytest.mark.parametrize("exc_type", [OSError, KeyboardInterrupt])
def test_local_interrupted_put_leaves_no_blob_and_no_temp_file(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch, fail_at: str, exc_type: type[BaseException]
) -> None:
    kept = local.put(b"already stored")
    data = os.urandom(50_000)

    def crash(*args: object, **kwargs: object) -> None:
        raise exc_type("simulated crash")

    monkeypatch.setattr(store_module.os, fail_at, crash)
    with pytest.raises(exc_type):
        local.put(data)
    monkeypatch.undo()

    assert _blob_files(local) == [kept]  # no blob under the new CID, no .tmp- leftover
    with pytest.raises(BlobNotFoundError):
        local.get(compute_cid(data))
    assert local.put(data) == compute_cid(data)  # and the next attempt succeeds
    assert local.get(compute_cid(data)) == data


def test_local_leftover_temp_file_from_a_killed_writer_is_ignored(local: LocalStore) -> None:
    # What a writer killed by SIGKILL mid-write leaves: a half file under a temp name.
    data = os.urandom(20_000)
    (local.root / ".tmp-killed").write_bytes(data[:7_000])

    with pytest.raises(BlobNotFoundError):
        local.get(compute_cid(data))
    cid = local.put(data)
    assert local.get(cid) == data


def test_json_round_trip_is_canonical(local: LocalStore) -> None:
    cid_a = put_json(local, {"b": 1, "a": [1, 2]})
    cid_b = put_json(local, {"a": [1, 2], "b": 1})

    assert cid_a == cid_b
    assert local.get(cid_a) == b'{"a":[1,2],"b":1}'
    assert get_json(local, cid_a) == {"a": [1, 2], "b": 1}


def test_get_json_of_non_json_blob_is_a_config_error(local: LocalStore) -> None:
    cid = local.put(b"\x00\x01 not json")

    with pytest.raises(DataError, match="not JSON"):
        get_json(local, cid)


# -- open_store ------------------------------------------------------------


def test_open_store_local_uses_the_given_path(tmp_path: Path) -> None:
    opened = open_store("local", path=str(tmp_path / "s"))

    assert isinstance(opened, LocalStore)
    assert opened.root == tmp_path / "s"


def test_open_store_local_defaults_to_market_store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKET_STORE_DIR", str(tmp_path / "env-store"))

    opened = open_store()

    assert isinstance(opened, LocalStore)
    assert opened.root == tmp_path / "env-store"


def test_open_store_kubo_builds_a_kubo_store_without_connecting() -> None:
    opened = open_store("kubo", api_url="http://127.0.0.1:5001")

    assert isinstance(opened, KuboStore)
    assert opened.api_url == "http://127.0.0.1:5001"


def test_open_store_kubo_reads_market_ipfs_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKET_IPFS_API", "http://127.0.0.1:5005/api/v0")

    opened = open_store("kubo")

    assert isinstance(opened, KuboStore)
    assert opened.api_url == "http://127.0.0.1:5005"


def test_open_store_kubo_without_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKET_IPFS_API", raising=False)

    with pytest.raises(ConfigError, match="--ipfs-api"):
        open_store("kubo")


def test_open_store_kubo_with_a_non_http_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="http"):
        open_store("kubo", api_url="/ip4/127.0.0.1/tcp/5001")


def test_open_store_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown store 'dropbox'"):
        open_store("dropbox")


# -- size cap (max_bytes) ----------------------------------------------------


def test_local_get_under_or_at_the_cap_returns_the_blob(local: LocalStore) -> None:
    data = os.urandom(4_096)
    cid = local.put(data)

    assert local.get(cid, 4_096) == data
    assert local.get(cid, max_bytes=10**9) == data
    assert local.get(cid) == data  # no cap by default


def test_local_get_over_the_cap_is_refused_from_the_file_size_before_reading(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = local.put(os.urandom(4_097))
    opened: list[object] = []
    real_open = Path.open

    def spying_open(self: Path, *args: object, **kwargs: object) -> object:
        handle = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        opened.append(handle)
        handle.read = lambda *a: pytest.fail("the blob was read although it is over the cap")  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(Path, "open", spying_open)
    with pytest.raises(StoreError) as caught:
        local.get(cid, max_bytes=4_096)

    assert opened  # the file was opened (and stat-ed), never read
    assert str(caught.value) == f"update {cid} is 4097 bytes, over the cap of 4096 bytes"
    assert not isinstance(caught.value, (BlobNotFoundError, CidMismatchError))


def test_local_get_reads_no_more_than_the_cap_even_if_the_file_grew_after_its_stat(
    local: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = local.put(os.urandom(8_000))
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10,
                               st.st_atime, st.st_mtime, st.st_ctime))

    monkeypatch.setattr(store_module.local.os, "fstat", stale_fstat)
    with pytest.raises(StoreError, match="is more than 1000 bytes, over the cap of 1000 bytes"):
        local.get(cid, max_bytes=1_000)


def test_local_get_of_a_folder_under_a_cid_name_is_a_store_error(local: LocalStore) -> None:
    (local.root / HELLO_CID).mkdir()

    with pytest.raises(StoreError, match=HELLO_CID):
        local.get(HELLO_CID, max_bytes=100)


class _BlockServer:
    """A loopback HTTP server answering every ``/api/v0/block/get`` with ``body`` chunks forever
    (no Content-Length), or with a ``Content-Length`` header of ``declared`` and then chunks forever:
    a node serving junk that never ends. Counts the bytes it managed to send."""

    def __init__(self, declared: int | None = None) -> None:
        import http.server
        import threading

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if server.declared is not None:
                    self.send_header("Content-Length", str(server.declared))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"\x00" * 65_536
                try:
                    while not server.stop.is_set():
                        if server.declared is None:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        else:
                            self.wfile.write(chunk)
                        server.sent += len(chunk)
                except OSError:
                    pass  # the client hung up: what the test wants
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.declared = declared
        self.sent = 0
        self.stop = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "_BlockServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_kubo_get_stops_reading_an_endless_block_once_past_the_cap() -> None:
    with _BlockServer() as node:
        store = KuboStore(node.url, timeout=10, find_timeout=1)

        with pytest.raises(StoreError) as caught:
            store.get(HELLO_CID, max_bytes=200_000)

    assert str(caught.value) == f"update {HELLO_CID} is more than 200000 bytes, over the cap of 200000 bytes"


def test_kubo_get_refuses_a_declared_length_over_the_cap_before_reading_the_body() -> None:
    with _BlockServer(declared=10**12) as node:
        store = KuboStore(node.url, timeout=10, find_timeout=1)

        with pytest.raises(StoreError) as caught:
            store.get(HELLO_CID, max_bytes=200_000)

    assert str(caught.value) == f"update {HELLO_CID} is {10**12} bytes, over the cap of 200000 bytes"


def test_kubo_get_with_no_time_left_is_a_store_error_without_a_request() -> None:
    store = KuboStore("http://127.0.0.1:9", timeout=10, find_timeout=1)  # nothing listens on port 9

    with pytest.raises(StoreError, match="no time was left"):
        store.get(HELLO_CID, timeout=0)
