"""aggregator.fetch: a round's updates fetched in parallel, under one time budget and a size cap.

Against the local store (no processes), against stand-in stores that hang or count calls,
and against the real IPFS node the suite starts elsewhere (js-ipfs speaking Kubo's RPC API),
where 20 CIDs nobody has must not hold the round past its budget.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.fetch import HEADER_SLACK_BYTES, fetch_updates, update_size_cap
from market.cid import compute_cid
from market.errors import BlobNotFoundError, CidMismatchError, ConfigError, StoreError
from market.store import LocalStore
from market.store.kubo import KuboStore
from tests.support.ipfsnode import PROJECT_ROOT, JsIpfsNode

JSIPFS_CLI = PROJECT_ROOT / "node_modules" / "ipfs" / "src" / "cli.js"
needs_jsipfs = pytest.mark.skipif(
    not JSIPFS_CLI.is_file(), reason=f"js-ipfs is not installed ({JSIPFS_CLI} missing): run `make install`"
)


def _missing(n: int) -> list[str]:
    """CIDs of random bytes no store holds."""
    return [compute_cid(os.urandom(32)) for _ in range(n)]


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blobs")


# -- the size cap ----------------------------------------------------------


def test_update_size_cap_is_twice_the_model_plus_header_slack() -> None:
    assert update_size_cap(0) == HEADER_SLACK_BYTES == 64 * 1024
    assert update_size_cap(1_000_000) == 2_000_000 + 64 * 1024
    with pytest.raises(ConfigError):
        update_size_cap(-1)


def test_a_real_update_of_the_model_fits_the_cap_of_that_model() -> None:
    import torch

    from market.tensors import encode_state

    model = {"w": torch.randn(10, 64), "b": torch.randn(10)}
    model_blob = encode_state(model, {"kind": "model", "round": "0"})
    delta = {k: torch.randn(v.shape) for k, v in model.items()}
    update = encode_state(delta, {"kind": "delta", "trainer": "0x" + "ab" * 20, "task": "12", "round": "3",
                                  "samples": "123456"})

    assert len(update) <= update_size_cap(len(model_blob))


# -- local store -----------------------------------------------------------


def test_local_fetch_returns_bytes_or_a_store_error_per_cid(local: LocalStore) -> None:
    blobs = [os.urandom(1_000 + i) for i in range(6)]
    present = [local.put(b) for b in blobs]
    missing = _missing(3)
    tampered = local.put(b"an honest update")
    (local.root / tampered).write_bytes(b"an altered update")
    junk = "not-a-cid"
    asked = [missing[0], *present, present[2], missing[1], tampered, junk, missing[2], present[0]]

    got = fetch_updates(local, asked, budget_s=30, max_bytes=None)

    assert list(got) == list(dict.fromkeys(asked))  # each CID once, in order of first appearance
    for cid, blob in zip(present, blobs):
        assert got[cid] == blob
    for cid in missing:
        assert isinstance(got[cid], BlobNotFoundError)
        assert cid in str(got[cid])
    assert isinstance(got[tampered], CidMismatchError)
    assert isinstance(got[junk], StoreError) and "not a valid CID" in str(got[junk])


def test_local_fetch_refuses_a_huge_sparse_blob_from_its_size_without_reading_it(local: LocalStore) -> None:
    small = local.put(os.urandom(2_000))
    huge = compute_cid(b"whatever")  # a 1 TiB file under some CID's name: a read would never fit in memory
    with open(local.root / huge, "wb") as fh:
        fh.truncate(1 << 40)

    got = fetch_updates(local, [huge, small], budget_s=30, max_bytes=10_000)

    assert got[small] == local.get(small)
    error = got[huge]
    assert type(error) is StoreError
    assert str(error) == f"update {huge} is {1 << 40} bytes, over the cap of 10000 bytes"


def test_local_fetch_with_the_cap_exactly_the_blob_size_returns_it(local: LocalStore) -> None:
    data = os.urandom(5_000)
    cid = local.put(data)

    assert fetch_updates(local, [cid], budget_s=30, max_bytes=5_000) == {cid: data}
    assert "over the cap of 4999 bytes" in str(fetch_updates(local, [cid], budget_s=30, max_bytes=4_999)[cid])


def test_empty_round_fetches_nothing(local: LocalStore) -> None:
    assert fetch_updates(local, [], budget_s=1, max_bytes=None) == {}


def test_progress_hears_each_distinct_cid_once(local: LocalStore) -> None:
    present = local.put(b"an update")
    missing = _missing(1)[0]
    heard: list[tuple[str, bool]] = []

    fetch_updates(local, [present, missing, present], budget_s=30, max_bytes=None,
                  progress=lambda cid, outcome: heard.append((cid, isinstance(outcome, bytes))))

    assert sorted(heard) == sorted([(present, True), (missing, False)])


def test_zero_workers_is_a_config_error(local: LocalStore) -> None:
    with pytest.raises(ConfigError, match="at least one worker"):
        fetch_updates(local, _missing(1), budget_s=1, max_bytes=None, workers=0)


# -- stand-in stores: counting calls, hanging ----------------------------------


class _CountingStore:
    """A store of a dict that records every get and what it was asked with."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = {compute_cid(b): b for b in blobs}
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def put(self, data: bytes) -> str:
        self.blobs[compute_cid(data)] = data
        return compute_cid(data)

    def get(self, cid: str) -> bytes:
        with self.lock:
            self.calls.append(cid)
        if cid not in self.blobs:
            raise BlobNotFoundError(f"blob {cid} is not here")
        return self.blobs[cid]


