"""The chain edge: connecting, signing and sending transactions, mapping reverts.

Every transaction is signed locally by a ``LocalAccount`` (keys never leave the
process) and sent raw, the web3.py standard path.  A revert surfaces as the
contract's custom error, decoded from the ABI and raised as
:class:`market.errors.ContractRevert` with a one-line message.  Both backends
behave the same: Anvil over HTTP (``--rpc URL``) and the in-process EVM
(``eth-tester`` / ``py-evm``, ``--chain tester``).
"""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Callable
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.types import Wei

from market.errors import ChainError, ContractRevert, NodeUnreachable

LOG = logging.getLogger("market.chain.client")

#: how a custom error reads in one line; fields are the error's arguments
MESSAGES: dict[str, str] = {
    "MarketUnknownTask": "unknown task {taskId}",
    "MarketZeroAggregator": "the aggregator cannot be the zero address",
    "MarketBadRounds": "rounds must be between 1 and 10000 (got {rounds})",
    "MarketBadWindows": "the submission and result windows must be at least 1 second",
    "MarketBadMaxTrainers": "max trainers must be between 1 and 256 (got {maxTrainers})",
    "MarketRewardTooLarge": "the reward {reward} does not fit in 128 bits",
    "MarketWrongValue": "sent {sent} wei but the reward is {expected} wei",
    "MarketRewardTooSmall": "a reward of {reward} cannot fund {rounds} rounds (at least 1 wei per round)",
    "MarketTaskFinished": "task {taskId} has finished: every round is settled",
    "MarketRoleConflict": "{account} already has another role in this task",
    "MarketAlreadyJoined": "{trainer} has already joined this task",
    "MarketTaskFull": "the task is full ({maxTrainers} trainers)",
    "MarketNotJoined": "{trainer} has not joined this task (run `market trainer join` first)",
    "MarketWrongRound": "wrong round: the task is in round {expected}, not {given}",
    "MarketSubmissionClosed": "too late: submissions for this round closed at unix time {deadline}",
    "MarketAlreadySubmitted": "{trainer} has already submitted an update for this round",
    "MarketZeroCid": "a CID of all zeros is not allowed",
    "MarketNotAggregator": "only the task's aggregator may post results ({caller} is not)",
    "MarketNotOwner": "only the task's owner may do this ({caller} is not)",
    "MarketSubmissionsOpen": "submissions are still open until unix time {deadline}",
    "MarketResultWindowClosed": "too late: the result window closed at unix time {deadline}",
    "MarketResultWindowOpen": "the aggregator may still post until unix time {deadline}",
    "MarketWrongLength": "expected {expected} basis-point entries (one per submitter), got {given}",
    "MarketBadBasisPoints": "basis points sum to {sum}, not 10000",
    "MarketInvalidProof": "the result's proof does not verify",
    "MarketRoundHasSubmissions": "round {round} has submissions: settle it instead of reclaiming",
    "MarketNothingToWithdraw": "nothing to withdraw",
    "ReentrancyGuardReentrantCall": "re-entrant call refused",
    "SafeERC20FailedOperation": "the token {token} refused the transfer",
    "FailedCall": "the transfer failed",
    "InsufficientBalance": "insufficient balance: {balance} < {needed}",
}


class ErrorDecoder:
    """Decodes revert data into (name, args) using the custom errors of one or more ABIs."""

    def __init__(self, *abis: list[dict[str, Any]]) -> None:
        self._by_selector: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            self.add(abi)

    def add(self, abi: list[dict[str, Any]]) -> None:
        """Learn the custom errors of another ABI."""
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            sig = f"{item['name']}({','.join(types)})"
            self._by_selector[keccak(text=sig)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)

    def decode(self, data: bytes) -> ContractRevert:
        sel = data[:4]
        if sel == bytes.fromhex("08c379a0"):  # Error(string)
            (reason,) = abi_decode(["string"], data[4:])
            return ContractRevert("Error", f"reverted: {reason}")
        if sel not in self._by_selector:
            return ContractRevert("Unknown", f"reverted with unknown data 0x{data.hex()[:80]}")
        name, names, types = self._by_selector[sel]
        try:
            values = abi_decode(types, data[4:])
        except Exception:
            values = ()
        fields = {k: (Web3.to_checksum_address(v) if t == "address" else v) for k, v, t in zip(names, values, types)}
        template = MESSAGES.get(name)
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
        w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
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
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def with_retry(self, fn: Callable[[], Any], what: str, attempts: int = 4) -> Any:
        """Call ``fn``; retry dropped connections with exponential backoff."""
        import requests

        delay = 0.25
        for i in range(attempts):
            try:
                return fn()
            except (requests.ConnectionError, requests.Timeout, ConnectionError) as exc:
                if i == attempts - 1:
                    raise NodeUnreachable(f"{what}: node unreachable after {attempts} tries ({type(exc).__name__})") from None
                LOG.warning("%s: connection to the node failed (%s); retry %d of %d in %.2f s",
                            what, type(exc).__name__, i + 1, attempts - 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------- time
    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move the dev chain's clock forward and mine a block (Anvil or tester only)."""
        if self.kind == "tester":
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            tester.time_travel(self.now() + int(seconds))
            tester.mine_blocks(1)
        else:
            self.w3.provider.make_request("evm_increaseTime", [int(seconds)])  # type: ignore[arg-type]
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
                estimate = self.with_retry(lambda: call.estimate_gas(params), what="estimate gas")
                gas = int(estimate * 1.2) + 10_000
            params["gas"] = gas
            params["nonce"] = self.w3.eth.get_transaction_count(account.address, "pending")
            tx = call.build_transaction(params)
            signed = account.sign_transaction(tx)
            tx_hash = self.with_retry(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction), what="send")
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except (ContractCustomError, ContractLogicError, Web3RPCError, ValueError) as exc:
            raise self._map_revert(exc) from None
        except Exception as exc:
            if type(exc).__name__ == "TransactionFailed":  # eth-tester
                raise self._map_revert(exc) from None
            raise
        if receipt["status"] != 1:
            raise ChainError(f"transaction {receipt['transactionHash'].hex()} reverted")
        return receipt

    def call(self, call: Any, params: dict[str, Any] | None = None) -> Any:
        """Run a read-only call; a revert becomes the contract's error."""
        try:
            return self.with_retry(lambda: call.call(params) if params else call.call(), what="call")
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
        self.decoder.add(artifact["abi"])
        receipt = self.transact(account, contract.constructor(*args), gas=8_000_000)
        return str(receipt["contractAddress"])
