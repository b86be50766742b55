"""The owner's ``market task create | init | status | results | reclaim | refunds | settle`` and ``market verify``
(re-derive a settled round)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

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
    _writable_file,
)

if TYPE_CHECKING:
    from market.chain.contract import MarketContract, TaskInfo


def _money(wei: int | str, token: str, exact: bool = False) -> str:
    from market.chain.contract import amount_text  # web3 at call time: `market --help` stays fast

    return amount_text(wei, token, exact=exact)


def _num(wei: int | str, token: str) -> str:
    from market.chain.contract import amount_number

    return amount_number(wei, token)


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
    validation = _load_dataset(args.validation, spec.data)  # checked against the task's own spec, before anything is sent
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


def cmd_task_init(args: argparse.Namespace) -> int:
    """Write a starting spec (JSON) read off a data file: its features, classes and range."""
    from pathlib import Path

    from market.data import schema_from_file
    from market.spec import TaskSpec

    out = Path(args.out)
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: `market task init` writes JSON: name the file *.json")
    if out.exists() and not args.force:
        raise ConfigError(f"--out {out}: the file exists: pass --force to overwrite it, or choose another --out")
    _writable_file(str(out), "--out")
    name = args.name if args.name is not None else Path(args.data).stem[:80]
    if not 1 <= len(name.strip()) <= 80:
        raise ConfigError(f"--name {name!r}: a task name has 1 to 80 characters")
    schema, notes = schema_from_file(args.data, name)
    spec = TaskSpec(name=name, data=schema)
    doc = spec.model_dump(mode="json", exclude={"initial_model_cid"})  # create_task fills that in
    try:
        out.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror}") from None
    d = spec.data
    print(f"wrote {out}: task {spec.name!r}, {d.n_features} features in [{d.feature_range[0]:g}, {d.feature_range[1]:g}], "
          f"{d.n_classes} classes, model {spec.model.arch}; every other field has its default (docs/spec-reference.md)")
    for note in notes:
        print(f"note: {note}")
    print(f"next: market task create --spec {out} --validation VALIDATION_FILE --aggregator ADDRESS --reward ETH --rounds N")
    return 0


def cmd_task_status(args: argparse.Namespace) -> int:
    from market.chain.contract import round_state

    contract = _contract(args)
    info = contract.task(args.task)
    # the phase from the chain's state and Chain.clock(): an idle Anvil's latest block does not move
    state = round_state(info, contract.chain.clock())
    from market_app.api.reads import task_name

    where = "finished" if info.finished else f"round {info.current_round} of {info.rounds} (rounds 0..{info.rounds - 1})"
    name = task_name(_store(args), info.spec_cid)
    print(f"task {info.task_id}{f' ({name})' if name else ''}: {where}; {info.trainer_count}/{info.max_trainers} trainers; owner {info.owner}; aggregator {info.aggregator}")
    print(f"reward {_money(info.reward, info.token)}: escrow {_num(info.escrow, info.token)}, credited {_num(info.credited, info.token)}, "
          f"refunded {_num(info.refunded, info.token)}")
    if info.finished:
        print(f"round {state.round}: settled (every round of the task is settled)")
    else:
        early = " (closed early: the task's full trainer count submitted)" if state.closed_early else ""
        print(f"round {info.current_round}: {info.submitted_count} of at most {info.max_trainers} submitted; {state.text()}{early}")
    if info.refundable:
        print(f"refunds: {_money(info.refundable, info.token, exact=True)} the owner can withdraw with "
              f"`market task refunds {info.task_id}`")
    print(f"spec {info.spec_cid}")
    return 0


def _settled_round(contract: MarketContract, info: TaskInfo, round_: int) -> str:
    """Why ``round_`` cannot be settled now, in one line (``""``: it is the current round)."""
    from market.chain.contract import round_state

    tid = info.task_id
    if not 0 <= round_ < info.rounds:
        return f"task {tid} has rounds 0..{info.rounds - 1}: round {round_} does not exist"
    if round_ < info.current_round:
        how = contract.settled_rounds(tid, info).get(round_)
        by = f" ({how.settlement})" if how is not None else ""
        now = ("the task has finished: every round is settled" if info.finished
               else f"the current round is {info.current_round}: `market task settle {tid} --round {info.current_round}`")
        return f"round {round_} of task {tid} is already settled{by}; {now}"
    if round_ > info.current_round:
        state = round_state(info, contract.chain.clock())
        return f"round {round_} of task {tid} has not opened yet: round {info.current_round} is current ({state.text()})"
    return ""


def cmd_task_settle(args: argparse.Namespace) -> int:
    from market.errors import NotFoundError

    contract = _contract(args)
    info = contract.task(args.task)
    why = _settled_round(contract, info, args.round)
    if why:
        raise NotFoundError(why)
    caller = _account(args)
    paid = contract.settlement(contract.settle_without_result(caller, args.task))  # the contract says why it refuses
    tid, r = args.task, paid["round"]
    if paid["settlement"] == "fallback":
        rest = f"; {_money(paid['refunded'], info.token, exact=True)} remainder to the owner's refunds" if paid["refunded"] else ""
        print(f"task {tid} round {r} settled without a result: {_money(paid['credited'], info.token, exact=True)} "
              f"split equally among {info.submitted_count} submitters{rest}")
    else:
        print(f"task {tid} round {r} settled: nobody submitted, {_money(paid['refunded'], info.token, exact=True)} "
              f"refunded to the owner (withdraw with `market task refunds {tid}`)")
    return 0


def cmd_task_reclaim(args: argparse.Namespace) -> int:
    contract = _contract(args)
    owner = _account(args)
    token = contract.task(args.task).token
    amount = contract.reclaimed(contract.reclaim_unused(owner, args.task))  # the contract says why it refuses
    print(f"task {args.task}: reclaimed {_money(amount, token, exact=True)} of unused rounds; the task is finished; "
          f"withdraw it with `market task refunds {args.task}`")
    return 0


def cmd_task_refunds(args: argparse.Namespace) -> int:
    contract = _contract(args)
    owner = _account(args)
    token = contract.task(args.task).token
    amount = contract.withdraw_refund(owner, args.task)  # the contract says why it refuses
    print(f"task {args.task}: withdrew {_money(amount, token, exact=True)} of refunds to {owner.address}")
    return 0


def _verifiable(contract: MarketContract, task_id: int, round_: int) -> None:
    """A one-line NotFoundError unless ``round_`` of the task exists and is settled."""
    from market.chain.contract import round_state
    from market.errors import NotFoundError

    info = contract.task(task_id)
    if not 0 <= round_ < info.rounds:
        raise NotFoundError(f"task {task_id} has rounds 0..{info.rounds - 1}: round {round_} does not exist")
    if round_ > info.current_round:
        raise NotFoundError(f"round {round_} of task {task_id} has not opened yet: the task is in round {info.current_round}")
    if round_ == info.current_round:
        state = round_state(info, contract.chain.clock())
        raise NotFoundError(f"round {round_} of task {task_id} is not settled yet: {state.text()}")


def cmd_verify(args: argparse.Namespace) -> int:
    from market.data import load_shard
    from market.task import load_task
    from market_app.verify import verify_round

    contract = _contract(args)
    store = _store(args)
    _verifiable(contract, args.task, args.round)
    validation = None
    if args.validation:
        spec = load_task(contract, store, args.task).spec
        validation = load_shard(args.validation, spec.data)
    rep = verify_round(contract, store, args.task, args.round, validation,
                       emit=lambda name, ok, detail: print(f"{'ok  ' if ok else 'FAIL'} {name:12} {detail}", flush=True))
    if not args.validation:
        print("note: no --validation given, so utilities and the model were not recomputed")
    print("round verified" if rep.ok else "round FAILED verification")
    return 0 if rep.ok else 1


#: a trainer's status in a settled round (``TrainerRound.status``) as ``market task results`` words it
_RESULT_STATUS = {"kept": "paid", "outlier": "outlier (paid 0)", "not_submitted": "did not submit",
                  "fallback": "paid (equal split: no result was posted)", "submitted": "submitted (no result yet)"}


def cmd_task_results(args: argparse.Namespace) -> int:
    """Every settled round with every joined trainer's status and pay, then each trainer's total for the task."""
    from market_app.api.models import RoundList, TrainerRound
    from market_app.api.reads import MarketReader

    def _trainer_status(line: TrainerRound) -> str:
        return f"rejected: {line.reason}" if line.status == "rejected" else _RESULT_STATUS.get(line.status, line.status)

    contract = _contract(args)
    contract.task(args.task)  # an unknown task id is the CLI's one-line error
    reader = MarketReader(contract, _store(args))
    view = reader.overview(args.task)  # detail, rounds and payouts from one chain state
    settled = [r for r in view.rounds if r.settled]
    rows = [{
        "round": r.round, "settlement": r.status, "model_cid": r.model_cid, "receipt_cid": r.receipt_cid,
        # validation accuracy of the model the round published (the next round's input)
        "accuracy": r.accuracy, "accuracy_before": r.accuracy_before,
        "outliers": r.outliers, "rejected": r.rejected, "bps": r.bps, "credited_wei": r.credited_by_trainer,
        "trainers": [{"address": t.address, "status": _trainer_status(t), "reason": t.reason,
                      "bps": t.bps, "credited_wei": t.credited_wei} for t in r.trainers],
        "receipt_error": r.receipt_error,
    } for r in settled]
    groups = {"paid": ("kept", "fallback"), "outlier": ("outlier",), "rejected": ("rejected",),
              "did_not_submit": ("not_submitted",)}
    counts = {p.address: {k: sum(1 for r in settled for t in r.trainers if t.address == p.address and t.status in v)
                          for k, v in groups.items()} for p in view.payouts.trainers}
    totals = [{"address": p.address, "credited_wei": p.credited_wei, "withdrawn_wei": p.withdrawn_wei,
               "owed_wei": p.owed_wei, "rounds": counts[p.address]} for p in view.payouts.trainers]
    if args.plot:
        from market_app.api.plot import plot_task

        out = plot_task(view.task, RoundList(task_id=args.task, rounds=view.rounds), args.plot)
        print(f"plot of task {args.task} written to {out}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"task_id": args.task, "name": view.task.name, "rounds": rows, "totals": totals}, indent=2))
        return 0
    name = f" ({view.task.name})" if view.task.name else ""
    print(f"task {args.task}{name}: {len(settled)} of {view.task.rounds} rounds settled, "
          f"reward {_money(view.task.reward_wei, view.task.token)}, {len(view.task.trainers)} trainers joined")
    for r in settled:
        acc = f", validation accuracy {r.accuracy:.3f} (published model)" if r.accuracy is not None else ""
        print(f"round {r.round} ({r.status}{acc}): model {r.model_cid} receipt {r.receipt_cid}")
        if r.receipt_error:
            print(f"  receipt unreadable: {r.receipt_error}")
        for t in r.trainers:
            bps = "-" if t.bps is None else str(t.bps)
            print(f"  {t.address}  {bps:>5} bps  {_money(t.credited_wei, view.task.token)}  {_trainer_status(t)}")
    if not settled:
        print(f"task {args.task}: no round settled yet")
        return 0
    print(f"total per trainer (task {args.task}):")
    for p in view.payouts.trainers:
        c = counts[p.address]
        print(f"  {p.address}  {_money(p.credited_wei, view.task.token)} credited ({_num(p.owed_wei, view.task.token)} not withdrawn); "
              f"paid {c['paid']}, outlier {c['outlier']}, rejected {c['rejected']}, did not submit {c['did_not_submit']}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("task", help="the owner's commands")
    tsub = p.add_subparsers(dest="task_command", required=True)
    q = tsub.add_parser(
        "create", help="publish a spec and escrow the reward",
        description="Publish the task's spec and initial model and escrow the reward, split into equal per-round "
        "pools. Round 0 opens at once: trainers must join (and submit) before a round's submission window closes. "
        "A round closes at the end of its submission window, or early only when --max-trainers trainers have "
        "submitted; the aggregator then has the result window to post.",
    )
    _chain_opts(q)
    q.add_argument("--spec", help="task spec file (.json or .toml; see docs/spec-reference.md, or write one with "
                   "`market task init`); default: the built-in digits spec")
    q.add_argument("--validation", required=True, help="validation set (.npz/.csv) you give the aggregator; "
                   "checked against the spec before anything is sent")
    q.add_argument("--aggregator", required=True, help="aggregator address")
    q.add_argument("--rounds", type=int, default=3, metavar="N", help="training rounds, 1..10000")
    q.add_argument("--reward", default="1", metavar="ETH", help="reward in ETH, split equally over the rounds")
    q.add_argument("--submit-window", type=int, default=3600, metavar="SECONDS",
                   help="seconds each round accepts updates (from the moment it opens)")
    q.add_argument("--result-window", type=int, default=3600, metavar="SECONDS",
                   help="seconds the aggregator then has to post; after that anyone may `market task settle`")
    q.add_argument("--max-trainers", type=int, default=64, metavar="N",
                   help="most trainers that may join, 1..256; a round closes early only when this many have submitted")
    q.set_defaults(func=cmd_task_create)
    q = tsub.add_parser(
        "init", help="write a starting task spec (JSON) from a data file",
        description="Read a data file (.csv: label in the last column, optional header row; or .npz: arrays x, y) and "
        "write a spec with its n_features, n_classes (largest label + 1) and feature_range [0, 1]; every other "
        "field keeps its default (docs/spec-reference.md). Features must already be scaled to [0, 1].",
    )
    q.add_argument("--data", required=True, help="the data file to describe (.csv or .npz)")
    q.add_argument("--out", default="spec.json", help="where to write the spec (a .json file; default spec.json)")
    q.add_argument("--name", help="the task's short name, 1 to 80 characters (default: the data file's name without extension)")
    q.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    q.set_defaults(func=cmd_task_init)
    for name, fn, helptext in (("status", cmd_task_status, "a task's state: is its round open, closed or settled?"),
                               ("results", cmd_task_results, "settled rounds and payouts")):
        q = tsub.add_parser(name, help=helptext)
        q.add_argument("task", type=_task_id)
        _chain_opts(q, key=False)
        if name == "results":
            q.add_argument("--json", action="store_true", help="print the rounds as JSON")
            q.add_argument("--plot", metavar="OUT.png", help="also save the accuracy and contribution figure (.png/.svg/.pdf)")
        q.set_defaults(func=fn)

    for name, fn, helptext, description in (
        ("reclaim", cmd_task_reclaim, "take back every round's pool nobody can earn any more (then `task refunds`)",
         "The owner ends the task and moves every remaining pool to its refunds: allowed once the current round's "
         "submission window is over and nobody submitted to it. Withdraw with `market task refunds`."),
        ("refunds", cmd_task_refunds, "withdraw the task's refunds (rounding remainders, reclaimed or unearned pools)",
         "The owner withdraws everything the task has refunded so far to its own address."),
        ("settle", cmd_task_settle, "settle a round the aggregator did not post (equal split, or refund if nobody submitted)",
         "The fallback for a silent aggregator: once the round's result window is over (submission deadline plus "
         "result window), anyone may settle the current round: its pool is split equally among its submitters, or "
         "refunded to the owner if nobody submitted. `market task status` says when."),
    ):
        q = tsub.add_parser(name, help=helptext, description=description)
        q.add_argument("task", type=_task_id)
        if name == "settle":
            q.add_argument("--round", type=int, required=True, metavar="R",
                           help="the round to settle: must be the task's current round (see `market task status`)")
        _chain_opts(q)
        q.set_defaults(func=fn)

    p = sub.add_parser("verify", help="re-derive a settled round from chain and store (and the proof); exit 1 on any mismatch")
    p.add_argument("--task", type=_task_id, required=True, metavar="T")
    p.add_argument("--round", type=int, required=True, metavar="R", help="a settled round of the task (0-based)")
    p.add_argument("--validation", help="the task's validation set (.npz/.csv): also recompute utilities and the model")
    _chain_opts(p, key=False)
    p.set_defaults(func=cmd_verify)
