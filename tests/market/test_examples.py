"""The example tasks: real data that ships inside installed packages (nothing downloads), in the shape its schema
says, features in [0, 1], and the same split for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from market.data import EXAMPLES, example, example_splits
from market.errors import ConfigError


@pytest.mark.parametrize("name, rows, features, classes", [("digits", 1797, 64, 10), ("breast_cancer", 569, 30, 2),
                                                          ("mnist5k", 5000, 784, 10)])
def test_each_example_loads_real_data_in_its_schema(name: str, rows: int, features: int, classes: int) -> None:
    ex = example(name)
    x, y = ex.load()
    assert x.shape == (rows, features) == (rows, ex.schema.n_features) and x.dtype == np.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) == 1.0
    assert sorted(np.unique(y).tolist()) == list(range(classes)) and ex.schema.n_classes == classes
    if ex.schema.image_shape is not None:
        h, w = ex.schema.image_shape
        assert h * w == features
    assert np.unique(x, axis=0).shape[0] > 0.95 * rows  # real samples, not a constant or a few repeated rows


def test_a_split_is_the_same_for_the_same_seed_and_covers_every_row_once() -> None:
    a = example_splits("breast_cancer", 4, "dirichlet:0.5", seed=3)
    b = example_splits("breast_cancer", 4, "dirichlet:0.5", seed=3)
    assert all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in zip(a.trainers, b.trainers))
    rows = sum(len(d) for d in [*a.trainers, a.validation, a.test])
    assert rows == 569


def test_an_unknown_example_is_a_one_line_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        example("cifar10")
    assert str(exc.value) == f"unknown example task 'cifar10'; choose from {', '.join(EXAMPLES)}"
