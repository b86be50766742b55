"""Configuration: settings from the environment or a .env file, and task spec files (TOML/JSON)
validated with one clear error per bad field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from market.errors import ConfigError
from market_app.settings import check_environment, load_dotenv, parse_dotenv, resolve, serve_address
from market.spec import load_spec_file

ROOT = Path(__file__).resolve().parents[2]
MARKET = [sys.executable, "-m", "market_app.cli"]


def market(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_") or k == "MARKET_HOME"}
    return subprocess.run(MARKET + args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**clean, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture
def no_market_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("MARKET_"):
            monkeypatch.delenv(key)
    yield
    for key in list(os.environ):  # load_dotenv sets variables monkeypatch does not track
        if key.startswith("MARKET_"):
            del os.environ[key]


# ----------------------------------------------------------------------------- .env
def test_dotenv_reads_quotes_comments_and_export() -> None:
    text = '# settings\nexport MARKET_RPC=http://127.0.0.1:8545  # devnet\nMARKET_STORE_DIR="my store"\nA=\'x # y\'\n\n'

    assert parse_dotenv(text) == {"MARKET_RPC": "http://127.0.0.1:8545", "MARKET_STORE_DIR": "my store", "A": "x # y"}


def test_dotenv_line_that_is_not_an_assignment_names_its_line_not_its_content() -> None:
    with pytest.raises(ConfigError) as err:
        parse_dotenv("MARKET_RPC=http://x\n0xdeadbeefsecret\n", ".env")

    assert str(err.value) == ".env line 2: expected KEY=value"


def test_real_environment_wins_over_dotenv(tmp_path: Path, no_market_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("MARKET_RPC=http://from-dotenv:1\nMARKET_CONTRACT=0x" + "11" * 20 + "\n")
    monkeypatch.setenv("MARKET_RPC", "http://from-env:2")

    load_dotenv(tmp_path / ".env")

    assert resolve(None, "MARKET_RPC") == "http://from-env:2"
    assert resolve(None, "MARKET_CONTRACT") == "0x" + "11" * 20
    assert resolve("http://option:3", "MARKET_RPC") == "http://option:3"


def test_market_env_file_names_another_dotenv(tmp_path: Path, no_market_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dev.env").write_text("MARKET_PORT=8123\n")
    monkeypatch.setenv("MARKET_ENV_FILE", str(tmp_path / "dev.env"))

    load_dotenv()

    assert serve_address(None, None) == ("127.0.0.1", 8123)


def test_check_environment_names_every_bad_setting() -> None:
    env = {"MARKET_RPC": "localhost:8545", "MARKET_STORE": "s3", "MARKET_PORT": "http", "MARKET_STORE_DIR": "ok"}

    with pytest.raises(ConfigError) as err:
        check_environment(env)

    msg = str(err.value)
    assert msg.startswith("bad settings: ") and "\n" not in msg
    assert "MARKET_RPC='localhost:8545' (JSON-RPC URL of the chain): expected an http:// or https:// URL" in msg
    assert "MARKET_STORE='s3'" in msg and "MARKET_PORT='http'" in msg and "MARKET_STORE_DIR" not in msg


def test_check_environment_accepts_good_settings() -> None:
    check_environment({"MARKET_RPC": "http://127.0.0.1:8545", "MARKET_CONTRACT": "0x" + "ab" * 20,
                       "MARKET_STORE": "kubo", "MARKET_IPFS_API": "http://127.0.0.1:5001", "MARKET_PORT": "8000"})


def test_cli_reports_a_bad_dotenv_setting_in_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MARKET_RPC=127.0.0.1:8545\n")

    proc = market(["task", "status", "1"], tmp_path)

    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: bad setting: MARKET_RPC='127.0.0.1:8545'")


def test_cli_takes_rpc_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MARKET_RPC=http://127.0.0.1:9\nMARKET_CONTRACT=0x" + "11" * 20 + "\n")

    proc = market(["task", "status", "1"], tmp_path)

    assert proc.returncode == 1 and "cannot reach an Ethereum node at http://127.0.0.1:9" in proc.stderr


# ------------------------------------------------------------------------ spec files
def test_toml_spec_loads(tmp_path: Path) -> None:
    f = tmp_path / "spec.toml"
    f.write_text('name = "wine"\n[model]\narch = "mlp"\nhidden = 32\n[training]\nlr = 0.1\n')

    spec = load_spec_file(f)

    assert (spec.name, spec.model.arch, spec.model.hidden, spec.training.lr) == ("wine", "mlp", 32, 0.1)


def test_toml_spec_names_every_bad_field_once(tmp_path: Path) -> None:
    f = tmp_path / "spec.toml"
    f.write_text('[model]\narch = "resnet"\nhiden = 3\n[training]\nlr = -1\n')

    with pytest.raises(ConfigError) as err:
        load_spec_file(f)

    assert str(err.value) == (
        f"{f}: 3 bad fields: model.arch: Input should be 'logreg', 'mlp', 'cnn' or 'layers' (got 'resnet'); "
        "model.hiden: unknown field (allowed: arch, hidden, layers, onnx_cid); training.lr: Input should be greater than 0 (got -1)"
    )


def test_json_spec_with_one_bad_field(tmp_path: Path) -> None:
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"training": {"epochs": "five"}}))

    with pytest.raises(ConfigError) as err:
        load_spec_file(f)

    assert str(err.value) == f"{f}: training.epochs: Input should be a valid integer, unable to parse string as an integer (got 'five')"


def test_spec_rule_spanning_fields_is_reported_for_the_whole_spec(tmp_path: Path) -> None:
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"model": {"arch": "cnn"}, "data": {"image_shape": None}}))

    with pytest.raises(ConfigError, match=r"\(whole spec\): model.arch 'cnn' needs data.image_shape$"):
        load_spec_file(f)


@pytest.mark.parametrize("name, text, needle", [
    ("spec.toml", "model = [", "not valid TOML"),
    ("spec.json", "{", "not valid JSON"),
    ("spec.json", "[1, 2]", "a task spec is a JSON object"),
])
def test_unparseable_spec_files(tmp_path: Path, name: str, text: str, needle: str) -> None:
    f = tmp_path / name
    f.write_text(text)

    with pytest.raises(ConfigError, match=needle):
        load_spec_file(f)


def test_task_create_reports_a_bad_spec_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text('[training]\nlr = 0\nbatch_size = 0\n')
    env = {"MARKET_RPC": "http://127.0.0.1:9", "MARKET_CONTRACT": "0x" + "11" * 20}

    proc = market(["task", "create", "--spec", "spec.toml", "--validation", "v.npz", "--key-file", "k"], tmp_path, env)

    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: spec.toml: 2 bad fields: training.lr: ") and "training.batch_size: " in proc.stderr


# --------------------------------------------------------------- data commitment
def test_data_commitment_prints_the_validation_commitment(tmp_path: Path) -> None:
    from market.data import dataset_commitment, digits_splits, save_npz

    splits = digits_splits(2, "iid", 0)
    save_npz(splits.validation, tmp_path / "validation.npz")

    proc = market(["data", "commitment", "validation.npz"], tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0x" + dataset_commitment(splits.validation).hex()
