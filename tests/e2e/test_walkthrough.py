"""A newcomer's first day, as separate processes against `market devnet` (the everyday-flow issue's table).

The owner brings its own data: a 30-feature, 2-class CSV with a header (scikit-learn's breast cancer,
min-max scaled, written by the test), writes a spec from it with `market task init`, and creates a
task; three trainers run from three different folders with nothing but a key file and their own CSV;
the aggregator is already running when they arrive one by one.  Along the way, the mistakes a new user
makes (unscaled features, labels outside the classes, arriving late) each get one line and a non-zero
exit before any training or gas, and the owner gets its money back with the money commands.
Each block is marked with the row of the issue's table it checks.

The task's schedule is fixed (issue 14): the chain's clock is moved to a round's opening or past a
window (``Chain.advance_to``, Anvil's ``evm_setNextBlockTimestamp``) instead of sleeping through it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import read_key_file
from market.cid import compute_cid
from tests.app.chain_steps import ClockDriver, commit
from tests.app.test_cli import one_line_error, run
from tests.conftest import MARKET, clean_env


def _write_csv(path: Path, header: list[str], x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [",".join(header + ["label"])]
    rows += [",".join(f"{v:.6f}" for v in xi) + f",{int(yi)}" for xi, yi in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")


def _breast_cancer(root: Path) -> dict[str, Path]:
    """Validation set, three trainer shards (each in its own folder), an unscaled and a mislabelled shard."""
    data = load_breast_cancer()
    x, y = data.data.astype(np.float64), data.target
    header = [str(n).replace(" ", "_") for n in data.feature_names]
    rng = np.random.default_rng(7)
    perm = rng.permutation(len(y))
    lo, hi = x.min(axis=0), x.max(axis=0)
    scaled = (x - lo) / (hi - lo)
    val, shards = perm[:114], np.array_split(perm[114:], 3)
    files = {"validation": root / "owner" / "validation.csv"}
    _write_csv(files["validation"], header, scaled[val], y[val])
    for i, s in enumerate(shards, 1):
        files[f"trainer-{i}"] = root / f"trainer-{i}-home" / "my-data.csv"
        _write_csv(files[f"trainer-{i}"], header, scaled[s], y[s])
    files["unscaled"] = root / "trainer-4-home" / "raw.csv"
    _write_csv(files["unscaled"], header, x[shards[0]], y[shards[0]])
    files["badlabels"] = root / "trainer-5-home" / "labels.csv"
    _write_csv(files["badlabels"], header, scaled[shards[1]], np.where(y[shards[1]] == 1, 7, 0))
    return files


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(MARKET + args, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_newcomers_day_as_separate_processes(devnet: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    cwd, info = devnet
    key = {a["role"]: a["key_file"] for a in info["accounts"]}
    addr = {a["role"]: a["address"] for a in info["accounts"]}
    files = _breast_cancer(tmp_path / "people")
    owner_dir = files["validation"].parent

    # row 8: a spec from the owner's own CSV (header row accepted); row 11: --help shows defaults and units
    out = run(["task", "init", "--data", "validation.csv", "--out", "spec_bc.json", "--name", "breast cancer"], owner_dir).stdout
    spec = json.loads((owner_dir / "spec_bc.json").read_text())
    assert spec["data"]["n_features"] == 30 and spec["data"]["n_classes"] == 2 and spec["name"] == "breast cancer"
    assert "next: market task create" in out
    helptext = run(["task", "create", "--help"], owner_dir).stdout
    assert "default" in helptext and "seconds" in helptext

    # row 1: the task is created from the owner's spec and validation CSV (checked against that spec)
    out = run(["task", "create", "--spec", "spec_bc.json", "--validation", "validation.csv", "--rounds", "2", "--reward", "1", "--max-trainers", "3", "--submit-window", "900", "--result-window", "600",
               "--key-file", key["owner"]], owner_dir).stdout
    assert "task 1 created" in out

    # rows 4, 5: unscaled features and labels outside the classes: one line, non-zero, never joined
    for who, data in (("trainer-4", files["unscaled"]), ("trainer-5", files["badlabels"])):
        bad = run(["trainer", "run", "1", "--data", data.name, "--key-file", key[who]], data.parent, check=False)
        line = one_line_error(bad)
        assert ("feature_range" in line) if who == "trainer-4" else ("not a class of this task" in line), line
    status = run(["task", "status", "1"], owner_dir).stdout
    assert "0/3 trainers" in status and "submissions open" in status  # row 6: the state, from the chain's clock
    assert "schedule: round r opens at unix" in status and "no stake" in status

    # the aggregator is already running; row 2: trainers arrive one by one from their own folders (row 9)
    agg = _start(["aggregator", "run", "1", "--validation", "validation.csv", "--key-file", key["aggregator"],
                  "--timeout", "300"], owner_dir)
    first = _start(["trainer", "run", "1", "--data", "my-data.csv", "--key-file", key["trainer-1"], "--timeout", "300"],
                   files["trainer-1"].parent)
    deadline = time.monotonic() + 120
    while "1 committed, 0 revealed (at most 3)" not in run(["task", "status", "1"], owner_dir).stdout:
        assert time.monotonic() < deadline, "the first trainer did not commit"
        assert first.poll() is None, first.communicate()
        time.sleep(0.5)
    time.sleep(3)  # a round must not close while only the first of three has committed
    status = run(["task", "status", "1"], owner_dir).stdout
    assert "round 0: open: 1 committed, 0 revealed (at most 3); submissions open" in status, status
    rest = [_start(["trainer", "run", "1", "--data", "my-data.csv", "--key-file", key[f"trainer-{i}"], "--timeout", "300"],
                   files[f"trainer-{i}"].parent) for i in (2, 3)]
    outs = []
    # round 1 opens by the task's schedule (submit + reveal + result windows after round 0): the clock is moved there
    with ClockDriver(str(info["rpc"]), str(info["contract"]), 1) as clock:
        for p in [first, *rest]:
            o, e = p.communicate(timeout=300)
            assert p.returncode == 0, e
            outs.append(o)
        a_out, a_err = agg.communicate(timeout=120)
    assert clock.error is None and clock.moves == [(1, "waiting")]
    assert agg.returncode == 0, a_err
    assert a_out.count("posted model") == 2
    for o in outs:  # row 4/6: every trainer is told, per round, what happened and what it earned
        assert o.count("committed to") == 2 and o.count(": revealed ") == 2, o
        assert "round 0: settled: credited" in o or "round 0: flagged" in o, o
        assert "task 1 finished: credited" in o, o

    # row 10: results list every trainer with its status, the published model's accuracy, per-task totals
    results = json.loads(run(["task", "results", "1", "--json"], owner_dir).stdout)
    assert [r["status"] if "status" in r else r["settlement"] for r in results["rounds"]] == ["result", "result"]
    text = run(["task", "results", "1"], owner_dir).stdout
    assert "published model" in text and "total per trainer" in text and "3 committed, 3 revealed, seed 0x" in text
    for a in (addr["trainer-1"], addr["trainer-2"], addr["trainer-3"]):
        assert a[:6] in text
    status = run(["task", "status", "1"], owner_dir).stdout
    assert "settled" in status

    # row 14: verify names the task's rounds; row 13: what was posted is checked against the receipts, the
    # chain's previous models and the rejections, and (with the validation set) every round is replayed
    bad = run(["verify", "--task", "1", "--round", "7"], owner_dir, check=False)
    assert "0..1" in one_line_error(bad)
    verified = run(["verify", "--task", "1", "--validation", "validation.csv"], owner_dir, timeout=300).stdout
    assert "2 of 2 rounds verified" in verified and "FAIL" not in verified
    for check in ("calldata", "input model", "rejections", "replay"):
        assert verified.count(f"ok   {check}") == 2, verified

    # row 3 and row 7: a second task nobody serves in time; the owner takes back what nobody earned
    run(["task", "create", "--spec", "spec_bc.json", "--validation", "validation.csv", "--rounds", "2", "--reward", "0.5", "--max-trainers", "3", "--submit-window", "60", "--reveal-window", "30",
         "--result-window", "60", "--key-file", key["owner"]], owner_dir)
    run(["trainer", "join", "2", "--key-file", key["trainer-1"]], owner_dir)
    chain = MarketContract(Chain.connect(str(info["rpc"])), str(info["contract"]))
    commit(chain, read_key_file(key["trainer-2"]), 2, compute_cid(b"never revealed"))  # commits, then goes silent
    chain.chain.advance_to(chain.schedule(2)[1])  # past round 0's commit deadline
    late = run(["trainer", "run", "2", "--once", "--data", "my-data.csv", "--key-file", key["trainer-1"]],
               files["trainer-1"].parent, check=False)
    assert "too late" in one_line_error(late) and "trained" not in late.stdout  # before training, no gas
    early = run(["task", "settle", "2", "--round", "0", "--key-file", key["owner"]], owner_dir, check=False)
    assert "reveal window is still open" in one_line_error(early)
    chain.chain.advance_to(chain.schedule(2)[2])  # the reveal deadline: the silent committer never revealed
    settled = run(["task", "settle", "2", "--round", "0", "--key-file", key["owner"]], owner_dir).stdout
    assert "nothing was revealed" in settled and "wei" in settled
    refunds = run(["task", "refunds", "2", "--key-file", key["owner"]], owner_dir).stdout
    assert "withdrew" in refunds and "refunds" in refunds
    reclaim = run(["task", "reclaim", "2", "--key-file", key["owner"]], owner_dir, check=False)
    assert "--empty-rounds-to-reclaim 0" in one_line_error(reclaim)  # the owner cannot walk away with the rest

    # every trainer withdraws what the chain credited it (one that was paid nothing is told so in one line)
    credited = {t["address"]: int(t["credited_wei"]) for t in results["totals"]}
    assert sum(credited.values()) == 10**18  # the whole reward of task 1, to the wei
    for i in (1, 2, 3):
        w = run(["trainer", "withdraw", "--key-file", key[f"trainer-{i}"]], files[f"trainer-{i}"].parent, check=False)
        if credited[addr[f"trainer-{i}"]]:
            assert w.returncode == 0 and w.stdout.startswith("task 1: withdrew"), w.stdout + w.stderr
            assert f"({credited[addr[f'trainer-{i}']]} wei)" in w.stdout, w.stdout + w.stderr
        else:
            assert "nothing to withdraw" in one_line_error(w)

    # row 12 (last: the simulation uses the devnet's own accounts): a simulation against the devnet uses the devnet's contract (the one `market serve` shows)
    sim = run(["simulate", "--rpc", str(info["rpc"]), "--trainers", "3", "--rounds", "1", "--quiet", "--report", "r.json"],
              owner_dir, timeout=300)
    assert json.loads((owner_dir / "r.json").read_text())["contract"] == info["contract"], sim.stdout
    assert "task 3" in run(["task", "status", "3"], owner_dir).stdout
