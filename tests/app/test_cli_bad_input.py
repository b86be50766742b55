"""Bad input at every entry point of the `market` CLI: one line saying what is wrong, a non-zero exit,
no traceback, no key material, and no transaction sent.

Runs the real CLI in-process (``market_app.cli.main``) against one Anvil with the contract deployed and
one task on it; after every case the block number and the nonces of every dev account are unchanged
(Anvil mines one block per transaction, so an unchanged block number means nothing was sent).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from market_app import cli
from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.data import dataset_commitment, digits_splits, save_npz
from market.chain.devchain import AnvilProcess, dev_accounts, write_key_file
from market.spec import TaskSpec
from market.store import LocalStore
from owner.task import publish_spec

ACCOUNTS = dev_accounts(6)
KEY_TEXTS = [a.key.hex().removeprefix("0x").lower() for a in ACCOUNTS]


@dataclass
class Env:
    dir: Path
    chain: Chain
    contract: MarketContract
    values: dict[str, str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("badinput")
    owner, aggregator, trainer, stranger = ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2], ACCOUNTS[3]
    for name, acct in (("owner", owner), ("aggregator", aggregator), ("trainer", trainer), ("stranger", stranger)):
        write_key_file(acct, d / f"{name}.key")
    splits = digits_splits(2, "iid", 0)
    save_npz(splits.validation, d / "validation.npz")
    save_npz(splits.trainers[0], d / "trainer.npz")
    (d / "notes.txt").write_text("hello\n")
    (d / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "wide.csv").write_text("1,2,3\n4,5,6\n")
    (d / "spec.json").write_text('{"rounds": "many"}')
    (d / "broken.json").write_text("{")
    (d / "garbage.key").write_text("0x" + "zz" * 32 + "\n")
    (d / "short.key").write_text(KEY_TEXTS[4][:40] + "\n")
    (d / "a_dir").mkdir()
    store = LocalStore(d / "store")
    spec, spec_cid = publish_spec(store, TaskSpec())
    with AnvilProcess(accounts=6) as node:
        chain = Chain.connect(node.rpc_url)
        contract = MarketContract.deploy(chain, owner)
        contract.registry.register(aggregator)
        task_id, _ = contract.create_task(owner, spec_cid=spec_cid, initial_model_cid=str(spec.initial_model_cid),
                                          validation_commitment=dataset_commitment(splits.validation),
                                          rounds=2, reward_wei=10**15)
        contract.join(trainer, task_id)
        values = {
            "rpc": node.rpc_url, "contract": contract.address, "dir": str(d), "agg": aggregator.address,
            "owner_key": str(d / "owner.key"), "trainer_key": str(d / "trainer.key"),
            "agg_key": str(d / "aggregator.key"), "stranger_key": str(d / "stranger.key"),
            "val": str(d / "validation.npz"), "data": str(d / "trainer.npz"), "task": str(task_id),
        }
        yield Env(d, chain, contract, values)


def chain_args(extra: str = "") -> str:
    return "--rpc {rpc} --contract {contract} --store-dir {dir}/store " + extra


CREATE = "task create " + chain_args("--key-file {owner_key} --validation {val} --rounds 1 --reward 0.01")

#: (case id, command line with {placeholders}, text the one error line must contain)
CASES: list[tuple[str, str, str]] = [
    # ------------------------------------------------------------ the parser itself
    ("no-command", "", "required"),
    ("unknown-command", "frobnicate", "invalid choice"),
    ("not-an-int", "task status seven " + chain_args(), "not a whole number"),
    ("unknown-option", "task status 1 --colour red " + chain_args(), "unrecognized arguments"),
    # ------------------------------------------------------------ simulate / demo (checked before anything starts)
    ("sim-trainers-0", "simulate --chain tester --quiet --trainers 0", "--trainers"),
    ("sim-trainers-neg", "simulate --chain tester --quiet --trainers -3", "--trainers"),
    ("sim-rounds-0", "simulate --chain tester --quiet --rounds 0", "--rounds"),
    ("sim-attackers-neg", "simulate --chain tester --quiet --attackers -1", "--attackers"),
    ("sim-f-neg", "simulate --chain tester --quiet --f -1", "--f"),
    ("sim-attack", "simulate --chain tester --quiet --attack nope", "unknown attack"),
    ("split-example", "data split --example nope --out {dir}/split-nope", "unknown example task 'nope'"),
    ("sim-task", "simulate --chain tester --quiet --task nope", "unknown example task 'nope'; choose from digits, breast_cancer, diabetes, mnist5k"),
    ("sim-robust", "simulate --chain tester --quiet --robust nope", "nope"),
    ("sim-valuation", "simulate --chain tester --quiet --valuation nope", "nope"),
    ("sim-model", "simulate --chain tester --quiet --model resnet", "--model"),
    ("sim-partition", "simulate --chain tester --quiet --partition zipf", "zipf"),
    ("sim-reward-text", "simulate --chain tester --quiet --reward lots", "not a number of ETH"),
    ("sim-reward-zero", "simulate --chain tester --quiet --reward 0", "positive"),
    ("sim-reward-neg", "simulate --chain tester --quiet --reward -1", "positive"),
    ("sim-reward-nan", "simulate --chain tester --quiet --reward nan", "--reward"),
    ("sim-reward-inf", "simulate --chain tester --quiet --reward inf", "--reward"),
    ("sim-reward-dust", "simulate --chain tester --quiet --reward 0.0000000000000000001", "18 decimals"),
    ("sim-chain", "simulate --chain ropsten --quiet", "invalid choice"),
    ("sim-tester-rpc", "simulate --chain tester --quiet --rpc {rpc}", "drop --rpc"),
    ("sim-rpc-scheme", "simulate --quiet --rpc ftp://127.0.0.1:1", "http"),
    ("sim-rpc-down", "simulate --quiet --rpc http://127.0.0.1:9", "cannot reach"),
    ("sim-contract-bad", "simulate --quiet --rpc {rpc} --contract 0x1234", "--contract"),
    ("sim-contract-no-code", "simulate --quiet --rpc {rpc} --contract 0x000000000000000000000000000000000000dEaD", "no contract"),
    ("sim-report-dir", "simulate --chain tester --quiet --report {dir}/missing/r.json", "--report"),
    ("sim-store-dir-file", "simulate --chain tester --quiet --store-dir {dir}/notes.txt", "notes.txt"),
    ("sim-kubo-no-api", "simulate --chain tester --quiet --store kubo --ipfs-api nope", "--ipfs-api"),
    ("demo-trainers", "demo --chain tester --quiet --trainers 0", "--trainers"),
    # ------------------------------------------------------------ devnet
    ("devnet-port", "devnet --port 70000", "--port"),
    ("devnet-accounts", "devnet --accounts 1", "--accounts"),
    ("devnet-keys-dir", "devnet --port 0 --keys-dir {dir}/notes.txt/keys", "--keys-dir"),
    # ------------------------------------------------------------ data
    ("split-trainers", "data split --trainers 0 --out {dir}/split", "--trainers"),
    ("split-partition", "data split --partition zipf --out {dir}/split", "zipf"),
    ("split-out-file", "data split --out {dir}/notes.txt", "notes.txt"),
    ("commitment-missing", "data commitment {dir}/nope.npz", "nope.npz"),
    ("commitment-bad-zip", "data commitment {dir}/bad.npz", "bad.npz"),
    ("commitment-suffix", "data commitment {dir}/notes.txt", ".npz or .csv"),
    ("commitment-shape", "data commitment {dir}/wide.csv", "features"),
    ("commitment-dir", "data commitment {dir}/a_dir", "a_dir"),
    # ------------------------------------------------------------ task create: local inputs
    ("create-spec-missing", CREATE + " --spec {dir}/nope.json", "nope.json"),
    ("create-spec-broken", CREATE + " --spec {dir}/broken.json", "not valid JSON"),
    ("create-spec-field", CREATE + " --spec {dir}/spec.json", "spec.json"),
    ("create-validation-missing", CREATE.replace("{val}", "{dir}/nope.npz"), "nope.npz"),
    ("create-validation-bad", CREATE.replace("{val}", "{dir}/wide.csv"), "features"),
    ("create-aggregator-named", CREATE + " --aggregator {agg}", "unrecognized arguments"),  # the owner names none
    ("create-panel-0", CREATE + " --panel 0", "--panel"),
    ("create-panel-8", CREATE + " --panel 8", "--panel"),
    ("create-quorum-low", CREATE + " --panel 3 --quorum 1", "--quorum 1: a panel of 3 needs more than half"),
    ("create-panel-unfilled", CREATE + " --panel 3", "registry has 1 bonded aggregators this owner's task can draw; a panel of 3 needs 3"),
    ("create-backup-unfilled", CREATE + " --backup", "needs 2"),
    ("create-fee-high", CREATE + " --fee-bps 5001", "--fee-bps"),
    ("create-reward-text", CREATE + " --reward ten", "not a number of ETH"),
    ("create-reward-zero", CREATE + " --reward 0", "positive"),
    ("create-reward-huge", CREATE + " --reward 1000000000", "more than the owner's balance"),
    ("create-reward-2e128", CREATE + " --reward 1e30", "more than the owner's balance"),
    ("create-rounds-0", CREATE + " --rounds 0", "--rounds"),
    ("create-rounds-huge", CREATE + " --rounds 20000", "--rounds"),
    ("create-rounds-u32", CREATE + " --rounds 5000000000", "--rounds"),
    ("create-submit-window-0", CREATE + " --submit-window 0", "--submit-window"),
    ("create-submit-window-neg", CREATE + " --submit-window -5", "--submit-window"),
    ("create-result-window-u32", CREATE + " --result-window 99999999999", "--result-window"),
    ("create-submit-window-59", CREATE + " --submit-window 59", "--submit-window 59: the contract takes 60 to"),
    ("create-reveal-window-29", CREATE + " --reveal-window 29", "--reveal-window 29: the contract takes 30 to"),
    ("create-result-window-59", CREATE + " --result-window 59", "--result-window 59: the contract takes 60 to"),
    ("create-window-31-days", CREATE + " --submit-window 2678400", "30 days"),
    ("create-stake-text", CREATE + " --stake lots", "--stake"),
    ("create-stake-neg", CREATE + " --stake -1", "--stake"),
    ("create-empty-rounds-neg", CREATE + " --empty-rounds-to-reclaim -1", "--empty-rounds-to-reclaim"),
    ("create-empty-rounds-big", CREATE + " --empty-rounds-to-reclaim 10001", "--empty-rounds-to-reclaim"),
    ("create-max-trainers-0", CREATE + " --max-trainers 0", "--max-trainers"),
    ("create-max-trainers-big", CREATE + " --max-trainers 300", "--max-trainers"),
    ("create-key-missing", CREATE.replace("{owner_key}", "{dir}/nope.key"), "nope.key"),
    ("create-key-garbage", CREATE.replace("{owner_key}", "{dir}/garbage.key"), "private key"),
    ("create-key-short", CREATE.replace("{owner_key}", "{dir}/short.key"), "private key"),
    ("create-key-dir", CREATE.replace("{owner_key}", "{dir}/a_dir"), "a_dir"),
    ("create-no-key", CREATE.replace("--key-file {owner_key}", ""), "key file"),
    ("create-rpc-scheme", CREATE.replace("--rpc {rpc}", "--rpc 127.0.0.1:8545"), "http"),
    ("create-rpc-down", CREATE.replace("--rpc {rpc}", "--rpc http://127.0.0.1:9"), "cannot reach"),
    ("create-contract-bad", CREATE.replace("--contract {contract}", "--contract 0xnothex"), "--contract"),
    ("create-contract-no-code", CREATE.replace("--contract {contract}", "--contract 0x000000000000000000000000000000000000dEaD"), "no contract"),
    ("create-store-kind", CREATE + " --store s3", "invalid choice"),
    ("create-kubo-down", CREATE + " --store kubo --ipfs-api http://127.0.0.1:9", "127.0.0.1:9"),
    # ------------------------------------------------------------ task status / results
    ("status-unknown", "task status 99 " + chain_args(), "unknown task 99"),
    ("status-zero", "task status 0 " + chain_args(), "unknown task 0"),
    ("status-negative", "task status -- -1 " + chain_args(), "out of range"),
    ("status-huge", "task status 999999999999999999999999999999999999999999999999999999999999999999999999999999 " + chain_args(), "out of range"),
    ("status-no-rpc", "task status 1 --contract {contract}", "RPC"),
    ("results-plot-suffix", "task results {task} --plot {dir}/plot.gif " + chain_args(), ".gif"),
    ("results-plot-dir", "task results {task} --plot {dir}/missing/plot.png " + chain_args(), "plot"),
    # ------------------------------------------------------------ trainer
    ("join-unknown-task", "trainer join 99 " + chain_args("--key-file {trainer_key}"), "unknown task 99"),
    ("join-as-aggregator", "trainer join {task} " + chain_args("--key-file {agg_key}"), "role"),
    ("join-key-garbage", "trainer join {task} " + chain_args("--key-file {dir}/garbage.key"), "private key"),
    ("run-data-missing", "trainer run {task} --once " + chain_args("--key-file {trainer_key} --data {dir}/nope.npz"), "nope.npz"),
    ("run-data-shape", "trainer run {task} --once " + chain_args("--key-file {trainer_key} --data {dir}/wide.csv"), "features"),
    ("run-attack", "trainer run {task} --once " + chain_args("--key-file {trainer_key} --data {data} --attack nope"), "nope"),
    ("run-timeout", "trainer run {task} " + chain_args("--key-file {trainer_key} --data {data} --timeout -1"), "--timeout"),
    ("run-as-aggregator", "trainer run {task} --once " + chain_args("--key-file {agg_key} --data {data}"), "role"),
    ("withdraw-nothing", "trainer withdraw " + chain_args("--key-file {stranger_key}"), "nothing to withdraw"),
    ("withdraw-no-key", "trainer withdraw " + chain_args(), "key file"),
    ("withdraw-task-nothing", "trainer withdraw --task {task} " + chain_args("--key-file {trainer_key}"), "nothing to withdraw from task"),
    ("withdraw-unknown-task", "trainer withdraw --task 99 " + chain_args("--key-file {trainer_key}"), "unknown task 99"),
    ("withdraw-to-bad", "trainer withdraw --to 0x12 " + chain_args("--key-file {trainer_key}"), "--to"),
    ("withdraw-to-zero", "trainer withdraw --to 0x" + "00" * 20 + " " + chain_args("--key-file {trainer_key}"), "--to"),
    ("leave-no-task", "trainer leave " + chain_args("--key-file {trainer_key}"), "--task"),
    ("leave-not-joined", "trainer leave --task {task} " + chain_args("--key-file {stranger_key}"), "has not joined this task"),
    # ------------------------------------------------------------ owner's money and verify
    ("settle-too-early", "task settle {task} --round 0 " + chain_args("--key-file {stranger_key}"), "reveal window"),
    ("reclaim-never", "task reclaim {task} " + chain_args("--key-file {owner_key}"), "--empty-rounds-to-reclaim 0"),
    ("verify-unknown-task", "verify --task 99 " + chain_args(), "unknown task 99"),
    ("verify-nothing-settled", "verify --task {task} " + chain_args(), "no round was settled by a posted result"),
    # ------------------------------------------------------------ aggregator
    ("agg-validation", "aggregator run {task} --once " + chain_args("--key-file {agg_key} --validation {dir}/nope.npz"), "nope.npz"),
    ("agg-not-aggregator", "aggregator run {task} --once " + chain_args("--key-file {stranger_key} --validation {val}"), "is not a registered aggregator"),
    ("agg-wrong-validation", "aggregator run {task} --once " + chain_args("--key-file {agg_key} --validation {data}"), "commitment"),
    ("agg-timeout", "aggregator run {task} " + chain_args("--key-file {agg_key} --validation {val} --timeout 0"), "--timeout"),
    ("agg-register-low", "aggregator register --bond 0.5 " + chain_args("--key-file {stranger_key}"), "least bond is 1.000000 ETH"),
    ("agg-register-text", "aggregator register --bond lots " + chain_args("--key-file {stranger_key}"), "--bond"),
    ("agg-exit-stranger", "aggregator exit " + chain_args("--key-file {stranger_key}"), "is not a registered aggregator"),
    ("agg-withdraw-still-in", "aggregator withdraw " + chain_args("--key-file {agg_key}"), "still in the draw"),
    ("agg-credits-none", "aggregator withdraw --credits " + chain_args("--key-file {stranger_key}"), "nothing to withdraw"),
    # ------------------------------------------------------------ serve
    ("serve-port", "serve --port 70000 " + chain_args(), "--port"),
    ("serve-host", "serve --host 'not a host' " + chain_args(), "host"),
    ("serve-key-garbage", "serve " + chain_args("--key-file {dir}/garbage.key"), "private key"),
]


@pytest.fixture
def isolated(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in an empty folder with no MARKET_* settings; put back the signal handlers `main` installs."""
    for k in list(os.environ):
        if k.startswith("MARKET_"):
            monkeypatch.delenv(k)
    work = env.dir / "cwd"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield work
    for s, h in handlers.items():
        signal.signal(s, h)


def _split(line: str) -> list[str]:
    import shlex

    return shlex.split(line)


def chain_state(env: Env) -> tuple[int, list[int]]:
    w3 = env.chain.w3
    return w3.eth.block_number, [w3.eth.get_transaction_count(a.address, "pending") for a in ACCOUNTS]


@pytest.mark.parametrize("case, line, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_sends_nothing(
    env: Env, isolated: Path, case: str, line: str, needle: str,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    argv = _split(line.format(**env.values))
    before = chain_state(env)
    caplog.set_level(logging.DEBUG)

    def _hung(signum: int, frame: object) -> None:
        raise TimeoutError("the command did not stop on its own: it accepted the bad input")

    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(60)  # a guard against a command that runs on, not a timing assertion
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    out, err = capsys.readouterr()
    after = chain_state(env)
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    everything = (out + err + caplog.text).lower()
    assert code not in (0, None), f"exit code {code}: {out}{err}"
    assert len(lines) == 1, f"expected one line, got:\n{out}{err}"
    assert "traceback" not in everything
    assert needle.lower() in lines[0].lower(), lines[0]
    assert not any(k in everything for k in KEY_TEXTS), "key material in the output"
    assert after == before, "a transaction was sent"
