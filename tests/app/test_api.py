"""The HTTP API of `market serve` on a hand-made task (tests/test_api_shared.py), in process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from market_app.api.app import DASHBOARD, LOOPBACK_HOSTS, create_app
from market.cid import normalize_cid
from market.chain.client import Chain
from tests.conftest import Market, _market
from tests.app.test_api_scenario import POOL, REASON, REWARD, Scenario, build_scenario


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """One scenario for the tests that only read (building one takes about a second)."""
    return build_scenario(_market(Chain.tester()), tmp_path_factory.mktemp("store"))


@pytest.fixture
def fresh(market: Market, tmp_path: Path) -> Scenario:
    """A scenario of its own, for tests that change the chain or the store."""
    return build_scenario(market, tmp_path / "store")


@pytest.fixture(scope="module")
def client(shared: Scenario) -> TestClient:
    return TestClient(create_app(shared.market.contract, shared.store), base_url="http://127.0.0.1")


def test_rounds_carry_the_receipt_and_the_chain_data(client: TestClient, shared: Scenario) -> None:
    t0, t1, t2 = (t.address for t in shared.trainers)

    body = client.get(f"/api/tasks/{shared.task_id}/rounds").json()

    r0, r1 = body["rounds"]
    assert (r0["status"], r0["settled"], r0["accuracy"], r0["accuracy_before"]) == ("result", True, 0.9, 0.5)
    assert "validation" in r0["accuracy_metric"]
    assert (r0["model_cid"], r0["receipt_cid"]) == (shared.model_cid, shared.receipt_cid)
    assert r0["outliers"] == [t1] and r0["rejected"] == {t2: REASON}
    assert r0["bps"] == {t0: 10_000, t1: 0, t2: 0}
    assert r0["credited_by_trainer"] == {t0: str(POOL)} and r0["credited_wei"] == str(POOL)
    assert [s["cid"] for s in r0["submissions"]] == shared.update_cids
    lines = {t["address"]: (t["status"], t["reason"], t["bps"]) for t in r0["trainers"]}
    assert lines == {t0: ("kept", None, 10_000), t1: ("outlier", None, 0), t2: ("rejected", REASON, 0)}
    assert (r1["status"], r1["settled"], r1["accuracy"], r1["model_cid"]) == ("open", False, None, None)
    assert [t["status"] for t in r1["trainers"]] == ["submitted", "not_submitted", "not_submitted"]


def test_task_list_and_detail(client: TestClient, shared: Scenario) -> None:
    listing = client.get("/api/tasks").json()
    detail = client.get(f"/api/tasks/{shared.task_id}").json()

    assert listing["total"] == 1 and [t["task_id"] for t in listing["tasks"]] == [shared.task_id]
    assert detail["status"] == "open" and detail["current_round"] == 1 and detail["rounds_settled"] == 1
    assert detail["reward_wei"] == str(REWARD) and detail["credited_wei"] == str(POOL)
    assert detail["trainers"] == [t.address for t in shared.trainers]
    assert detail["spec"]["name"] == "digits" and detail["spec_cid"] == shared.spec_cid
    assert detail["submission_deadline"] > detail["chain_time"]


def test_one_round_and_its_submissions(client: TestClient, shared: Scenario) -> None:
    one = client.get(f"/api/tasks/{shared.task_id}/rounds/0").json()
    subs = client.get(f"/api/tasks/{shared.task_id}/rounds/0/submissions").json()

    assert one["round"] == 0 and one["receipt_cid"] == shared.receipt_cid
    assert [s["trainer"] for s in subs["submissions"]] == [t.address for t in shared.trainers]


def test_receipt_comes_from_the_store_by_its_cid(client: TestClient, shared: Scenario) -> None:
    body = client.get(f"/api/tasks/{shared.task_id}/rounds/0/receipt").json()

    assert body["receipt_cid"] == shared.receipt_cid and body["receipt"]["details"]["accuracy_after"] == 0.9


def test_an_open_round_has_no_receipt(client: TestClient, shared: Scenario) -> None:
    res = client.get(f"/api/tasks/{shared.task_id}/rounds/1/receipt")

    assert res.status_code == 404 and res.json()["error"] == "not_found"
    assert "has no receipt" in res.json()["message"]


def _client(sc: Scenario, **kwargs: object) -> TestClient:
    return TestClient(create_app(sc.market.contract, sc.store, **kwargs), base_url="http://127.0.0.1")  # type: ignore[arg-type]


def test_a_receipt_missing_from_the_store_is_explained_not_a_crash(fresh: Scenario) -> None:
    client = _client(fresh)
    (fresh.store.root / normalize_cid(fresh.receipt_cid)).unlink()

    rounds = client.get(f"/api/tasks/{fresh.task_id}/rounds")
    receipt = client.get(f"/api/tasks/{fresh.task_id}/rounds/0/receipt")

    assert rounds.status_code == 200
    r0 = rounds.json()["rounds"][0]
    assert r0["accuracy"] is None and "--store-dir" in r0["receipt_error"]
    assert r0["credited_wei"] == str(POOL)  # what the chain says is still shown
    assert receipt.status_code == 404 and "not in the store" in receipt.json()["message"]


def test_payouts_show_credited_owed_and_withdrawn(fresh: Scenario) -> None:
    client = _client(fresh)
    t0 = fresh.trainers[0]
    fresh.market.contract.withdraw(t0)

    body = client.get(f"/api/tasks/{fresh.task_id}/payouts").json()

    by = {p["address"]: p for p in body["trainers"]}
    assert (by[t0.address]["credited_wei"], by[t0.address]["withdrawn_wei"], by[t0.address]["owed_wei"]) == (str(POOL), str(POOL), "0")
    assert by[t0.address]["credited_by_round"] == [str(POOL), "0"] and by[t0.address]["rounds_kept"] == 1
    t1, t2 = fresh.trainers[1].address, fresh.trainers[2].address
    assert (by[t1]["rounds_outlier"], by[t2]["rounds_rejected"], by[t1]["credited_wei"]) == (1, 1, "0")
    assert body["escrow_wei"] == str(REWARD - POOL)


def test_contributions_are_a_round_by_trainer_matrix(client: TestClient, shared: Scenario) -> None:
    body = client.get(f"/api/tasks/{shared.task_id}/contributions").json()

    assert body["rounds"] == [0] and body["trainers"] == [t.address for t in shared.trainers]
    assert body["bps"] == [[10_000, 0, 0]] and body["status"] == [["kept", "outlier", "rejected"]]


def test_unknown_task_is_404_with_a_message(client: TestClient) -> None:
    res = client.get("/api/tasks/7/rounds")

    assert res.status_code == 404
    assert res.json() == {"error": "unknown_task",
                          "message": "unknown task 7: this contract has 1 tasks (ids 1..1); GET /api/tasks lists them"}


@pytest.mark.parametrize("path, where", [
    ("/api/tasks/abc", "path parameter task_id"),
    ("/api/tasks/0", "path parameter task_id"),
    ("/api/tasks/1/rounds/-1", "path parameter round"),
    ("/api/tasks?limit=0", "query parameter limit"),
])
def test_bad_ids_are_422_naming_the_parameter(client: TestClient, path: str, where: str) -> None:
    res = client.get(path)

    assert res.status_code == 422 and res.json()["error"] == "invalid_request"
    assert res.json()["message"].startswith(where)


def test_a_round_beyond_the_task_is_404(client: TestClient, shared: Scenario) -> None:
    res = client.get(f"/api/tasks/{shared.task_id}/rounds/5")

    assert res.status_code == 404 and "task 1 has 2 rounds (0..1); round 5 does not exist" == res.json()["message"]


def test_unknown_path_is_json_404(client: TestClient) -> None:
    res = client.get("/api/nope")

    assert res.status_code == 404 and "openapi.json" in res.json()["message"]


def test_status_names_chain_contract_and_block(client: TestClient, shared: Scenario) -> None:
    body = client.get("/api/status").json()

    assert body["contract"] == shared.market.contract.address and body["task_count"] == 1
    assert body["block"] == shared.market.chain.w3.eth.block_number and body["can_create_tasks"] is False


def _create_body(aggregator: str) -> dict[str, object]:
    return {"aggregator": aggregator, "validation_commitment": "0x" + "ab" * 32, "rounds": 2, "reward_eth": "0.25"}


def test_create_task_without_a_server_key_is_403(client: TestClient, shared: Scenario) -> None:
    res = client.post("/api/tasks", json=_create_body(shared.market.aggregator.address))

    assert res.status_code == 403 and "--key-file" in res.json()["message"]
    assert shared.market.contract.task_count() == 1


def test_create_task_signs_with_the_server_key_and_never_echoes_it(fresh: Scenario) -> None:
    m = fresh.market
    client = _client(fresh, creator=m.owner)

    res = client.post("/api/tasks", json=_create_body(m.aggregator.address))

    assert res.status_code == 201, res.text
    body = res.json()
    info = m.contract.task(body["task_id"])
    assert (body["task_id"], body["owner"], body["reward_wei"]) == (2, m.owner.address, str(25 * 10**16))
    assert (info.owner, info.reward, info.rounds, info.spec_cid) == (m.owner.address, 25 * 10**16, 2, body["spec_cid"])
    key_hex = m.owner.key.hex().removeprefix("0x")
    for path in ("/api/status", "/openapi.json", "/api/tasks"):
        assert key_hex not in client.get(path).text
    assert key_hex not in res.text and client.get("/api/status").json()["creator"] == m.owner.address


@pytest.mark.parametrize("patch, field", [
    ({"aggregator": "0x123"}, "aggregator"),
    ({"reward_eth": "-1"}, "reward_eth"),
    ({"reward_eth": "0.0000000000000000001"}, "reward_eth"),
    ({"validation_commitment": "0xzz"}, "validation_commitment"),
    ({"spec": {"model": {"arch": "resnet"}}}, "spec.model.arch"),
    ({"colour": "blue"}, "colour"),
    ({"rounds": 0}, "rounds"),
    ({"submit_window": -1}, "submit_window"),
    ({"max_trainers": 300}, "max_trainers"),
])
def test_create_task_rejects_bad_fields_with_422(shared: Scenario, patch: dict[str, object], field: str) -> None:
    m = shared.market
    client = _client(shared, creator=m.owner)

    res = client.post("/api/tasks", json={**_create_body(m.aggregator.address), **patch})

    assert res.status_code == 422 and f"body.{field}" in res.json()["message"]
    assert m.contract.task_count() == 1


def test_create_task_the_contract_refuses_is_409(shared: Scenario) -> None:
    m = shared.market
    client = _client(shared, creator=m.owner)

    res = client.post("/api/tasks", json=_create_body(m.owner.address))  # owner as its own aggregator

    assert res.status_code == 409 and res.json()["error"] == "contract_refused"
    assert "MarketRoleConflict" in res.json()["message"]


def test_create_task_with_more_than_the_owner_holds_is_refused_and_sends_nothing(shared: Scenario) -> None:
    m = shared.market
    client = _client(shared, creator=m.owner)
    nonce = m.chain.w3.eth.get_transaction_count(m.owner.address)

    res = client.post("/api/tasks", json={**_create_body(m.aggregator.address), "reward_eth": "9" * 20})

    assert res.status_code in (409, 502) and "\n" not in res.json()["message"], res.text
    assert "less than the reward" in res.json()["message"]
    assert m.chain.w3.eth.get_transaction_count(m.owner.address) == nonce and m.contract.task_count() == 1


def test_requests_for_another_host_name_are_refused(shared: Scenario) -> None:
    app = create_app(shared.market.contract, shared.store, trusted_hosts=LOOPBACK_HOSTS)

    assert TestClient(app, base_url="http://127.0.0.1").get("/api/status").status_code == 200
    assert TestClient(app, base_url="http://attacker.example").get("/api/status").status_code == 400


def test_dashboard_is_served_and_loads_nothing_from_the_internet(client: TestClient) -> None:
    page = client.get("/")
    script = client.get("/dashboard/app.js")

    assert page.status_code == 200 and "<script src=\"/dashboard/app.js\">" in page.text
    assert script.status_code == 200 and "/api/status" in script.text
    for f in DASHBOARD.iterdir():
        urls = set(re.findall(r"https?://[^\s\"'`)]+", f.read_text())) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{f.name} refers to {urls}"
    assert "innerHTML" not in script.text  # API data is inserted as text only
