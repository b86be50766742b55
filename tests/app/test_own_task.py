"""Bring your own task, as users do it: separate `market` processes, the owner's own CSV and its own declared model.

The owner scales scikit-learn's breast cancer table itself and writes the CSV files (nothing here comes from
`market data split`), declares a small network in a TOML spec, and every trainer reads the model's table
(`market task show`) before joining.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.app.test_cli import one_line_error, play_rounds, run

SPEC = """\
name = "tumours"

[data]
name = "breast cancer, min-max scaled by the owner"
n_features = 30
n_classes = 2

[model]
arch = "layers"
layers = [
  {type = "linear", out_features = 16}, {type = "relu"}, {type = "dropout", p = 0.1},
  {type = "linear"},
]

[training]
lr = 0.1
"""
TABLE = """\
model layers: 530 weights, 528 multiply-adds per sample; each sample enters as [30]
   0  linear(out_features=16)  -> [16]                      496 weights
   1  relu()                   -> [16]                        0 weights
   2  dropout(p=0.1)           -> [16]                        0 weights
   3  linear(out_features=2)   -> [2]                        34 weights"""


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, header: list[str]) -> None:
    rows = [",".join([*header, "label"])] + [",".join([*(f"{v:.6f}" for v in xi), str(int(yi))]) for xi, yi in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")


def owners_files(cwd: Path) -> None:
    """The owner's own preprocessing: min-max per column, a shuffled split into 3 trainers' shards and a validation set."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = (d.data - d.data.min(axis=0)) / (d.data.max(axis=0) - d.data.min(axis=0))
    order = np.random.default_rng(7).permutation(len(x))
    parts = np.array_split(order, 4)
    header = [name.replace(" ", "_") for name in d.feature_names]
    for i, idx in enumerate(parts[:3], start=1):
        write_csv(cwd / f"trainer-{i}.csv", x[idx], d.target[idx], header)
    write_csv(cwd / "validation.csv", x[parts[3]], d.target[parts[3]], header)
    write_csv(cwd / "wrong.csv", x[parts[0], :29], d.target[parts[0]], header[:29])  # a column short
    (cwd / "spec.toml").write_text(SPEC)


def test_show_prints_a_declared_models_table_from_a_spec_file(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(SPEC)

    out = run(["task", "show", "--spec", "spec.toml"], tmp_path).stdout
    shown = json.loads(run(["task", "show", "--spec", "spec.toml", "--json"], tmp_path).stdout)

    assert TABLE in out and "training: 5 epochs of SGD a round, lr 0.1" in out
    assert shown["parameters"] == 530 and [r["out_shape"] for r in shown["layers"]] == [[16], [16], [16], [2]]


@pytest.mark.parametrize("args, needle", [
    (["task", "show"], "name the task (`market task show T`) or a spec file"),
    (["task", "show", "--spec", "nope.toml"], "cannot read task spec nope.toml"),
    (["simulate", "--chain", "tester", "--model-spec", "bad.toml"], "model.layers[0] (linear) needs a flat input, got [1, 8, 8]"),
    (["simulate", "--chain", "tester", "--model-spec", "extra.toml"], "only the model and training tables are read"),
    (["simulate", "--chain", "tester", "--model-spec", "bad.toml", "--model", "mlp"], "give one of --model, --model-spec and --onnx"),
])
def test_bad_model_files_are_one_line_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "bad.toml").write_text('[model]\narch = "layers"\nlayers = [{type = "linear"}]\n')
    (tmp_path / "extra.toml").write_text('[model]\narch = "mlp"\n[robust]\nrule = "mean"\n')

    assert needle in one_line_error(run(args, tmp_path, check=False))


def test_simulate_trains_a_declared_model_on_an_example_task(tmp_path: Path) -> None:
    """`--model-spec`: a CNN written as layers trains on digits, is valued (through the generic batched path) and the
    sign-flipper is paid nothing."""
    (tmp_path / "cnn.toml").write_text("""\
[model]
arch = "layers"
layers = [
  {type = "conv2d", out_channels = 8, kernel_size = 3, padding = 1}, {type = "relu"}, {type = "maxpool2d", kernel_size = 2},
  {type = "flatten"}, {type = "linear", out_features = 32}, {type = "relu"}, {type = "linear"},
]
""")
    run(["simulate", "--chain", "tester", "--model-spec", "cnn.toml", "--trainers", "4", "--attackers", "1", "--rounds", "3",
         "--report", "r.json", "--quiet"], tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())

    attacker = next(t["address"] for t in report["trainers"] if t["attack"] == "sign_flip")
    assert all(r["credited_wei"][attacker] == "0" for r in report["rounds"])
    assert report["final"]["accuracy"] >= 0.85
    assert report["config"]["model_spec"] == "cnn.toml"


