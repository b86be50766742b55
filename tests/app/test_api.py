"""The HTTP API of `market serve` on a hand-made task (tests/test_api_shared.py), in process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from market.chain.client import Chain
from market.cid import normalize_cid
from market_app.api.app import DASHBOARD, LOOPBACK_HOSTS, create_app
from tests.app.test_api_scenario import POOL, REASON, REWARD, Scenario, build_scenario
from tests.conftest import Market, _market


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
    assert [t["status"] for t in r1["trainers"]] == ["committed", "not_submitted", "not_submitted"]
    assert (r0["committed"], r0["revealed"], r0["seed"][:2], r1["committed"], r1["revealed"], r1["seed"]) == (3, 3, "0x", 1, 0, None)
    assert [(s["trainer"], s["status"], s["cid"]) for s in r1["submissions"]] == [(t0, "committed", None)]
    assert (r1["phase"], r0["phase"]) == ("open", "settled")


def test_task_list_and_detail(client: TestClient, shared: Scenario) -> None:
    listing = client.get("/api/tasks").json()
    detail = client.get(f"/api/tasks/{shared.task_id}").json()

    assert listing["total"] == 1 and [t["task_id"] for t in listing["tasks"]] == [shared.task_id]
    assert detail["status"] == "open" and detail["current_round"] == 1 and detail["rounds_settled"] == 1
    assert detail["reward_wei"] == str(REWARD) and detail["credited_wei"] == str(POOL)
    assert detail["trainers"] == [t.address for t in shared.trainers]
    assert detail["spec"]["name"] == "digits" and detail["spec_cid"] == shared.spec_cid
    assert detail["submission_deadline"] > detail["chain_time"]
    # what a trainer reads before joining, as `market task show` prints it
    assert detail["model"] == {"arch": "logreg", "parameters": 650, "macs": 640, "input_shape": [64], "onnx_cid": None,
                               "layers": [{"layer": "linear(out_features=10)", "out_shape": [10], "parameters": 650}]}


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


TOKEN = "test-api-token-" + "x" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _creating_client(sc: Scenario) -> TestClient:
    """A server holding the owner's key, guarded by the API token :data:`TOKEN`."""
    return _client(sc, creator=sc.market.owner, api_token=TOKEN)


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
    fresh.market.contract.withdraw(t0, fresh.task_id)

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
    """A creation body (``aggregator``, kept for the callers, is no field: the owner names no aggregator)."""
    return {"validation_commitment": "0x" + "ab" * 32, "rounds": 2, "reward_eth": "0.25"}


def test_create_task_without_a_server_key_is_403(client: TestClient, shared: Scenario) -> None:
    res = client.post("/api/tasks", json=_create_body(shared.market.aggregator.address))

    assert res.status_code == 403 and "--key-file" in res.json()["message"]
    assert shared.market.contract.task_count() == 1


def test_create_task_signs_with_the_server_key_and_never_echoes_it(fresh: Scenario) -> None:
    m = fresh.market
    client = _creating_client(fresh)

    res = client.post("/api/tasks", json=_create_body(m.aggregator.address), headers=AUTH)

    assert res.status_code == 201, res.text
    body = res.json()
    info = m.contract.task(body["task_id"])
    assert (body["task_id"], body["owner"], body["reward_wei"]) == (2, m.owner.address, str(25 * 10**16))
    assert (info.owner, info.reward, info.rounds, info.spec_cid) == (m.owner.address, 25 * 10**16, 2, body["spec_cid"])
    key_hex = m.owner.key.hex().removeprefix("0x")
    for path in ("/api/status", "/openapi.json", "/api/tasks"):
        assert key_hex not in client.get(path).text
    assert key_hex not in res.text and client.get("/api/status").json()["creator"] == m.owner.address


def test_create_task_takes_the_schedule_stake_and_backup(fresh: Scenario) -> None:
    m = fresh.market
    client = _creating_client(fresh)
    m.contract.registry.register(m.outsider)  # a second registered aggregator: a backup can be drawn
    body = {**_create_body(m.aggregator.address), "submit_window": 120, "reveal_window": 45, "result_window": 90,
            "stake_eth": "0.01", "backup": True, "fee_bps": 300, "empty_rounds_to_reclaim": 2}

    res = client.post("/api/tasks", json=body, headers=AUTH)

    assert res.status_code == 201, res.text
    info = m.contract.task(res.json()["task_id"])
    assert (info.submit_window, info.reveal_window, info.result_window) == (120, 45, 90)
    assert (info.stake, info.has_backup, info.fee_bps, info.empty_rounds_to_reclaim) == (10**16, True, 300, 2)
    detail = client.get(f"/api/tasks/{info.task_id}").json()
    assert (detail["stake_wei"], detail["backup"], detail["fee_bps"], detail["period"]) == (str(10**16), True, 300,
                                                                                          120 + 45 + 2 * 90 + 45)


