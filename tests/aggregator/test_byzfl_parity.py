"""Same answers as ByzFL (EPFL's reference library, PyPI ``byzfl``) on identical random inputs.

Every rule, pre-aggregation step and colluding attack that ByzFL also
implements is run by both on the same float32 matrices (several ``n``, ``f``,
``d``) with the same parameters; outputs must agree within 1e-5 (inputs are
N(0, 1), so this is an absolute tolerance on values of order 1).

``byzfl`` is a test/benchmark dependency installed with ``--no-deps`` (its own
requirements pull a CUDA build of torch and torchvision, which does not import
beside the pinned CPU torch).  Its package ``__init__`` imports torchvision
for its training framework, so the aggregators and attacks are loaded as
sub-modules without running that ``__init__``; they need only torch, numpy
and scipy.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest
import torch

from aggregator.robust import (
    AdaptiveClip,
    CenteredClipping,
    Clip,
    CoordinateMedian,
    GeometricMedian,
    Krum,
    Mean,
    MultiKrum,
    NearestNeighborMixing,
    TrimmedMean,
    get_rule,
)
from trainer_node.attacks import Collusion, poison_update

TOL = 1e-5


def load_byzfl() -> tuple[ModuleType, ModuleType]:
    """``byzfl.aggregators`` and ``byzfl.attacks`` without executing ``byzfl/__init__.py``."""
    if "byzfl" not in sys.modules:
        spec = importlib.util.find_spec("byzfl")
        assert spec is not None
        sys.modules["byzfl"] = importlib.util.module_from_spec(spec)  # package shell: __path__ only
    return importlib.import_module("byzfl.aggregators"), importlib.import_module("byzfl.attacks")


if importlib.util.find_spec("byzfl") is None:
    pytest.skip(
        "byzfl is not installed: `pip install --no-deps byzfl==0.0.11` (make install does); parity with ByzFL untested",
        allow_module_level=True,
    )
AGG, ATK = load_byzfl()

SHAPES = [(7, 1, 3), (10, 2, 100), (11, 3, 1000), (20, 4, 5000), (31, 7, 257), (50, 10, 2000)]


def _x(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1000 * n + d + seed))


def _close(ours: torch.Tensor, theirs: Any) -> float:
    theirs = torch.as_tensor(theirs)
    assert ours.shape == theirs.shape
    return float((ours.double() - theirs.double()).abs().max())


def _rules(f: int, d: int) -> dict[str, tuple[Any, Any]]:
    tau = float(d) ** 0.5  # of the order of the distances, so clipping bites
    return {
        "krum": (lambda x: Krum(f)(x).aggregate, AGG.Krum(f)),
        "multikrum": (lambda x: MultiKrum(f)(x).aggregate, AGG.MultiKrum(f)),
        "cwmed": (lambda x: CoordinateMedian(f)(x).aggregate, AGG.Median()),
        "cwtm": (lambda x: TrimmedMean(f)(x).aggregate, AGG.TrMean(f)),
        "geomed": (lambda x: GeometricMedian(f)(x).aggregate, AGG.GeometricMedian()),
        "geomed(nu=1,T=20)": (lambda x: GeometricMedian(f, nu=1.0, T=20)(x).aggregate, AGG.GeometricMedian(nu=1.0, T=20)),
        "cc(tau=100,L=1)": (lambda x: CenteredClipping(f, tau=100.0, L=1)(x).aggregate, AGG.CenteredClipping()),
        "cc(tau=sqrt d,L=5)": (lambda x: CenteredClipping(f, tau=tau, L=5)(x).aggregate,
                               AGG.CenteredClipping(tau=tau, L=5)),
        "mean": (lambda x: Mean()(x).aggregate, AGG.Average()),
        "nnm": (lambda x: NearestNeighborMixing(f)(x)[0], AGG.NNM(f)),
        "clip": (lambda x: Clip(c=tau)(x)[0], lambda x: AGG.Clipping(c=tau)(x.clone())),
        "arc": (lambda x: AdaptiveClip(f)(x)[0], lambda x: AGG.ARC(f)(x.clone())),
        "nnm+cwtm": (lambda x: get_rule("nnm+cwtm", f)(x).aggregate, lambda x: AGG.TrMean(f)(AGG.NNM(f)(x))),
        "arc+nnm+multikrum": (lambda x: get_rule("arc+nnm+multikrum", f)(x).aggregate,
                              lambda x: AGG.MultiKrum(f)(AGG.NNM(f)(AGG.ARC(f)(x.clone())))),
    }


RULE_NAMES = list(_rules(1, 4))


@pytest.mark.parametrize("name", RULE_NAMES)
def test_rule_matches_byzfl_on_random_inputs(name: str) -> None:
    worst = 0.0
    for n, f, d in SHAPES:
        ours, theirs = _rules(f, d)[name]
        x = _x(n, d)
        worst = max(worst, _close(ours(x), theirs(x)))

    assert worst <= TOL, f"{name}: max |ours - ByzFL| = {worst:.2e} over shapes {SHAPES}"


@pytest.mark.parametrize(("n", "f", "d"), SHAPES)
def test_krum_selection_is_byzfls_on_a_clustered_input(n: int, f: int, d: int) -> None:
    x = _x(n, d)
    x[n - f :] = x[n - f :] * 5 + 3  # f far-away vectors: both must pick among the n - f close ones

    ours = MultiKrum(f)(x)

    assert ours.selected == tuple(range(n - f))
    assert _close(ours.aggregate, AGG.MultiKrum(f)(x)) <= TOL  # type: ignore[arg-type]


def _honest(h: int, d: int) -> tuple[torch.Tensor, Collusion]:
    x = _x(h, d, seed=7)
    return x, Collusion(tuple({"w": row.clone()} for row in x))


@pytest.mark.parametrize(("h", "d"), [(2, 5), (8, 100), (40, 3000)])
@pytest.mark.parametrize(("name", "theirs"), [
    ("alie", lambda: ATK.ALittleIsEnough()),  # tau = 1.5
    ("ipm", lambda: ATK.InnerProductManipulation()),  # tau = 2.0
    ("mimic", lambda: ATK.Mimic()),  # epsilon = 0
])
def test_colluding_attack_matches_byzfl(name: str, theirs: Any, h: int, d: int) -> None:
    x, seen = _honest(h, d)

    ours = poison_update(name, {"w": torch.zeros(d)}, seed=0, collusion=seen)["w"]

    assert _close(ours, theirs()(x)) <= TOL


def test_sign_flip_of_the_honest_mean_matches_byzfl() -> None:
    x, _ = _honest(8, 100)  # ByzFL flips the honest mean; ours flips the attacker's own update

    ours = poison_update("sign_flip", {"w": x.mean(dim=0)}, seed=0, strength=1.0)["w"]

    assert _close(ours, ATK.SignFlipping()(x)) <= TOL
