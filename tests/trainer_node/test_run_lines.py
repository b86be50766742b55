"""`TrainerNode.run` as a data owner sees it (issue 12, rows 4, 6, 7, 14): one line per phase, what each
round credited (or why not), a late node that neither trains nor pays gas, a node whose every update was
rejected ending non-zero, and `--timeout` after a submission ending cleanly.

In-process chain, one thread: the node's ``say`` hook plays the other parties and the clock (the other
trainers commit when the node says it committed, reveal and the aggregator posts when it says it revealed,
and the chain's clock moves to a round's scheduled opening when the node says it is waiting for it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aggregator.service import Aggregator
from market.data import dataset_commitment, digits_splits
from market.errors import MarketError
from market.spec import RobustSpec, TaskSpec
from market.tensors import decode_state, encode_state
from owner.task import TaskRequest, create_task
from simulator.environment import Environment, open_environment
from trainer_node.node import SubmissionsClosed, TrainerNode, UpdatesRejected

ETH = 10**18
MEAN = TaskSpec().model_copy(update={"robust": RobustSpec(rule="mean", f=0)})


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Environment]:
    with open_environment(chain="tester", n_accounts=6, store="local", store_dir=str(tmp_path / "store")) as e:
        yield e


SPLITS = digits_splits(3, "iid", 0)


def post(env: Environment, spec: TaskSpec = MEAN, rounds: int = 1, max_trainers: int = 1, window: int = 3600) -> int:
    request = TaskRequest(spec=spec, validation_commitment=dataset_commitment(SPLITS.validation),
                          rounds=rounds, reward_wei=ETH, max_trainers=max_trainers,
                          submit_window=window, result_window=window)
    return create_task(env.contract, env.store, env.accounts[0], request).task_id


def node(env: Environment, i: int, cls: type[TrainerNode] = TrainerNode, **kw: Any) -> TrainerNode:
    return cls(env.contract, env.store, env.accounts[2 + i], SPLITS.trainers[i], **kw)


def aggregator(env: Environment) -> Aggregator:
    return Aggregator(env.contract, env.store, env.accounts[1], SPLITS.validation)


Hook = Callable[[int], None]


def recorder(env: Environment, task_id: int, *, on_commit: Hook | None = None, on_reveal: Hook | None = None,
             on_late: Hook | None = None) -> tuple[list[str], Callable[[str], None]]:
    """The node's ``say``: records the lines and, on some of them, lets the others (and time) move."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        hooks: list[tuple[str, Hook | None]] = [
            (r"round (\d+): committed to .*; revealing once submissions close$", on_commit),
            (r"round (\d+): revealed .*; waiting for round \d+ to settle$", on_reveal),
            (r"round (\d+): too late: ", on_late),
            (r"round (\d+): opens in \d+ s \(the task's schedule\)$", open_round_hook(env, task_id)),
        ]
        for pattern, hook in hooks:
            m = re.match(pattern, line)
            if m and hook:
                hook(int(m.group(1)))

    return lines, say


def open_round_hook(env: Environment, task_id: int) -> Hook:
    """Time passes until round ``r`` opens (the schedule is fixed: posting early does not open it early)."""
    return lambda r: env.chain.advance_to(env.contract.task(task_id).opens_at(r))


