"""Simulated attacks: each does exactly its one thing, and only that."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from aggregator.validate import validate_update
from market.data import Dataset
from market.errors import ConfigError
from market.tensors import encode_state
from trainer_node.attacks import (
    ALIE_Z, ATTACK_NAMES, COLLUDING_ATTACKS, GAUSSIAN_NORM_FRACTION, IPM_EPSILON, SIGN_FLIP_SCALE, Collusion,
    attack_seed, is_colluding, poison_data, poison_update,
)


def _delta() -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict([("b", torch.tensor([1.0, -2.0])), ("w", torch.tensor([[0.5, 0.0], [0.0, 4.0]]))])


def test_attack_names_are_the_nine_documented_ones() -> None:
    assert ATTACK_NAMES == ("alie", "copier", "free_rider", "gaussian", "ipm", "label_flip", "mimic", "noisy_free_rider",
                            "sign_flip")
    assert COLLUDING_ATTACKS == ("alie", "copier", "ipm", "mimic") and is_colluding("alie") and not is_colluding("gaussian")


def test_sign_flip_submits_minus_scale_times_the_honest_delta() -> None:
    out = poison_update("sign_flip", _delta(), seed=0)

    assert torch.equal(out["b"], torch.tensor([-SIGN_FLIP_SCALE, 2 * SIGN_FLIP_SCALE]))


def test_sign_flip_strength_overrides_the_scale() -> None:
    out = poison_update("sign_flip", _delta(), seed=0, strength=1.0)

    assert torch.equal(out["b"], torch.tensor([-1.0, 2.0]))


def test_gaussian_ignores_the_honest_values_and_is_seeded() -> None:
    a = poison_update("gaussian", _delta(), seed=5)
    b = poison_update("gaussian", OrderedDict((k, v * 100) for k, v in _delta().items()), seed=5)

    assert all(torch.equal(a[k], b[k]) for k in a)


def _norm(delta: "OrderedDict[str, torch.Tensor]") -> float:
    return float(torch.cat([v.flatten().double() for v in delta.values()]).norm())


@pytest.mark.parametrize("max_norm", [None, 100.0, 7.5])
def test_gaussian_noise_fills_the_published_norm_bound(max_norm: float | None) -> None:
    big = OrderedDict([("w", torch.zeros(200_000)), ("b", torch.zeros(10))])

    out = poison_update("gaussian", big, seed=1, max_norm=max_norm)

    bound = 100.0 if max_norm is None else max_norm  # the spec's default max_update_norm
    assert abs(_norm(out) - GAUSSIAN_NORM_FRACTION * bound) < 1e-4 * bound
    sigma = GAUSSIAN_NORM_FRACTION * bound / 200_010**0.5
    assert abs(float(out["w"].std()) - sigma) < 0.02 * sigma and abs(float(out["w"].mean())) < 0.02 * sigma


def test_gaussian_strength_sets_sigma_directly() -> None:
    big = OrderedDict([("w", torch.zeros(200_000))])

    out = poison_update("gaussian", big, seed=1, strength=3.0, max_norm=1.0)

    assert abs(float(out["w"].std()) - 3.0) < 0.06


def test_gaussian_repeats_its_noise_for_one_seed_and_attack_seed_is_per_task_and_trainer() -> None:
    a, b = attack_seed(0, 1, "0xAA"), attack_seed(0, 1, "0xaa")

    assert a == b and len({a, attack_seed(0, 2, "0xaa"), attack_seed(0, 1, "0xbb"), attack_seed(1, 1, "0xaa")}) == 4
    first, again = poison_update("gaussian", _delta(), seed=a), poison_update("gaussian", _delta(), seed=a)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_gaussian_noise_passes_the_aggregators_norm_check() -> None:
    template = OrderedDict([("linear.weight", torch.zeros(10, 64)), ("linear.bias", torch.zeros(10))])
    noise = poison_update("gaussian", template, seed=4, max_norm=100.0)

    delta, samples, reason = validate_update(encode_state(noise, {"kind": "delta", "samples": "9"}), template, 100.0)

    assert reason is None and samples == 9


def test_free_rider_submits_zeros() -> None:
    out = poison_update("free_rider", _delta(), seed=0)

    assert all(torch.count_nonzero(v) == 0 and v.shape == _delta()[k].shape for k, v in out.items())


def test_label_flip_maps_y_to_n_classes_minus_one_minus_y() -> None:
    data = Dataset(torch.ones(3, 2), torch.tensor([0, 1, 9]))

    out = poison_data("label_flip", data, n_classes=10)

    assert out.y.tolist() == [9, 8, 0] and torch.equal(out.x, data.x)


def test_label_flip_leaves_the_update_alone() -> None:
    out = poison_update("label_flip", _delta(), seed=0)

    assert all(torch.equal(out[k], v) for k, v in _delta().items())


def test_update_attacks_leave_the_data_alone() -> None:
    data = Dataset(torch.ones(2, 2), torch.tensor([0, 1]))

    outs = [poison_data(name, data, n_classes=2) for name in ("sign_flip", "gaussian", "free_rider")]

    assert all(o.y.tolist() == [0, 1] for o in outs)


def test_unknown_attack_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="sign_flip"):
        poison_update("backdoor", _delta(), seed=0)


def test_negative_strength_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        poison_update("gaussian", _delta(), seed=0, strength=-1.0)


# --- colluding attacks: they see the round's honest updates --------------------------------------


def _honest() -> Collusion:
    return Collusion((
        OrderedDict([("b", torch.tensor([1.0, 0.0])), ("w", torch.tensor([[2.0]]))]),
        OrderedDict([("b", torch.tensor([3.0, 0.0])), ("w", torch.tensor([[2.0]]))]),
    ))


def _own() -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict([("b", torch.tensor([50.0, 50.0])), ("w", torch.tensor([[50.0]]))])


def test_alie_is_the_honest_mean_plus_z_standard_deviations() -> None:
    out = poison_update("alie", _own(), seed=0, collusion=_honest())

    # b: mean (2, 0), std with ddof=1 (sqrt(2), 0); w: mean 2, std 0
    assert torch.allclose(out["b"], torch.tensor([2.0 + ALIE_Z * 2**0.5, 0.0])) and out["w"].tolist() == [[2.0]]


def test_ipm_is_minus_epsilon_times_the_honest_mean() -> None:
    out = poison_update("ipm", _own(), seed=0, collusion=_honest(), strength=0.5)

    assert out["b"].tolist() == [-1.0, 0.0] and out["w"].tolist() == [[-1.0]] and IPM_EPSILON == 2.0


def test_mimic_copies_the_first_honest_update() -> None:
    seen = _honest()

    out = poison_update("mimic", _own(), seed=0, collusion=seen)

    assert all(torch.equal(out[k], seen.honest[0][k]) for k in out)
    assert out["b"] is not seen.honest[0]["b"]  # a copy, not the honest trainer's tensor


def test_alie_with_one_honest_update_submits_that_update() -> None:
    seen = Collusion(_honest().honest[:1])

    out = poison_update("alie", _own(), seed=0, collusion=seen)

    assert out["b"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize("name", ["alie", "ipm", "mimic"])
def test_colluding_attacks_need_the_honest_updates(name: str) -> None:
    with pytest.raises(ConfigError, match="honest updates"):
        poison_update(name, _own(), seed=0)


def test_colluding_attack_with_mismatched_tensors_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lack tensors"):
        poison_update("ipm", OrderedDict([("other", torch.zeros(2))]), seed=0, collusion=_honest())
