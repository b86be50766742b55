"""The robust step inside a round: what the round applies, who is paid, what the receipt records."""

from __future__ import annotations

import json

import pytest
import torch

from aggregator.outcome import RoundOutcome
from aggregator.robust import ROBUST_RULES
from aggregator.round import aggregate_round
from market.data import Splits, digits_splits
from market.errors import ConfigError
from market.models import build_model, state_of
from market.spec import RobustSpec, TaskSpec
from market.tensors import encode_state, flatten, unflatten

SPEC = TaskSpec()


@pytest.fixture(scope="module")
def splits() -> Splits:
    return digits_splits(5, "iid", seed=0)


@pytest.fixture(scope="module")
def g() -> dict[str, torch.Tensor]:
    return state_of(build_model(SPEC.model, SPEC.data, SPEC.model_seed))


def _spec(rule: str, f: int = 1, **params: object) -> TaskSpec:
    return SPEC.model_copy(update={"robust": RobustSpec(rule=rule, f=f, params=params)})


def _deltas(g: dict[str, torch.Tensor], n: int = 5) -> list[torch.Tensor]:
    """``n - 1`` honest updates around a common direction and one flipped at 3x (the last)."""
    gen = torch.Generator().manual_seed(0)
    base = 0.05 * torch.randn(flatten(g).numel(), generator=gen)
    honest = [base + 0.02 * torch.randn(base.numel(), generator=gen) for _ in range(n - 1)]  # cosine ~0.86: not copies
    return honest + [-3.0 * base]


def _subs(g: dict[str, torch.Tensor], deltas: list[torch.Tensor], samples: list[int] | None = None) -> list[tuple[str, bytes]]:
    samples = samples or [100] * len(deltas)
    return [
        (f"0x{i + 1:040x}", encode_state(unflatten(d, g), {"kind": "delta", "samples": str(s)}))
        for i, (d, s) in enumerate(zip(deltas, samples))
    ]


def _run(spec: TaskSpec, g: dict[str, torch.Tensor], splits: Splits, deltas: list[torch.Tensor], **kw: object) -> RoundOutcome:
    return aggregate_round(spec, g, _subs(g, deltas, **kw), splits.validation.x, splits.validation.y)  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", sorted(set(ROBUST_RULES) - {"mean"}) + ["nnm+cwtm", "nnm+multikrum", "arc+cc"])
def test_every_rule_makes_the_flipped_update_the_unpaid_outlier(rule: str, g, splits) -> None:  # type: ignore[no-untyped-def]
    deltas = _deltas(g)
    attacker = "0x" + f"{5:040x}"

    out = _run(_spec(rule), g, splits, deltas)

    assert out.outliers == (attacker,) and out.bps[4] == 0 and sum(out.bps) == 10_000
    assert out.robust["applied"] == rule and out.robust["treatment"][attacker]["outlier"] is True
    assert sum(t["outlier"] for t in out.robust["treatment"].values()) == 1


def test_a_non_excluding_rule_applies_its_own_aggregate(g, splits) -> None:  # type: ignore[no-untyped-def]
    deltas = _deltas(g)

    out = _run(_spec("cwmed"), g, splits, deltas, samples=[10, 20, 30, 40, 50])

    median = torch.stack(deltas).median(dim=0).values  # n = 5: the middle value, sample counts play no part
    assert torch.allclose(flatten(out.new_state), flatten(g) + median, atol=1e-6)
    assert out.robust["update"] == "rule" and set(out.robust["treatment"]["0x" + f"{1:040x}"]) == {"outlier", "kept_fraction"}


def test_multikrum_applies_the_survivors_equal_weight_fedavg_whatever_samples_they_claim(g, splits) -> None:  # type: ignore[no-untyped-def]
    deltas = _deltas(g)
    samples = [10, 20, 30, 40, 999_999_999_999_999_999]  # the largest claim cannot buy weight

    out = _run(_spec("multikrum"), g, splits, deltas, samples=samples)

    expected = sum(deltas[:4]) / 4
    assert torch.allclose(flatten(out.new_state), flatten(g) + expected, atol=1e-6)
    assert out.robust["update"] == "fedavg" and out.robust["treatment"]["0x" + f"{1:040x}"]["weight"] == 0.25
    assert out.robust["weights"] == "equal" and out.payout["weights"] == "equal" and out.samples["0x" + f"{1:040x}"] == 10


