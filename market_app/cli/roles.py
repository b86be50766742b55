"""The long-running roles: ``market trainer join | run | withdraw`` and ``market aggregator run``."""

from __future__ import annotations

import argparse

from market.errors import ConfigError
from market_app.cli.common import _account, _chain_opts, _check_address, _contract, _load_dataset, _store, _task_id, _task_spec


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
    data = _load_dataset(args.data, _task_spec(args, contract).data)  # the task's own schema, before joining or training
    node = TrainerNode(contract, _store(args), _account(args), data, attack=args.attack, seed=args.seed)
    node.run(args.task, once=args.once, timeout=args.timeout, say=_say)
    return 0


def cmd_trainer_withdraw(args: argparse.Namespace) -> int:
    from market.chain.contract import ZERO_ADDRESS, amount_text

    token = _check_address(args.token, "--token") if args.token else ZERO_ADDRESS
    contract = _contract(args)
    acct = _account(args)
    amount = contract.withdraw(acct, token)
    print(f"withdrew {amount_text(amount, token, exact=True)} to {acct.address}")
    return 0


# ------------------------------------------------------------------ aggregator
def cmd_aggregator_run(args: argparse.Namespace) -> int:
    from aggregator.service import Aggregator

    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout}: must be a positive number of seconds")
    contract = _contract(args)
    store = _store(args)
    validation = _load_dataset(args.validation, _task_spec(args, contract, store).data)  # the task's own schema
    agg = Aggregator(contract, store, _account(args), validation)
    agg.serve(args.task, once=args.once, timeout=args.timeout, say=_say)
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trainer", help="a data owner's trainer node",
        description="A trainer joins a task, then trains on its private data and submits one update per round. "
        "Join (`trainer join`, or `trainer run`, which joins first) before the round you want closes: a round "
        "accepts updates until its submission window ends, and closes early only when the task's max-trainers "
        "have submitted. `trainer run` prints one line per phase and what each round credited.",
    )
    trsub = p.add_subparsers(dest="trainer_command", required=True)
    q = trsub.add_parser("join", help="join a task")
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.set_defaults(func=cmd_trainer_join)
    q = trsub.add_parser(
        "run", help="train and submit every round until the task ends",
        description="Join the task (if not yet), then each round: check it is still open (a late node neither "
        "trains nor pays gas), train, submit, wait for the round to settle and print what it credited. Exit 0 "
        "when the task finishes, or when --timeout runs out waiting for a submitted round to settle; non-zero "
        "with one line otherwise (e.g. every update was rejected).",
    )
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.add_argument("--data", required=True, help="your private data (.npz with x, y or .csv, label last)")
    q.add_argument("--attack", help="simulation only: behave as this attacker")
    q.add_argument("--seed", type=int, default=0, metavar="N", help="seed of this node's local training (shuffles, init)")
    q.add_argument("--once", action="store_true", help="submit for the current round only, then exit")
    q.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                   help="give up waiting for a round to settle after this many seconds (after a submission: exit 0)")
    q.set_defaults(func=cmd_trainer_run)
    q = trsub.add_parser("withdraw", help="withdraw what you are owed")
    _chain_opts(q)
    q.add_argument("--token", metavar="ADDRESS",
                   help="withdraw what you are owed in this ERC-20 token (a task paying in a token says so in "
                        "`market task status`); default: ETH")
    q.set_defaults(func=cmd_trainer_withdraw)

    p = sub.add_parser("aggregator", help="the aggregator service")
    asub = p.add_subparsers(dest="aggregator_command", required=True)
    q = asub.add_parser(
        "run", help="aggregate and post every round until the task ends",
        description="Wait for each round's submissions to close (its submission window ends, or the task's "
        "max-trainers have submitted), aggregate, value every contribution and post the result; one line per phase.",
    )
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.add_argument("--validation", required=True, help="the validation set the owner committed to")
    q.add_argument("--once", action="store_true", help="post the current round only, then exit")
    q.add_argument("--timeout", type=float, default=7200, metavar="SECONDS",
                   help="give up waiting for a round's submissions to close after this many seconds")
    q.set_defaults(func=cmd_aggregator_run)
