"""Regression tasks (``data.kind = "regression"``): real labels in ``label_range``, one output, squared-error
training, valued by R^2 on the validation set; diabetes is the example task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aggregator.valuation import value_survivors
from aggregator.valuation.utility import CoalitionUtility
from market.data import dataset_commitment, example_splits, load_shard, partition_indices, schema_from_file
from market.errors import ConfigError
from market.models import build_model, held_out_score, model_with_state, r_squared, state_of
from market.spec import DataSchema, TaskSpec, parse_spec
from simulator.simulate import example_fields
from trainer_node.attacks import poison_data
from trainer_node.train import local_update

REG = {"n_features": 3, "kind": "regression"}


def diabetes_spec(**update: object) -> TaskSpec:
    return TaskSpec(name="diabetes", **{**example_fields("diabetes"), **update})  # type: ignore[arg-type]


@pytest.mark.parametrize("doc, needle", [
    ({"data": {**REG, "n_classes": 2}, "valuation": {"metric": "r2"}}, "a regression task's labels are numbers, not classes: leave n_classes out"),
    ({"data": REG}, "a regression task is valued by R^2 on the validation set: set valuation.metric = 'r2' (not 'gce')"),
    ({"data": {"n_features": 3, "n_classes": 2}, "valuation": {"metric": "r2"}}, "valuation.metric 'r2' is for data.kind = 'regression'"),
    ({"data": {"n_features": 3, "n_classes": 2, "label_range": [0, 5]}}, "label_range is for kind = 'regression'"),
    ({"data": {**REG, "label_range": [1, 1]}, "valuation": {"metric": "r2"}}, "label_range must be two finite numbers"),
])
def test_a_regression_spec_that_does_not_add_up_is_refused_in_one_line(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(doc)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_regression_spec_publishes_no_classes_and_round_trips() -> None:
    spec = parse_spec({"data": {**REG, "label_range": [-1, 2]}, "valuation": {"metric": "r2"}})
    doc = json.loads(spec.to_json_bytes())

    assert "n_classes" not in doc["data"] and doc["data"]["kind"] == "regression" and doc["data"]["label_range"] == [-1.0, 2.0]
    assert parse_spec(doc) == spec and spec.data.outputs == 1
    assert spec.model.summary(spec.data).layers[-1].out_shape == (1,)
    # a classification spec still publishes what it did before regression existed
    assert "kind" not in json.loads(TaskSpec().to_json_bytes())["data"]


def test_a_regression_shard_loads_real_labels_and_names_one_out_of_range(tmp_path: Path) -> None:
    schema = DataSchema(n_features=2, kind="regression")
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("a,b,target\n0.1,0.2,0.25\n0.3,0.4,1\n")
    bad.write_text("a,b,target\n0.1,0.2,0.25\n0.3,0.4,1.7\n")

    ds = load_shard(good, schema)
    with pytest.raises(ConfigError) as err:
        load_shard(bad, schema)

    assert ds.y.dtype == torch.float32 and ds.y.tolist() == [0.25, 1.0]
    assert str(err.value) == (f"{bad}: label 1.7 in row 3 is outside the spec's data.label_range [0, 1]: "
                              "scale the labels (min-max) into it before training")
    # the commitment covers the real labels; a classification set's commitment is what it was
    same_as_classes = dataset_commitment(type(ds)(ds.x, torch.tensor([0, 1])))
    assert dataset_commitment(ds) != same_as_classes


def test_task_init_writes_a_regression_spec(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("0.1,0.2,0.3\n0.4,0.5,0.65\n")
    schema, notes = schema_from_file(f, "d", regression=True)

    assert schema.kind == "regression" and schema.n_features == 2 and notes == []
    with pytest.raises(ConfigError, match="label 7 in row 1 is outside"):
        f.write_text("0.1,0.2,7\n")
        schema_from_file(f, "d", regression=True)


def test_dirichlet_splits_a_regression_target_by_its_quantiles() -> None:
    y = np.random.default_rng(0).random(400).astype(np.float32)
    shards = partition_indices(y, 4, "dirichlet:0.1", seed=1)

    means = sorted(float(y[s].mean()) for s in shards)
    assert sorted(np.concatenate(shards).tolist()) == list(range(400))
    assert means[-1] - means[0] > 0.2  # skewed label distributions, not four copies of one


def test_label_flip_mirrors_a_regression_label_in_its_range() -> None:
    splits = example_splits("diabetes", 3, seed=0)
    data = splits.trainers[0]
    flipped = poison_data("label_flip", data, (0.0, 1.0))
    assert torch.allclose(flipped.y, 1.0 - data.y)


def test_squared_error_training_fits_diabetes_about_as_well_as_least_squares() -> None:
    """Local SGD on the squared error: one trainer holding the whole training set gets within 0.05 of the
    least-squares R^2 on the test set (scikit-learn's, computed here)."""
    from sklearn.linear_model import LinearRegression

    splits = example_splits("diabetes", 1, seed=0)
    spec = diabetes_spec()
    g = state_of(build_model(spec.model, spec.data))
    delta = local_update(spec, g, splits.trainers[0], seed=0)
    net = model_with_state(spec.model, spec.data, {k: g[k] + delta[k] for k in g})
    ols = LinearRegression().fit(splits.trainers[0].x.numpy(), splits.trainers[0].y.numpy())

    best = ols.score(splits.test.x.numpy(), splits.test.y.numpy())
    got = held_out_score(spec.data, net, splits.test.x, splits.test.y)
    assert got == r_squared(net, splits.test.x, splits.test.y) and got > best - 0.05


def test_regression_coalitions_are_valued_by_r2_batched_as_one_at_a_time() -> None:
    splits = example_splits("diabetes", 4, seed=0)
    spec = diabetes_spec()
    g = state_of(build_model(spec.model, spec.data))
    deltas = [torch.cat([v.reshape(-1) for v in local_update(spec, g, t, seed=i).values()]) for i, t in enumerate(splits.trainers)]
    deltas[3] = -deltas[3]  # a sign-flipped update: it must be worth less than the honest ones
    val = splits.validation

    batched = CoalitionUtility(spec, g, deltas, [1.0] * 4, val.x, val.y, metric="r2").table()
    naive = CoalitionUtility(spec, g, deltas, [1.0] * 4, val.x, val.y, metric="r2", fast=False).table()
    valued = value_survivors(spec, g, ["a", "b", "c", "d"], deltas, [1.0] * 4, val.x, val.y, seed=0)

    assert batched == pytest.approx(naive, rel=1e-9, abs=1e-12)
    assert sum(valued.values) == pytest.approx(valued.record["utility_after"] - valued.record["utility_before"])
    assert valued.values[3] < min(valued.values[:3])
    with pytest.raises(ConfigError, match="not scored by 'gce'"):
        CoalitionUtility(spec, g, deltas, [1.0] * 4, val.x, val.y, metric="gce")


def test_a_data_free_bias_shift_is_worth_nothing_in_the_first_round() -> None:
    """Attacker pass (helper 36): from random weights the round-0 model's predictions were off by a constant that the
    public model and label_range reveal; an update moving only the output bias to the range's middle was worth +0.66
    R^2 (honest: +1.05 to +1.12) and drew 13 % of a round. A regression model now starts predicting the middle."""
    from market.tensors import flatten

    splits = example_splits("diabetes", 4, seed=0)
    spec = diabetes_spec()
    g = state_of(build_model(spec.model, spec.data))
    net = model_with_state(spec.model, spec.data, g)
    assert torch.allclose(net(splits.validation.x)[:, 0], torch.full((len(splits.validation),), 0.5))
    honest = [flatten(local_update(spec, g, t, seed=i)) for i, t in enumerate(splits.trainers)]
    shift = {k: torch.zeros_like(v) for k, v in g.items()}
    with torch.no_grad():
        shift["linear.bias"] = torch.tensor([0.5 - float(net(splits.trainers[0].x)[:, 0].mean())])  # what it can compute
    valued = value_survivors(spec, g, ["a", "b", "c", "d", "shift"], [*honest, flatten(shift)], [1.0] * 5,
                             splits.validation.x, splits.validation.y, seed=0)

    assert valued.values[4] <= 0 < min(valued.values[:4])


def test_a_range_past_float32_is_refused() -> None:
    """A label_range of [0, 1e308] let labels of 1e300 through, infinite once float32: NaN R^2 (helper 36)."""
    with pytest.raises(ConfigError, match="within ±1e30"):
        parse_spec({"data": {**REG, "label_range": [0, 1e308]}, "valuation": {"metric": "r2"}})


@pytest.mark.parametrize("rows, needle", [
    ("0.1,0.2,0.5\n0.3,0.4,0.5\n0.6,0.7,0.5\n", "every label of the validation set is 0.5: it cannot tell a better model"),
    ("0.1,0.2,0.5\n", "the validation set has 1 row; it needs at least 2 to value updates"),
])
def test_a_validation_set_that_cannot_value_updates_is_refused_before_anything_is_sent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, needle: str) -> None:
    """Attacker pass 39: constant labels (R^2's spread 0, floored) paid a trainer whose update did nothing 10000 bps
    and the honest ones 0; the owner's own sybil could take back the pool. Refused at `task create`, in one line,
    before the key, the chain or the store is touched (no key file and no chain here)."""
    from market_app.cli.main import main

    spec, val = tmp_path / "spec.json", tmp_path / "val.csv"
    spec.write_text(json.dumps({"name": "t", "data": {"n_features": 2, "kind": "regression"},
                                "valuation": {"metric": "r2"}}))
    val.write_text(rows)

    code = main(["task", "create", "--spec", str(spec), "--validation", str(val), "--reward", "1", "--rounds", "2",
                 "--key-file", str(tmp_path / "absent.key"), "--rpc", "http://127.0.0.1:9"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_a_classification_validation_set_of_one_class_is_refused() -> None:
    from market.data import Dataset, check_validation_set

    with pytest.raises(ConfigError, match="every label of the validation set is class 3"):
        check_validation_set(Dataset(torch.zeros(4, 2), torch.full((4,), 3)))
    ok = Dataset(torch.zeros(2, 2), torch.tensor([3, 1]))
    assert check_validation_set(ok) is ok


def test_a_regression_round_publishes_its_models_r2() -> None:
    """Attacker pass 39: the receipt's accuracy_model was an argmax over one output, 0.0 in every regression round."""
    from aggregator.outcome import published_accuracy

    spec = diabetes_spec()
    splits = example_splits("diabetes", 2, "iid", 0)
    x, y = splits.validation.x, splits.validation.y
    state = state_of(build_model(spec.model, spec.data))
    score = published_accuracy(spec, state, x, y)

    assert score == r_squared(model_with_state(spec.model, spec.data, state), x, y) and score != 0.0