def test_duplicates_are_fetched_once_and_a_one_argument_store_works_without_a_cap() -> None:
    store = _CountingStore([b"a", b"b"])
    a, b = compute_cid(b"a"), compute_cid(b"b")

    got = fetch_updates(store, [a, b, a, a, b], budget_s=30, max_bytes=None)

    assert got == {a: b"a", b: b"b"}
    assert sorted(store.calls) == sorted([a, b])


class _HangingStore:
    """Answers the CIDs it holds at once; for any other CID, blocks until released (a wedged node).

    Its ``get`` takes a ``timeout`` like the kubo store's, and records each one it is given.
    """

    def __init__(self, blobs: list[bytes], *, honour_timeout: bool) -> None:
        self.blobs = {compute_cid(b): b for b in blobs}
        self.honour_timeout = honour_timeout
        self.release = threading.Event()
        self.timeouts: list[float] = []
        self.lock = threading.Lock()

    def put(self, data: bytes) -> str:
        raise NotImplementedError

    def get(self, cid: str, max_bytes: int | None = None, *, timeout: float | None = None) -> bytes:
        assert timeout is not None
        with self.lock:
            self.timeouts.append(timeout)
        if cid in self.blobs:
            return self.blobs[cid]
        if self.release.wait(timeout if self.honour_timeout else None):
            raise BlobNotFoundError(f"blob {cid}: released")
        raise BlobNotFoundError(f"blob {cid} was not found within {timeout:g} s")


@pytest.fixture
def wedged() -> Iterator[_HangingStore]:
    store = _HangingStore([b"honest"], honour_timeout=False)
    yield store
    store.release.set()  # let the worker threads the fetch left behind finish


def test_a_store_that_never_answers_cannot_hold_the_round_past_its_budget(wedged: _HangingStore) -> None:
    honest = compute_cid(b"honest")
    junk = _missing(4)

    got = fetch_updates(wedged, [*junk, honest], budget_s=0.5, max_bytes=None, workers=8)

    assert got[honest] == b"honest"
    for cid in junk:
        assert type(got[cid]) is StoreError
        assert str(got[cid]) == f"update {cid} was not fetched within the round's budget of 0.5 s"


def test_junk_queued_first_cannot_starve_the_honest_updates_behind_it() -> None:
    # 16 CIDs nobody serves ahead of 2 honest ones, 4 workers: each lookup gets a fair share of
    # the budget, so the honest updates are still reached in time.
    store = _HangingStore([b"honest 1", b"honest 2"], honour_timeout=True)
    honest = [compute_cid(b"honest 1"), compute_cid(b"honest 2")]
    junk = _missing(16)
    try:
        got = fetch_updates(store, [*junk, *honest], budget_s=2.0, max_bytes=None, workers=4)
    finally:
        store.release.set()

    assert [got[c] for c in honest] == [b"honest 1", b"honest 2"]
    assert all(isinstance(got[c], StoreError) for c in junk)
    assert max(store.timeouts) <= 2.0
    # 18 CIDs on 4 workers: 5 waves, so the first lookups got a fifth of the budget
    assert store.timeouts[0] == pytest.approx(2.0 / 5, rel=0.2)


# -- kubo store against a real IPFS node -------------------------------------


@pytest.fixture(scope="module")
def node() -> Iterator[JsIpfsNode]:
    if not JSIPFS_CLI.is_file():
        pytest.skip(f"js-ipfs is not installed ({JSIPFS_CLI} missing): run `make install`")
    with JsIpfsNode() as running:
        yield running


@pytest.fixture
def kubo(node: JsIpfsNode) -> KuboStore:
    # A patient lookup, as on a real network: only the round's budget may cut it short.
    return KuboStore(node.api_url, timeout=60, find_timeout=600)


@needs_jsipfs
def test_kubo_twenty_missing_cids_end_within_the_budget_and_honest_ones_are_fetched(kubo: KuboStore) -> None:
    honest = [os.urandom(10_000 + i) for i in range(3)]
    honest_cids = [kubo.put(b) for b in honest]
    missing = _missing(20)
    budget = 3.0

    started = time.monotonic()
    got = fetch_updates(kubo, [*missing, *honest_cids], budget_s=budget, max_bytes=update_size_cap(20_000))
    elapsed = time.monotonic() - started

    assert elapsed < budget + 2.0  # not 20 lookups of 600 s, nor one
    assert [got[c] for c in honest_cids] == honest  # queued behind the junk, still fetched
    for cid in missing:
        assert isinstance(got[cid], StoreError)
        assert cid in str(got[cid])


@needs_jsipfs
def test_kubo_blob_over_the_cap_is_refused_and_one_under_it_is_returned(kubo: KuboStore) -> None:
    big = os.urandom(300_000)  # several 64 KiB chunks of the node's answer
    big_cid, small_cid = kubo.put(big), kubo.put(b"a small update")

    got = fetch_updates(kubo, [big_cid, small_cid], budget_s=30, max_bytes=100_000)

    assert got[small_cid] == b"a small update"
    error = got[big_cid]
    assert type(error) is StoreError
    assert "over the cap of 100000 bytes" in str(error) and big_cid in str(error)
    assert "\n" not in str(error)
    assert kubo.get(big_cid, 300_000) == big  # exactly at the cap: fine, and re-hashed


@needs_jsipfs
def test_kubo_get_with_a_per_call_timeout_ends_by_it_whatever_find_timeout_says(kubo: KuboStore) -> None:
    missing = _missing(1)[0]

    started = time.monotonic()
    with pytest.raises(StoreError, match=missing):
        kubo.get(missing, timeout=1.0)

    assert time.monotonic() - started < 1.0 + 2.0
