"""The owner's ``market task create | status | results`` and ``market verify`` (re-derive a settled round)."""

from __future__ import annotations

import argparse
import json
import sys

from market.errors import ConfigError
from market_app.cli.common import (
    _account,
    _chain_opts,
    _check_address,
    _contract,
    _eth,
    _in_range,
    _load_dataset,
    _reward,
    _store,
    _task_id,
)


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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
