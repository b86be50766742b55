"""The long-running roles: ``market trainer join | run | withdraw | leave`` and ``market aggregator run``."""

from __future__ import annotations

import argparse

from market.errors import ConfigError
from market_app.cli.common import (
    _account,
    _chain_opts,
    _check_address,
    _contract,
    _load_dataset,
    _load_validation,
    _store,
    _task_id,
    _task_spec,
)


# --------------------------------------------------------------------- trainer
def cmd_trainer_join(args: argparse.Namespace) -> int:
    from market.chain.contract import amount_text
    from trainer_node.node import TrainerNode, unchecked_note

    contract = _contract(args)
    node = TrainerNode(contract, _store(args), _account(args), data=None)  # type: ignore[arg-type]
    sent = node.join(args.task)
    info = contract.task(args.task)
    stake = f" with a stake of {amount_text(info.stake, info.token)}" if info.stake else " (the task takes no stake)"
    print(f"{node.address} {'joined' if sent else 'had already joined'} task {args.task}{stake}")
    note = unchecked_note(info)
    if note:
        print(note)
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
    from market.chain.contract import amount_text
    from market.errors import NotFoundError

    recipient = _check_address(args.to, "--to") if args.to else None
    if recipient is not None and int(recipient, 16) == 0:
        raise ConfigError("--to: the zero address cannot receive")
    contract = _contract(args)
    acct = _account(args)
    tasks = [args.task] if args.task is not None else contract.tasks_joined(acct.address)
    to = recipient or acct.address
    paid = 0
    for t in tasks:
        info = contract.task(t)  # an unknown --task is the one-line error
        owed = contract.owed(t, acct.address)
        if not owed:
            if args.task is not None:
                held = contract.seat(t, acct.address).stake
                later = (f"; your stake of {amount_text(held, info.token)} comes back when the task ends or you "
                         f"`market trainer leave --task {t}` between rounds") if held and not info.finished else ""
                raise NotFoundError(f"nothing to withdraw from task {t}{later}")
            continue
        amount = contract.withdraw(acct, t, recipient)
        paid += 1
        print(f"task {t}: withdrew {amount_text(amount, info.token, exact=True)} to {to}")
    if not paid:
        raise NotFoundError(f"nothing to withdraw: {acct.address} is owed nothing by "
                            + (f"the {len(tasks)} tasks it joined" if tasks else "any task (it joined none)"))
    return 0


def cmd_trainer_leave(args: argparse.Namespace) -> int:
    from market.chain.contract import amount_text

    contract = _contract(args)
    acct = _account(args)
    info = contract.task(args.task)
    held = contract.seat(args.task, acct.address).stake
    contract.leave(acct, args.task)  # the contract says why it refuses (not joined, committed to this round)
    back = (f"its stake of {amount_text(held, info.token, exact=True)} is withdrawable with "
            f"`market trainer withdraw --task {args.task}`") if held else "it held no stake"
    print(f"{acct.address} left task {args.task} and gave its seat up: {back}; join again to take part again")
    return 0


# ------------------------------------------------------------------ aggregator
def cmd_aggregator_run(args: argparse.Namespace) -> int:
    from aggregator.service import Aggregator

    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout}: must be a positive number of seconds")
    contract = _contract(args)
    store = _store(args)
    validation = _load_validation(args.validation, _task_spec(args, contract, store).data)  # the task's own schema
    agg = Aggregator(contract, store, _account(args), validation)
    with agg.serving():  # one service per key and data folder
        agg.serve(args.task, once=args.once, timeout=args.timeout, say=_say)
    return 0


def cmd_aggregator_register(args: argparse.Namespace) -> int:
    from market.chain.contract import eth_text
    from market_app.cli.common import _eth_amount

    contract = _contract(args)
    registry = contract.registry
    acct = _account(args)
    floor = registry.min_bond()
    bond = floor if args.bond is None else _eth_amount(args.bond, "--bond")
    before = registry.member(acct.address)
    adding = before is not None and before.active
    if not adding and bond < floor:
        raise ConfigError(f"--bond {eth_text(bond)}: the registry's least bond is {eth_text(floor)} ETH")
    if bond > contract.chain.balance(acct.address):
        raise ConfigError(f"--bond {eth_text(bond)}: {acct.address} holds only {eth_text(contract.chain.balance(acct.address))} ETH")
    registry.register(acct, bond)  # the registry says why it refuses (e.g. a bond still waiting for its exit delay)
    now = registry.member(acct.address)
    assert now is not None
    what = "added to its bond" if adding else "registered"
    print(f"{acct.address} {what}: bond {eth_text(now.bond)} ETH; drawn for rounds sealed from block {now.since_block} on "
          f"({registry.active_count()} aggregators in the draw); a silent or outvoted round costs "
          f"{eth_text(registry.penalty())} ETH of it")
    return 0


