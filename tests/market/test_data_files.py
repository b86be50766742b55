"""Data files checked against the task's own schema (``market.data.load_shard``): CSV with or without a
header, .npz, and one line saying what is wrong and where for every bad file.

The 30-feature, 2-class data is scikit-learn's bundled breast cancer set, min-max scaled to [0, 1]
and written by the test (nothing downloads).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from market.data import digits_splits, load_shard, save_npz, schema_from_file
from market.errors import ConfigError
from market.spec import DIGITS, DataSchema, TaskSpec, load_spec_file

BC = DataSchema(n_features=30, n_classes=2)


def breast_cancer() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = (d.data - d.data.min(axis=0)) / (d.data.max(axis=0) - d.data.min(axis=0))
    return x, d.target, [str(n) for n in d.feature_names]


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, header: list[str] | None = None) -> Path:
    lines = [",".join([*header, "label"])] if header else []
    lines += [",".join([*(f"{v:.6f}" for v in row), str(label)]) for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def bc() -> tuple[np.ndarray, np.ndarray, list[str]]:
    return breast_cancer()


def test_a_csv_with_a_header_round_trips_through_a_spec_written_from_it(tmp_path: Path, bc) -> None:
    x, y, names = bc
    f = write_csv(tmp_path / "bc.csv", x, y, names)

    schema, notes = schema_from_file(f, "bc")
    spec_file = tmp_path / "spec_bc.json"
    spec_file.write_text(json.dumps(TaskSpec(name="bc", data=schema).model_dump(mode="json")))
    spec = load_spec_file(spec_file)
    ds = load_shard(f, spec.data)

    assert notes == []
    assert (spec.data.n_features, spec.data.n_classes, spec.data.feature_range, spec.data.image_shape) == (30, 2, (0.0, 1.0), None)
    assert ds.x.shape == (569, 30) and ds.x.dtype.is_floating_point
    assert ds.y.tolist() == y.tolist()
    assert np.allclose(ds.x.numpy(), x, atol=1e-6)


def test_the_header_is_optional(tmp_path: Path, bc) -> None:
    x, y, names = bc
    with_header = load_shard(write_csv(tmp_path / "a.csv", x[:50], y[:50], names), BC)
    without = load_shard(write_csv(tmp_path / "b.csv", x[:50], y[:50]), BC)

    assert np.array_equal(with_header.x.numpy(), without.x.numpy()) and np.array_equal(with_header.y.numpy(), without.y.numpy())


def test_npz_and_the_built_in_digits_still_load(tmp_path: Path) -> None:
    splits = digits_splits(2, "iid", 0)
    save_npz(splits.validation, tmp_path / "validation.npz")

    ds = load_shard(tmp_path / "validation.npz", DIGITS)

    assert np.array_equal(ds.x.numpy(), splits.validation.x.numpy())


SCHEMA2 = DataSchema(n_features=2, n_classes=2)

#: (file name, its text, the one-line error after "<path>: ")
CSV_CASES = [
    ("bc.csv", "a,mean_radius,label\n0.1,0.2,0\n0.3,abc,1\n", "row 3, column 'mean_radius' (2): 'abc' is not a number"),
    ("bc.csv", "0.1,0.2,0\n0.3,,1\n", "row 2, column 2: '' is empty"),
    ("bc.csv", ",".join(["0.5"] * 64 + ["1"]) + "\n",
     "expected 2 feature columns and a label (spec data.n_features = 2), got 65 columns in row 1"),
    ("bc.csv", "a,b,c,label\n0.1,0.2,0.3,1\n",
     "expected 2 feature columns and a label (spec data.n_features = 2), got 4 columns in the header row"),
    ("bc.csv", "0.1;0.2;0\n",
     "expected 2 feature columns and a label (spec data.n_features = 2), got 1 column in row 1 (columns must be separated by commas)"),
    ("bc.csv", "0.1,0.2,0\n0.3,0.4\n", "row 2 has 2 columns, expected 3 as in row 1 (features, then the label)"),
    ("bc.csv", "a,mean area,label\n0.1,0.2,0\n0.3,2501,1\n",
     "feature 'mean area' (column 2) has values up to 2501, outside the spec's data.feature_range [0, 1]: "
     "scale it (min-max per column) before training"),
    ("bc.csv", "-3,5,0\n", "feature column 1 has values down to -3, outside the spec's data.feature_range [0, 1] "
     "(and 1 more column: 2): scale it (min-max per column) before training"),
    ("trainer-1.csv", "0.1,0.2,0\n0.3,0.4,1\n0.5,0.6,7\n", "label 7 in row 3 is not a class of this task (data.n_classes = 2: labels 0..1)"),
    ("bc.csv", "0.1,0.2,0\n0.3,0.4,0.5\n", "label 0.5 in row 2 is not a class number (labels are the whole numbers 0..1) "
     "(a task that predicts a number: data.kind = 'regression')"),
    ("bc.csv", "a,b,diagnosis\n0.1,0.2,M\n",
     "row 2, column 'diagnosis' (3): 'M' is not a number (labels are the class numbers 0..1: map each class name to a number)"),
    ("bc.csv", "0.1,0.2,0\n0.3,nan,1\n", "row 2, column 2: nan is not allowed, features must be finite numbers"),
    ("bc.csv", "0.1,inf,0\n", "row 1, column 2: inf is not allowed, features must be finite numbers"),
    ("bc.csv", "", "the file is empty (expected rows of 2 features and a label, comma-separated)"),
    ("bc.csv", "\n\n", "the file is empty (expected rows of 2 features and a label, comma-separated)"),
    ("bc.csv", "a,b,label\n", "has a header row but no data rows"),
    ("bc.csv", ",a,b,label\n0,0.1,0.2,1\n",
     "expected 2 feature columns and a label (spec data.n_features = 2), got 4 columns in the header row "
     "(the first column has no name: is it an index column? write the file without it, e.g. pandas' index=False)"),
]


@pytest.mark.parametrize("name, text, message", CSV_CASES, ids=[c[2][:40] for c in CSV_CASES])
def test_a_bad_csv_is_one_line_saying_what_and_where(tmp_path: Path, name: str, text: str, message: str) -> None:
    f = tmp_path / name
    f.write_text(text)

    with pytest.raises(ConfigError) as err:
        load_shard(f, SCHEMA2)

    assert str(err.value) == f"{f}: {message}"
    assert "\n" not in str(err.value)


NPZ_CASES = [
    ({"X": np.zeros((3, 2)), "y": np.zeros(3)},
     "an .npz data file needs arrays 'x' (features, one row per sample) and 'y' (labels); it has 'X', 'y'"),
    ({"x": np.zeros((3, 3)), "y": np.zeros(3)}, "expected 2 features per row (spec data.n_features = 2), x has shape (3, 3)"),
    ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, "y must hold one label per row of x: x has shape (3, 2), y (4,)"),
    ({"x": np.array([[0.0, 0.5], [np.nan, 1.0]]), "y": np.zeros(2)}, "x[1, 0]: nan is not allowed, features must be finite numbers"),
    ({"x": np.zeros((3, 2)), "y": np.array([0, 1, 5])}, "label 5 at y[2] is not a class of this task (data.n_classes = 2: labels 0..1)"),
    ({"x": np.array([["a", "b"]]), "y": np.zeros(1)}, "x holds <U1, not numbers"),
    ({"x": np.zeros((0, 2)), "y": np.zeros(0)}, "x has no rows"),
]


@pytest.mark.parametrize("arrays, message", NPZ_CASES, ids=[c[1][:40] for c in NPZ_CASES])
def test_a_bad_npz_is_one_line(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    f = tmp_path / "shard.npz"
    np.savez(f, **arrays)  # type: ignore[arg-type]

    with pytest.raises(ConfigError) as err:
        load_shard(f, SCHEMA2)

    assert str(err.value) == f"{f}: {message}"


@pytest.mark.parametrize("name, content, message", [
    ("shard.npz", b"PK\x03\x04 not a zip", "{f}: not a readable .npz file (numpy.savez(path, x=features, y=labels) writes one)"),
    ("shard.txt", b"1,2,3\n", "{f}: data files must be .npz or .csv (.npz: arrays x, y; .csv: the label in the last column), "
     "or a folder of images with one subfolder per class"),
    ("shard.csv", b"\xff\xfe\x00\x01", "{f}: not a text CSV file (it is not UTF-8)"),
    (None, b"", "cannot read data file {f}: No such file or directory"),
])
def test_unreadable_files(tmp_path: Path, name: str | None, content: bytes, message: str) -> None:
    f = tmp_path / (name or "missing.csv")
    if name:
        f.write_bytes(content)

    with pytest.raises(ConfigError) as err:
        load_shard(f, SCHEMA2)

    assert str(err.value) == message.format(f=f)


def test_the_spec_decides_the_range_and_the_classes(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("-0.5,0.5,2\n0.25,-1,0\n")

    ds = load_shard(f, DataSchema(n_features=2, n_classes=3, feature_range=(-1.0, 1.0)))

    assert ds.y.tolist() == [2, 0]
    with pytest.raises(ConfigError, match="feature column 1 has values down to -0.5"):
        load_shard(f, DataSchema(n_features=2, n_classes=3))


def test_schema_from_file_refuses_what_a_spec_cannot_describe(tmp_path: Path, bc) -> None:
    x, y, names = bc
    raw = write_csv(tmp_path / "raw.csv", x * 100, y, names)
    with pytest.raises(ConfigError) as err:
        schema_from_file(raw)
    assert str(err.value) == (
        f"{raw}: feature 'mean radius' (column 1) has values up to 100, outside the range [0, 1] "
        "(and 29 more columns: 2, 3, 4, 5, 6, 7, 8, 9, ...): scale every feature to [0, 1] (min-max per column) first"
    )

    f = tmp_path / "f.csv"
    f.write_text("0.1,0.2,0\n0.3,0.4,1.5\n")
    with pytest.raises(ConfigError, match=r"label 1\.5 in row 2 is not a class number \(labels are the whole numbers 0, 1, \.\.\.\)"):
        schema_from_file(f)

    f.write_text("0.1,0.2,0\n0.3,0.4,0\n")
    with pytest.raises(ConfigError, match="every label is 0: a task needs at least 2 classes"):
        schema_from_file(f)

    f.write_text("0.1,0.2,3\n0.3,0.4,1\n")
    schema, notes = schema_from_file(f)
    assert schema.n_classes == 4 and notes == [f"labels go up to 3 but classes 0, 2 have no example in {f}"]
