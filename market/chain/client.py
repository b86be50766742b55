"""The chain edge: connecting, signing and sending transactions, mapping reverts.

Every transaction is signed locally by a ``LocalAccount`` (keys never leave the
process) and sent raw, the web3.py standard path.  A revert surfaces as the
contract's custom error, decoded from the ABI and raised as
:class:`market.errors.ContractRevert` with a one-line message: the error's
NatSpec ``@notice`` in the contract source, read from the artifact's userdoc; a
transaction that is mined and reverts is replayed at its block to learn which error.
Transactions are simulated (gas estimate) at the ``pending`` block, whose timestamp is
the next block's (:attr:`Chain.next_block`); :meth:`Chain.clock` is "now" for deadlines.
Both backends behave the same: Anvil over HTTP (``--rpc URL``) and the
in-process EVM (``eth-tester`` / ``py-evm``, ``--chain tester``).

Dropped connections and timeouts are retried by web3's ``HTTPProvider``
(``ExceptionRetryConfiguration``, read methods only); :meth:`Chain.with_retry`
is the edge that turns a node that stays down into
:class:`market.errors.NodeUnreachable`.
"""

from __future__ import annotations

import ast
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from requests.adapters import HTTPAdapter
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound, Web3RPCError
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration, check_if_retry_on_failure
from web3.types import RPCEndpoint, Wei

from market.errors import ChainError, ContractRevert, NodeUnreachable

LOG = logging.getLogger("market.chain.client")

#: How the custom errors of OpenZeppelin library code read in one line (fields are the error's
#: arguments). Only errors we cannot annotate live here: the contract's own errors carry their
#: message as a NatSpec ``@notice`` in contracts/*.sol, which ``ErrorDecoder.add`` reads from the
#: artifact's userdoc.
MESSAGES: dict[str, str] = {
    "ReentrancyGuardReentrantCall": "re-entrant call refused",
    "SafeERC20FailedOperation": "the token {token} refused the transfer",
    "FailedCall": "the transfer failed",
    "InsufficientBalance": "insufficient balance: {balance} < {needed}",
}


class ErrorDecoder:
    """Decodes revert data into (name, args) using the custom errors of one or more ABIs."""

    def __init__(self, *abis: list[dict[str, Any]]) -> None:
        #: selector -> (name, argument names, argument types, message template from the userdoc)
        self._by_selector: dict[bytes, tuple[str, list[str], list[str], str | None]] = {}
        for abi in abis:
            self.add(abi)

    def add(self, abi: list[dict[str, Any]], userdoc: dict[str, Any] | None = None) -> None:
        """Learn the custom errors of another ABI, and their messages from the artifact's ``userdoc``
        (each error's NatSpec ``@notice``: ``userdoc["errors"]["Name(types)"][0]["notice"]``)."""
        notices = (userdoc or {}).get("errors", {})
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            selector = keccak(text=sig)[:4]
            template = next((d["notice"] for d in notices.get(sig, []) if "notice" in d), None)
            if template is None and selector in self._by_selector:
                template = self._by_selector[selector][3]  # an ABI added without its userdoc keeps what was learnt
            self._by_selector[selector] = (item["name"], [i["name"] for i in item["inputs"]], types, template)

    def decode(self, data: bytes) -> ContractRevert:
        sel = data[:4]
        if sel == bytes.fromhex("08c379a0"):  # Error(string)
            (reason,) = abi_decode(["string"], data[4:])
            return ContractRevert("Error", f"reverted: {reason}")
        if sel not in self._by_selector:
            return ContractRevert("Unknown", f"reverted with unknown data 0x{data.hex()[:80]}")
        name, names, types, notice = self._by_selector[sel]
        try:
            values = abi_decode(types, data[4:])
        except Exception:
            values = ()
        fields = {k: (Web3.to_checksum_address(v) if t == "address" else v) for k, v, t in zip(names, values, types)}
        template = notice or MESSAGES.get(name)
        try:
            text = template.format(**fields) if template else f"{name}({', '.join(map(str, values))})"
        except (KeyError, IndexError):
            text = name
        return ContractRevert(name, f"{text} [{name}]")


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by a web3 / eth-tester exception, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, dict):
        # Anvil/geth: {"data": "0x…"}; Ganache 7: {"result": "0x…", "programCounter": …}
        for key in ("data", "result"):
            if isinstance(data.get(key), str) and data[key].startswith("0x") and len(data[key]) > 2:
                return bytes.fromhex(data[key][2:])
    msg = str(exc.args[0]) if exc.args else ""
    marker = "execution reverted: "
    if marker in msg:  # eth-tester: "execution reverted: b'...'"
        tail = msg.split(marker, 1)[1]
        try:
            val = ast.literal_eval(tail)
            if isinstance(val, bytes):
                return val
        except (ValueError, SyntaxError):
            pass
        if tail.startswith("0x"):
            try:
                return bytes.fromhex(tail[2:])
            except ValueError:
                return None
    return None


