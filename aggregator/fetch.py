"""Fetch a round's revealed updates in parallel, under one time budget and a size cap.

Fetched one at a time with a 30 s lookup each, 255 CIDs that nobody serves would hold the
aggregator for about 2.1 h, past the result window, and hand the round to the backup
(issue 14, attack row 6). :func:`fetch_updates` instead fetches them all at once:

* **one budget for the whole round**: a thread pool of ``workers`` threads fetches every
  distinct CID, and the call returns once every CID is settled or ``budget_s`` has passed,
  whichever comes first. A CID still unsettled then gets the :class:`StoreError`
  "update <cid> was not fetched within the round's budget of X s"; threads still waiting on
  the store are left to finish in the background (a kubo store's calls end by the deadline,
  see below), never waited for;
* **fair lookups**: a store whose ``get`` takes a ``timeout`` keyword (the kubo store) gets,
  for each call, the remaining budget divided by the number of waves of ``workers`` the
  CIDs not yet started still need. No call outlives the budget, and junk queued first
  cannot use up the budget of honest updates queued behind it: with ``N`` distinct CIDs,
  every one of them gets a lookup of at least ``budget_s / ceil(N / workers)`` seconds
  (or the store's own ``find_timeout``, if shorter), whatever the others do;
* **a size cap**: ``max_bytes`` goes to the store's ``get``, which refuses a larger blob
  before reading all of it (:func:`update_size_cap` sizes it from the round's input model);
* **each CID once**: duplicates in ``cids`` are fetched once; the answer is keyed by CID,
  in the order of first appearance;
* **no exception for one bad CID**: absent, tampered (re-hashed on read by the store),
  over the cap, not a CID at all, too slow — each becomes that CID's :class:`StoreError`,
  whose one-line message is the rejection reason. Only a bug (an exception that is not a
  :class:`MarketError` or an ``OSError``) propagates.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from market.errors import ConfigError, MarketError, StoreError
from market.store import ContentStore

#: What :func:`fetch_updates` answers for one CID: its verified bytes, or why there are none.
Fetched = bytes | StoreError

#: Called once per distinct CID, in the calling thread, as soon as its outcome is known.
Progress = Callable[[str, Fetched], None]

#: Room above twice the model blob for an update's own safetensors header (see :func:`update_size_cap`).
HEADER_SLACK_BYTES = 64 * 1024


def update_size_cap(model_bytes: int) -> int:
    """The largest update blob worth fetching in a round whose input model blob has ``model_bytes`` bytes.

    ``2 * model_bytes + 64 KiB``. A valid update is a safetensors file of exactly the model's
    tensors (same names, shapes and float32 dtype, see :mod:`aggregator.validate`), so its data
    section is byte for byte the size of the model blob's and only the JSON header differs: the
    tensor offsets and the metadata (trainer, task, round, sample count), a few hundred bytes
    apart. The cap is set well above that, so it can never refuse an update that validation
    would accept (a longer metadata, a model blob written with a shorter header, or a future
    float64 model all fit the 2x and the 64 KiB, which is also far beyond any sane header), and
    close enough to bound what a stranger's blob costs the aggregator to download, hold and
    hash: about twice the model, instead of whatever the stranger chose.
    """
    if model_bytes < 0:
        raise ConfigError(f"a model blob cannot have {model_bytes} bytes")
    return 2 * model_bytes + HEADER_SLACK_BYTES


def not_fetched(cid: str, budget_s: float) -> StoreError:
    """The error of a CID the round's budget ran out on."""
    return StoreError(f"update {cid} was not fetched within the round's budget of {budget_s:g} s")


def fetch_updates(
    store: ContentStore,
    cids: Sequence[str],
    *,
    budget_s: float,
    max_bytes: int | None,
    workers: int = 16,
    progress: Progress | None = None,
) -> dict[str, Fetched]:
    """Fetch every CID in ``cids`` in parallel within ``budget_s`` seconds; bytes or a StoreError per CID.

    ``max_bytes``: the size cap passed to ``store.get`` (``None``: none, and ``store.get`` is
    called with the CID alone, so any one-argument store works). ``progress(cid, outcome)``
    is called in the calling thread for each distinct CID as its outcome becomes known
    (an exception it raises propagates). See the module's docstring for the guarantees.
    """
    if workers < 1:
        raise ConfigError(f"fetching needs at least one worker, not {workers}")
    deadline = time.monotonic() + budget_s
    position = {cid: i for i, cid in enumerate(dict.fromkeys(cids))}
    unique = list(position)
    if not unique:
        return {}
    pool_size = min(workers, len(unique))
    timed = _takes_timeout(store)
    lock = threading.Lock()
    unstarted = len(unique)  # CIDs whose fetch has not begun; the pool starts them in order

    def fetch(cid: str) -> Fetched:
        nonlocal unstarted
        with lock:
            waves = math.ceil(unstarted / pool_size)  # this CID and those queued behind it
            unstarted -= 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return not_fetched(cid, budget_s)
        kwargs: dict[str, Any] = {}
        if max_bytes is not None:
            kwargs["max_bytes"] = max_bytes
        if timed:
            kwargs["timeout"] = remaining / waves
        try:
            return store.get(cid, **kwargs)
        except StoreError as exc:
            return exc
        except MarketError as exc:  # e.g. ConfigError: not a CID at all
            return StoreError(str(exc))
        except OSError as exc:
            return StoreError(f"update {cid} could not be read: {exc.strerror or exc}")

    results: dict[str, Fetched] = {}

    def settle(cid: str, outcome: Fetched) -> None:
        results[cid] = outcome
        if progress is not None:
            progress(cid, outcome)

    pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="fetch-update")
    try:
        futures: dict[Future[Fetched], str] = {pool.submit(fetch, cid): cid for cid in unique}
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: position[futures[f]]):
                settle(futures[future], future.result())
        for future in sorted(pending, key=lambda f: position[futures[f]]):
            cid = futures[future]
            settle(cid, future.result() if future.done() else not_fetched(cid, budget_s))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # never wait on a store past the budget
    return {cid: results[cid] for cid in unique}


def _takes_timeout(store: ContentStore) -> bool:
    """Whether ``store.get`` accepts a ``timeout`` keyword (the kubo store does; the local store needs none)."""
    try:
        parameters = inspect.signature(store.get).parameters
    except (TypeError, ValueError):
        return False
    return "timeout" in parameters
