"""The owner's task request on the new protocol: the schedule's windows, the stake, the backup aggregator and
the empty-round rule reach the contract as asked, and what the contract would refuse is refused first."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.data import dataset_commitment, digits_splits
from market.errors import ConfigError
from owner.task import create_task, task_request
from simulator.environment import open_environment

VALC = b"\x11" * 32


def test_create_task_sends_the_schedule_the_stake_the_backup_and_the_reclaim_rule(tmp_path: Path) -> None:
    splits = digits_splits(2, "iid", 0)
    with open_environment(chain="tester", n_accounts=4, store="local", store_dir=str(tmp_path / "store")) as env:
        request = task_request(validation_commitment=dataset_commitment(splits.validation), aggregator=env.accounts[1].address,
                               backup=env.accounts[2].address, rounds=2, reward_wei=10**18, submit_window=120,
                               reveal_window=45, result_window=90, max_trainers=3, stake_wei=10**16,
                               empty_rounds_to_reclaim=2)
        created = create_task(env.contract, env.store, env.accounts[0], request)
        info = env.contract.task(created.task_id)

        assert (info.submit_window, info.reveal_window, info.result_window) == (120, 45, 90)
        assert info.backup == env.accounts[2].address and info.aggregator == env.accounts[1].address
        assert info.period == 120 + 45 + 90 + 90 + 45  # the backup's window, then availability (= reveal window)
        assert info.opens_at(1) - info.opens_at(0) == info.period and info.round_opened_at == info.start_at
        assert (info.stake, info.empty_rounds_to_reclaim, info.max_trainers) == (10**16, 2, 3)
        opens, submit, reveal, result, final = env.contract.schedule(created.task_id)
        assert (submit - opens, reveal - submit, result - reveal, final - result) == (120, 45, 90, 90)


def test_without_a_backup_the_period_has_one_result_window(tmp_path: Path) -> None:
    with open_environment(chain="tester", n_accounts=2, store="local", store_dir=str(tmp_path / "store")) as env:
        request = task_request(validation_commitment=VALC, aggregator=env.accounts[1].address, reward_wei=10**18,
                               backup="0x" + "00" * 20)  # the zero address: no backup
        assert request.backup is None and request.stake_wei == 0 and request.empty_rounds_to_reclaim == 0
        info = env.contract.task(create_task(env.contract, env.store, env.accounts[0], request).task_id)

        assert int(info.backup, 16) == 0 and info.period == 3600 + 600 + 3600 + 600


@pytest.mark.parametrize(("field", "value"), [("submit_window", 59), ("reveal_window", 29), ("result_window", 59),
                                              ("submit_window", 30 * 86400 + 1), ("stake_wei", -1),
                                              ("empty_rounds_to_reclaim", -1)])
def test_what_the_contract_would_refuse_is_a_one_line_error_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(ConfigError) as exc:
        task_request(validation_commitment=VALC, aggregator="0x" + "ab" * 20, reward_wei=1, **{field: value})

    assert str(exc.value).startswith(f"{field}: ") and "\n" not in str(exc.value)


def test_a_backup_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="^backup: 'nope' is not an Ethereum address$"):
        task_request(validation_commitment=VALC, aggregator="0x" + "ab" * 20, reward_wei=1, backup="nope")