def test_a_created_task_is_judged_by_a_panel_of_three_once_the_registry_holds_three(fresh: Scenario) -> None:
    m = fresh.market
    client = _creating_client(fresh)

    def create(**patch: object) -> dict[str, object]:
        res = client.post("/api/tasks", json={**_create_body(m.aggregator.address), **patch}, headers=AUTH)
        assert res.status_code == 201, res.text
        return dict(res.json())

    alone = create()
    m.contract.registry.register(m.outsider)
    m.contract.registry.register(m.owner)  # three in the draw, but the owner is never drawn for its own task
    owners_own = create()
    m.contract.registry.register(m.trainers[4])
    checked = create()
    with_backup = create(backup=True)  # a backup needs a fourth

    assert alone["panel"] == 1 and str(alone["note"]).startswith("note: a panel of one (the registry holds 1 ")
    assert "alone decides every trainer's pay" in str(alone["note"])
    assert owners_own["panel"] == 1 and "the registry holds 2 aggregators" in str(owners_own["note"])
    assert with_backup["panel"] == 1 and "the registry holds 3 aggregators" in str(with_backup["note"])
    info = m.contract.task(int(str(checked["task_id"])))
    assert (checked["panel"], checked["note"], info.panel, info.quorum) == (3, None, 3, 2)


@pytest.mark.parametrize("patch, field", [
    ({"aggregator": "0x" + "12" * 20}, "aggregator"),  # the owner names no aggregator: an unknown field
    ({"panel": 0}, "panel"),
    ({"fee_bps": 5001}, "fee_bps"),
    ({"reward_eth": "-1"}, "reward_eth"),
    ({"reward_eth": "0.0000000000000000001"}, "reward_eth"),
    ({"validation_commitment": "0xzz"}, "validation_commitment"),
    ({"spec": {"model": {"arch": "resnet"}}}, "spec.model.arch"),
    ({"colour": "blue"}, "colour"),
    ({"rounds": 0}, "rounds"),
    ({"submit_window": -1}, "submit_window"),
    ({"submit_window": 59}, "submit_window"),
    ({"reveal_window": 29}, "reveal_window"),
    ({"result_window": 30 * 86400 + 1}, "result_window"),
    ({"stake_eth": "-1"}, "stake_eth"),
    ({"empty_rounds_to_reclaim": -1}, "empty_rounds_to_reclaim"),
    ({"max_trainers": 300}, "max_trainers"),
])
def test_create_task_rejects_bad_fields_with_422(shared: Scenario, patch: dict[str, object], field: str) -> None:
    m = shared.market
    client = _creating_client(shared)

    res = client.post("/api/tasks", json={**_create_body(m.aggregator.address), **patch}, headers=AUTH)

    assert res.status_code == 422 and f"body.{field}" in res.json()["message"]
    assert m.contract.task_count() == 1


def test_create_task_the_contract_refuses_is_409(shared: Scenario) -> None:
    m = shared.market
    client = _creating_client(shared)

    # a panel of 2 while the registry holds one aggregator: the contract refuses
    res = client.post("/api/tasks", json={**_create_body(m.owner.address), "panel": 2}, headers=AUTH)

    assert res.status_code == 409 and res.json()["error"] == "contract_refused"
    assert "MarketFewAggregators" in res.json()["message"] and m.contract.task_count() == 1


def test_create_task_with_more_than_the_owner_holds_is_refused_and_sends_nothing(shared: Scenario) -> None:
    m = shared.market
    client = _creating_client(shared)
    nonce = m.chain.w3.eth.get_transaction_count(m.owner.address)

    res = client.post("/api/tasks", json={**_create_body(m.aggregator.address), "reward_eth": "9" * 20}, headers=AUTH)

    assert res.status_code in (409, 502) and "\n" not in res.json()["message"], res.text
    assert "less than the reward" in res.json()["message"]
    assert m.chain.w3.eth.get_transaction_count(m.owner.address) == nonce and m.contract.task_count() == 1


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong-token-" + "y" * 32},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}é".encode("latin-1")},  # not ASCII: still a 401, not a crash
    {"X-Api-Token": TOKEN},
])
def test_create_task_without_the_right_token_is_401_and_signs_nothing(
    shared: Scenario, headers: dict[str, str | bytes],
) -> None:
    m = shared.market
    client = _creating_client(shared)
    nonce = m.chain.w3.eth.get_transaction_count(m.owner.address)

    ok = client.post("/api/tasks", json=_create_body(m.aggregator.address), headers=headers)
    bad = client.post("/api/tasks", json={"colour": "blue"}, headers=headers)  # refused before the body is read

    for res in (ok, bad):
        assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer", res.text
        assert set(res.json()) == {"error", "message"} and res.json()["error"] == "unauthorized"
        assert "Authorization: Bearer" in res.json()["message"] and "\n" not in res.json()["message"]
        assert TOKEN not in res.text
    assert m.contract.task_count() == 1 and m.chain.w3.eth.get_transaction_count(m.owner.address) == nonce


def test_reads_need_no_token(shared: Scenario) -> None:
    client = _creating_client(shared)

    for path in ("/api/status", "/api/tasks", f"/api/tasks/{shared.task_id}", f"/api/tasks/{shared.task_id}/rounds", "/"):
        assert client.get(path).status_code == 200, path


def test_the_spec_declares_the_bearer_token_on_post_tasks_only(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert spec["components"]["securitySchemes"]["apiToken"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["apiToken"]["description"]}
    assert spec["paths"]["/api/tasks"]["post"]["security"] == [{"apiToken": []}]
    assert "401" in spec["paths"]["/api/tasks"]["post"]["responses"]
    assert all("security" not in op for path in spec["paths"].values() for method, op in path.items() if method == "get")


def test_a_server_holding_a_key_needs_a_token(shared: Scenario) -> None:
    with pytest.raises(ValueError, match="api_token"):
        create_app(shared.market.contract, shared.store, creator=shared.market.owner)


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
