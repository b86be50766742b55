"""`Aggregator.serve` prints one line per phase (issue 12, item 4; issue 14): waiting for the round's reveals (the
round opens by the task's schedule; commitments close at the deadline or with the task's full trainer count, reveals
when every committer revealed), aggregating, posted with what it credited and the stakes lost, finished; a round in
which nothing was revealed is settled (its pool refunded). In-process chain, one thread: the ``say`` hook plays the
trainers (and moves the chain's clock to the round's opening) when the aggregator says it is waiting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.service import Aggregator
from market.data import dataset_commitment, digits_splits
from market.spec import RobustSpec, TaskSpec
from owner.task import TaskRequest, create_task
from simulator.environment import Environment, open_environment
from trainer_node.node import TrainerNode

SPLITS = digits_splits(2, "iid", 0)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Environment]:
    with open_environment(chain="tester", n_accounts=4, store="local", store_dir=str(tmp_path / "store")) as e:
        yield e


def _task(env: Environment, rounds: int, stake: int = 0) -> int:
    spec = TaskSpec().model_copy(update={"robust": RobustSpec(rule="mean", f=0)})
    request = TaskRequest(spec=spec, validation_commitment=dataset_commitment(SPLITS.validation),
                          rounds=rounds, reward_wei=10**18, max_trainers=2,
                          stake_wei=stake)
    return create_task(env.contract, env.store, env.accounts[0], request).task_id


def test_serve_says_what_it_waits_for_and_what_it_posted(env: Environment) -> None:
    task_id = _task(env, rounds=2)
    nodes = [TrainerNode(env.contract, env.store, a, d) for a, d in zip(env.accounts[2:], SPLITS.trainers)]
    for n in nodes:
        n.join(task_id)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if "aggregating once reveals close" in line:
            info = env.contract.task(task_id)
            env.chain.advance_to(info.opens_at(info.current_round))  # the schedule, not a sleep
            for n in nodes:
                n.run_round(task_id)  # both seats committed: commitments close at once
            for n in nodes:
                n.reveal_round(task_id)  # the last reveal closes the reveal window

    Aggregator(env.contract, env.store, env.accounts[1], SPLITS.validation).serve(task_id, poll=0.05, say=say)

    credited = env.contract.credited(task_id)
    waiting = {0: r"submissions open \(closes in \d+ s\)", 1: r"round opens in \d+ s"}
    for r in range(2):
        i = 4 * r
        assert re.fullmatch(rf"round {r}: {waiting[r]}; aggregating once reveals close \(0 committed, 0 revealed so far, "
                            r"at most 2\)", lines[i]), lines[i]
        assert lines[i + 1] == f"round {r}: kept the round's seed on chain (its panel can no longer be drawn again)"
        assert lines[i + 2] == f"round {r}: reveals closed (2 updates of 2 committed); aggregating"
        m = re.fullmatch(rf"round {r}: posted model bafk\w+: credited (\d+\.\d{{6}}) ETH to (\d) trainers; 0 outliers, "
                         r"0 rejected; bps \[\d+, \d+\]; \d+ gas", lines[i + 3])
        assert m, lines[i + 3]
    assert lines[-1] == f"task {task_id} finished: every round is settled"
    assert len(lines) == 9
    assert sum(credited.values()) == 10**18


def test_serve_settles_a_round_nobody_revealed_in(env: Environment) -> None:
    task_id = _task(env, rounds=1, stake=10**16)
    node = TrainerNode(env.contract, env.store, env.accounts[2], SPLITS.trainers[0])
    node.join(task_id)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if "aggregating once reveals close" in line:
            node.run_round(task_id)  # commits, and never reveals
            info = env.contract.task(task_id)
            env.chain.advance_to(info.opens_at(0) + info.submit_window + info.reveal_window)

    Aggregator(env.contract, env.store, env.accounts[1], SPLITS.validation).serve(task_id, poll=0.05, say=say)

    assert lines[1] == "round 0: nothing was revealed: settled, its pool of 1.010000 ETH refunded"  # with the lost stake
    assert lines[-1] == f"task {task_id} finished: every round is settled"
    info = env.contract.task(task_id)
    # the stake lost in the last round, which paid nobody, cannot go to a later round's trainers: it is refunded
    assert (info.refunded, env.contract.stakes_lost(task_id)) == (10**18 + 10**16, {node.address: {0: 10**16}})
