"""Read side of the HTTP API, the dashboard and ``market task results --plot``.

A task's rounds, submissions, contributions and payouts, assembled from the two
sources of truth and nothing else: the chain (the contract's view functions and
its event logs, through :class:`market.chain.contract.MarketContract`) and the content
store (receipts and specs, fetched by CID and re-hashed on read).  Nothing is
kept between requests except documents addressed by CID, which cannot change.

A request's reads run between two looks at the block number; if a block landed
meanwhile they are repeated, so an answer does not mix two chain states (a round
shown settled with its credits missing).  Reads go through the public methods of
``MarketContract`` (which check reveal events against the on-chain digest); only
``TrainerCredited`` and ``Withdrawn`` events are read here directly.  Every amount is per task:
the contract keeps each task's balances apart (``owed(task, account)``, ``withdraw(task)``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from market.chain.contract import MarketContract, RoundInfo, RoundState, Submission, TaskInfo, round_state
from market.cid import normalize_cid
from market.errors import ChainError, DataError, MarketError, NotFoundError, StoreError, UnknownTaskError
from market.receipt import Receipt
from market.spec import TaskSpec, parse_spec
from market.store import ContentStore, get_json
from market_app.api.models import (
    ChainStatus,
    ContributionMatrix,
    LayerView,
    ModelView,
    Payouts,
    RoundList,
    RoundView,
    SubmissionList,
    SubmissionView,
    TaskDetail,
    TaskList,
    TaskOverview,
    TaskSummary,
    TrainerPayout,
    TrainerRound,
)

T = TypeVar("T")
SETTLED = ("result", "fallback", "refunded")
MODES = {"result": 1, "fallback": 2, "refunded": 3}
STORE_HINT = "serve with the same --store/--store-dir as the aggregator"


def spec_name(spec: Any) -> str | None:
    """A task's name from its spec document: ``name``, else ``data.name``, else None."""
    if not isinstance(spec, dict):
        return None
    name = spec.get("name")
    if not (isinstance(name, str) and name.strip()):
        data = spec.get("data")
        name = data.get("name") if isinstance(data, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else None


def task_name(store: ContentStore, spec_cid: str) -> str | None:
    """The name of the task whose spec is ``spec_cid`` (see :func:`spec_name`); None when the spec cannot be read.

    For ``market task status`` and anything else that has a store and a spec CID but no :class:`MarketReader`.
    """
    try:
        return spec_name(get_json(store, spec_cid))
    except MarketError:
        return None


def model_view(spec: TaskSpec) -> ModelView:
    """The spec's model as the API shows it: every layer's output shape and weights, and the totals."""
    summary = spec.model.summary(spec.data)
    return ModelView(arch=spec.model.arch, parameters=summary.params, macs=summary.macs, input_shape=list(summary.input_shape),
                     layers=[LayerView(layer=r.text, out_shape=list(r.out_shape), parameters=r.params) for r in summary.layers],
                     onnx_cid=spec.model.onnx_cid)


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats (which JSON cannot carry) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass
class _TaskEvents:
    """Task-wide facts read once per request: a fixed number of log queries, whatever the rounds."""

    joined: list[str]  # trainers in joining order
    settled: dict[int, dict[str, int]]  # round -> RoundSettled fields
    results: dict[int, RoundInfo]  # round -> settlement and result CIDs
    submissions: dict[int, list[Submission]]  # round -> digest-checked reveals (join order)
    credited: dict[str, dict[int, int]]  # trainer -> round -> wei
    commitments: dict[int, dict[str, tuple[bytes, int]]]  # round -> trainer -> (commit hash, block)
    stakes_lost: dict[str, dict[int, int]]  # trainer -> round -> wei
    stakes_returned: dict[str, int]  # trainer -> wei
    withdrawn: dict[str, int]  # trainer -> wei withdrawn from this task


class MarketReader:
    """Answers the API's questions from the chain and the store; thread-safe."""

    def __init__(self, contract: MarketContract, store: ContentStore, cache_size: int = 256) -> None:
        self.contract = contract
        self.store = store
        self.cache_size = cache_size
        self._docs: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._chain_id: int | None = None

    # ------------------------------------------------------------- plumbing
    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.contract.chain.with_retry(lambda: self.contract.chain.w3.eth.chain_id, "read chain id"))
        return self._chain_id

    def _block(self) -> int:
        return int(self.contract.chain.with_retry(lambda: self.contract.chain.w3.eth.block_number, what="read block number"))

    def consistent(self, read: Callable[[], T], attempts: int = 4, error_attempts: int = 16) -> T:
        """Run ``read()`` until no block lands while it runs (after ``attempts`` answers, the last one stands).

        An answer never mixes two chain states unless the chain moved during every attempt.  A mismatch
        between events and state (a ``ChainError``) seen while the chain moved is read again, up to
        ``error_attempts`` times: on a chain with short block times a read of a busy task can span a
        block, and its events then disagree with its state for a reason that is not an inconsistency.
        """
        with self._lock:
            answers = errors = 0
            while True:
                block = self._block()
                try:
                    out = read()
                except ChainError:
                    errors += 1
                    if errors < error_attempts and self._block() != block:
                        continue
                    raise
                answers += 1
                if answers >= attempts or self._block() == block:
                    return out

    def _logs(self, event: str, from_block: int, **filters: Any) -> list[Any]:
        ev = getattr(self.contract.c.events, event)
        logs = self.contract.chain.with_retry(
            lambda: ev.get_logs(from_block=from_block, argument_filters=filters or None),
            what=f"read {event} logs",
        )
        return sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))

    def document(self, cid: str) -> Any:
        """A JSON document from the store by CID (re-hashed on read); cached, since a CID cannot change."""
        key = normalize_cid(cid)
        with self._lock:
            if key in self._docs:
                self._docs.move_to_end(key)
                return self._docs[key]
        doc = get_json(self.store, cid)
        with self._lock:
            self._docs[key] = doc
            while len(self._docs) > self.cache_size:
                self._docs.popitem(last=False)
        return doc

    # --------------------------------------------------------------- chain
    def status(self, creator: str | None = None, since: int | None = None) -> ChainStatus:
        chain = self.contract.chain

        def read() -> ChainStatus:
            head = chain.with_retry(lambda: chain.w3.eth.get_block("latest"), what="read the latest block")
            block = int(head["number"])
            events = None
            if since is not None:
                events = 0 if since >= block else len(chain.with_retry(
                    lambda: chain.w3.eth.get_logs({"address": self.contract.address, "fromBlock": since + 1, "toBlock": block}),
                    what="read the contract's events",
                ))
            return ChainStatus(
                chain_id=self.chain_id, contract=self.contract.address, block=block,
                chain_time=int(head["timestamp"]), task_count=self.contract.task_count(),
                can_create_tasks=creator is not None, creator=creator, events_since=events,
            )

        return self.consistent(read)

    def task_info(self, task_id: int) -> TaskInfo:
        count = self.contract.task_count()
        if not 1 <= task_id <= count:
            known = f"ids 1..{count}" if count else "none yet"
            raise UnknownTaskError(f"unknown task {task_id}: this contract has {count} tasks ({known}); GET /api/tasks lists them")
        return self.contract.task(task_id)

    def name(self, spec_cid: str) -> str | None:
        """The task's name from its spec (read by CID, cached); None when the spec cannot be read."""
        try:
            return spec_name(self.document(spec_cid))
        except MarketError:
            return None

    def summary(self, info: TaskInfo) -> TaskSummary:
        return TaskSummary(
            task_id=info.task_id, name=self.name(info.spec_cid), status="finished" if info.finished else "open", owner=info.owner,
            panel=info.panel, quorum=info.quorum, fee_bps=info.fee_bps, token=info.token, rounds=info.rounds, current_round=info.current_round,
            rounds_settled=min(info.current_round, info.rounds), trainer_count=info.trainer_count,
            max_trainers=info.max_trainers, reward_wei=str(info.reward), escrow_wei=str(info.escrow),
            credited_wei=str(info.credited), refunded_wei=str(info.refunded), spec_cid=info.spec_cid,
            created_block=info.created_block,
        )

    def list_tasks(self, offset: int = 0, limit: int = 100) -> TaskList:
        """Tasks newest first."""

        def read() -> TaskList:
            total = self.contract.task_count()
            first = total - offset
            ids = range(first, max(first - limit, 0), -1) if first > 0 else range(0)
            return TaskList(total=total, tasks=[self.summary(self.contract.task(i)) for i in ids])

        return self.consistent(read)

    def _events(self, info: TaskInfo) -> _TaskEvents:
        tid = info.task_id
        order = self.contract.join_order(tid, info)
        results = self.contract.settled_rounds(tid, info)
        settled = {r: {"round": r, "mode": MODES.get(ri.settlement, 0), "credited": ri.credited, "refunded": ri.refunded}
                   for r, ri in results.items()}
        credited: dict[str, dict[int, int]] = {}
        for e in self._logs("TrainerCredited", info.created_block, taskId=tid):  # one query, chain order
            a, r, wei = str(e["args"]["trainer"]), int(e["args"]["round"]), int(e["args"]["amount"])
            per = credited.setdefault(a, {})
            per[r] = per.get(r, 0) + wei
        commitments: dict[int, dict[str, tuple[bytes, int]]] = {}
        for e in self._logs("UpdateCommitted", info.created_block, taskId=tid):
            commitments.setdefault(int(e["args"]["round"]), {})[str(e["args"]["trainer"])] = (
                bytes(e["args"]["commitment"]), int(e["blockNumber"]))
        withdrawn: dict[str, int] = {}
        for e in self._logs("Withdrawn", info.created_block, taskId=tid):
            a = str(e["args"]["account"])
            withdrawn[a] = withdrawn.get(a, 0) + int(e["args"]["amount"])
        return _TaskEvents(
            sorted(order, key=order.__getitem__), settled, results,
            self.contract.all_submissions(tid, info, results), credited, commitments,
            self.contract.stakes_lost(tid, info), self.contract.stakes_returned(tid, info), withdrawn,
        )

    # --------------------------------------------------------------- tasks
    def _state(self, info: TaskInfo) -> RoundState:
        """The current round's phase by ``Chain.clock()`` (an idle dev chain's latest block does not move); a
        finished task needs no clock read."""
        return round_state(info, 0 if info.finished else self.contract.chain.clock())

    def _detail(self, info: TaskInfo, events: _TaskEvents, state: RoundState | None = None) -> TaskDetail:
        state = state or self._state(info)
        times: dict[str, int | None] = dict.fromkeys(
            ("opens_at", "submission_deadline", "reveal_deadline", "result_deadline", "final_deadline", "round_end"))
        if not info.finished:  # the contract's schedule(), from the task already read
            times = {"opens_at": state.opens_at, "submission_deadline": state.submit_deadline,
                     "reveal_deadline": state.reveal_deadline, "result_deadline": state.result_deadline,
                     "final_deadline": state.final_deadline, "round_end": state.round_end}
        spec: dict[str, Any] | None = None
        spec_error = None
        try:
            doc = self.document(info.spec_cid)
            spec = json_safe(doc) if isinstance(doc, dict) else None
            spec_error = None if spec is not None else "the spec is not a JSON object"
        except StoreError as exc:
            spec_error = f"{exc} ({STORE_HINT})"
        except MarketError as exc:
            spec_error = str(exc)
        model = None
        if spec is not None:
            try:
                model = model_view(parse_spec(spec, f"spec {info.spec_cid}"))
            except MarketError as exc:  # a spec nobody can train: say why
                spec_error = str(exc)
        return TaskDetail(
            **self.summary(info).model_dump(), verifier=info.verifier,
            backup=info.has_backup, fees_wei=str(info.fees), submit_window=info.submit_window,
            reveal_window=info.reveal_window, result_window=info.result_window, period=info.period,
            start_at=info.start_at, stake_wei=str(info.stake), stakes_held_wei=str(info.stakes_held),
            empty_rounds_to_reclaim=info.empty_rounds_to_reclaim, empty_streak=info.empty_streak,
            validation_commitment=info.validation_commitment, **times,
            committed_count=0 if info.finished else state.committed,
            revealed_count=0 if info.finished else state.submitted,
            chain_time=self.contract.chain.now(),
            round_state=state.phase, round_state_text=state.text(),  # type: ignore[arg-type]
            trainers=events.joined, spec=spec, spec_error=spec_error, model=model,
        )

    def task_detail(self, task_id: int) -> TaskDetail:
        def read() -> TaskDetail:
            info = self.task_info(task_id)
            return self._detail(info, self._events(info))

        return self.consistent(read)

    def overview(self, task_id: int) -> TaskOverview:
        """Detail, rounds and payouts of a task from one chain state (what the dashboard draws)."""

        def read() -> TaskOverview:
            info = self.task_info(task_id)
            events = self._events(info)
            state = self._state(info)  # one clock read for the detail and the rounds
            views = self._all_rounds(info, events, state)
            return TaskOverview(task=self._detail(info, events, state), rounds=views, payouts=self._payouts(info, events, views))

        return self.consistent(read)

    # -------------------------------------------------------------- rounds
    def _receipt(self, task_id: int, round_: int, cid: str) -> tuple[Receipt | None, str | None]:
        try:
            doc = self.document(cid)
        except StoreError as exc:
            return None, f"{exc} ({STORE_HINT})"
        except MarketError as exc:
            return None, str(exc)
        try:
            receipt = Receipt.from_json(doc, f"receipt {cid}")
        except DataError as exc:
            return None, str(exc)
        if json_safe(doc) != doc:
            return None, f"receipt {cid} is not a round receipt: it holds non-finite numbers"
        if (receipt.task_id, receipt.round) != (task_id, round_):
            return None, f"receipt {cid} is for task {receipt.task_id} round {receipt.round}, not task {task_id} round {round_}"
        return receipt, None

    def _round_view(self, info: TaskInfo, events: _TaskEvents, r: int, state: RoundState | None = None) -> RoundView:
        tid = info.task_id
        ri = events.results.get(r) or RoundInfo(info.submissions_digest, None, None, "open")
        subs = events.submissions.get(r, [])  # checked against the on-chain digest
        commits = events.commitments.get(r, {})
        credited = {str(a): per[r] for a, per in events.credited.items() if r in per}
        lost = {str(a): per[r] for a, per in events.stakes_lost.items() if r in per}
        settled = events.settled.get(r)
        receipt, receipt_error = (None, None)
        if ri.receipt_cid:
            receipt, receipt_error = self._receipt(tid, r, ri.receipt_cid)
        status = ri.settlement if ri.settlement in ("open", *SETTLED) else "open"
        phase, phase_text = "settled", "settled"
        now: RoundState | None = None
        if status not in SETTLED:  # the current round: its phase by the chain's state and clock
            now = state or self._state(info)
            phase, phase_text = now.phase, now.text()
        # a commitment not revealed is "committed" while the reveal window may still take it
        reveals_open = now is not None and now.phase in ("waiting", "open", "reveal")
        revealed = {s.trainer: s for s in subs}
        lines: list[TrainerRound] = []
        for a in dict.fromkeys([*events.joined, *revealed, *commits]):
            common = {"address": a, "credited_wei": str(credited.get(a, 0)), "stake_lost_wei": str(lost.get(a, 0))}
            if a not in revealed:
                if a in commits:
                    lines.append(TrainerRound(status="committed" if reveals_open else "not_revealed", **common))  # type: ignore[arg-type]
                else:
                    lines.append(TrainerRound(status="not_submitted", **common))  # type: ignore[arg-type]
                continue
            line_status, reason = "submitted", None
            if ri.settlement == "fallback":
                line_status = "fallback"
            elif receipt is not None and a in receipt.rejected:
                line_status, reason = "rejected", receipt.rejected[a]
            elif receipt is not None and a in receipt.outliers:
                line_status = "outlier"
            elif ri.settlement == "result":
                line_status = "kept"
            lines.append(TrainerRound(
                status=line_status, reason=reason, update_cid=revealed[a].cid,  # type: ignore[arg-type]
                contribution=receipt.contributions.get(a) if receipt else None,
                bps=receipt.bps.get(a) if receipt else None, **common,
            ))
        views: list[SubmissionView] = []
        for a in dict.fromkeys([*events.joined, *revealed, *commits]):
            sealed = commits.get(a)
            commit_hash = "0x" + sealed[0].hex() if sealed else None
            if a in revealed:
                s = revealed[a]
                views.append(SubmissionView(trainer=s.trainer, status="revealed", cid=s.cid,
                                            commitment="0x" + s.commitment.hex(), commit_hash=commit_hash, block=s.block))
            elif sealed is not None:
                views.append(SubmissionView(trainer=a, status="committed" if reveals_open else "not_revealed",
                                            commit_hash=commit_hash, block=sealed[1]))
        robust = receipt.details.robust if receipt else {}
        seed = "0x" + ri.seed.hex() if ri.settlement == "result" else None
        return RoundView(
            round=r, status=status, settled=status in SETTLED,  # type: ignore[arg-type]
            phase=phase, phase_text=phase_text,  # type: ignore[arg-type]
            committed=len(commits), revealed=len(subs), seed=seed,
            pool_wei=str(info.round_pool(r)), stakes_lost_wei=str(sum(lost.values())),
            credited_wei=str(sum(credited.values())),
            refunded_wei=str(settled.get("refunded", 0) if settled else 0),
            model_cid=ri.model_cid, receipt_cid=ri.receipt_cid,
            accuracy=receipt.accuracy if receipt else None,
            accuracy_survivors=receipt.details.accuracy_after if receipt else None,
            accuracy_before=receipt.details.accuracy_before if receipt else None,
            robust_rule=str(robust.get("applied") or robust.get("rule")) if robust else None,
            valuation=receipt.details.valuation if receipt else None,
            outliers=receipt.outliers if receipt else [], rejected=receipt.rejected if receipt else {},
            contributions=receipt.contributions if receipt else {}, bps=receipt.bps if receipt else {},
            credited_by_trainer={a: str(v) for a, v in credited.items()},
            submissions=views, trainers=lines, receipt_error=receipt_error,
        )

    @staticmethod
    def opened_rounds(info: TaskInfo) -> int:
        """Rounds that have opened so far: all of them once finished, else up to the current one."""
        return min(info.current_round + 1, info.rounds)

    def _check_round(self, info: TaskInfo, round_: int) -> None:
        if not 0 <= round_ < self.opened_rounds(info):
            if round_ < info.rounds:
                raise NotFoundError(f"task {info.task_id} round {round_} has not opened yet (the task is in round {info.current_round})")
            raise NotFoundError(f"task {info.task_id} has {info.rounds} rounds (0..{info.rounds - 1}); round {round_} does not exist")

    def _all_rounds(self, info: TaskInfo, events: _TaskEvents, state: RoundState | None = None) -> list[RoundView]:
        state = state or self._state(info)
        return [self._round_view(info, events, r, state) for r in range(self.opened_rounds(info))]

    def rounds(self, task_id: int) -> RoundList:
        def read() -> RoundList:
            info = self.task_info(task_id)
            return RoundList(task_id=task_id, rounds=self._all_rounds(info, self._events(info)))

        return self.consistent(read)

    def round(self, task_id: int, round_: int) -> RoundView:
        def read() -> RoundView:
            info = self.task_info(task_id)
            self._check_round(info, round_)
            return self._round_view(info, self._events(info), round_)

        return self.consistent(read)

    def submissions(self, task_id: int, round_: int) -> SubmissionList:
        return SubmissionList(task_id=task_id, round=round_, submissions=self.round(task_id, round_).submissions)

    def receipt(self, task_id: int, round_: int) -> dict[str, Any]:
        def read() -> str:
            info = self.task_info(task_id)
            self._check_round(info, round_)
            ri = self.contract.round_info(task_id, round_)
            if not ri.receipt_cid:
                raise NotFoundError(f"task {task_id} round {round_} has no receipt (status {ri.settlement}): "
                                    "only rounds settled by the aggregator's result have one")
            return ri.receipt_cid

        cid = self.consistent(read)
        try:
            doc = self.document(cid)
        except StoreError as exc:
            raise NotFoundError(f"{exc} ({STORE_HINT})") from None
        return {"receipt_cid": cid, "receipt": json_safe(doc)}

    # ---------------------------------------------------------- aggregates
    def contributions(self, task_id: int) -> ContributionMatrix:
        rl = self.rounds(task_id)
        settled = [r for r in rl.rounds if r.settled]
        trainers = list(dict.fromkeys(t.address for r in rl.rounds for t in r.trainers))
        by_round = [{t.address: t for t in r.trainers} for r in settled]
        return ContributionMatrix(
            task_id=task_id, trainers=trainers, rounds=[r.round for r in settled],
            bps=[[(m[a].bps or 0) if a in m else 0 for a in trainers] for m in by_round],
            shares=[[(m[a].contribution or 0.0) if a in m else 0.0 for a in trainers] for m in by_round],
            status=[[m[a].status if a in m else "not_submitted" for a in trainers] for m in by_round],
        )

    def _payouts(self, info: TaskInfo, events: _TaskEvents, views: list[RoundView]) -> Payouts:
        trainers = []
        for a in events.joined:
            lines = [next((t for t in v.trainers if t.address == a), None) for v in views]
            by_round = [t.credited_wei if t else "0" for t in lines]
            trainers.append(TrainerPayout(
                address=a, credited_wei=str(sum(int(x) for x in by_round)), credited_by_round=by_round,
                owed_wei=str(self.contract.owed(info.task_id, a)), withdrawn_wei=str(events.withdrawn.get(a, 0)),
                stake_wei=str(self.contract.seat(info.task_id, a).stake),
                stake_lost_wei=str(sum(events.stakes_lost.get(a, {}).values())),
                stake_returned_wei=str(events.stakes_returned.get(a, 0)),
                rounds_kept=sum(1 for t in lines if t and t.status == "kept"),
                rounds_outlier=sum(1 for t in lines if t and t.status == "outlier"),
                rounds_rejected=sum(1 for t in lines if t and t.status == "rejected"),
            ))
        return Payouts(
            task_id=info.task_id, token=info.token, reward_wei=str(info.reward), credited_wei=str(info.credited),
            refunded_wei=str(info.refunded), escrow_wei=str(info.escrow), refundable_wei=str(info.refundable),
            stake_wei=str(info.stake), stakes_held_wei=str(info.stakes_held),
            stakes_lost_wei=str(sum(v for per in events.stakes_lost.values() for v in per.values())), trainers=trainers,
        )

    def payouts(self, task_id: int) -> Payouts:
        def read() -> Payouts:
            info = self.task_info(task_id)
            events = self._events(info)
            return self._payouts(info, events, self._all_rounds(info, events))

        return self.consistent(read)
