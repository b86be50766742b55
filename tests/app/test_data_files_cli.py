"""Every command that reads a data file checks it against the task's own spec, through the real CLI
(``market_app.cli.main``): ``task init``, ``data commitment --spec | --task``, ``task create``,
``trainer run`` and ``aggregator run`` (before joining or training).  (``verify --validation`` reads the
task's spec the same way, but only for a settled round: the end-to-end tests run it.)

The 30-feature, 2-class task is scikit-learn's bundled breast cancer set, min-max scaled to [0, 1] and
written as CSV files with a header by the test (nothing downloads).
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import AnvilProcess, dev_accounts, write_key_file
from market.data import dataset_commitment, digits_splits, load_shard, save_npz
from market.spec import load_spec_file
from market_app import cli


def _bc() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = (d.data - d.data.min(axis=0)) / (d.data.max(axis=0) - d.data.min(axis=0))
    return x, d.target, [str(n) for n in d.feature_names]


def _csv(path: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> Path:
    rows = [",".join([*names, "diagnosis"])] + [",".join([*(f"{v:.6f}" for v in r), str(int(c))]) for r, c in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bcdata")
    x, y, names = _bc()
    out = {
        "bc": _csv(d / "bc.csv", x, y, names),
        "val": _csv(d / "bc_val.csv", x[450:], y[450:], names),
        "trainer": _csv(d / "trainer-1.csv", x[:150], y[:150], names),
        "raw": _csv(d / "raw.csv", x * np.where(np.arange(30) % 10 == 3, 2501.0, 1.0), y, names),
    }
    bad = y[:20].copy()
    bad[1] = 7  # file row 3 (row 1 is the header)
    out["labels"] = _csv(d / "labels.csv", x[:20], bad, names)
    digits = digits_splits(2, "iid", 0)
    save_npz(digits.validation, d / "digits_val.npz")
    out["digits"] = d / "digits_val.npz"
    return out


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """``run(argv) -> (exit code, stdout, stderr)`` in an empty folder with no MARKET_* setting."""
    for k in list(os.environ):
        if k.startswith("MARKET_") and k != "MARKET_HOME":
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}

    def _hung(signum: int, frame: object) -> None:
        raise TimeoutError("the command did not stop on its own")

    def _run(argv: list[str]) -> tuple[int, str, str]:
        signal.signal(signal.SIGALRM, _hung)
        signal.alarm(120)  # a guard against a command that runs on, not a timing assertion
        try:
            code = cli.main([str(a) for a in argv])
        finally:
            signal.alarm(0)
        out, err = capsys.readouterr()
        return code, out, err

    yield _run
    for s, h in handlers.items():
        signal.signal(s, h)


# ------------------------------------------------------------------ task init
def test_task_init_writes_a_spec_that_loads_the_file(run, files, tmp_path: Path) -> None:
    code, out, err = run(["task", "init", "--data", files["bc"], "--out", "spec_bc.json"])

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "wrote spec_bc.json: task 'bc', 30 features in [0, 1], 2 classes, model logreg; "
        "every other field has its default (docs/spec-reference.md)",
        "next: market task create --spec spec_bc.json --validation VALIDATION_FILE --reward ETH --rounds N",
    ]
    spec = load_spec_file(tmp_path / "spec_bc.json")
    assert (spec.name, spec.data.n_features, spec.data.n_classes, spec.data.feature_range) == ("bc", 30, 2, (0.0, 1.0))
    assert spec.data.image_shape is None and spec.initial_model_cid is None
    assert load_shard(files["bc"], spec.data).x.shape == (569, 30)
    assert load_shard(files["val"], spec.data).y.shape == (119,)


def test_task_init_refuses_to_overwrite_without_force(run, files, tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text("{}")

    code, out, err = run(["task", "init", "--data", files["bc"], "--name", "breast cancer"])
    assert (code, out) == (2, "")
    assert err == "error: --out spec.json: the file exists: pass --force to overwrite it, or choose another --out\n"
    assert (tmp_path / "spec.json").read_text() == "{}"

    code, out, err = run(["task", "init", "--data", files["bc"], "--name", "breast cancer", "--force"])
    assert code == 0 and load_spec_file(tmp_path / "spec.json").name == "breast cancer"
    # exactly the complete spec docs/spec-reference.md shows
    reference = (Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md").read_text()
    shown = reference.split("## A complete spec", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads((tmp_path / "spec.json").read_text()) == json.loads(shown)


def test_task_init_refuses_unscaled_features_naming_the_columns(run, files, tmp_path: Path) -> None:
    code, out, err = run(["task", "init", "--data", files["raw"]])

    assert (code, out) == (2, "")
    assert err == (
        f"error: {files['raw']}: feature 'mean area' (column 4) has values up to 2501, outside the range [0, 1] "
        "(and 2 more columns: 14, 24): scale every feature to [0, 1] (min-max per column) first\n"
    )
    assert not (tmp_path / "spec.json").exists()


def test_task_init_refuses_labels_that_are_not_class_numbers(run, tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("a,b,kind\n0.1,0.2,benign\n")

    code, _out, err = run(["task", "init", "--data", "f.csv"])

    assert code == 2
    assert err == ("error: f.csv: row 2, column 'kind' (3): 'benign' is not a number "
                   "(labels are the class numbers 0, 1, ...: map each class name to a number)\n")


# ------------------------------------------------------------------ data commitment
def test_data_commitment_against_the_spec_and_against_the_default(run, files, tmp_path: Path) -> None:
    assert run(["task", "init", "--data", files["bc"], "--out", "spec_bc.json"])[0] == 0
    spec = load_spec_file(tmp_path / "spec_bc.json")

    code, out, err = run(["data", "commitment", files["val"], "--spec", "spec_bc.json"])
    assert (code, err) == (0, "")
    assert out == "0x" + dataset_commitment(load_shard(files["val"], spec.data)).hex() + "\n"

    code, out2, err = run(["data", "commitment", files["val"]])  # the built-in digits spec: 64 features
    assert (code, out2) == (2, "")
    assert err == (
        f"error: {files['val']}: expected 64 feature columns and a label (spec data.n_features = 64), got 31 columns "
        "in the header row (checked against the built-in digits spec: pass --spec SPEC_FILE or --task T)\n"
    )

    code, _out, err = run(["data", "commitment", files["labels"], "--spec", "spec_bc.json"])
    assert code == 2
    assert err == f"error: {files['labels']}: label 7 in row 3 is not a class of this task (data.n_classes = 2: labels 0..1)\n"

    code, _out, err = run(["data", "commitment", files["digits"]])
    assert code == 0, err


def test_task_create_checks_the_validation_set_against_its_spec(run, files, tmp_path: Path) -> None:
    assert run(["task", "init", "--data", files["bc"], "--out", "spec_bc.json"])[0] == 0
    create = ["task", "create", "--spec", "spec_bc.json", "--rpc", "http://127.0.0.1:9"]

    # the data check passes: the command gets as far as needing the owner's key (nothing has been contacted)
    code, _out, err = run([*create, "--validation", files["val"]])
    assert code == 2 and err.startswith("error: no key file"), err

    code, _out, err = run([*create, "--validation", files["digits"]])
    assert code == 2
    assert err == f"error: {files['digits']}: expected 30 features per row (spec data.n_features = 30), x has shape (269, 64)\n"

    code, _out, err = run([*create, "--validation", files["raw"]])
    assert code == 2 and "outside the spec's data.feature_range [0, 1]" in err


# ------------------------------------------------------------------ roles, on a chain
@pytest.fixture(scope="module")
def chain_task(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """An Anvil with the contract and a breast-cancer task created by `market task create` from `market task init`'s spec."""
    d = tmp_path_factory.mktemp("bcchain")
    owner, aggregator, trainer = dev_accounts(3)
    for name, acct in (("owner", owner), ("aggregator", aggregator), ("trainer", trainer)):
        write_key_file(acct, d / f"{name}.key")
    with AnvilProcess(accounts=4) as node:
        chain = Chain.connect(node.rpc_url)
        contract = MarketContract.deploy(chain, owner)
        contract.registry.register(aggregator)
        yield {"dir": d, "chain": chain, "contract": contract, "rpc": node.rpc_url, "trainer": trainer,
               "opts": ["--rpc", node.rpc_url, "--contract", contract.address, "--store-dir", str(d / "store")],
               "aggregator": aggregator}


