"""A send whose answer was lost is never reported as a failure the user would answer by paying again.

The first ``eth_sendRawTransaction`` reaches the node but the connection drops before the answer; the
look-up then misses it (a lagging backend) and the re-send is refused as a known nonce, or the node
stays down.  The client waits for the transaction it already sent, or says it may have been sent.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from web3.exceptions import TransactionNotFound

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import dev_accounts
from market.cid import compute_cid
from market.errors import NodeUnreachable

TASK = dict(spec_cid=compute_cid(b"s"), initial_model_cid=compute_cid(b"i"), validation_commitment=b"\x11" * 32,
            rounds=2, reward_wei=10 * 10**18)


def _flaky(lookup: Any) -> tuple[Chain, MarketContract, Any, Any]:
    chain = Chain.tester()
    accts = dev_accounts(3)
    chain.fund(accts, 1000 * 10**18)
    contract = MarketContract.deploy(chain, accts[0])
    contract.registry.register(accts[1])
    eth = chain.w3.eth
    real_send = eth.send_raw_transaction
    calls = {"n": 0}

    def send(raw: bytes) -> Any:
        calls["n"] += 1
        h = real_send(raw)
        if calls["n"] == 1:
            raise requests.ConnectionError("connection reset after the node accepted the transaction")
        return h

    eth.send_raw_transaction = send  # type: ignore[method-assign]
    eth.get_transaction = lookup  # type: ignore[method-assign]
    return chain, contract, accts[2], accts[1]


def test_a_lagging_lookup_waits_for_the_transaction_already_sent() -> None:
    def lagging(_h: Any) -> Any:
        raise TransactionNotFound("not on this backend yet")

    chain, contract, owner, agg = _flaky(lagging)

    task_id, _ = contract.create_task(owner, **TASK)

    assert task_id == 1 and contract.task_count() == 1 and contract.task(1).escrow == TASK["reward_wei"]


def test_a_node_that_stays_down_says_the_transaction_may_have_been_sent() -> None:
    def down(_h: Any) -> Any:
        raise requests.ConnectionError("node still down")

    chain, contract, owner, agg = _flaky(down)

    with pytest.raises(NodeUnreachable, match="may have been sent: check it before sending again"):
        contract.create_task(owner, **TASK)
    assert contract.task_count() == 1  # it was sent: the user is told to check, not to send again
