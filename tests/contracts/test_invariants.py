"""Stateful invariant fuzzing of the escrow (Hypothesis ``RuleBasedStateMachine``).

Random sequences of create / join / submit / post result / fallback / reclaim /
withdraw / refund with random time jumps, over several tasks and trainers at once.
After every step:

* the contract's balance equals everything owed but not withdrawn plus every pool
  not yet settled plus every refund not yet withdrawn;
* withdrawn + balance equals everything deposited, to the wei;
* per task, escrow + credited + refunded equals the reward;
* no trainer is credited twice for one round.

At the end every task is driven to its end and every party withdraws; the balance
must then be zero. The in-process EVM runs the long campaign (transactions sent
through eth-tester's unlocked accounts, the fastest path); a shorter one runs on Anvil.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from web3 import Web3

from market.chain.compile import load_artifact

ZERO = "0x" + "00" * 20
EXAMPLES = int(os.environ.get("INVARIANT_EXAMPLES", "200"))
STEPS = int(os.environ.get("INVARIANT_STEPS", "30"))


#: the events the machine reads: name -> (indexed argument types, data argument types)
_EVENTS = {
    "TrainerCredited(uint256,uint256,address,uint256)": ("TrainerCredited", ["uint256", "uint256", "address"], ["uint256"]),
    "Withdrawn(address,address,uint256)": ("Withdrawn", ["address", "address"], ["uint256"]),
    "RefundWithdrawn(uint256,address,uint256)": ("RefundWithdrawn", ["uint256", "address"], ["uint256"]),
    "TaskCreated(uint256,address,address,address,uint256,uint32,bytes32)": (
        "TaskCreated", ["uint256", "address", "address"], ["address", "uint256", "uint32", "bytes32"]),
}
_TOPICS = {keccak(text=sig): spec for sig, spec in _EVENTS.items()}


def _hex(b: Any) -> bytes:
    return bytes.fromhex(b[2:]) if isinstance(b, str) else bytes(b)


class EscrowDriver:
    """Sends transactions from unlocked dev accounts (reverts reported as None) and reads state.

    On the in-process chain it talks to eth-tester directly (no JSON-RPC formatting), which
    makes a step several times cheaper; on Anvil it uses the ordinary web3 path.
    """

    def __init__(self, w3: Web3, accounts: list[str], snapshot: Callable[[], Any], revert: Callable[[Any], None],
                 advance: Callable[[int], None], tester: Any = None) -> None:
        art = load_artifact("ContributionMarket")
        self.w3 = w3
        self.tester = tester
        self.accounts = accounts
        contract = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = contract.constructor().transact({"from": accounts[0], "gas": 8_000_000})
        address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        self.c = w3.eth.contract(address=address, abi=art["abi"])
        self._revert = revert
        self._snapshot = snapshot
        self.advance = advance
        self.base = snapshot()

    def reset(self) -> None:
        self._revert(self.base)
        self.base = self._snapshot()

    def call(self, fn: Any) -> Any:
        if self.tester is None:
            return fn.call()
        raw = self.tester.call({"from": self.accounts[0], "to": self.c.address, "data": fn._encode_transaction_data()})
        types = [o["type"] if o["type"] != "tuple" else "(" + ",".join(c["type"] for c in o["components"]) + ")" for o in fn.abi["outputs"]]
        out = self.w3.codec.decode(types, _hex(raw))
        return out[0] if len(out) == 1 else out

    def balance(self) -> int:
        if self.tester is None:
            return int(self.w3.eth.get_balance(self.c.address))
        return int(self.tester.get_balance(self.c.address))

    def send(self, sender: str, fn: Any, value: int = 0) -> list[tuple[str, list[Any]]] | None:
        """Send; None if it reverted, else the decoded events of interest."""
        if self.tester is not None:
            try:
                h = self.tester.send_transaction({"from": sender, "to": self.c.address, "value": value, "gas": 3_000_000,
                                                  "data": fn._encode_transaction_data()})
            except Exception as exc:
                if type(exc).__name__ == "TransactionFailed":
                    return None
                raise
            receipt = self.tester.get_transaction_receipt(h)
            logs = [([_hex(t) for t in log["topics"]], _hex(log["data"])) for log in receipt["logs"]]
        else:
            tx = fn.transact({"from": sender, "value": value, "gas": 3_000_000})
            receipt = self.w3.eth.wait_for_transaction_receipt(tx)
            if receipt["status"] != 1:
                return None
            logs = [([bytes(t) for t in log["topics"]], bytes(log["data"])) for log in receipt["logs"]]
        if receipt["status"] != 1:
            return None
        events = []
        for topics, data in logs:
            spec = _TOPICS.get(topics[0]) if topics else None
            if spec is None:
                continue
            name, indexed, plain = spec
            args = [self.w3.codec.decode([t], topic)[0] for t, topic in zip(indexed, topics[1:])]
            args += list(self.w3.codec.decode(plain, data))
            events.append((name, args))
        return events


def make_machine(driver_factory: Callable[[], EscrowDriver]) -> type[RuleBasedStateMachine]:
    holder: dict[str, EscrowDriver] = {}

    class EscrowMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            if "d" not in holder:
                holder["d"] = driver_factory()
            self.d = holder["d"]
            self.d.reset()
            a = self.d.accounts
            self.owners, self.aggregator, self.trainers, self.outsider = a[0:2], a[2], a[3:8], a[8]
            self.tasks: list[int] = []
            self.deposited = 0
            self.withdrawn = 0
            self.credited_keys: set[tuple[int, int, str]] = set()
            self.nonce = 0

        # ------------------------------------------------------------ helpers
        def _cid(self) -> bytes:
            self.nonce += 1
            return keccak(self.nonce.to_bytes(8, "big"))

        def _task(self, i: int) -> int:
            return self.tasks[i % len(self.tasks)]

        def _record(self, events: list[tuple[str, list[Any]]]) -> None:
            for name, args in events:
                if name == "TrainerCredited":
                    key = (args[0], args[1], args[2].lower())
                    assert key not in self.credited_keys, f"credited twice: {key}"
                    self.credited_keys.add(key)
                elif name in ("Withdrawn", "RefundWithdrawn"):
                    self.withdrawn += int(args[-1])
                elif name == "TaskCreated":
                    self.deposited += int(args[4])
                    self.tasks.append(int(args[0]))

        def _send(self, sender: str, fn: Any, value: int = 0) -> bool:
            events = self.d.send(sender, fn, value)
            if events is not None:
                self._record(events)
            return events is not None

        def _task_state(self, task_id: int) -> tuple[Any, ...]:
            return tuple(self.d.call(self.d.c.functions.getTask(task_id)))

        # -------------------------------------------------------------- rules
        @initialize(rounds=st.integers(1, 3), reward=st.integers(3, 10**18))
        def first_task(self, rounds: int, reward: int) -> None:
            self.create(0, rounds, reward, 3, 100)
            assert self.tasks, "the first task must be created"

        @precondition(lambda self: len(self.tasks) < 3)
        @rule(owner=st.integers(0, 1), rounds=st.integers(1, 3), reward=st.integers(0, 10**18),
              max_trainers=st.integers(1, 5), window=st.sampled_from([50, 100]))
        def create(self, owner: int, rounds: int, reward: int, max_trainers: int, window: int) -> None:
            params = (keccak(b"spec"), keccak(b"init"), b"\x00" * 32, self.aggregator, ZERO, rounds, window, window, max_trainers)
            self._send(self.owners[owner], self.d.c.functions.createTask(params, ZERO, reward), value=reward)

        @rule(task=st.integers(0, 20), trainer=st.integers(0, 4))
        def join(self, task: int, trainer: int) -> None:
            self._send(self.trainers[trainer], self.d.c.functions.join(self._task(task)))

        @rule(task=st.integers(0, 20), trainer=st.integers(0, 4), wrong_round=st.booleans())
        def submit(self, task: int, trainer: int, wrong_round: bool) -> None:
            t = self._task(task)
            current = self._task_state(t)[6]
            self._send(self.trainers[trainer], self.d.c.functions.submitUpdate(t, current + int(wrong_round), self._cid(), self._cid()))

        @rule(task=st.integers(0, 20), data=st.data(), by_owner=st.booleans())
        def post_result(self, task: int, data: st.DataObject, by_owner: bool) -> None:
            t = self._task(task)
            n = len(self.d.call(self.d.c.functions.getSubmitters(t)))
            kind = data.draw(st.sampled_from(["valid", "valid", "valid", "zero", "bad_sum", "bad_length"]))
            if kind == "valid" and n:
                cuts = sorted(data.draw(st.lists(st.integers(0, 10_000), min_size=n - 1, max_size=n - 1)))
                bps = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000])]
            elif kind == "bad_sum" and n:
                bps = [1] * n
            elif kind == "bad_length":
                bps = [10_000] + [0] * n
            else:
                bps = [0] * n
            current = self._task_state(t)[6]
            sender = self.owners[0] if by_owner else self.aggregator
            self._send(sender, self.d.c.functions.postResult(t, current, keccak(b"m"), keccak(b"r"), bps, b""))

        @rule(task=st.integers(0, 20), caller=st.integers(0, 4))
        def fallback(self, task: int, caller: int) -> None:
            self._send(self.trainers[caller], self.d.c.functions.settleWithoutResult(self._task(task)))

        @rule(task=st.integers(0, 20), owner=st.integers(0, 1))
        def reclaim(self, task: int, owner: int) -> None:
            self._send(self.owners[owner], self.d.c.functions.reclaimUnused(self._task(task)))

        @rule(account=st.integers(0, 4))
        def withdraw(self, account: int) -> None:
            self._send(self.trainers[account], self.d.c.functions.withdraw(ZERO))

        @rule(task=st.integers(0, 20), owner=st.integers(0, 1))
        def withdraw_refund(self, task: int, owner: int) -> None:
            self._send(self.owners[owner], self.d.c.functions.withdrawRefund(self._task(task)))

        @rule(seconds=st.sampled_from([1, 30, 60, 101, 250]))
        def advance_time(self, seconds: int) -> None:
            self.d.advance(seconds)

        # --------------------------------------------------------- invariants
        def _balance(self) -> int:
            return self.d.balance()

        @invariant()
        def money_is_conserved(self) -> None:
            owed = sum(int(self.d.call(self.d.c.functions.owed(ZERO, a))) for a in self.trainers)
            held = 0
            for t in self.tasks:
                s = self._task_state(t)
                reward, refunded, escrow, credited, refunds_withdrawn = s[14], s[15], s[16], s[17], s[18]
                assert escrow + credited + refunded == reward
                held += escrow + refunded - refunds_withdrawn
            balance = self._balance()
            assert balance == owed + held
            assert balance + self.withdrawn == self.deposited

        def teardown(self) -> None:
            for t in self.tasks:
                for _ in range(4):
                    s = self._task_state(t)
                    if s[6] >= s[5]:
                        break
                    self.d.advance(500)
                    assert self._send(self.outsider, self.d.c.functions.settleWithoutResult(t))
                s = self._task_state(t)
                if s[15] > s[18]:
                    assert self._send(s[0], self.d.c.functions.withdrawRefund(t))
            for a in self.trainers:
                if self.d.call(self.d.c.functions.owed(ZERO, a)):
                    assert self._send(a, self.d.c.functions.withdraw(ZERO))
            assert self._balance() == 0
            assert self.withdrawn == self.deposited

    return EscrowMachine


def _tester_driver() -> EscrowDriver:
    from web3 import EthereumTesterProvider

    w3 = Web3(EthereumTesterProvider())
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]

    def advance(seconds: int) -> None:
        tester.time_travel(int(tester.get_block_by_number("latest")["timestamp"]) + seconds)

    return EscrowDriver(w3, list(w3.eth.accounts), tester.take_snapshot, tester.revert_to_snapshot, advance, tester)


TesterEscrowMachine = make_machine(_tester_driver)
TesterEscrowMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_escrow_invariants_in_process = TesterEscrowMachine.TestCase


@pytest.fixture(scope="module")
def anvil_driver_factory(anvil: Any) -> Callable[[], EscrowDriver]:
    from web3 import HTTPProvider

    def factory() -> EscrowDriver:
        w3 = Web3(HTTPProvider(anvil.rpc_url))

        def advance(seconds: int) -> None:
            w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

        def snapshot() -> Any:
            return w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

        def revert(snap: Any) -> None:
            w3.provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]

        return EscrowDriver(w3, list(w3.eth.accounts), snapshot, revert, advance)

    return factory


def test_escrow_invariants_on_anvil(anvil_driver_factory: Callable[[], EscrowDriver]) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    machine = make_machine(anvil_driver_factory)
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=15, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
