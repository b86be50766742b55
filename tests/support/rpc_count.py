"""Count the JSON-RPC requests a piece of code sends (a web3 middleware), by method and by contract function."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from eth_utils import keccak
from web3 import Web3
from web3.middleware import Web3Middleware


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


GET_TASK = selector("getTask(uint256)")


@contextlib.contextmanager
def count_requests(w3: Web3) -> Iterator[Counter[str]]:
    """Yield a Counter filled while the block runs: ``eth_getLogs``, ``eth_call:0xSELECTOR``, …"""
    seen: Counter[str] = Counter()

    class _Count(Web3Middleware):
        def wrap_make_request(self, make_request: Any) -> Any:
            def middleware(method: str, params: Any) -> Any:
                key = str(method)
                if method == "eth_call" and params and isinstance(params[0], dict):
                    key += ":" + str(params[0].get("data", ""))[:10]
                seen[key] += 1
                return make_request(method, params)

            return middleware

    w3.middleware_onion.add(_Count, name="rpc-count")
    try:
        yield seen
    finally:
        w3.middleware_onion.remove("rpc-count")
