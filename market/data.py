"""Data that needs no download: scikit-learn's bundled digits, split over trainers.

Features are scaled to [0, 1]. Splits are seeded: ``iid`` shuffles and deals
evenly; ``dirichlet:ALPHA`` gives each trainer class proportions drawn from
Dir(ALPHA) (Hsu et al. 2019, "Measuring the effects of non-identical data
distribution"), the usual non-IID benchmark split.  Trainers in the real CLI
load their own shard from an ``.npz`` (arrays ``x``, ``y``) or ``.csv`` file
(label in the last column).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from market.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor  # float32 [n, features]
    y: torch.Tensor  # int64 [n]

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Splits:
    trainers: list[Dataset]
    validation: Dataset  # held by the aggregator (coalition utilities)
    test: Dataset  # held by the owner (reported accuracy)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def _ds(x: np.ndarray, y: np.ndarray) -> Dataset:
    return Dataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))


def parse_partition(text: str) -> tuple[str, float]:
    if text == "iid":
        return "iid", 0.0
    if text.startswith("dirichlet:"):
        try:
            alpha = float(text.split(":", 1)[1])
        except ValueError:
            alpha = -1.0
        if not alpha > 0:
            raise ConfigError(f"--partition {text!r}: ALPHA must be a positive number, e.g. dirichlet:0.5")
        return "dirichlet", alpha
    raise ConfigError(f"--partition {text!r}: use 'iid' or 'dirichlet:ALPHA'")


def partition_indices(y: np.ndarray, n: int, partition: str, seed: int, min_size: int = 10) -> list[np.ndarray]:
    """Indices of each of ``n`` shards; every shard gets at least ``min_size`` samples."""
    kind, alpha = parse_partition(partition)
    rng = np.random.default_rng(seed)
    if n * min_size > len(y):
        raise ConfigError(f"{len(y)} samples cannot give {n} trainers {min_size} each")
    if kind == "iid":
        perm = rng.permutation(len(y))
        return [np.sort(s) for s in np.array_split(perm, n)]
    classes = np.unique(y)
    for _ in range(1000):
        shards: list[list[int]] = [[] for _ in range(n)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            props = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for i, part in enumerate(np.split(idx, cuts)):
                shards[i].extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(np.array(s, dtype=np.int64)) for s in shards]
    raise ConfigError(f"could not draw a Dirichlet({alpha}) split with {min_size}+ samples per trainer")


def digits_splits(n_trainers: int, partition: str = "iid", seed: int = 0, holdout: float = 0.15) -> Splits:
    """Digits split into a validation set, a test set (``holdout`` each) and ``n_trainers`` shards."""
    x, y = load_digits_arrays()
    rng = np.random.default_rng(seed + 7919)
    perm = rng.permutation(len(y))
    h = int(len(y) * holdout)
    val_idx, test_idx, train_idx = perm[:h], perm[h : 2 * h], perm[2 * h :]
    xt, yt = x[train_idx], y[train_idx]
    shards = partition_indices(yt, n_trainers, partition, seed)
    return Splits([_ds(xt[s], yt[s]) for s in shards], _ds(x[val_idx], y[val_idx]), _ds(x[test_idx], y[test_idx]))


def save_npz(ds: Dataset, path: str | Path) -> None:
    np.savez(path, x=ds.x.numpy(), y=ds.y.numpy())


def load_shard(path: str | Path, n_features: int, n_classes: int) -> Dataset:
    """Load a trainer's private data file, checking it against the task's schema."""
    p = Path(path)
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise ConfigError(f"{p}: an .npz shard needs arrays 'x' and 'y'")
                x, y = np.asarray(z["x"], dtype=np.float32), np.asarray(z["y"])
        elif p.suffix == ".csv":
            arr = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2)
            x, y = arr[:, :-1].astype(np.float32), arr[:, -1]
        else:
            raise ConfigError(f"{p}: data files must be .npz or .csv")
    except OSError as exc:
        raise ConfigError(f"cannot read data file {p}: {exc.strerror or exc}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{p}: malformed data: {exc}") from None
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ConfigError(f"{p}: expected {n_features} features per row, got shape {x.shape}")
    if len(y) != len(x) or len(y) == 0:
        raise ConfigError(f"{p}: needs as many labels as rows, and at least one row")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{p}: features contain NaN or Inf")
    if np.any(y != np.round(y)) or y.min() < 0 or y.max() >= n_classes:
        raise ConfigError(f"{p}: labels must be integers in [0, {n_classes - 1}]")
    return _ds(x, y.astype(np.int64))


def dataset_commitment(ds: Dataset) -> bytes:
    """sha2-256 over a dataset's canonical bytes (shape, float32 features, int64 labels).

    The owner posts this for the validation set when creating a task, so the
    aggregator and anyone replaying a round can show they used the same data.
    """
    import hashlib

    h = hashlib.sha256()
    h.update(b"poc-dataset-v1")
    h.update(np.asarray(ds.x.shape, dtype=np.int64).tobytes())
    h.update(ds.x.numpy().astype("<f4").tobytes())
    h.update(ds.y.numpy().astype("<i8").tobytes())
    return h.digest()
