"""`TrainerNode.run` as a data owner sees it (issue 12, rows 4, 6, 7, 14): one line per phase, what each
round credited (or why not), a late node that neither trains nor pays gas, a node whose every update was
rejected ending non-zero, and `--timeout` after a submission ending cleanly.

In-process chain, one thread: the node's ``say`` hook plays the other parties (the other trainers submit and
the aggregator posts when the node says it is waiting for the round to settle)."""

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
                          aggregator=env.accounts[1].address, rounds=rounds, reward_wei=ETH, max_trainers=max_trainers,
                          submit_window=window, result_window=window)
    return create_task(env.contract, env.store, env.accounts[0], request).task_id


def node(env: Environment, i: int, cls: type[TrainerNode] = TrainerNode, **kw: Any) -> TrainerNode:
    return cls(env.contract, env.store, env.accounts[2 + i], SPLITS.trainers[i], **kw)


def aggregator(env: Environment) -> Aggregator:
    return Aggregator(env.contract, env.store, env.accounts[1], SPLITS.validation)


def recorder(on_wait: Callable[[int], None] | None = None,
             on_late: Callable[[int], None] | None = None) -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        m = re.match(r"round (\d+): submitted .* waiting for round \d+ to settle$", line)
        if m and on_wait:
            on_wait(int(m.group(1)))
        m = re.match(r"round (\d+): too late: ", line)
        if m and on_late:
            on_late(int(m.group(1)))

    return lines, say


def test_a_node_prints_each_phase_and_what_it_earned(env: Environment) -> None:
    task_id = post(env, rounds=2, max_trainers=2)
    me, other, agg = node(env, 0), node(env, 1), aggregator(env)
    other.join(task_id)

    def others_then_aggregate(r: int) -> None:
        other.run_round(task_id)
        agg.run_round(task_id)

    lines, say = recorder(on_wait=others_then_aggregate)
    summary = me.run(task_id, say=say)

    credited = env.contract.credited_by_round(task_id)[me.address]  # round -> wei (a round valued 0 is absent)
    assert lines[0] == f"joined task {task_id} as {me.address}"
    expected = []
    for r in range(2):
        expected += [rf"round {r}: training on {len(SPLITS.trainers[0])} samples \(submissions close in \d+ s\)",
                     rf"round {r}: trained \(\d+\.\d s\)",
                     rf"round {r}: submitted bafk\w+ \(\d+ gas\); waiting for round {r} to settle",
                     rf"round {r}: settled: credited {credited.get(r, 0) / ETH:.6f} ETH"]
    expected.append(rf"task {task_id} finished: credited {sum(credited.values()) / ETH:.6f} ETH in all; "
                    r"withdraw with `market trainer withdraw`")
    assert len(lines) == 1 + len(expected), lines
    for line, pattern in zip(lines[1:], expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert summary.total_credited_wei == sum(credited.values()) > 0
    assert set(summary.outcomes) == {0, 1} and summary.outcomes[0] == "paid"


def test_an_outlier_is_told_it_was_flagged(env: Environment) -> None:
    task_id = post(env, spec=TaskSpec(), max_trainers=3)  # the default rule flags f = 1 outlier
    attacker = node(env, 2, attack="sign_flip")
    honest, agg = [node(env, 0), node(env, 1)], aggregator(env)
    for n in honest:
        n.join(task_id)

    def others_then_aggregate(r: int) -> None:
        for n in honest:
            n.run_round(task_id)
        agg.run_round(task_id)

    lines, say = recorder(on_wait=others_then_aggregate)
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
    task_id = post(env)
    me, agg = node(env, 0, LoudNode), aggregator(env)
    lines, say = recorder(on_wait=lambda r: agg.run_round(task_id))

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
    task_id = post(env, rounds=2, window=100)
    me = node(env, 0, CountingNode)
    me.join(task_id)
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
        env.chain.advance_time(100)
        env.contract.settle_without_result(env.accounts[5], task_id)

    lines, say = recorder(on_wait=lambda r: agg.run_round(task_id), on_late=settle)
    me.run(task_id, say=say)

    assert lines[0].startswith("round 0: too late: submissions closed at ")
    assert lines[0].endswith(" — waiting for the next round [MarketSubmissionClosed]")
    assert me.trained == 1 and any(ln.startswith("round 1: settled: credited ") for ln in lines), lines


def test_timeout_after_a_submission_stops_waiting_cleanly(env: Environment) -> None:
    task_id = post(env, max_trainers=2)  # the other trainer never comes: round 0 stays open
    me = node(env, 0)
    lines, say = recorder()

    summary = me.run(task_id, timeout=1, poll=0.1, say=say)  # returns: no exception, so `trainer run` exits 0

    assert summary.stopped_waiting and list(summary.submitted) == [0]
    assert lines[-1] == (f"round 0: stopped waiting after 1 s (--timeout) for the round to settle; your update stays "
                         f"submitted: see `market task status {task_id}`, or run again to keep going")


def test_a_timeout_before_any_submission_is_still_an_error(env: Environment) -> None:
    task_id = post(env, window=100)
    me = node(env, 0)
    me.join(task_id)
    env.chain.advance_time(101)  # late for round 0, and nobody settles it

    with pytest.raises(MarketError, match="timed out after 1 s waiting for round 0 of task"):
        me.run(task_id, timeout=1, poll=0.1, say=lambda line: None)