def test_an_owners_csv_and_declared_model_run_as_separate_processes(devnet: tuple[Path, dict[str, object]]) -> None:
    cwd, info = devnet
    keys = Path(info["accounts"][0]["key_file"]).parent  # type: ignore[index]
    owners_files(cwd)
    run(["task", "create", "--key-file", str(keys / "owner.key"), "--spec", "spec.toml", "--validation", "validation.csv",
         "--rounds", "2", "--reward", "0.3", "--max-trainers", "3"], cwd)

    shown = run(["task", "show", "1"], cwd).stdout  # what a trainer reads before joining, from the chain's spec CID
    assert TABLE in shown and "task 'tumours'" in shown and "30 features in [0, 1]; labels 0..1" in shown
    wrong = run(["trainer", "run", "1", "--key-file", str(keys / "trainer-4.key"), "--data", "wrong.csv", "--timeout", "30"],
                cwd, check=False)
    assert "wrong.csv" in one_line_error(wrong) and "30" in one_line_error(wrong)
    for i in (1, 2, 3):
        run(["trainer", "join", "1", "--key-file", str(keys / f"trainer-{i}.key")], cwd)
    agg, outs, clock = play_rounds(cwd, info, [f"trainer-{i}.csv" for i in (1, 2, 3)], "validation.csv")
    assert all(out.count("revealed") == 2 for out in outs), outs
    assert clock.error is None and agg.count("posted model") == 2

    results = json.loads(run(["task", "results", "1", "--json"], cwd).stdout)
    assert [r["settlement"] for r in results["rounds"]] == ["result", "result"]
    assert results["rounds"][-1]["accuracy"] >= 0.9
    assert "2 of 2 rounds verified" in run(["verify", "--task", "1", "--validation", "validation.csv"], cwd).stdout
    for i in (1, 2, 3):
        assert run(["trainer", "withdraw", "--key-file", str(keys / f"trainer-{i}.key")], cwd).stdout.startswith("task 1: withdrew")


def test_simulate_runs_the_diabetes_regression_task(tmp_path: Path) -> None:
    """`--task diabetes`: real labels, squared-error training, rounds valued and reported by R^2 (test R^2 at least
    0.40, the issue's goal; least squares on the same split reaches 0.52) and sign-flippers paid nothing."""
    proc = run(["simulate", "--chain", "tester", "--task", "diabetes", "--trainers", "6", "--attackers", "2", "--rounds", "3",
                "--partition", "dirichlet:0.5", "--report", "r.json"], tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())

    attackers = [t["address"] for t in report["trainers"] if t["attack"] == "sign_flip"]
    assert all(r["credited_wei"][a] == "0" for r in report["rounds"] for a in attackers)
    assert all(r["score"] == "r2" for r in report["rounds"]) and report["final"]["accuracy"] >= 0.40
    assert "final R² " in proc.stdout and "test R² " in proc.stdout


def export_onnx(path: Path) -> None:
    """What an owner with a torch network does: export it (the TorchScript exporter, offline)."""
    import warnings

    import torch

    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 30),), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}})


def test_an_onnx_network_trains_as_well_as_the_same_network_declared(tmp_path: Path) -> None:
    """The issue's check: a small torch network exported to ONNX trains in a task and reaches the accuracy of the same
    network declared in the spec (each from its own round-0 weights: the file's, and the spec's seed)."""
    export_onnx(tmp_path / "net.onnx")
    (tmp_path / "net.toml").write_text('[model]\narch = "layers"\nlayers = [{type = "linear", out_features = 16}, '
                                       '{type = "relu"}, {type = "linear"}]\n')
    accuracy = {}
    for option, path in (("--onnx", "net.onnx"), ("--model-spec", "net.toml")):
        run(["simulate", "--chain", "tester", "--task", "breast_cancer", option, path, "--trainers", "4", "--rounds", "3",
             "--report", f"{option[2:]}.json", "--quiet"], tmp_path)
        accuracy[option] = json.loads((tmp_path / f"{option[2:]}.json").read_text())["final"]["accuracy"]

    assert min(accuracy.values()) >= 0.93 and abs(accuracy["--onnx"] - accuracy["--model-spec"]) <= 0.02, accuracy


def test_an_owner_brings_an_onnx_model_and_every_trainer_can_check_it(devnet: tuple[Path, dict[str, object]]) -> None:
    cwd, info = devnet
    keys = Path(info["accounts"][0]["key_file"]).parent  # type: ignore[index]
    owners_files(cwd)
    export_onnx(cwd / "net.onnx")
    out = run(["task", "init", "--data", "trainer-1.csv", "--onnx", "net.onnx", "--out", "spec.json", "--name", "tumours"], cwd).stdout
    assert "model layers" in out and "--onnx net.onnx" in out
    other = cwd / "other.onnx"
    other.write_bytes((cwd / "net.onnx").read_bytes()[:-1] + b"\x00")  # one byte changed: another file
    create = ["task", "create", "--key-file", str(keys / "owner.key"), "--spec", "spec.json", "--validation", "validation.csv",
              "--rounds", "1", "--reward", "0.1"]
    assert "give that file (--onnx FILE)" in one_line_error(run(create, cwd, check=False))
    assert "not the ONNX file" in one_line_error(run([*create, "--onnx", str(other)], cwd, check=False))
    run([*create, "--onnx", "net.onnx"], cwd)

    shown = run(["task", "show", "1"], cwd).stdout
    assert "linear(out_features=16)" in shown and "the file gives exactly these layers and the task's round-0 weights" in shown
