"""Settings that do not depend on the folder (issue 12, rows 9, 12 and 14): `market devnet` writes its settings
to the per-user config folder, the key files and the store live in the per-user data folder, every command
finds them from any folder, `market simulate --rpc` uses the devnet's contract, and the devnet prints one
line per account even into a pipe. Every test runs with MARKET_HOME in a temporary folder
(tests/conftest.py), never the real home."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import AnvilProcess, free_port
from market.store import LocalStore, default_store_dir
from market_app import settings
from market_app.cli.common import _store
from tests.app.test_cli import run
from tests.conftest import MARKET, clean_env


# ------------------------------------------------------------------ where things live
def test_market_home_is_both_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKET_HOME", str(tmp_path / "home"))

    assert settings.config_dir() == settings.data_dir() == tmp_path / "home"
    assert settings.devnet_file() == tmp_path / "home" / "devnet.json"
    assert default_store_dir() == tmp_path / "home" / "store"
    assert settings.default_keys_dir() == tmp_path / "home" / "devnet" / "keys"


def test_without_market_home_the_xdg_folders_then_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKET_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert settings.devnet_file() == tmp_path / "cfg" / "poc-market" / "devnet.json"
    assert default_store_dir() == tmp_path / "data" / "poc-market" / "store"

    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG spec: a relative path is ignored
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert settings.config_dir() == tmp_path / "user" / ".config" / "poc-market"
    assert settings.data_dir() == tmp_path / "user" / ".local" / "share" / "poc-market"


def test_a_relative_market_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_HOME", "mh")

    assert settings.config_dir() == tmp_path / "mh" and settings.config_dir().is_absolute()


def _store_args(**kw: str | None) -> argparse.Namespace:
    return argparse.Namespace(store=None, store_dir=kw.get("store_dir"), ipfs_api=None)


def test_the_default_store_is_the_devnets_then_the_data_folders_never_the_current_one(
        market_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MARKET_STORE_DIR", raising=False)
    assert _store(_store_args()).root == market_home / "store"  # nothing set: the per-user data folder

    settings.devnet_file().write_text(json.dumps({"rpc": "http://127.0.0.1:1", "store_dir": str(tmp_path / "devnet-store")}))
    assert _store(_store_args()).root == tmp_path / "devnet-store"

    monkeypatch.setenv("MARKET_STORE_DIR", str(tmp_path / "env-store"))
    assert _store(_store_args()).root == tmp_path / "env-store"
    assert _store(_store_args(store_dir=str(tmp_path / "opt"))).root == tmp_path / "opt"
    assert not (tmp_path / ".market").exists()


def test_devnet_settings_are_found_from_any_folder(market_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.devnet_file().write_text(json.dumps({"rpc": "http://127.0.0.1:8545", "contract": "0x" + "12" * 20}))
    monkeypatch.delenv("MARKET_RPC", raising=False)
    elsewhere = tmp_path / "some" / "other" / "folder"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    assert settings.resolve(None, "MARKET_RPC", "rpc") == "http://127.0.0.1:8545"
    assert settings.devnet_for_rpc("http://localhost:8545/") is not None
    assert settings.devnet_for_rpc("http://127.0.0.1:8546") is None


# ---------------------------------------------------------------------- the devnet itself
def _start_devnet(cwd: Path, env: dict[str, str], info_file: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(MARKET + ["devnet", "--port", str(free_port()), "--accounts", "4"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not info_file.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "devnet did not start"
        time.sleep(0.2)
    time.sleep(0.3)
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out


def test_devnet_writes_absolute_settings_in_the_config_folder_and_one_line_per_account(
        market_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    info_file = market_home / "devnet.json"
    proc = _start_devnet(work, clean_env(COLUMNS="60"), info_file)  # narrow: rich used to wrap `key:` onto a new line
    try:
        info = json.loads(info_file.read_text())
    finally:
        out = _stop(proc)

    assert info["store_dir"] == str(market_home / "store")
    keys = [Path(a["key_file"]) for a in info["accounts"]]
    assert all(k.is_absolute() and k.parent == market_home / "devnet" / "keys" and k.is_file() for k in keys)
    assert not (work / ".market").exists() and list(work.iterdir()) == []
    lines = out.splitlines()
    account = re.compile(r"^  (owner|aggregator|trainer-\d+) +0x[0-9a-fA-F]{40}  [0-9.]+ ETH  key: (/\S+\.key)$")
    shown = [m.group(2) for m in map(account.match, lines) if m]
    assert shown == [str(k) for k in keys], out
    assert f"settings  {info_file}" in out
    assert not info_file.exists()  # removed when the devnet stops


def test_devnet_keys_and_store_options_still_win(market_home: Path, tmp_path: Path) -> None:
    info_file = market_home / "devnet.json"
    proc = subprocess.Popen(MARKET + ["devnet", "--port", str(free_port()), "--accounts", "3", "--keys-dir", "k",
                                      "--store-dir", "s"], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not info_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.3)
        info = json.loads(info_file.read_text())
    finally:
        _stop(proc)

    assert info["store_dir"] == str(tmp_path / "s")  # made absolute
    assert {str(Path(a["key_file"]).parent) for a in info["accounts"]} == {str(tmp_path / "k")}


# -------------------------------------------------------------- roles in their own folders
def test_owner_trainer_and_aggregator_each_in_its_own_folder_need_no_chain_options(
        devnet: tuple[Path, dict[str, object]], tmp_path_factory: pytest.TempPathFactory) -> None:
    _, info = devnet
    key = {a["role"]: a["key_file"] for a in info["accounts"]}  # type: ignore[index, union-attr]
    owner, trainer, agg, reader = (tmp_path_factory.mktemp(n) for n in ("owner", "trainer", "aggregator", "reader"))
    run(["data", "split", "--trainers", "2", "--out", "data"], owner)
    shutil.copy(owner / "data" / "trainer-1.npz", trainer / "mine.npz")
    shutil.copy(owner / "data" / "validation.npz", agg / "validation.npz")

    run(["task", "create", "--key-file", key["owner"], "--validation", "data/validation.npz", "--rounds", "1", "--max-trainers", "1"], owner)
    as_trainer = {"MARKET_KEY_FILE": key["trainer-1"]}
    run(["trainer", "join", "1"], trainer, extra_env=as_trainer)
    trained = subprocess.Popen(MARKET + ["trainer", "run", "1", "--data", "mine.npz", "--timeout", "120"], cwd=trainer,
                               env=clean_env(**as_trainer), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run(["aggregator", "run", "1", "--key-file", key["aggregator"], "--validation", "validation.npz", "--timeout", "120"],
        agg, timeout=240)
    out, err = trained.communicate(timeout=120)
    assert trained.returncode == 0, err

    results = json.loads(run(["task", "results", "1", "--json"], reader).stdout)
    assert [r["settlement"] for r in results["rounds"]] == ["result"]
    assert LocalStore(str(info["store_dir"])).get(results["rounds"][0]["receipt_cid"])  # the devnet's store
    for folder in (owner, trainer, agg, reader):
        assert not (folder / ".market").exists()


def test_simulate_on_the_devnets_rpc_uses_its_contract_and_store(devnet: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    cwd, info = devnet
    contract = MarketContract(Chain.connect(str(info["rpc"])), str(info["contract"]))

    out = run(["simulate", "--rpc", str(info["rpc"]), "--trainers", "3", "--rounds", "1", "--seed", "1"], tmp_path).stdout

    assert f"contract {info['contract']}: the devnet's" in out
    assert contract.task_count() == 1  # the task went to the devnet's contract, which `market serve` reads
    results = json.loads(run(["task", "results", "1", "--json"], cwd).stdout)  # default chain and store
    assert results["rounds"][0]["accuracy"] is not None  # its receipt is in the devnet's store


def test_simulate_on_another_rpc_says_it_deploys_a_contract(devnet: tuple[Path, dict[str, object]], anvil: AnvilProcess,
                                                           tmp_path: Path) -> None:
    _, info = devnet

    out = run(["simulate", "--rpc", anvil.rpc_url, "--trainers", "3", "--rounds", "1"], tmp_path).stdout

    assert f"no --contract and no devnet settings for {anvil.rpc_url}: deploying a new contract" in out
    assert MarketContract(Chain.connect(str(info["rpc"])), str(info["contract"])).task_count() == 0