def cmd_aggregator_status(args: argparse.Namespace) -> int:
    from market.chain.contract import eth_text

    contract = _contract(args)
    registry = contract.registry
    address = _check_address(args.address, "--address") if args.address else _account(args).address
    m = registry.member(address)
    print(f"registry {registry.address}: {registry.active_count()} aggregators in the draw; least bond "
          f"{eth_text(registry.min_bond())} ETH, penalty {eth_text(registry.penalty())} ETH per offence (a silent "
          f"member's to the round's paid trainers, a dissenter's burned: {eth_text(registry.burned())} ETH so far)")
    if m is None:
        print(f"{address}: not registered (`market aggregator register`)")
    else:
        state = "in the draw" if m.active else f"left the draw at block {m.left_block}"
        print(f"{address}: {state}; bond {eth_text(m.bond)} ETH; registered at block {m.since_block}")
    penalties = [p for p in registry.penalties() if p["member"] == address]
    if penalties:
        total = sum(p["amount"] for p in penalties)
        print(f"penalties: {len(penalties)} ({eth_text(total)} ETH): "
              + ", ".join(f"task {p['task']} round {p['round']}" for p in penalties[:10]))
    credit = registry.credit(address)
    if credit:
        print(f"penalty credits owed to {address}: {eth_text(credit)} ETH (`market aggregator withdraw --credits`)")
    return 0


def cmd_aggregator_exit(args: argparse.Namespace) -> int:
    from market.chain.contract import eth_text

    contract = _contract(args)
    acct = _account(args)
    contract.registry.exit(acct)  # the registry says why it refuses (not registered, already left)
    m = contract.registry.member(acct.address)
    assert m is not None
    delay = int(contract.registry.chain.call(contract.registry.c.functions.exitDelay()))
    print(f"{acct.address} left the draw; it still answers for the rounds it was drawn for. Its bond of "
          f"{eth_text(m.bond)} ETH can be withdrawn {delay} s from now (`market aggregator withdraw`)")
    return 0


