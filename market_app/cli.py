"""``market``: one console script with a sub-command per role.

    market demo | simulate | devnet
    market task create | status | results
    market trainer join | run | withdraw
    market aggregator run
    market data split | commitment
    market serve                      (HTTP API + live dashboard)

Errors a user can cause print one line (``error: …``) and exit non-zero;
private keys are read from key files and never printed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from market.errors import ConfigError, ContractRevert, MarketError
from market_app.settings import check_environment, load_dotenv, require, resolve


# --------------------------------------------------------------------- helpers
def _store(args: argparse.Namespace) -> Any:
    from market.store import open_store

    kind = resolve(getattr(args, "store", None), "MARKET_STORE") or "local"
    return open_store(
        kind,
        path=resolve(getattr(args, "store_dir", None), "MARKET_STORE_DIR", "store_dir"),
        api_url=resolve(getattr(args, "ipfs_api", None), "MARKET_IPFS_API"),
    )


def _contract(args: argparse.Namespace) -> Any:
    from market.chain.client import Chain
    from market.chain.contract import MarketContract

    rpc = require(resolve(args.rpc, "MARKET_RPC", "rpc"), "RPC URL", "pass --rpc URL or start `market devnet`")
    address = require(
        resolve(args.contract, "MARKET_CONTRACT", "contract"), "contract address",
        "pass --contract ADDRESS (printed by `market devnet`)",
    )
    _check_address(address, "--contract")
    return MarketContract(Chain.connect(rpc), address)


def _in_range(value: int, what: str, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``, else a one-line ConfigError naming the option."""
    if not low <= value <= high:
        raise ConfigError(f"{what} {value}: must be between {low} and {high}")
    return value


def _task_id(text: str) -> int:
    """argparse type of a task id: a whole number that fits the contract's uint256."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"task id {text!r} is not a whole number") from None
    if not 0 <= value < 2**256:
        raise argparse.ArgumentTypeError(f"task id {text} is out of range (task ids count from 1)")
    return value


def _writable_file(path: str, what: str) -> None:
    """Fail before any work when ``path`` cannot be written (its folder is missing, or it is a folder)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {path}: is a folder, not a file")
    if not p.parent.is_dir():
        raise ConfigError(f"{what} {path}: folder {p.parent} does not exist")


def _check_address(text: str, what: str) -> str:
    from web3 import Web3

    if not Web3.is_address(text):
        raise ConfigError(f"{what} {text!r} is not an Ethereum address")
    return Web3.to_checksum_address(text)


def _account(args: argparse.Namespace) -> Any:
    from market.chain.devchain import read_key_file

    path = require(resolve(args.key_file, "MARKET_KEY_FILE"), "key file", "pass --key-file PATH (or MARKET_KEY_FILE)")
    return read_key_file(path)


def _eth(wei: int | str) -> str:
    from owner.task import eth_text

    return eth_text(wei)


def _reward(text: str) -> int:
    from owner.task import parse_eth

    try:
        return parse_eth(text)
    except ValueError as exc:
        raise ConfigError(f"--reward {exc}") from None


def _short(addr: str) -> str:
    return addr[:6] + "…" + addr[-4:]


def _console() -> Any:
    from rich.console import Console

    return Console()