#: what a dropped or refused connection, or a timeout, raises (requests' ConnectionError is not the builtin one)
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (requests.ConnectionError, requests.Timeout, ConnectionError)
#: tries per JSON-RPC request before the node counts as down
RPC_ATTEMPTS = 4
#: JSON-RPC methods (or namespaces) the provider retries: web3's own list of retry-safe methods minus
#: those that sign, send or change the node's state. A raw transaction is never re-sent blindly (web3
#: would): ``Chain._send`` first asks the node whether the first try arrived.
NOT_RETRIED = frozenset({"eth_sendRawTransaction", "eth_sign", "eth_signTypedData", "admin", "evm", "testing"})
RETRIED_METHODS = tuple(m for m in REQUEST_RETRY_ALLOWLIST if m not in NOT_RETRIED) + ("eth_feeHistory",)


def retry_configuration() -> ExceptionRetryConfiguration:
    """web3's HTTPProvider retries: RPC_ATTEMPTS tries of a read, sleeping 0.25, 0.5, 1 s in between
    (``backoff_factor * 2**i``). HTTP error statuses (a 502 from a proxy, a 429) stay retried, as by
    web3's default configuration."""
    return ExceptionRetryConfiguration(
        errors=(*CONNECTION_ERRORS, requests.HTTPError),
        retries=RPC_ATTEMPTS,
        backoff_factor=0.25,
        method_allowlist=RETRIED_METHODS,
    )


class RetryLoggingSession(requests.Session):
    """The HTTP session under the provider: logs a warning for each failed try that web3 will retry.

    web3 retries silently. It posts the same request body on every try of one request (the JSON-RPC
    id is fixed before its retry loop), so consecutive failures of one body in one thread number
    the tries. One session serves every thread (web3 would keep one per thread), so its connection
    pool is sized for the API server's worker threads.
    """

    def __init__(self, config: ExceptionRetryConfiguration) -> None:
        super().__init__()
        self.config = config
        for prefix in ("http://", "https://"):
            self.mount(prefix, HTTPAdapter(pool_maxsize=64))
        self._failing = threading.local()  # .last = (request body, failed tries so far)

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        try:
            response = super().post(url, data=data, json=json, **kwargs)
        except tuple(self.config.errors) as exc:
            self._failed(data, type(exc).__name__)
            raise
        if response.ok:
            self._failing.last = None
        else:
            self._failed(data, f"HTTP {response.status_code}")
        return response

    def _failed(self, body: Any, reason: str) -> None:
        try:
            method = str(json.loads(body)["method"])
        except (TypeError, ValueError, KeyError):
            return  # a batch or a body that is not JSON-RPC: web3 does not retry it
        if not check_if_retry_on_failure(RPCEndpoint(method), self.config.method_allowlist):
            return
        last = getattr(self._failing, "last", None)
        n = last[1] + 1 if last is not None and last[0] == body else 1
        retries = self.config.retries - 1
        if n > retries:  # the last try: web3 raises, Chain.with_retry reports it
            self._failing.last = None
            return
        self._failing.last = (body, n)
        LOG.warning("%s: connection to the node failed (%s); retry %d of %d in %.2f s",
                    method, reason, n, retries, self.config.backoff_factor * 2 ** (n - 1))


