"""Honest numbers in the API (issue 12, row 10): a task's name, the accuracy of the model a round published,
and payouts per task when a trainer is paid by several tasks."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from market.cid import normalize_cid
from market.store import LocalStore
from market_app.api.app import create_app
from market_app.api.reads import spec_name, task_name
from tests.app.test_api_scenario import POOL, build_scenario
from tests.conftest import Market


def _client(market: Market, store: LocalStore) -> TestClient:
    return TestClient(create_app(market.contract, store), base_url="http://127.0.0.1")


def test_tasks_carry_the_name_of_their_spec(market: Market, tmp_path: Path) -> None:
    sc = build_scenario(market, tmp_path / "store")
    client = _client(market, sc.store)

    listing = client.get("/api/tasks").json()
    detail = client.get(f"/api/tasks/{sc.task_id}").json()

    assert [t["name"] for t in listing["tasks"]] == ["digits"] and detail["name"] == "digits"
    assert task_name(sc.store, sc.spec_cid) == "digits"


def test_a_task_whose_spec_is_not_in_the_store_has_no_name(market: Market, tmp_path: Path) -> None:
    sc = build_scenario(market, tmp_path / "store")
    (sc.store.root / normalize_cid(sc.spec_cid)).unlink()

    body = _client(market, sc.store).get("/api/tasks").json()

    assert body["tasks"][0]["name"] is None and task_name(sc.store, sc.spec_cid) is None


def test_the_name_falls_back_to_the_data_sets_name() -> None:
    assert spec_name({"name": "breast cancer", "data": {"name": "bc"}}) == "breast cancer"
    assert spec_name({"data": {"name": "wine"}}) == "wine"
    assert spec_name({"name": "  ", "data": {"name": "wine"}}) == "wine"
    assert spec_name({"data": {}}) is None and spec_name([1]) is None


def test_a_rounds_accuracy_is_the_published_models(market: Market, tmp_path: Path) -> None:
    sc = build_scenario(market, tmp_path / "store", accuracy_model=0.85)  # U(survivors) = 0.9 in the receipt

    r0 = _client(market, sc.store).get(f"/api/tasks/{sc.task_id}/rounds").json()["rounds"][0]

    assert (r0["accuracy"], r0["accuracy_survivors"], r0["accuracy_before"]) == (0.85, 0.9, 0.5)
    assert "published model" in r0["accuracy_metric"]


def test_an_old_receipt_without_the_published_accuracy_shows_accuracy_after(market: Market, tmp_path: Path) -> None:
    sc = build_scenario(market, tmp_path / "store")  # accuracy_model None, as receipts written before it

    r0 = _client(market, sc.store).get(f"/api/tasks/{sc.task_id}/rounds/0").json()

    assert r0["accuracy"] == 0.9


def test_payouts_are_per_task_when_a_trainer_is_paid_by_two_tasks(market: Market, tmp_path: Path) -> None:
    first = build_scenario(market, tmp_path / "s1")  # task 1 credits trainer 0 the pool of round 0
    t0 = first.trainers[0].address
    market.contract.withdraw(first.trainers[0], first.task_id)
    second = build_scenario(market, tmp_path / "s2")  # task 2 credits it again, after the withdrawal
    store = LocalStore(tmp_path / "s1")

    one = {p["address"]: p for p in _client(market, store).get("/api/tasks/1/payouts").json()["trainers"]}[t0]
    two = {p["address"]: p for p in _client(market, second.store).get("/api/tasks/2/payouts").json()["trainers"]}[t0]

    # each task keeps its own balance: task 1 credited and all withdrawn, task 2 credited and owed
    assert (one["credited_wei"], one["withdrawn_wei"], one["owed_wei"]) == (str(POOL), str(POOL), "0")
    assert (two["credited_wei"], two["withdrawn_wei"], two["owed_wei"]) == (str(POOL), "0", str(POOL))
    assert "owed_all_tasks_wei" not in one


def test_unwithdrawn_credits_of_two_tasks_are_each_tasks_own(market: Market, tmp_path: Path) -> None:
    first = build_scenario(market, tmp_path / "s1")
    second = build_scenario(market, tmp_path / "s2")
    t0 = first.trainers[0].address

    one = {p["address"]: p for p in _client(market, first.store).get("/api/tasks/1/payouts").json()["trainers"]}[t0]
    two = {p["address"]: p for p in _client(market, second.store).get("/api/tasks/2/overview").json()["payouts"]["trainers"]}[t0]
    assert one["owed_wei"] == two["owed_wei"] == str(POOL)  # not the account's 2 x POOL under each task
    assert one["withdrawn_wei"] == "0"

    market.contract.withdraw(second.trainers[0], second.task_id)  # withdrawing task 2 leaves task 1's credit owed
    one = {p["address"]: p for p in _client(market, first.store).get("/api/tasks/1/payouts").json()["trainers"]}[t0]
    assert (one["owed_wei"], one["withdrawn_wei"]) == (str(POOL), "0")