def test_a_node_prints_each_phase_and_what_it_earned(env: Environment) -> None:
    task_id = post(env, rounds=2, max_trainers=2)
    me, other, agg = node(env, 0), node(env, 1), aggregator(env)
    other.join(task_id)

    def others_reveal_then_aggregate(r: int) -> None:
        other.reveal_round(task_id)  # the last reveal closes the reveals
        agg.run_round(task_id)

    lines, say = recorder(env, task_id, on_commit=lambda r: other.run_round(task_id),  # the second seat: commits close
                          on_reveal=others_reveal_then_aggregate)
    summary = me.run(task_id, say=say)

    credited = env.contract.credited_by_round(task_id)[me.address]  # round -> wei (a round valued 0 is absent)
    assert lines[0] == f"joined task {task_id} as {me.address}"
    # a panel of one: the trainer is told who alone decides its pay
    assert lines[1] == (f"note: task {task_id} is judged by one drawn aggregator (a panel of 1, quorum 1): it alone "
                        "decides every trainer's pay, and nobody checks it")
    expected = []
    for r in range(2):
        if r:
            expected.append(rf"round {r}: opens in \d+ s \(the task's schedule\)")
        expected += [rf"round {r}: training on {len(SPLITS.trainers[0])} samples \(submissions close in \d+ s\)",
                     rf"round {r}: trained \(\d+\.\d s\)",
                     rf"round {r}: committed to bafk\w+ \(\d+ gas\); revealing once submissions close",
                     rf"round {r}: revealed bafk\w+ \(\d+ gas\); waiting for round {r} to settle",
                     rf"round {r}: settled: credited {credited.get(r, 0) / ETH:.6f} ETH"]
    expected.append(rf"task {task_id} finished: credited {sum(credited.values()) / ETH:.6f} ETH in all; "
                    r"withdraw with `market trainer withdraw`")
    assert len(lines) == 2 + len(expected), lines
    for line, pattern in zip(lines[2:], expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert summary.total_credited_wei == sum(credited.values()) > 0
    assert set(summary.outcomes) == {0, 1} and summary.outcomes[0] == "paid"
    assert summary.revealed == summary.submitted


def test_an_outlier_is_told_it_was_flagged(env: Environment) -> None:
    task_id = post(env, spec=TaskSpec(), max_trainers=3)  # the default rule flags f = 1 outlier
    attacker = node(env, 2, attack="sign_flip")
    honest, agg = [node(env, 0), node(env, 1)], aggregator(env)
    for n in honest:
        n.join(task_id)

    def others_commit(r: int) -> None:
        for n in honest:
            n.run_round(task_id)

    def others_reveal_then_aggregate(r: int) -> None:
        for n in honest:
            n.reveal_round(task_id)
        agg.run_round(task_id)

    lines, say = recorder(env, task_id, on_commit=others_commit, on_reveal=others_reveal_then_aggregate)
    attacker.run(task_id, say=say)

    assert "round 0: flagged as an outlier: paid 0" in lines
    assert lines[-1] == f"task {task_id} finished: credited 0.000000 ETH in all; withdraw with `market trainer withdraw`"


class LoudNode(TrainerNode):
    """Submits its update scaled up 10,000 times (as unscaled features would): over the spec's norm bound."""

    def prepare_update(self, view: Any) -> tuple[bytes, int]:
        blob, n = super().prepare_update(view)
        state, meta = decode_state(blob)
        return encode_state({k: v * 10_000 for k, v in state.items()}, meta), n


def test_a_node_whose_every_update_was_rejected_ends_non_zero(env: Environment) -> None:
    # an honest trainer takes part too: the round is paid to it, and this node learns its update was rejected
    task_id = post(env, max_trainers=2)
    me, other, agg = node(env, 0, LoudNode), node(env, 1), aggregator(env)
    other.join(task_id)

    def others_reveal_then_aggregate(r: int) -> None:
        other.reveal_round(task_id)
        agg.run_round(task_id)

    lines, say = recorder(env, task_id, on_commit=lambda r: other.run_round(task_id), on_reveal=others_reveal_then_aggregate)

    with pytest.raises(UpdatesRejected) as exc:
        me.run(task_id, say=say)

    assert any(re.fullmatch(r"round 0: rejected: update norm \S+ exceeds max_update_norm 100", ln) for ln in lines), lines
    assert str(exc.value).startswith(f"task {task_id} finished: every update you submitted was rejected (round 0: "
                                     "update norm")
    assert "\n" not in str(exc.value) and exc.value.exit_code != 0


class CountingNode(TrainerNode):
    trained = 0

    def prepare_update(self, view: Any) -> tuple[bytes, int]:
        self.trained += 1
        return super().prepare_update(view)


def test_a_late_node_neither_trains_nor_pays_gas(env: Environment) -> None:
    task_id = post(env, rounds=2, max_trainers=2, window=100)
    me, other = node(env, 0, CountingNode), node(env, 1)
    me.join(task_id)
    other.join(task_id)
    other.run_round(task_id)  # round 0 has a committer: it goes on to its reveals without this node
    env.chain.advance_time(101)
    balance = env.chain.balance(me.address)

    with pytest.raises(SubmissionsClosed) as exc:
        me.run(task_id, once=True, say=lambda line: None)

    assert re.fullmatch(r"round 0: too late: submissions closed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(unix \d+, \d+ s ago\)"
                        r" — run again once the next round opens \[MarketSubmissionClosed\]", str(exc.value)), str(exc.value)
    assert me.trained == 0 and env.chain.balance(me.address) == balance  # no training, no transaction

    # without --once it waits for the next round (here settled by the fallback) and trains in that one
    agg = aggregator(env)

    def settle(r: int) -> None:
        other.reveal_round(task_id)
        env.chain.advance_to(env.contract.task(task_id).opens_at(r + 1))  # the aggregator never posts
        env.contract.settle_without_result(env.accounts[5], task_id)

    def close_commits(r: int) -> None:  # the other trainer sits round 1 out: commits close at the deadline
        info = env.contract.task(task_id)
        env.chain.advance_to(info.opens_at(r) + info.submit_window)

    lines, say = recorder(env, task_id, on_late=settle, on_commit=close_commits, on_reveal=lambda r: agg.run_round(task_id))
    me.run(task_id, say=say)

    assert lines[0].startswith("round 0: too late: submissions closed at ")
    assert lines[0].endswith(" — waiting for the next round [MarketSubmissionClosed]")
    assert [ln for ln in lines if "too late" in ln] == lines[:1]  # said once
    assert env.contract.round_info(task_id, 0).settlement == "fallback"
    assert me.trained == 1 and any(ln.startswith("round 1: settled: credited ") for ln in lines), lines


def test_timeout_after_a_commitment_stops_waiting_cleanly_and_a_rerun_reveals(env: Environment) -> None:
    task_id = post(env, max_trainers=2)  # the other trainer never comes: round 0's commits stay open
    me = node(env, 0)
    lines, say = recorder(env, task_id)

    summary = me.run(task_id, timeout=1, poll=0.1, say=say)  # returns: no exception, so `trainer run` exits 0

    assert summary.stopped_waiting and list(summary.submitted) == [0] and not summary.revealed
    info = env.contract.task(task_id)
    reveal_deadline = info.opens_at(0) + info.submit_window + info.reveal_window
    assert lines[-1] == (f"round 0: stopped waiting after 1 s (--timeout) for round 0 of task {task_id} to move on; "
                         f"your commitment is not revealed yet: run again before unix time {reveal_deadline} or the stake "
                         f"is lost; see `market task status {task_id}`, or run again to keep going")

    env.chain.advance_to(info.opens_at(0) + info.submit_window)  # the commits close
    again, (rerun, say_again) = node(env, 0), recorder(env, task_id)  # a new process: nothing in memory
    summary = again.run(task_id, once=True, say=say_again)

    assert rerun[-1].startswith("round 0: revealed ") and summary.revealed == {0: env.contract.submissions(task_id, 0)[0].cid}
    assert [s.trainer for s in env.contract.submissions(task_id, 0)] == [me.address]


def test_a_timeout_before_any_submission_is_still_an_error(env: Environment) -> None:
    task_id = post(env, max_trainers=2, window=100)
    me, other = node(env, 0), node(env, 1)
    me.join(task_id)
    other.join(task_id)
    other.run_round(task_id)
    env.chain.advance_time(101)  # late for round 0, and nobody moves it on

    with pytest.raises(MarketError, match="timed out after 1 s waiting for round 0 of task"):
        me.run(task_id, timeout=1, poll=0.1, say=lambda line: None)


def test_a_node_proves_its_update_available_when_no_result_comes_and_the_fallback_pays_it(env: Environment) -> None:
    task_id = post(env, rounds=1, max_trainers=2)
    me, other = node(env, 0), node(env, 1)
    other.join(task_id)

    def silent_aggregator(r: int) -> None:  # nobody posts: time runs past every result window
        other.reveal_round(task_id)
        info = env.contract.task(task_id)
        env.chain.advance_to(info.opens_at(r) + info.results_end_offset)

    lines, record = recorder(env, task_id, on_commit=lambda r: other.run_round(task_id), on_reveal=silent_aggregator)

    def say(line: str) -> None:
        record(line)
        if re.match(r"round 0: no result came; proved the update bafk\w+ available on chain \(\d+ gas\)$", line):
            env.chain.advance_to(env.contract.task(task_id).opens_at(1))  # the availability window ends

    summary = me.run(task_id, say=say)

    assert any(ln.startswith("round 0: no result came; proved the update ") for ln in lines), lines
    assert "round 0: its windows are over: settled it (fallback)" in lines
    assert env.contract.available(task_id, 0) == [me.address]  # the other trainer never proved its update
    assert summary.total_credited_wei == ETH and env.contract.credited(task_id, 0) == {me.address: ETH}
    assert any(ln == "round 0: settled without the aggregator's result (equal split among the updates proved "
               "available): credited 1.000000 ETH" for ln in lines), lines