def _wait(pred: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise MarketError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


# -------------------------------------------------------------------- simulate
def _sim_config(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from simulator.simulate import SimulateConfig

    fields = {k: getattr(args, k) for k in SimulateConfig.model_fields if getattr(args, k, None) is not None}
    try:
        return SimulateConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None


def _print_round(console: Any, report_trainers: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"round {entry['round']}  ·  test accuracy {entry['accuracy']:.3f}", title_justify="left")
    for col in ("trainer", "attack", "status", "contribution", "bps", "credited ETH"):
        table.add_column(col, justify="right" if col in ("contribution", "bps", "credited ETH") else "left")
    for t in report_trainers:
        a = t["address"]
        status = "outlier" if a in entry["outliers"] else ("rejected: " + entry["rejected"][a] if a in entry["rejected"] else "kept")
        table.add_row(
            _short(a), t["attack"] or "-", status, f"{100 * entry['contributions'].get(a, 0.0):.1f}%",
            str(entry["bps"].get(a, 0)), _eth(entry["credited_wei"].get(a, "0")),
        )
    console.print(table)


def _print_final(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    fin = report["final"]
    table = Table(title="final balances (read from the chain)", title_justify="left")
    table.add_column("account")
    table.add_column("attack")
    table.add_column("withdrawn ETH", justify="right")
    for t in report["trainers"]:
        table.add_row(_short(t["address"]), t["attack"] or "-", _eth(fin["withdrawn_wei"][t["address"]]))
    table.add_row("owner (refunds)", "-", _eth(fin["refunded_wei"]))
    table.add_row("escrow left", "-", _eth(fin["escrow_left_wei"]))
    console.print(table)
    total = sum(int(v) for v in fin["withdrawn_wei"].values()) + int(fin["refunded_wei"]) + int(fin["escrow_left_wei"])
    ok = "=" if total == int(report["reward_wei"]) else "≠"
    console.print(
        f"withdrawn + refunded + escrow left = {total} wei {ok} reward {report['reward_wei']} wei; "
        f"final accuracy {fin['accuracy']:.3f}"
    )


class _SimProgress:
    """Rich progress bars of ``market simulate``: rounds, training (trainer updates) and valuation.

    ``on_round`` (one call per settled round) drives all three; if ``simulate`` offers a finer
    ``on_progress(stage, done, total)`` hook ("train" per trainer, "valuation" per coalition
    evaluated), the training and valuation bars also move inside a round.
    """

    def __init__(self, console: Any, cfg: Any, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.cfg = cfg
        self.done_rounds = 0
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(bar_width=32), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=console, transient=True, disable=quiet,
        )
        chain = f"on {cfg.chain}" if not cfg.rpc else f"on {cfg.rpc}"
        self.rounds = self.progress.add_task("rounds", total=cfg.rounds, note=chain)
        self.train = self.progress.add_task("training", total=cfg.trainers * cfg.rounds, note="trainer updates")
        self.value = self.progress.add_task("valuation", total=cfg.rounds, note="rounds valued")

    def on_round(self, entry: dict[str, Any]) -> None:
        self.done_rounds += 1
        sec = entry.get("seconds", {})
        p = self.progress
        p.update(self.rounds, completed=self.done_rounds,
                 note=f"round {entry['round']}: accuracy {entry['accuracy']:.3f}")
        p.update(self.train, completed=self.done_rounds * self.cfg.trainers,
                 note=f"{sec.get('train', 0.0):.1f} s this round")
        kept = sum(1 for a in entry["bps"] if a not in entry["outliers"] and a not in entry["rejected"])
        p.update(self.value, completed=self.done_rounds,
                 note=f"{kept} kept, {len(entry['outliers'])} outliers, {len(entry['rejected'])} rejected, "
                      f"{sec.get('valuation', 0.0):.2f} s")

    def on_progress(self, stage: str, done: int, total: int) -> None:
        if stage == "train":
            self.progress.update(self.train, completed=self.done_rounds * self.cfg.trainers + done)
        elif stage == "valuation" and total:
            self.progress.update(self.value, completed=self.done_rounds + done / total)


def cmd_simulate(args: argparse.Namespace) -> int:
    import inspect

    from simulator.simulate import simulate

    cfg = _sim_config(args)
    cfg.check()  # every option before anything starts (simulate checks again)
    if cfg.contract:
        _check_address(cfg.contract, "--contract")
    if args.report:
        _writable_file(args.report, "--report")
    console = _console()
    t0 = time.perf_counter()
    bars = _SimProgress(console, cfg, args.quiet)

    def on_round(entry: dict[str, Any]) -> None:
        bars.on_round(entry)
        if not args.quiet:
            bars.progress.console.print(
                f"round {entry['round']}: accuracy {entry['accuracy']:.3f}, "
                f"outliers {[_short(a) for a in entry['outliers']]}, rejected {len(entry['rejected'])}"
            )

    hooks: dict[str, Any] = {"on_round": on_round}
    if "on_progress" in inspect.signature(simulate).parameters:  # finer hook, when the simulator offers it
        hooks["on_progress"] = bars.on_progress
    with bars.progress:
        report = simulate(cfg, **hooks)
    if not args.quiet:
        for entry in report["rounds"]:
            _print_round(console, report["trainers"], entry)
        _print_final(console, report)
        console.print(f"done in {time.perf_counter() - t0:.1f} s (task {report['task_id']} on chain {report['chain_id']})")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
        if not args.quiet:
            console.print(f"report written to {args.report}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    for k, v in dict(trainers=5, attackers=1, attack="sign_flip", rounds=3, partition="dirichlet:0.5", seed=0).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return cmd_simulate(args)


# ---------------------------------------------------------------------- devnet
def cmd_devnet(args: argparse.Namespace) -> int:
    from market.chain.client import Chain
    from market.chain.contract import MarketContract
    from market.chain.devchain import DEV_CHAINS, dev_accounts, write_key_file
    from market_app.settings import DEVNET_FILE

    console = _console()
    _in_range(args.port, "--port", 0, 65535)
    _in_range(args.accounts, "--accounts", 3, 1000)  # owner, aggregator and at least one trainer
    keys_dir = Path(args.keys_dir)
    try:
        keys_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--keys-dir {keys_dir}: {exc.strerror}") from None
    accounts = dev_accounts(args.accounts)
    stop = {"flag": False}

    def _on_signal(signum: int, _frame: Any) -> None:
        stop["flag"] = True

    with DEV_CHAINS[args.chain](accounts=args.accounts, port=args.port) as anvil:
        chain = Chain.connect(anvil.rpc_url)
        market = MarketContract.deploy(chain, accounts[0])
        roles = ["owner", "aggregator"] + [f"trainer-{i}" for i in range(1, len(accounts) - 1)]
        entries = []
        for role, acct in zip(roles, accounts):
            path = keys_dir / f"{role}.key"
            write_key_file(acct, path)
            entries.append({"role": role, "address": acct.address, "key_file": str(path)})
        info = {"rpc": anvil.rpc_url, "chain_id": chain.chain_id, "contract": market.address, "accounts": entries,
                "store_dir": str(Path(args.store_dir).resolve())}
        DEVNET_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEVNET_FILE.write_text(json.dumps(info, indent=2) + "\n")
        console.print(f"RPC URL   {anvil.rpc_url}\nchain id  {info['chain_id']}\ncontract  {market.address}")
        console.print(f"store     {info['store_dir']} (local)")
        for e in entries:
            console.print(f"  {e['role']:<12} {e['address']}  {_eth(chain.balance(e['address']))} ETH  key: {e['key_file']}")
        console.print(f"settings written to {DEVNET_FILE}; other `market` commands here use them. Ctrl-C stops the chain.")
        sys.stdout.flush()
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        try:
            while not stop["flag"] and anvil.proc is not None and anvil.proc.poll() is None:
                time.sleep(0.2)
        finally:
            DEVNET_FILE.unlink(missing_ok=True)
    console.print("devnet stopped")
    return 0


# ------------------------------------------------------------------------ data
def cmd_data_split(args: argparse.Namespace) -> int:
    from market.data import digits_splits, save_npz

    _in_range(args.trainers, "--trainers", 1, 1000)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror}") from None
    splits = digits_splits(args.trainers, args.partition, args.seed)
    for i, shard in enumerate(splits.trainers, 1):
        save_npz(shard, out / f"trainer-{i}.npz")
    save_npz(splits.validation, out / "validation.npz")
    save_npz(splits.test, out / "test.npz")
    print(f"wrote {len(splits.trainers)} trainer shards, validation.npz and test.npz to {out}")
    return 0


def cmd_data_commitment(args: argparse.Namespace) -> int:
    from market.data import dataset_commitment

    print("0x" + dataset_commitment(_load_dataset(args.file)).hex())
    return 0


def _load_dataset(path: str) -> Any:
    from market.data import load_shard
    from market.spec import DataSchema

    schema = DataSchema()
    return load_shard(path, schema.n_features, schema.n_classes)


# ------------------------------------------------------------------------ task
def cmd_task_create(args: argparse.Namespace) -> int:
    from market.data import dataset_commitment
    from market.spec import TaskSpec, load_spec_file
    from owner.task import TaskRequest, check_funds, create_task

    # local inputs first: a bad spec file or option is reported before anything is contacted
    spec = load_spec_file(args.spec) if args.spec else TaskSpec()
    aggregator = _check_address(args.aggregator, "--aggregator")
    reward = _reward(args.reward)
    # the contract's own limits, checked here so that nothing is sent (and the option is named)
    _in_range(args.rounds, "--rounds", 1, 10_000)
    _in_range(args.submit_window, "--submit-window", 1, 2**32 - 1)
    _in_range(args.result_window, "--result-window", 1, 2**32 - 1)
    _in_range(args.max_trainers, "--max-trainers", 1, 256)
    if int(aggregator, 16) == 0:
        raise ConfigError("--aggregator: the zero address cannot aggregate")
    validation = _load_dataset(args.validation)
    owner = _account(args)
    contract = _contract(args)
    check_funds(contract, owner.address, reward)
    request = TaskRequest(
        spec=spec, validation_commitment=dataset_commitment(validation), aggregator=aggregator, rounds=args.rounds,
        reward_wei=reward, submit_window=args.submit_window, result_window=args.result_window,
        max_trainers=args.max_trainers,
    )
    created = create_task(contract, _store(args), owner, request)
    print(f"task {created.task_id} created: {args.rounds} rounds, reward {_eth(reward)} ETH escrowed, spec {created.spec_cid}")
    return 0


def cmd_task_status(args: argparse.Namespace) -> int:
    contract = _contract(args)
    info = contract.task(args.task)
    sub_dl, res_dl = contract.deadlines(args.task)
    now = contract.chain.now()
    state = "finished" if info.finished else f"round {info.current_round} of {info.rounds}"
    print(f"task {info.task_id}: {state}; {info.trainer_count}/{info.max_trainers} trainers; owner {info.owner}; aggregator {info.aggregator}")
    print(f"reward {_eth(info.reward)} ETH: escrow {_eth(info.escrow)}, credited {_eth(info.credited)}, refunded {_eth(info.refunded)}")
    if not info.finished:
        subs = contract.submitters(args.task, info.current_round)
        print(f"round {info.current_round}: {len(subs)} submitted; submissions close in {max(0, sub_dl - now)} s, results in {max(0, res_dl - now)} s")
    print(f"spec {info.spec_cid}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from market.data import load_shard
    from market.task import load_task
    from market_app.verify import verify_round

    contract = _contract(args)
    store = _store(args)
    validation = None
    if args.validation:
        spec = load_task(contract, store, args.task).spec
        validation = load_shard(args.validation, spec.data.n_features, spec.data.n_classes)
    rep = verify_round(contract, store, args.task, args.round, validation,
                       emit=lambda name, ok, detail: print(f"{'ok  ' if ok else 'FAIL'} {name:12} {detail}", flush=True))
    if not args.validation:
        print("note: no --validation given, so utilities and the model were not recomputed")
    print("round verified" if rep.ok else "round FAILED verification")
    return 0 if rep.ok else 1


def cmd_task_results(args: argparse.Namespace) -> int:
    from market.task import read_receipt

    contract = _contract(args)
    store = _store(args)
    info = contract.task(args.task)
    rows = []
    for r in range(min(info.current_round, info.rounds)):
        ri = contract.round_info(args.task, r)
        receipt = read_receipt(store, ri.receipt_cid) if ri.receipt_cid else None
        rows.append({
            "round": r, "settlement": ri.settlement, "model_cid": ri.model_cid, "receipt_cid": ri.receipt_cid,
            "accuracy": receipt.details.accuracy_after if receipt else None,
            "outliers": receipt.outliers if receipt else [], "rejected": receipt.rejected if receipt else {},
            "bps": receipt.bps if receipt else {},
            "credited_wei": {a: str(v) for a, v in contract.credited(args.task, r).items()},
        })
    if args.plot:
        from market_app.api.plot import plot_task
        from market_app.api.reads import MarketReader

        reader = MarketReader(contract, store)
        out = plot_task(reader.task_detail(args.task), reader.rounds(args.task), args.plot)
        print(f"plot of task {args.task} written to {out}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"task_id": args.task, "rounds": rows}, indent=2))
        return 0
    for row in rows:
        acc = f", validation accuracy {row['accuracy']:.3f}" if isinstance(row["accuracy"], float) else ""
        print(f"round {row['round']} ({row['settlement']}{acc}): model {row['model_cid']} receipt {row['receipt_cid']}")
        for a, wei in row["credited_wei"].items():
            tag = " outlier" if a in row["outliers"] else ""
            print(f"  {a}  {row['bps'].get(a, '-'):>5} bps  {_eth(wei)} ETH{tag}")
        for a, why in row["rejected"].items():
            print(f"  {a}  rejected: {why}")
    if not rows:
        print(f"task {args.task}: no round settled yet")
    return 0


# --------------------------------------------------------------------- trainer
def cmd_trainer_join(args: argparse.Namespace) -> int:
    from trainer_node.node import TrainerNode

    contract = _contract(args)
    node = TrainerNode(contract, _store(args), _account(args), data=None)  # type: ignore[arg-type]
    sent = node.join(args.task)
    print(f"{node.address} {'joined' if sent else 'had already joined'} task {args.task}")
    return 0


def cmd_trainer_run(args: argparse.Namespace) -> int:
    from trainer_node.attacks import get_attack
    from trainer_node.node import TrainerNode

    if args.attack:
        get_attack(args.attack)
    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout}: must be a positive number of seconds")
    contract = _contract(args)
    data = _load_dataset(args.data)
    node = TrainerNode(contract, _store(args), _account(args), data, attack=args.attack, seed=args.seed)
    node.join(args.task)
    while True:
        info = contract.task(args.task)
        if info.finished:
            print(f"task {args.task} finished")
            return 0
        r = info.current_round
        if node.already_submitted(args.task, r) and args.once:
            print(f"round {r}: already submitted this round; nothing to do", flush=True)
            return 0
        if not node.already_submitted(args.task, r):
            try:
                res = node.run_round(args.task)
            except ContractRevert as exc:
                if args.once or exc.name != "MarketSubmissionClosed":
                    raise
                print(f"round {r}: {exc}; waiting for the next round", flush=True)
                _wait(lambda: contract.task(args.task).current_round != r, args.timeout, f"round {r} to settle")
                continue
            if res.cid:
                print(f"round {r}: submitted {res.cid} ({res.train_s:.1f} s training, {res.gas} gas)", flush=True)
            else:
                print(f"round {r}: skipped: {res.skipped}", flush=True)
            if args.once:
                return 0
        _wait(lambda: contract.task(args.task).current_round != r, args.timeout, f"round {r} of task {args.task} to settle")


def cmd_trainer_withdraw(args: argparse.Namespace) -> int:
    contract = _contract(args)
    acct = _account(args)
    amount = contract.withdraw(acct)
    print(f"withdrew {_eth(amount)} ETH ({amount} wei) to {acct.address}")
    return 0


# ------------------------------------------------------------------ aggregator
def cmd_aggregator_run(args: argparse.Namespace) -> int:
    from aggregator.service import Aggregator
    from market.task import load_task

    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout}: must be a positive number of seconds")
    contract = _contract(args)
    store = _store(args)
    agg = Aggregator(contract, store, _account(args), _load_dataset(args.validation))
    agg.check_task(load_task(contract, store, args.task))
    while True:
        info = contract.task(args.task)
        if info.finished:
            print(f"task {args.task} finished")
            return 0
        r = info.current_round
        _wait(lambda: agg.submissions_closed(args.task), args.timeout, f"submissions to round {r} of task {args.task}")
        if contract.task(args.task).finished:
            continue
        posted = agg.run_round(args.task)
        rec = posted.receipt
        print(
            f"round {r}: posted model {posted.model_cid}; outliers {rec.outliers}; "
            f"rejected {len(rec.rejected)}; bps {posted.bps}; {posted.gas} gas",
            flush=True,
        )
        if args.once:
            return 0


# ----------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    from market_app.api.app import is_loopback, serve
    from market_app.settings import serve_address

    host, port = serve_address(args.host, args.port)
    contract = _contract(args)
    store = _store(args)
    key_path = resolve(args.key_file, "MARKET_KEY_FILE")
    creator = _account(args) if key_path else None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} (pick another --port)") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"market API and dashboard on http://{shown}:{port}/  (OpenAPI: /openapi.json)")
    print(f"chain {contract.chain.chain_id}, contract {contract.address}, store {store!r}")
    if creator is not None:
        print(f"POST /api/tasks enabled: signs as {creator.address} (key file {key_path}; the key never leaves this process)")
    if not is_loopback(host):
        print(f"warning: listening on {host} makes the API reachable from other machines", file=sys.stderr)
    sys.stdout.flush()
    serve(contract, store, host=host, port=port, creator=creator, log_level=args.log_level)
    return 0


# ---------------------------------------------------------------------- parser
def _chain_opts(p: argparse.ArgumentParser, key: bool = True) -> None:
    p.add_argument("--rpc", help="JSON-RPC URL (default: $MARKET_RPC or the running `market devnet`)")
    p.add_argument("--contract", help="market contract address (default: $MARKET_CONTRACT or the devnet's)")
    p.add_argument("--store", choices=["local", "kubo"], help="content store (default local)")
    p.add_argument("--store-dir", help="folder of the local store (default .market/store)")
    p.add_argument("--ipfs-api", help="Kubo RPC API URL for --store kubo")
    if key:
        p.add_argument("--key-file", help="file holding this role's private key (default $MARKET_KEY_FILE)")


def _sim_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trainers", type=int)
    p.add_argument("--attackers", type=int, help="how many of the trainers attack (the last ones)")
    p.add_argument("--attack", help="sign_flip | gaussian | label_flip | free_rider | alie | ipm | mimic")
    p.add_argument("--rounds", type=int)
    p.add_argument("--robust", help="robust rule (default ccdrop)")
    p.add_argument("--f", type=int, help="suspected attackers for the robust rule (default: --attackers, at least 1)")
    p.add_argument("--valuation", help="auto | exact | gtg | tmc | loo (default auto)")
    p.add_argument("--model", help="logreg | mlp | cnn")
    p.add_argument("--partition", help="iid | dirichlet:ALPHA")
    p.add_argument("--seed", type=int)
    p.add_argument("--reward", help="reward in ETH (decimal, default 1)")
    p.add_argument("--chain", choices=["anvil", "ganache", "tester"],
                   help="anvil (default), ganache (a throwaway Ganache 7) or the in-process tester EVM")
    p.add_argument("--rpc", help="use this chain instead of a throwaway Anvil")
    p.add_argument("--contract", help="with --rpc: use this deployed contract")
    p.add_argument("--store", choices=["local", "kubo"])
    p.add_argument("--store-dir")
    p.add_argument("--ipfs-api")
    p.add_argument("--proof", choices=["none", "groth16"],
                   help="groth16: prove every round (Multi-Krum over sketches + cyclic Shapley) and verify it on chain "
                        "before crediting; needs --robust multikrum; the first run builds a development setup (~1-2 min)")
    p.add_argument("--sketch-k", type=int, help="sketch length trainers commit to (16..64, default 16)")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (sub-parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _OneLineParser(prog="market", description="Proof-of-Contribution market: collaborative training paid by contribution.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="the whole marketplace with sensible defaults and a per-round table")
    _sim_opts(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("simulate", help="owner, N trainer nodes (some attackers) and an aggregator on one machine")
    _sim_opts(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("devnet", help="start a local Anvil on 127.0.0.1, deploy, print addresses; runs until Ctrl-C")
    p.add_argument("--chain", choices=["anvil", "ganache"], default="anvil", help="which local node to start (default anvil)")
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--keys-dir", default=".market/devnet/keys")
    p.add_argument("--store-dir", default=".market/store")
    p.set_defaults(func=cmd_devnet)

    p = sub.add_parser("data", help="data utilities")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("split", help="write digits shards for N trainers plus validation/test sets (.npz)")
    q.add_argument("--trainers", type=int, default=5)
    q.add_argument("--partition", default="iid")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="data")
    q.set_defaults(func=cmd_data_split)
    q = dsub.add_parser("commitment", help="print the commitment of a data file (the validation_commitment of a task)")
    q.add_argument("file", help=".npz with x, y or .csv, label last")
    q.set_defaults(func=cmd_data_commitment)

    p = sub.add_parser("task", help="the owner's commands")
    tsub = p.add_subparsers(dest="task_command", required=True)
    q = tsub.add_parser("create", help="publish a spec and escrow the reward")
    _chain_opts(q)
    q.add_argument("--spec", help="task spec file (.json or .toml); default: the built-in digits spec")
    q.add_argument("--validation", required=True, help="validation set (.npz/.csv) you give the aggregator")
    q.add_argument("--aggregator", required=True, help="aggregator address")
    q.add_argument("--rounds", type=int, default=3)
    q.add_argument("--reward", default="1", help="reward in ETH")
    q.add_argument("--submit-window", type=int, default=3600, help="seconds each round accepts updates")
    q.add_argument("--result-window", type=int, default=3600, help="seconds the aggregator then has to post")
    q.add_argument("--max-trainers", type=int, default=64)
    q.set_defaults(func=cmd_task_create)
    for name, fn, helptext in (("status", cmd_task_status, "a task's state"), ("results", cmd_task_results, "settled rounds and payouts")):
        q = tsub.add_parser(name, help=helptext)
        q.add_argument("task", type=_task_id)
        _chain_opts(q, key=False)
        if name == "results":
            q.add_argument("--json", action="store_true")
            q.add_argument("--plot", metavar="OUT.png", help="also save the accuracy and contribution figure (.png/.svg/.pdf)")
        q.set_defaults(func=fn)

    p = sub.add_parser("verify", help="re-derive a settled round from chain and store (and the proof); exit 1 on any mismatch")
    p.add_argument("--task", type=int, required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--validation", help="the task's validation set (.npz/.csv): also recompute utilities and the model")
    _chain_opts(p, key=False)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("trainer", help="a data owner's trainer node")
    trsub = p.add_subparsers(dest="trainer_command", required=True)
    q = trsub.add_parser("join", help="join a task")
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.set_defaults(func=cmd_trainer_join)
    q = trsub.add_parser("run", help="train and submit every round until the task ends")
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.add_argument("--data", required=True, help="your private data (.npz with x, y or .csv, label last)")
    q.add_argument("--attack", help="simulation only: behave as this attacker")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--once", action="store_true", help="submit for the current round only")
    q.add_argument("--timeout", type=float, default=3600)
    q.set_defaults(func=cmd_trainer_run)
    q = trsub.add_parser("withdraw", help="withdraw what you are owed")
    _chain_opts(q)
    q.set_defaults(func=cmd_trainer_withdraw)

    p = sub.add_parser("aggregator", help="the aggregator service")
    asub = p.add_subparsers(dest="aggregator_command", required=True)
    q = asub.add_parser("run", help="aggregate and post every round until the task ends")
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.add_argument("--validation", required=True, help="the validation set the owner committed to")
    q.add_argument("--once", action="store_true")
    q.add_argument("--timeout", type=float, default=7200)
    q.set_defaults(func=cmd_aggregator_run)

    p = sub.add_parser("serve", help="HTTP API (OpenAPI at /openapi.json) and live dashboard at /")
    _chain_opts(p)
    p.add_argument("--host", help="address to listen on (default $MARKET_HOST or 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default $MARKET_PORT or 8000)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
    return ap


def _terminate(signum: int, _frame: Any) -> None:
    # turn SIGTERM into SystemExit so every `finally` (e.g. stopping a throwaway Anvil) runs
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    try:
        load_dotenv()
        check_environment()
        return int(args.func(args))
    except MarketError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
