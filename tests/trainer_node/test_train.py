"""Local training: the delta is deterministic, seeded locally, and actually learns."""

from __future__ import annotations

import pytest
import torch

from market.data import Dataset
from market.errors import ConfigError
from market.models import accuracy, build_model, model_with_state, state_of
from market.spec import DataSchema, TaskSpec, TrainingSpec
from trainer_node.train import _cross_entropy, local_update

SPEC = TaskSpec(data=DataSchema(n_features=2, n_classes=2, image_shape=None), training=TrainingSpec(epochs=3, lr=0.5, batch_size=4))


def _separable(n: int = 16) -> Dataset:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 2, generator=g) * 0.4 + y[:, None].float() * torch.tensor([0.6, -0.6]) + torch.tensor([0.0, 0.6])
    return Dataset(x.float(), y.long())


def _global() -> dict[str, torch.Tensor]:
    return state_of(build_model(SPEC.model, SPEC.data, seed=0))


def test_delta_has_the_model_names_shapes_and_float32() -> None:
    g = _global()

    delta = local_update(SPEC, g, _separable(), seed=1)

    assert list(delta) == sorted(g)
    assert all(delta[k].shape == g[k].shape and delta[k].dtype == torch.float32 for k in g)


def test_same_seed_gives_identical_delta() -> None:
    g, data = _global(), _separable()

    a, b = local_update(SPEC, g, data, seed=7), local_update(SPEC, g, data, seed=7)

    assert all(torch.equal(a[k], b[k]) for k in a)


def test_different_seed_shuffles_differently() -> None:
    g, data = _global(), _separable()

    a, b = local_update(SPEC, g, data, seed=7), local_update(SPEC, g, data, seed=8)

    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_global_rng_is_left_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()

    local_update(SPEC, _global(), _separable(), seed=1)

    assert torch.equal(torch.random.get_rng_state(), before)


def test_global_plus_delta_fits_the_local_data() -> None:
    g, data = _global(), _separable()

    delta = local_update(SPEC, g, data, seed=1)
    trained = model_with_state(SPEC.model, SPEC.data, {k: g[k] + delta[k] for k in g})

    assert accuracy(trained, data.x, data.y) == 1.0


def test_global_state_is_not_modified() -> None:
    g = _global()
    copy = {k: v.clone() for k, v in g.items()}

    local_update(SPEC, g, _separable(), seed=1)

    assert all(torch.equal(g[k], copy[k]) for k in g)


def test_the_loss_is_torchs_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(32, 10, generator=g) * 5, torch.randint(0, 10, (32,), generator=g)

    assert torch.allclose(_cross_entropy(logits, y), torch.nn.functional.cross_entropy(logits, y), atol=1e-6)


def test_empty_data_is_a_config_error() -> None:
    empty = Dataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))

    with pytest.raises(ConfigError):
        local_update(SPEC, _global(), empty, seed=1)
