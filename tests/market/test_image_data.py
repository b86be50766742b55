"""Image data: a folder per class, or an .npz of [n, channels, rows, columns]; the spec's image shape, channels and
preprocessing (``data.scale``/``shift``) applied by every party the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from market.data import load_shard, schema_from_file
from market.errors import ConfigError
from market.spec import DataSchema

RNG = np.random.default_rng(0)


def folder(root: Path, classes: int = 3, per: int = 4, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> Path:
    for c in range(classes):
        (root / str(c)).mkdir(parents=True)
        for i in range(per):
            shape = (*size, 3) if mode == "RGB" else size
            Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(root / str(c) / f"{i}.png")
    return root


def test_an_image_folder_is_one_sample_per_file_labelled_by_its_folder(tmp_path: Path) -> None:
    root = folder(tmp_path / "imgs")
    schema, notes = schema_from_file(root)
    ds = load_shard(root, schema)

    assert (schema.n_classes, schema.image_shape, schema.channels, schema.n_features) == (3, (6, 5), 3, 90)
    first = np.asarray(Image.open(root / "0" / "0.png"), dtype=np.float32).transpose(2, 0, 1).reshape(-1) / 255
    assert torch.allclose(ds.x[0], torch.from_numpy(first)) and ds.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    grey = folder(tmp_path / "grey", mode="L")
    assert schema_from_file(grey)[0].channels == 1


@pytest.mark.parametrize("make, needle", [
    (lambda r: folder(r, size=(6, 5)) and Image.fromarray(np.zeros((7, 5, 3), np.uint8)).save(r / "1" / "big.png"),
     "big.png: the image is 7x5 pixels (rows x columns), the task's are 6x5: resize it first"),
    (lambda r: folder(r) and (r / "cats").mkdir(), "subfolder 'cats' is not a class number"),
    (lambda r: folder(r) and (r / "2" / "bad.png").write_bytes(b"not an image"), "bad.png: not a readable image"),
])
def test_a_bad_image_folder_is_one_line(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    schema = DataSchema(n_features=90, n_classes=3, image_shape=(6, 5), channels=3)
    make(tmp_path / "imgs")
    with pytest.raises(ConfigError) as err:
        load_shard(tmp_path / "imgs", schema)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_npz_of_8_bit_images_gets_the_scale_every_party_applies(tmp_path: Path) -> None:
    f = tmp_path / "x.npz"
    x = RNG.integers(0, 256, (10, 3, 6, 5)).astype(np.uint8)
    np.savez(f, x=x, y=np.arange(10) % 3)
    schema, notes = schema_from_file(f)

    assert schema.scale == pytest.approx(1 / 255) and schema.input_shape == (3, 6, 5) and "data.scale = 1/255" in notes[0]
    ds = load_shard(f, schema)
    assert torch.allclose(ds.x, torch.from_numpy(x.reshape(10, -1) / 255).float())
    last = tmp_path / "last.npz"
    np.savez(last, x=x.transpose(0, 2, 3, 1), y=np.arange(10) % 3)
    with pytest.raises(ConfigError, match=r"channels last: store x.transpose\(0, 3, 1, 2\)"):
        load_shard(last, schema)


def test_normalisation_is_applied_before_the_range_check(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("10,20,0\n30,40,1\n")
    schema = DataSchema(n_features=2, n_classes=2, scale=0.5, shift=-20, feature_range=(-20, 0))

    assert load_shard(f, schema).x.tolist() == [[-15.0, -10.0], [-5.0, 0.0]]
    with pytest.raises(ConfigError, match="outside the spec's data.feature_range"):
        load_shard(f, DataSchema(n_features=2, n_classes=2, scale=0.5))
