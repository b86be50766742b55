"""The committed contract artifacts are exactly what the sources compile to."""

from __future__ import annotations

from typing import Any

import pytest

from market.chain.compile import compile_all, drift, load_artifact


@pytest.fixture(scope="module")
def fresh() -> dict[str, dict[str, Any]]:
    """One compile of every contract for the module (via-IR: about 20 s a compile here)."""
    return compile_all()


def test_committed_artifacts_match_a_fresh_compile(fresh: dict[str, dict[str, Any]]) -> None:
    assert drift(fresh) == [], "run `python -m market.chain.compile` and commit contracts/artifacts"


def test_drift_is_detected_when_bytecode_differs(fresh: dict[str, dict[str, Any]]) -> None:
    changed = {**fresh, "ContributionMarket": {**fresh["ContributionMarket"], "bytecode": "0x00"}}

    assert drift(changed) == ["ContributionMarket"]
    assert drift(fresh) == []  # the copy changed, not the fixture


def test_artifact_has_abi_and_bytecode() -> None:
    art = load_artifact("ContributionMarket")

    assert any(item.get("name") == "postResult" for item in art["abi"])
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 1000
