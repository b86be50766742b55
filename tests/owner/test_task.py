"""The owner's task request on the new protocol: the schedule's windows, the stake, the aggregator panel (drawn,
never named), its backup and fee, and the empty-round rule reach the contract as asked, and what the contract
would refuse is refused first."""

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
    with open_environment(chain="tester", n_accounts=4, store="local", store_dir=str(tmp_path / "store"),
                          aggregators=(1, 2, 3)) as env:
        request = task_request(validation_commitment=dataset_commitment(splits.validation), backup=True, panel=2,
                               fee_bps=250, rounds=2, reward_wei=10**18, submit_window=120,
                               reveal_window=45, result_window=480, max_trainers=3, stake_wei=10**16,
                               empty_rounds_to_reclaim=2)
        created = create_task(env.contract, env.store, env.accounts[0], request)
        info = env.contract.task(created.task_id)

        assert (info.submit_window, info.reveal_window, info.result_window) == (120, 45, 480)
        assert (info.has_backup, info.panel, info.quorum, info.fee_bps) == (True, 2, 2, 250)
        assert info.period == 120 + 45 + 480 + 480 + 45  # the backup's window, then availability (= reveal window)
        assert info.opens_at(1) - info.opens_at(0) == info.period and info.round_opened_at == info.start_at
        assert (info.stake, info.empty_rounds_to_reclaim, info.max_trainers) == (10**16, 2, 3)
        opens, submit, reveal, result, final = env.contract.schedule(created.task_id)
        assert (submit - opens, reveal - submit, result - reveal, final - result) == (120, 45, 480, 480)


def test_without_a_backup_the_period_has_one_result_window(tmp_path: Path) -> None:
    with open_environment(chain="tester", n_accounts=2, store="local", store_dir=str(tmp_path / "store")) as env:
        request = task_request(validation_commitment=VALC, reward_wei=10**18)
        assert request.backup is False and request.stake_wei == 0 and request.empty_rounds_to_reclaim == 0
        info = env.contract.task(create_task(env.contract, env.store, env.accounts[0], request).task_id)

        assert not info.has_backup and (info.panel, info.quorum) == (1, 1) and info.period == 3600 + 600 + 3600 + 600


@pytest.mark.parametrize(("field", "value"), [("submit_window", 59), ("reveal_window", 29), ("result_window", 59),
                                              ("submit_window", 30 * 86400 + 1), ("stake_wei", -1),
                                              ("empty_rounds_to_reclaim", -1)])
def test_what_the_contract_would_refuse_is_a_one_line_error_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(ConfigError) as exc:
        task_request(validation_commitment=VALC, reward_wei=1, **{field: value})

    assert str(exc.value).startswith(f"{field}: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize(("panel", "quorum"), [(3, 1), (2, 1), (3, 4), (1, 2)])
def test_a_quorum_that_does_not_decide_its_panel_is_refused(panel: int, quorum: int) -> None:
    with pytest.raises(ConfigError, match=f"quorum of {quorum} does not decide a panel of {panel}"):
        task_request(validation_commitment=VALC, reward_wei=1, panel=panel, quorum=quorum)


def test_a_task_needs_as_many_registered_aggregators_as_its_panel_and_backup(tmp_path: Path) -> None:
    with open_environment(chain="tester", n_accounts=2, store="local", store_dir=str(tmp_path / "store")) as env:
        request = task_request(validation_commitment=VALC, reward_wei=10**18, backup=True)
        with pytest.raises(Exception, match="needs 2 registered aggregators; the registry has 1"):
            create_task(env.contract, env.store, env.accounts[0], request)
