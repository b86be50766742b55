"""Fuzzing the API from its own OpenAPI spec (schemathesis): whatever a client sends, no 500,
and every answer matches the status codes and schemas the spec declares.

The app reads a real task (tests/app/test_api_scenario.py) so generated ids also hit existing
tasks and rounds.  POST /api/tasks is fuzzed on a server without an owner key (valid bodies
answer 403, invalid ones 422), so fuzzing never writes to the chain; and on a server holding the
key, with its API token, where valid bodies create real tasks.  Examples per operation are bounded
to keep the test around ten seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from market.chain.client import Chain
from market_app.api.app import create_app
from tests.app.test_api_scenario import build_scenario
from tests.conftest import _market

MAX_EXAMPLES = 20
TOKEN = "fuzz-api-token-" + "z" * 32
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sc = build_scenario(_market(Chain.tester()), Path(tmp_path_factory.mktemp("store")))
    app = create_app(sc.market.contract, sc.store)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def creating_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server holding the owner's key: generated bodies that pass validation create real tasks."""
    sc = build_scenario(_market(Chain.tester()), Path(tmp_path_factory.mktemp("store")))
    app = create_app(sc.market.contract, sc.store, creator=sc.market.owner, api_token=TOKEN)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _existing_ids(case: Any) -> Any:
    """The same case aimed at the scenario's task and rounds (random ids almost never exist)."""

    def aim(ids: tuple[int, int]) -> Any:
        params = dict(case.path_parameters or {})
        if "task_id" in params:
            params["task_id"] = ids[0]
        if "round" in params:
            params["round"] = ids[1]
        case.path_parameters = params
        return case

    return st.tuples(st.integers(1, 2), st.integers(0, 2)).map(aim)


def _fuzz(operation: Any, max_examples: int = MAX_EXAMPLES, headers: dict[str, str] | None = None) -> None:
    # schemathesis' own pytest plugin (`from_fixture`) does not run under pytest 9, so the
    # operations' strategies drive hypothesis directly: valid inputs and deliberately invalid ones
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    cases = st.one_of(positive, positive.flatmap(_existing_ids),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(headers={"Host": "127.0.0.1", **(headers or {})})
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        case.validate_response(response, checks=CHECKS)

    run()


def test_no_server_error_and_answers_match_the_spec(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10  # every endpoint of market_app/api/app.py is in the spec

    for operation in operations:
        _fuzz(operation)


def test_creating_tasks_never_fails_with_500(creating_schema: Any) -> None:
    (post,) = [r.ok() for r in creating_schema.get_all_operations() if r.ok().method.upper() == "POST"]

    _fuzz(post, max_examples=15, headers={"Authorization": f"Bearer {TOKEN}"})
