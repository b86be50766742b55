"""The committed contract artifacts are exactly what the sources compile to."""

from __future__ import annotations

from market.chain.compile import compile_all, drift, load_artifact


def test_committed_artifacts_match_a_fresh_compile() -> None:
    fresh = compile_all()

    assert drift(fresh) == [], "run `python -m market.chain.compile` and commit contracts/artifacts"


def test_drift_is_detected_when_bytecode_differs() -> None:
    fresh = compile_all()
    fresh["ContributionMarket"] = {**fresh["ContributionMarket"], "bytecode": "0x00"}

    assert drift(fresh) == ["ContributionMarket"]


def test_artifact_has_abi_and_bytecode() -> None:
    art = load_artifact("ContributionMarket")

    assert any(item.get("name") == "postResult" for item in art["abi"])
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 1000