def test_a_claimed_sample_count_cannot_make_one_update_the_model(g, splits) -> None:  # type: ignore[no-untyped-def]
    # issue 14 row 7: under mean / multikrum, 10^18 - 1 claimed samples used to make the global model that update
    deltas = _deltas(g)[:4]
    samples = [100, 100, 100, 999_999_999_999_999_999]

    out = _run(_spec("mean", f=0), g, splits, deltas, samples=samples)

    assert torch.allclose(flatten(out.new_state), flatten(g) + sum(deltas) / 4, atol=1e-6)


def test_a_spec_with_f_zero_runs_its_rule_and_pays_everyone(g, splits) -> None:  # type: ignore[no-untyped-def]
    out = _run(_spec("cwmed", f=0), g, splits, _deltas(g))

    assert out.robust["applied"] == "cwmed" and out.robust["f_effective"] == 0 and out.outliers == ()


def test_too_few_updates_for_any_f_fall_back_to_mean(g, splits) -> None:  # type: ignore[no-untyped-def]
    out = _run(_spec("cwtm", f=1), g, splits, _deltas(g, n=2))

    assert out.robust["applied"] == "mean" and out.robust["f_effective"] == 0 and out.outliers == ()
    assert out.robust["update"] == "fedavg"


def test_f_is_lowered_to_what_the_rule_supports(g, splits) -> None:  # type: ignore[no-untyped-def]
    out = _run(_spec("cwtm", f=3), g, splits, _deltas(g))  # n = 5 supports f = 2

    # two may be flagged, but only the flipped update is far by evidence
    assert out.robust["f_effective"] == 2 and out.outliers == ("0x" + f"{5:040x}",)


def test_a_round_without_an_attacker_flags_nobody(g, splits) -> None:  # type: ignore[no-untyped-def]
    honest = _deltas(g)[:4]

    for rule in ("ccdrop", "cc", "cwtm", "cwmed", "geomed", "nnm+cwtm"):
        out = _run(_spec(rule, f=1), g, splits, honest)
        assert out.outliers == (), rule


def test_the_receipt_records_the_evidence_behind_each_flag(g, splits) -> None:  # type: ignore[no-untyped-def]
    out = _run(_spec("ccdrop"), g, splits, _deltas(g))
    attacker, honest = "0x" + f"{5:040x}", "0x" + f"{1:040x}"

    assert out.robust["evidence"] == {"distance_over_median": 2.5, "cosine_below": 0.3, "or_cosine_below": -0.5}
    flagged, kept = out.robust["treatment"][attacker], out.robust["treatment"][honest]
    assert flagged["outlier"] and flagged["dropped"] == 1.0 and flagged["cosine"] < -0.5
    assert not kept["outlier"] and kept["cosine"] > 0.3 and kept["distance"] < flagged["distance"]


def test_an_unknown_rule_in_the_spec_is_a_config_error(g, splits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="unknown robust rule"):
        _run(_spec("median"), g, splits, _deltas(g))


def test_bad_rule_parameters_fail_even_when_the_round_is_too_small(g, splits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="bad parameters"):
        _run(_spec("cc", bogus=1), g, splits, _deltas(g, n=2))


def test_the_robust_record_is_json(g, splits) -> None:  # type: ignore[no-untyped-def]
    out = _run(_spec("nnm+cc"), g, splits, _deltas(g))

    record = json.loads(json.dumps(out.to_dict()))["robust"]

    assert record["applied"] == "nnm+cc" and record["update"] == "rule"
    assert set(record["treatment"]["0x" + f"{1:040x}"]) == {"outlier", "weight", "clip"}
