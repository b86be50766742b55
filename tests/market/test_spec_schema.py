"""The task spec's data schema: image_shape only for images, feature_range, the task's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from market.errors import ConfigError
from market.models import build_model
from market.spec import DIGITS, DataSchema, ModelSpec, TaskSpec, load_spec_file

BC_TOML = """\
name = "breast cancer"

[data]
n_features = 30
n_classes = 2
"""


def test_the_built_in_spec_is_digits_and_still_builds_the_cnn() -> None:
    spec = TaskSpec()

    assert spec.data == DIGITS and spec.data.image_shape == (8, 8) and spec.name == "digits"
    assert spec.data.feature_range == (0.0, 1.0)
    cnn = TaskSpec(model=ModelSpec(arch="cnn"))
    build_model(cnn.model, cnn.data)  # the 8x8 image shape reaches the CNN


def test_a_toml_data_table_without_image_shape_is_not_an_image(tmp_path: Path) -> None:
    f = tmp_path / "spec.toml"
    f.write_text(BC_TOML)

    spec = load_spec_file(f)

    assert (spec.name, spec.data.n_features, spec.data.n_classes, spec.data.image_shape) == ("breast cancer", 30, 2, None)
    assert spec.data.feature_range == (0.0, 1.0)
    assert load_spec_file(_json(tmp_path, json.loads(spec.to_json_bytes()))) == spec  # the published JSON round-trips


def test_a_data_table_for_64_features_has_no_image_either() -> None:
    # the rule is "a data table without image_shape has none", not a guess from n_features
    assert DataSchema(n_features=64).image_shape is None


def test_image_shape_must_multiply_out_when_given(tmp_path: Path) -> None:
    f = _json(tmp_path, {"data": {"n_features": 30, "image_shape": [8, 8]}})

    with pytest.raises(ConfigError) as err:
        load_spec_file(f)

    assert str(err.value) == (
        f"{f}: data: channels x image_shape must multiply out to n_features (got [8, 8] for 30 features); "
        "leave image_shape out unless the features are an image"
    )


def test_an_image_task_with_its_shape_builds_the_cnn() -> None:
    spec = TaskSpec(data=DataSchema(n_features=30, n_classes=2, image_shape=(5, 6)), model=ModelSpec(arch="cnn"))

    build_model(spec.model, spec.data)


def test_the_cnn_needs_an_image_shape(tmp_path: Path) -> None:
    f = tmp_path / "spec.toml"
    f.write_text(BC_TOML + '[model]\narch = "cnn"\n')

    with pytest.raises(ConfigError, match=r"model.arch 'cnn' needs data.image_shape$"):
        load_spec_file(f)


def test_feature_range_from_toml_and_its_check(tmp_path: Path) -> None:
    f = tmp_path / "spec.toml"
    f.write_text(BC_TOML + "feature_range = [-1, 1]\n")
    assert load_spec_file(f).data.feature_range == (-1.0, 1.0)

    f.write_text(BC_TOML + "feature_range = [1, 0]\n")
    with pytest.raises(ConfigError, match=r"data: feature_range must be two finite numbers \[low, high\] with low < high, within ±1e30 \(got \[1, 0\]\)"):
        load_spec_file(f)


def test_the_task_name_is_short_and_not_empty() -> None:
    assert TaskSpec(name="x" * 80).name == "x" * 80
    for bad in ("", "x" * 81):
        with pytest.raises(ValidationError):
            TaskSpec(name=bad)


def _json(tmp_path: Path, obj: object) -> Path:
    f = tmp_path / "spec.json"
    f.write_text(json.dumps(obj))
    return f


# ------------------------------------------------------------------ docs/spec-reference.md
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"


def _blocks(lang: str) -> list[str]:
    import re

    return re.findall(rf"```{lang}\n(.*?)```", REFERENCE.read_text(), flags=re.S)


def test_the_reference_documents_every_field() -> None:
    import re

    from market.spec import ProofSpec, RobustSpec, TrainingSpec, ValidationSpec, ValuationSpec

    text = REFERENCE.read_text()
    for title, model in [("Top level", TaskSpec), ("`data`", DataSchema), ("`model`", ModelSpec), ("`training`", TrainingSpec),
                         ("`robust`", RobustSpec), ("`valuation`", ValuationSpec), ("`validation`", ValidationSpec),
                         ("`proof`", ProofSpec)]:
        section = text.split(f"### {title}", 1)[1].split("\n### ", 1)[0].split("\n#### ", 1)[0]  # the field table, not a subsection's
        rows = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
        assert rows == list(model.model_fields), title


def test_the_reference_examples_are_valid_specs(tmp_path: Path) -> None:
    toml_blocks, json_blocks = _blocks("toml"), _blocks("json")
    assert len(toml_blocks) == 2 and len(json_blocks) == 2
    specs = []
    for i, (ext, block) in enumerate([*(("toml", b) for b in toml_blocks), *(("json", b) for b in json_blocks)]):
        f = tmp_path / f"s{i}.{ext}"
        f.write_text(block)
        specs.append(load_spec_file(f))
    minimal_toml, full_toml, minimal_json, full_json = specs
    assert minimal_toml == minimal_json
    assert (minimal_toml.name, minimal_toml.data.n_features, minimal_toml.data.n_classes) == ("breast cancer", 30, 2)
    assert minimal_toml.data.image_shape is None and minimal_toml.model == ModelSpec()
    assert full_json == TaskSpec(name="breast cancer", data=DataSchema(name="breast cancer", n_features=30, n_classes=2))
    assert (full_toml.model.arch, full_toml.proof.system, full_toml.data.n_features) == ("mlp", "groth16", 30)
