"""`market task results`: every joined trainer of every settled round with its status, the accuracy of the
model the round published, and a total per trainer for the task (issue 12, row 10). In-process on the py-evm
chain, the CLI's chain and store patched to the hand-made scenario of tests/app/test_api_scenario.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from market_app.cli.main import main
from tests.app.test_api_scenario import POOL, REASON, Scenario, build_scenario
from tests.conftest import Market


@pytest.fixture
def scenario(market: Market, tmp_path: Path) -> Scenario:
    # trainer 0 paid, trainer 1 outlier, trainer 2 rejected, trainer 3 joined and never submitted
    return build_scenario(market, tmp_path / "store", accuracy_model=0.85, idle=1)


@pytest.fixture
def results(scenario: Scenario, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    import market_app.cli.task as task_cli

    monkeypatch.setattr(task_cli, "_contract", lambda args: scenario.market.contract)
    monkeypatch.setattr(task_cli, "_store", lambda args: scenario.store)

    def run(*extra: str) -> str:
        code = main(["task", "results", str(scenario.task_id), *extra])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    return run


def test_results_list_every_joined_trainer_with_its_status(results: Any, scenario: Scenario) -> None:
    t0, t1, t2, t3 = (t.address for t in scenario.market.trainers[:4])

    out = results()

    lines = out.splitlines()
    assert lines[0].startswith("task 1 (digits): 1 of 2 rounds settled")
    assert lines[1].startswith("round 0 (result, validation accuracy 0.850 (published model)): 3 committed, 3 revealed, seed 0x")
    assert " model " in lines[1] and " receipt " in lines[1]
    assert f"  {t0}  10000 bps  0.500000 ETH  paid" in lines
    assert f"  {t1}      0 bps  0.000000 ETH  outlier (paid 0)" in lines
    assert f"  {t2}      0 bps  0.000000 ETH  rejected: {REASON}" in lines
    assert f"  {t3}      - bps  0.000000 ETH  did not submit" in lines
    total = lines.index("total per trainer (task 1):")
    assert lines[total + 1] == (f"  {t0}  0.500000 ETH credited (0.500000 owed now); "
                                "paid 1, outlier 0, rejected 0, did not reveal 0, did not submit 0")
    assert lines[total + 4] == (f"  {t3}  0.000000 ETH credited (0.000000 owed now); "
                                "paid 0, outlier 0, rejected 0, did not reveal 0, did not submit 1")


def test_results_json_carries_the_same(results: Any, scenario: Scenario) -> None:
    t0, t1, t2, t3 = (t.address for t in scenario.market.trainers[:4])
    scenario.market.contract.withdraw(scenario.market.trainers[0], scenario.task_id)

    body = json.loads(results("--json"))

    (r0,) = body["rounds"]
    assert body["name"] == "digits" and r0["accuracy"] == 0.85 and r0["settlement"] == "result"
    assert {t["address"]: (t["status"], t["bps"], t["credited_wei"]) for t in r0["trainers"]} == {
        t0: ("paid", 10_000, str(POOL)), t1: ("outlier (paid 0)", 0, "0"),
        t2: (f"rejected: {REASON}", 0, "0"), t3: ("did not submit", None, "0"),
    }
    assert r0["bps"] == {t0: 10_000, t1: 0, t2: 0} and r0["credited_wei"] == {t0: str(POOL)}
    totals = {t["address"]: t for t in body["totals"]}
    assert list(totals) == [t0, t1, t2, t3]
    assert (totals[t0]["credited_wei"], totals[t0]["withdrawn_wei"], totals[t0]["owed_wei"]) == (str(POOL), str(POOL), "0")
    assert totals[t3]["rounds"] == {"paid": 0, "outlier": 0, "rejected": 0, "did_not_reveal": 0, "did_not_submit": 1}
    assert (r0["committed"], r0["revealed"], r0["seed"][:2]) == (3, 3, "0x")
    assert totals[t1]["rounds"]["outlier"] == 1 and totals[t2]["rounds"]["rejected"] == 1


def test_results_of_an_old_receipt_show_accuracy_after(market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import market_app.cli.task as task_cli

    sc = build_scenario(market, tmp_path / "store")  # no accuracy_model in its receipt
    monkeypatch.setattr(task_cli, "_contract", lambda args: market.contract)
    monkeypatch.setattr(task_cli, "_store", lambda args: sc.store)

    assert main(["task", "results", "1"]) == 0
    assert "round 0 (result, validation accuracy 0.900 (published model))" in capsys.readouterr().out
