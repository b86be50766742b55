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
