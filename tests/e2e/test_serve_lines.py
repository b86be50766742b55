"""`Aggregator.serve` prints one line per phase (issue 12, item 4): waiting for submissions (until the deadline or
the task's full trainer count), aggregating, posted with what it credited, finished. In-process chain, one thread:
the ``say`` hook plays the trainers when the aggregator says it is waiting."""

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


def test_serve_says_what_it_waits_for_and_what_it_posted(env: Environment) -> None:
    spec = TaskSpec().model_copy(update={"robust": RobustSpec(rule="mean", f=0)})
    request = TaskRequest(spec=spec, validation_commitment=dataset_commitment(SPLITS.validation),
                          aggregator=env.accounts[1].address, rounds=2, reward_wei=10**18, max_trainers=2)
    task_id = create_task(env.contract, env.store, env.accounts[0], request).task_id
    nodes = [TrainerNode(env.contract, env.store, a, d) for a, d in zip(env.accounts[2:], SPLITS.trainers)]
    for n in nodes:
        n.join(task_id)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if "waiting for submissions" in line:
            for n in nodes:
                n.run_round(task_id)

    Aggregator(env.contract, env.store, env.accounts[1], SPLITS.validation).serve(task_id, poll=0.05, say=say)

    credited = env.contract.credited(task_id)
    for r in range(2):
        i = 3 * r
        assert re.fullmatch(rf"round {r}: waiting for submissions \(0 of at most 2 so far; closes in \d+ s, or once 2 have "
                            r"submitted\)", lines[i]), lines[i]
        assert lines[i + 1] == f"round {r}: submissions closed (2 updates); aggregating"
        m = re.fullmatch(rf"round {r}: posted model bafk\w+: credited (\d+\.\d{{6}}) ETH to (\d) trainers; 0 outliers, "
                         r"0 rejected; bps \[\d+, \d+\]; \d+ gas", lines[i + 2])
        assert m, lines[i + 2]
    assert lines[-1] == f"task {task_id} finished: every round is settled"
    assert len(lines) == 7
    assert sum(credited.values()) > 0