class Chain:
    """A connection to one chain plus local signing."""

    def __init__(self, w3: Web3, kind: str) -> None:
        self.w3 = w3
        self.kind = kind
        self.decoder = ErrorDecoder()

    # ---------------------------------------------------------------- connect
    @classmethod
    def connect(cls, rpc_url: str, timeout: float = 30.0) -> "Chain":
        from web3 import HTTPProvider

        if not rpc_url.startswith(("http://", "https://")):
            from market.errors import ConfigError

            raise ConfigError(f"--rpc {rpc_url!r}: expected an http:// or https:// URL")
        retry = retry_configuration()
        w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout},
                               session=RetryLoggingSession(retry), exception_retry_configuration=retry))
        chain = cls(w3, "rpc")
        try:
            chain.with_retry(lambda: w3.eth.chain_id, what=f"connect to {rpc_url}")
        except ChainError:
            raise NodeUnreachable(f"cannot reach an Ethereum node at {rpc_url} (is `market devnet` running?)") from None
        return chain

    @classmethod
    def tester(cls) -> "Chain":
        from web3 import EthereumTesterProvider

        return cls(Web3(EthereumTesterProvider()), "tester")

    @property
    def next_block(self) -> str | None:
        """The block tag a transaction is simulated at (gas estimate, pre-flight call): ``pending``, whose
        timestamp is the next block's. An idle Anvil's latest block keeps an old timestamp, and simulating
        there refuses what the next block accepts (a settle after the result window) or accepts what it
        refuses. The in-process EVM implements no ``pending`` estimate; its latest block serves (None)."""
        return None if self.kind == "tester" else "pending"

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def with_retry(self, fn: Callable[[], Any], what: str) -> Any:
        """Call ``fn`` (reads: the provider has retried each request RPC_ATTEMPTS times, with backoff and
        a logged warning per retry); a node that stays down is one :class:`NodeUnreachable` line."""
        try:
            return fn()
        except CONNECTION_ERRORS as exc:
            raise NodeUnreachable(f"{what}: node unreachable after {RPC_ATTEMPTS} tries ({type(exc).__name__})") from None

    def _send(self, signed: SignedTransaction) -> Any:
        """Send a signed transaction. After a failed try it is sent again only if the node does not
        have it (the first try may have arrived before the connection dropped); the lookup is a read,
        which the provider retries while the node is down."""
        try:
            return self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except CONNECTION_ERRORS as exc:
            LOG.warning("send: connection to the node failed (%s); looking the transaction up before a retry",
                        type(exc).__name__)
        sent = "0x" + bytes(signed.hash).hex().removeprefix("0x")
        try:
            self.w3.eth.get_transaction(signed.hash)
        except TransactionNotFound:
            try:
                return self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:  # each node words it its own way (RPC error, eth-tester ValidationError)
                # the first try did arrive (a node behind a load balancer may not have shown it yet):
                # the same signed bytes cannot run twice, so wait for them rather than report a failure
                # the user would answer by sending (and paying) again
                text = str(exc).lower()
                if "nonce too low" in text or "already known" in text or "invalid transaction nonce" in text:
                    LOG.warning("send: the node already has transaction %s; waiting for it", sent)
                    return signed.hash
                raise
        except (NodeUnreachable, requests.ConnectionError, requests.Timeout, ConnectionError) as exc:
            raise NodeUnreachable(f"send: node unreachable ({type(exc).__name__}); transaction {sent} may have been sent: "
                                  "check it before sending again") from None
        return signed.hash

    # ------------------------------------------------------------------- time
    def now(self) -> int:
        """The latest block's timestamp (what the contract saw last)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def clock(self) -> int:
        """"Now" for deciding whether a round is open (unix seconds): the later of the latest block's
        timestamp and the wall clock.

        Why not the latest block alone: a chain that mines only when a transaction arrives (Anvil,
        ``market devnet``) keeps the latest block's timestamp frozen while nobody transacts, so a
        countdown read from it stops and a passed deadline seems never to come; the next block is
        stamped with at least the wall clock, and that is the ``block.timestamp`` the next
        transaction will see. Why not the wall clock alone: a dev chain whose clock was moved
        ahead (``advance_time``) runs ahead of it. The in-process EVM is the exception: it stamps
        the next block when the previous one is mined, not when a transaction arrives, so its
        pending block's timestamp is the next transaction's ``block.timestamp`` exactly.
        """
        if self.kind == "tester":
            return int(self.w3.eth.get_block("pending")["timestamp"])
        return max(self.now(), int(time.time()))

    def advance_time(self, seconds: int) -> None:
        """Move the dev chain's clock forward and mine a block (Anvil or tester only)."""
        if self.kind == "tester":
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            tester.time_travel(self.now() + int(seconds))
            tester.mine_blocks(1)
        else:
            self.w3.provider.make_request("evm_increaseTime", [int(seconds)])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def advance_to(self, when: int) -> None:
        """Move a dev chain's clock to unix time ``when`` (if it is behind) and mine a block there: a task's
        schedule is fixed, and simulations and tests do not wait for it in real time (Anvil, Ganache or tester)."""
        if (self.now() if self.kind == "tester" else self.clock()) >= when:  # tester calls run at the latest block
            return
        if self.kind == "tester":
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            tester.time_travel(int(when))
            tester.mine_blocks(1)
        else:
            answer = self.w3.provider.make_request("evm_setNextBlockTimestamp", [int(when)])  # type: ignore[arg-type]
            if answer.get("error"):  # Ganache 7 has no evm_setNextBlockTimestamp: move its clock's offset instead
                self.w3.provider.make_request("evm_increaseTime", [int(when) - self.clock()])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            while self.now() < when:  # Ganache stamps blocks from its wall clock plus the offset (whole seconds)
                self.w3.provider.make_request("evm_increaseTime", [int(when) - self.now()])  # type: ignore[arg-type]
                self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    # --------------------------------------------------------------- accounts
    def fund(self, accounts: list[LocalAccount], wei: int) -> None:
        """Give dev accounts ether on the tester chain (Anvil funds them itself)."""
        if self.kind != "tester":
            return
        rich = self.w3.eth.accounts[0]
        for acct in accounts:
            if self.w3.eth.get_balance(acct.address) < wei:
                tx = self.w3.eth.send_transaction({"from": rich, "to": acct.address, "value": Wei(wei)})
                self.w3.eth.wait_for_transaction_receipt(tx)

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    # ------------------------------------------------------------ transactions
    def transact(self, account: LocalAccount, call: Any, value: int = 0, gas: int | None = None) -> Any:
        """Sign and send ``call`` (a bound contract function) from ``account``; return the receipt."""
        params: dict[str, Any] = {"from": account.address, "value": value}
        try:
            if gas is None:
                estimate = self.with_retry(lambda: call.estimate_gas(params, block_identifier=self.next_block),
                                           what="estimate gas")
                gas = int(estimate * 1.2) + 10_000
            params["gas"] = gas
            params["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
            tx = call.build_transaction(params)
            signed = account.sign_transaction(tx)
            tx_hash = self.with_retry(lambda: self._send(signed), what="send")
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except (ContractCustomError, ContractLogicError, Web3RPCError, ValueError) as exc:
            raise self._map_revert(exc) from None
        except Exception as exc:
            if type(exc).__name__ == "TransactionFailed":  # eth-tester
                raise self._map_revert(exc) from None
            raise
        if receipt["status"] != 1:
            raise self._mined_revert(call, params, receipt)
        return receipt

    def _mined_revert(self, call: Any, params: dict[str, Any], receipt: Any) -> ChainError:
        """Why a mined transaction reverted (status 0): a receipt carries no revert data, so the call is
        replayed at its block (that block's timestamp and state) and the revert it gives is decoded.
        If the replay does not revert (the state moved on within the block), say so with the hash."""
        tx_hash = receipt["transactionHash"]
        tx = tx_hash.hex() if isinstance(tx_hash, bytes) else str(tx_hash)
        tx = tx if tx.startswith("0x") else "0x" + tx
        replay = {k: v for k, v in params.items() if k in ("from", "value", "gas")}
        try:
            self.with_retry(lambda: call.call(replay, block_identifier=receipt["blockNumber"]), what="replay")
        except (ContractCustomError, ContractLogicError, Web3RPCError, ValueError) as exc:
            return self._map_revert(exc)
        except ChainError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "TransactionFailed":  # eth-tester
                return self._map_revert(exc)
            LOG.debug("replay of %s failed: %s", tx, exc)
        return ChainError(f"transaction {tx} reverted in block {receipt['blockNumber']} "
                          "(replaying it there did not reproduce the reason)")

    def call(self, call: Any, params: dict[str, Any] | None = None, block: str | int | None = None) -> Any:
        """Run a read-only call (at ``block``, default the latest); a revert becomes the contract's error.
        ``block="pending"`` simulates a transaction as the next block would run it (its timestamp)."""
        try:
            return self.with_retry(lambda: call.call(params, block_identifier=block), what="call")
        except (ContractCustomError, ContractLogicError, Web3RPCError, ValueError) as exc:
            raise self._map_revert(exc) from None
        except Exception as exc:
            if type(exc).__name__ == "TransactionFailed":
                raise self._map_revert(exc) from None
            raise

    def _map_revert(self, exc: BaseException) -> ChainError:
        data = revert_data(exc)
        if data:
            return self.decoder.decode(data)
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "insufficient funds" in text.lower():
            return ChainError("the sender's balance cannot pay for this transaction (value plus gas)")
        return ChainError(f"transaction failed: {text[:200]}")

    def deploy(self, account: LocalAccount, artifact: dict[str, Any], *args: Any) -> str:
        contract = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        self.decoder.add(artifact["abi"], artifact.get("userdoc"))
        receipt = self.transact(account, contract.constructor(*args), gas=8_000_000)
        return str(receipt["contractAddress"])
