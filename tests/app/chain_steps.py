"""The protocol's steps on a dev chain, for the app tests: commit, reveal, close the reveals, post a result.

Time is moved with ``Chain.advance_to`` (the tester chain's clock, or Anvil's ``evm_setNextBlockTimestamp``),
never slept through.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from market.chain.contract import MarketContract, commit_hash
from market.cid import compute_cid

SALT = b"\x5a" * 32


def commitment_of(cid: str) -> bytes:
    """A stand-in sketch commitment for ``cid`` (the app tests do not check sketches)."""
    return keccak(text=f"sketch of {cid}")


def open_round(contract: MarketContract, task_id: int) -> int:
    """Move the clock to the current round's opening; the round."""
    info = contract.task(task_id)
    contract.chain.advance_to(info.opens_at(info.current_round))
    return info.current_round


def commit(contract: MarketContract, trainer: LocalAccount, task_id: int, cid: str, round_: int | None = None) -> bytes:
    """Join if needed, then commit to ``cid`` in the current round; the sketch commitment to reveal with it."""
    info = contract.task(task_id)
    r = info.current_round if round_ is None else round_
    if not contract.is_trainer(task_id, trainer.address) or contract.seat(task_id, trainer.address).stake < info.stake:
        contract.join(trainer, task_id, info)
    sketch = commitment_of(cid)
    contract.commit(trainer, task_id, r, commit_hash(cid, sketch, SALT, trainer.address, task_id, r))
    return sketch


def close_commits(contract: MarketContract, task_id: int) -> None:
    """Move the clock to the commit deadline unless the task's every seat committed (commits then close early)."""
    info = contract.task(task_id)
    if info.committed_count < info.max_trainers:
        contract.chain.advance_to(info.opens_at(info.current_round) + info.submit_window)


def reveal(contract: MarketContract, trainer: LocalAccount, task_id: int, cid: str) -> None:
    info = contract.task(task_id)
    contract.reveal(trainer, task_id, info.current_round, cid, commitment_of(cid), SALT)


def close_reveals(contract: MarketContract, task_id: int, sealer: LocalAccount) -> None:
    """Seal the round unless the last reveal did: move the clock to the reveal deadline and call ``seal``."""
    info = contract.task(task_id)
    if info.seal_block == 0 and info.submitted_count:
        r = info.current_round
        contract.chain.advance_to(info.opens_at(r) + info.submit_window + info.reveal_window)
        contract.seal(sealer, task_id)


def commit_and_reveal(contract: MarketContract, task_id: int, updates: Sequence[tuple[LocalAccount, str]],
                      silent: Sequence[tuple[LocalAccount, str]] = (), sealer: LocalAccount | None = None) -> None:
    """One round's commit and reveal phases: every trainer in ``updates`` and ``silent`` commits (from the
    round's opening), those in ``updates`` reveal; then the reveals close (sealed by ``sealer``)."""
    open_round(contract, task_id)
    for acct, cid in [*updates, *silent]:
        commit(contract, acct, task_id, cid)
    close_commits(contract, task_id)
    for acct, cid in updates:
        reveal(contract, acct, task_id, cid)
    if sealer is not None:
        close_reveals(contract, task_id, sealer)


def post(contract: MarketContract, aggregator: LocalAccount, task_id: int, model_cid: str, receipt_cid: str,
         bps: list[int], lost_mask: int = 0) -> object:
    """Post the current round's result with the chain's seed."""
    info = contract.task(task_id)
    return contract.post_result(aggregator, task_id, info.current_round, model_cid, receipt_cid, bps,
                                seed=contract.round_seed(task_id, info), lost_mask=lost_mask)


def prove_available(contract: MarketContract, task_id: int, proofs: Sequence[tuple[LocalAccount, bytes]]) -> None:
    """Move the clock past every result window of the current round (no result came); each trainer then
    proves available the update it revealed (``blob``, whose CID it committed to with :func:`commit`)."""
    info = contract.task(task_id)
    r = info.current_round
    contract.chain.advance_to(info.opens_at(r) + info.results_end_offset)
    for acct, blob in proofs:
        contract.prove_available(acct, task_id, r, commitment_of(compute_cid(blob)), SALT, blob)


def past_windows(contract: MarketContract, task_id: int) -> None:
    """Move the clock past every window of the current round (it becomes settleable)."""
    info = contract.task(task_id)
    contract.chain.advance_to(info.opens_at(info.current_round + 1))


class ClockDriver:
    """For tests whose roles run as separate processes against a dev chain (Anvil): a thread that moves the
    chain's clock through the phases of ``task_id`` in which nobody is due to act, instead of sleeping
    through them.

    A round waiting for its scheduled opening is opened at once.  With ``patience`` (seconds), a phase
    that has not changed for that long (nobody committed or revealed meanwhile) is ended by moving the
    clock to its deadline: the commit window when not every seat committed, the reveal window when a
    committer does not reveal, the result windows when nobody posts.
    """

    def __init__(self, rpc: str, contract_address: str, task_id: int, patience: float | None = None,
                 poll: float = 0.3) -> None:
        import threading

        self.rpc, self.address, self.task_id = rpc, contract_address, task_id
        self.patience, self.poll = patience, poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"clock-driver-{task_id}", daemon=True)
        self.moves: list[tuple[int, str]] = []  # (round, phase) whose end the driver moved the clock to
        self.error: BaseException | None = None

    def __enter__(self) -> "ClockDriver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import time

        from market.chain.client import Chain
        from market.chain.contract import MarketContract, round_state

        try:
            contract = MarketContract(Chain.connect(self.rpc), self.address)
            seen: tuple[int, str, int, int] | None = None
            since = time.monotonic()
            while not self._stop.is_set():
                info = contract.task(self.task_id)
                if info.finished:
                    return
                state = round_state(info, contract.chain.clock())
                now = (state.round, state.phase, state.committed, state.submitted)
                if now != seen:
                    seen, since = now, time.monotonic()
                end = {"waiting": state.opens_at, "open": state.submit_deadline, "reveal": state.reveal_deadline,
                       "closed": state.result_deadline, "backup": state.final_deadline}.get(state.phase)
                waited = time.monotonic() - since
                if end is not None and (state.phase == "waiting"
                                        or (self.patience is not None and waited >= self.patience)):
                    contract.chain.advance_to(end)
                    self.moves.append((state.round, state.phase))
                    seen = None
                self._stop.wait(self.poll)
        except BaseException as exc:  # reported by the test, which reads ``error``
            self.error = exc