def cmd_aggregator_withdraw(args: argparse.Namespace) -> int:
    from market.chain.contract import eth_text

    contract = _contract(args)
    acct = _account(args)
    if args.credits:
        amount = contract.registry.withdraw_credit(acct)
        print(f"withdrew {eth_text(amount)} ETH of penalty credits to {acct.address}")
    else:
        amount = contract.registry.withdraw_bond(acct)
        if amount:
            print(f"withdrew the bond of {eth_text(amount)} ETH to {acct.address}")
        else:
            print(f"{acct.address}: penalties had taken the whole bond, so nothing was sent; its entry is freed and "
                  "the key may register again")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trainer", help="a data owner's trainer node",
        description="A trainer joins a task (depositing the task's stake), then each round trains on its private "
        "data, commits to its update (a hash: nobody can copy what it has not seen) and reveals it once commits "
        "close. Join (`trainer join`, or `trainer run`, which joins first) before the round you want closes: a "
        "round accepts commitments until its submission window ends, and closes early only when the task's "
        "max-trainers have committed. A commitment not revealed, or an invalid update, loses the stake. "
        "`trainer run` prints one line per phase and what each round credited.",
    )
    trsub = p.add_subparsers(dest="trainer_command", required=True)
    q = trsub.add_parser("join", help="join a task")
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.set_defaults(func=cmd_trainer_join)
    q = trsub.add_parser(
        "run", help="train, commit and reveal every round until the task ends",
        description="Join the task (if not yet, with its stake), then each round: wait for it to open (the schedule "
        "is fixed), check it is still open (a late node neither trains nor pays gas), train, upload, commit, reveal "
        "once commits close, wait for the round to settle and print what it credited. Exit 0 "
        "when the task finishes, or when --timeout runs out waiting for a submitted round to settle; non-zero "
        "with one line otherwise (e.g. every update was rejected).",
    )
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.add_argument("--data", required=True, help="your private data (.npz with x, y or .csv, label last)")
    q.add_argument("--attack", help="simulation only: behave as this attacker")
    q.add_argument("--seed", type=int, default=0, metavar="N", help="seed of this node's local training (shuffles, init)")
    q.add_argument("--once", action="store_true", help="commit and reveal for the current round only, then exit")
    q.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                   help="give up waiting for a round to settle after this many seconds (after a submission: exit 0)")
    q.set_defaults(func=cmd_trainer_run)
    q = trsub.add_parser(
        "withdraw", help="withdraw what your tasks owe you",
        description="Withdraw what a task owes you (credits, and your stake once the task has ended or you left): "
        "one task with --task, else every task you joined. Each task pays in its own reward token.")
    _chain_opts(q)
    q.add_argument("--task", type=_task_id, metavar="N", help="withdraw from this task only (default: every task you joined)")
    q.add_argument("--to", metavar="ADDRESS",
                   help="pay to this address instead of your own (e.g. when yours is a contract that cannot receive)")
    q.set_defaults(func=cmd_trainer_withdraw)
    q = trsub.add_parser(
        "leave", help="leave a task between rounds; your stake becomes withdrawable",
        description="Leave a task between rounds (while you are not committed to its current round): your stake becomes withdrawable "
        "(`market trainer withdraw --task N`). Join again to take part again.")
    _chain_opts(q)
    q.add_argument("--task", type=_task_id, required=True, metavar="N", help="the task to leave")
    q.set_defaults(func=cmd_trainer_leave)

    p = sub.add_parser("aggregator", help="the aggregator service")
    asub = p.add_subparsers(dest="aggregator_command", required=True)
    q = asub.add_parser(
        "run", help="aggregate and post every round until the task ends",
        description="Wait for each round's reveals to close (its reveal window ends, or every committer has revealed), "
        "read the round's seed, fetch the revealed updates, aggregate, value every contribution and post the result "
        "with the seed and the stakes lost; settle a round in which nothing was revealed; one line per phase. The "
        "task's backup aggregator runs the same command and posts in its own window if the aggregator did not. On a "
        "task whose quorum is more than one, each drawn member (the backup too) first commits to its result, then "
        "posts it once every drawn member has committed (or seven eighths into the panel's window).",
    )
    q.add_argument("task", type=_task_id)
    _chain_opts(q)
    q.add_argument("--validation", required=True, help="the validation set the owner committed to")
    q.add_argument("--once", action="store_true", help="post the current round only, then exit")
    q.add_argument("--timeout", type=float, default=7200, metavar="SECONDS",
                   help="give up waiting for a round's reveals to close after this many seconds")
    q.set_defaults(func=cmd_aggregator_run)
    q = asub.add_parser(
        "register", help="bond this key in the market's aggregator registry (or add to its bond)",
        description="Deposit a bond (ETH) in the market's registry of aggregators. Each round of each task draws its "
        "panel (and backup) from the registry with the round's seed; a member drawn that stays silent loses the "
        "registry's penalty to the round's trainers, one that posts a result the quorum outvotes loses it burned.")
    _chain_opts(q)
    q.add_argument("--bond", metavar="ETH", help="the bond (default: the registry's least bond)")
    q.set_defaults(func=cmd_aggregator_register)
    q = asub.add_parser("status", help="the registry, and this key's bond and penalties")
    _chain_opts(q)
    q.add_argument("--address", help="another member's address (default: this key's)")
    q.set_defaults(func=cmd_aggregator_status)
    q = asub.add_parser("exit", help="leave the draw (the bond can be withdrawn after the registry's exit delay)")
    _chain_opts(q)
    q.set_defaults(func=cmd_aggregator_exit)
    q = asub.add_parser("withdraw", help="take the bond back after the exit delay (or, with --credits, penalty credits)")
    _chain_opts(q)
    q.add_argument("--credits", action="store_true", help="withdraw the penalties credited to this key (a trainer's "
                   "share of a silent aggregator's bond) instead of the bond")
    q.set_defaults(func=cmd_aggregator_withdraw)