def _create(run, files, env) -> int:
    d = env["dir"]
    spec = d / "spec_bc.json"
    if not spec.exists():
        assert run(["task", "init", "--data", files["bc"], "--out", spec])[0] == 0
    code, out, err = run(["task", "create", "--spec", spec, "--validation", files["val"], "--rounds", "1", "--reward", "0.01", "--key-file", d / "owner.key", *env["opts"]])
    assert code == 0, err
    m = re.match(r"task (\d+) created", out)
    assert m, out
    return int(m.group(1))


def test_roles_check_their_files_against_the_task_spec_before_joining(run, files, chain_task) -> None:
    env = chain_task
    task = _create(run, files, env)
    contract: MarketContract = env["contract"]  # type: ignore[assignment]
    trainer = env["trainer"].address  # type: ignore[attr-defined]
    w3 = env["chain"].w3  # type: ignore[attr-defined]
    before = (w3.eth.block_number, w3.eth.get_transaction_count(trainer))

    code, out, err = run(["data", "commitment", files["val"], "--task", task, *env["opts"]])
    assert (code, err) == (0, "") and out.strip() == contract.task(task).validation_commitment

    trainer_run = ["trainer", "run", task, "--once", "--key-file", env["dir"] / "trainer.key", *env["opts"]]
    code, out, err = run([*trainer_run, "--data", files["labels"]])
    assert (code, out) == (2, "")
    assert err == f"error: {files['labels']}: label 7 in row 3 is not a class of this task (data.n_classes = 2: labels 0..1)\n"

    code, out, err = run([*trainer_run, "--data", files["raw"]])
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {files['raw']}: feature 'mean area' (column 4) has values up to 2501, outside the spec's "
                          "data.feature_range [0, 1] (and 2 more columns: 14, 24): scale it")

    code, out, err = run([*trainer_run, "--data", files["digits"]])
    assert code == 2 and "expected 30 features per row (spec data.n_features = 30)" in err

    assert not contract.is_trainer(task, trainer)
    assert (w3.eth.block_number, w3.eth.get_transaction_count(trainer)) == before  # never joined, nothing sent

    agg_run = ["aggregator", "run", task, "--once", "--key-file", env["dir"] / "aggregator.key", *env["opts"]]
    code, out, err = run([*agg_run, "--validation", files["digits"]])
    assert (code, out) == (2, "")
    assert err == f"error: {files['digits']}: expected 30 features per row (spec data.n_features = 30), x has shape (269, 64)\n"
