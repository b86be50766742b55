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
    _contract,
    _eth,
    _in_range,
    _load_validation,
    _reward,
    _store,
    _task_id,
    _writable_file,
)

if TYPE_CHECKING:
    from market.chain.contract import MarketContract, TaskInfo
    from market.spec import TaskSpec


def _money(wei: int | str, token: str, exact: bool = False) -> str:
    from market.chain.contract import amount_text  # web3 at call time: `market --help` stays fast

    return amount_text(wei, token, exact=exact)


def _num(wei: int | str, token: str) -> str:
    from market.chain.contract import amount_number

    return amount_number(wei, token)


def _window_bounds(field: str) -> tuple[int, int]:
    """The contract's shortest and longest ``field`` window (seconds), as :class:`owner.task.TaskRequest` states them."""
    from annotated_types import Ge, Le

    from owner.task import TaskRequest

    meta = TaskRequest.model_fields[field].metadata
    low = next(m.ge for m in meta if isinstance(m, Ge))
    high = next(m.le for m in meta if isinstance(m, Le))
    return int(str(low)), int(str(high))


def _stake(text: str) -> int:
    """``--stake`` as exact wei: 0 (no stake, for development) or a positive ETH amount."""
    from owner.task import parse_eth

    if str(text).strip() in ("0", "0.0"):
        return 0
    try:
        return parse_eth(text)
    except ValueError as exc:
        raise ConfigError(f"--stake {exc}".replace("a positive amount", "0 or a positive amount")) from None


def cmd_task_create(args: argparse.Namespace) -> int:
    from market.data import dataset_commitment
    from market.spec import TaskSpec, load_spec_file
    from owner.task import check_funds, create_task, default_panel, task_request

    # local inputs first: a bad spec file or option is reported before anything is contacted
    spec = load_spec_file(args.spec) if args.spec else TaskSpec()
    reward = _reward(args.reward)
    stake = _stake(args.stake)
    # the contract's own limits, checked here so that nothing is sent (and the option is named)
    _in_range(args.rounds, "--rounds", 1, 10_000)
    for option, field in (("--submit-window", "submit_window"), ("--reveal-window", "reveal_window"),
                          ("--result-window", "result_window")):
        low, high = _window_bounds(field)
        value = getattr(args, field)
        if not low <= value <= high:
            raise ConfigError(f"{option} {value}: the contract takes {low} to {high} seconds (30 days)")
    _in_range(args.max_trainers, "--max-trainers", 1, 256)
    _in_range(args.empty_rounds_to_reclaim, "--empty-rounds-to-reclaim", 0, 10_000)
    if args.panel is not None:
        _in_range(args.panel, "--panel", 1, 7)
        _quorum(args.panel, args.quorum)
    _in_range(args.fee_bps, "--fee-bps", 0, 5000)
    onnx = None
    if args.onnx is not None:
        from market.onnx_import import read_onnx_file

        onnx = read_onnx_file(args.onnx)
    if spec.model.onnx_cid is None and onnx is not None:
        raise ConfigError("--onnx: the spec's model names no ONNX file (model.onnx_cid): write the spec with "
                          "`market task init --data FILE --onnx MODEL.onnx`")
    if spec.model.onnx_cid is not None:
        from market.task import onnx_weights

        onnx_weights(spec, onnx)  # the file the spec names, converting to its layers: checked before anything is sent
    validation = _load_validation(args.validation, spec.data)  # checked against the task's own spec, before anything is sent
    owner = _account(args)
    contract = _contract(args)
    check_funds(contract, owner.address, reward)
    have = contract.registry.drawable_count(owner.address)  # the owner is never drawn for its own task
    args.panel, note = default_panel(args.panel, spec.proof.system != "none", have, args.result_window,
                                     bool(args.backup))
    quorum = _quorum(args.panel, args.quorum)
    if args.backup is None:  # by default, a backup whenever the registry holds one more than the panel
        args.backup = have > args.panel
    need = args.panel + (1 if args.backup else 0)
    if have < need:
        raise ConfigError(f"the market's registry has {have} bonded aggregators this owner's task can draw; a panel of {args.panel}"
                          f"{' with a backup' if args.backup else ''} needs {need} (ask for a smaller --panel, or --no-backup)")
    request = task_request(
        spec=spec, onnx=onnx, validation_commitment=dataset_commitment(validation), rounds=args.rounds,
        reward_wei=reward, submit_window=args.submit_window, reveal_window=args.reveal_window,
        result_window=args.result_window, max_trainers=args.max_trainers, stake_wei=stake, backup=args.backup,
        empty_rounds_to_reclaim=args.empty_rounds_to_reclaim, panel=args.panel, quorum=quorum, fee_bps=args.fee_bps,
    )
    created = create_task(contract, _store(args), owner, request)
    info = contract.task(created.task_id)
    print(f"task {created.task_id} created: {args.rounds} rounds, reward {_eth(reward)} ETH escrowed, spec {created.spec_cid}")
    print(_schedule_line(info))
    print(_stake_line(info))
    if note:  # once the task exists: a command that fails prints its one-line error only
        print(note, file=sys.stderr)
    return 0


def _quorum(panel: int, quorum: int | None) -> int:
    """The quorum for ``panel`` (default: more than half of it); a one-line error when it is not a majority."""
    q = panel // 2 + 1 if quorum is None else quorum
    if not (panel < 2 * q <= 2 * panel):
        raise ConfigError(f"--quorum {q}: a panel of {panel} needs more than half of it and at most all of it")
    return q


def _schedule_line(info: TaskInfo) -> str:
    """The task's fixed schedule in one line."""
    backup = f", backup {info.result_window} s" if info.has_backup else ""
    return (f"schedule: round r opens at unix {info.start_at} + r x {info.period} s; each round: commit {info.submit_window} s, "
            f"reveal {info.reveal_window} s, result {info.result_window} s{backup}, availability {info.reveal_window} s "
            "(only when no result came)")


def _panel_text(info: TaskInfo) -> str:
    """Who judges the task's rounds, in a few words."""
    backup = " and a backup" if info.has_backup else ""
    fee = f", fee {info.fee_bps / 100:g}% of each round's pool" if info.fee_bps else ", no fee"
    return (f"aggregators: a panel of {info.panel}{backup} drawn from the registry each round, {info.quorum} identical "
            f"results settle it{fee}")


def _stake_line(info: TaskInfo) -> str:
    """The stake and the owner's reclaim rule in one line."""
    stake = (f"stake {_money(info.stake, info.token)} per trainer ({_num(info.stakes_held, info.token)} held)" if info.stake
             else "no stake")
    k = info.empty_rounds_to_reclaim
    reclaim = (f"the owner may reclaim after {k} empty rounds in a row ({info.empty_streak} so far)" if k
               else "the owner cannot reclaim early (an empty round refunds its own pool)")
    return f"{stake}; {reclaim}"


def cmd_task_init(args: argparse.Namespace) -> int:
    """Write a starting spec (JSON) read off a data file: its features, classes and range."""
    from pathlib import Path

    from market.data import schema_from_file
    from market.spec import TaskSpec, ValuationSpec

    out = Path(args.out)
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: `market task init` writes JSON: name the file *.json")
    if out.exists() and not args.force:
        raise ConfigError(f"--out {out}: the file exists: pass --force to overwrite it, or choose another --out")
    _writable_file(str(out), "--out")
    name = args.name if args.name is not None else Path(args.data).stem[:80]
    if not 1 <= len(name.strip()) <= 80:
        raise ConfigError(f"--name {name!r}: a task name has 1 to 80 characters")
    schema, notes = schema_from_file(args.data, name, regression=args.regression)
    fields: dict[str, object] = {"valuation": ValuationSpec(metric="r2")} if schema.regression else {}
    if args.onnx is not None:
        from market.onnx_import import onnx_model, read_onnx_file
        from simulator.simulate import TRAINING_FOR

        fields["model"] = onnx_model(read_onnx_file(args.onnx), schema, f"--onnx {args.onnx}")
        fields["training"] = TRAINING_FOR["layers"]  # the rate a declared network trains at (docs/spec-reference.md)
    spec = TaskSpec(name=name, data=schema, **fields)  # type: ignore[arg-type]
    doc = spec.model_dump(mode="json", exclude={"initial_model_cid"})  # create_task fills that in
    try:
        out.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror}") from None
    d = spec.data
    labels = "labels in [0, 1] (regression, valued by R^2)" if d.regression else f"{d.n_classes} classes"
    print(f"wrote {out}: task {spec.name!r}, {d.n_features} features in [{d.feature_range[0]:g}, {d.feature_range[1]:g}], "
          f"{labels}, model {spec.model.arch}; every other field has its default (docs/spec-reference.md)")
    if d.image_shape is not None and spec.model.arch == "logreg":
        notes.append(f"images [{d.channels}, {d.image_shape[0]}, {d.image_shape[1]}]: set model.arch = 'cnn' or declare "
                     "your own layers (docs/spec-reference.md, 'Your own model'); the spec keeps logistic regression")
    for note in notes:
        print(f"note: {note}")
    onnx = f" --onnx {args.onnx}" if args.onnx is not None else ""
    print(f"next: market task create --spec {out}{onnx} --validation VALIDATION_FILE --reward ETH --rounds N")
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
    print(f"task {info.task_id}{f' ({name})' if name else ''}: {where}; {info.trainer_count}/{info.max_trainers} trainers; "
          f"owner {info.owner}; {_panel_text(info)}")
    print(f"reward {_money(info.reward, info.token)}: escrow {_num(info.escrow, info.token)}, credited {_num(info.credited, info.token)}, "
          f"refunded {_num(info.refunded, info.token)}")
    print(_stake_line(info))
    print(_schedule_line(info))
    if info.finished:
        print(f"round {state.round}: settled (every round of the task is settled)")
    else:
        early = ""
        if state.closed_early:
            early = " (commits closed early: the task's full trainer count committed)"
        print(f"round {info.current_round}: {state.phase}: {state.committed} committed, {state.submitted} revealed "
              f"(at most {info.max_trainers}); {state.text()}{early}")
        backup_dl = f", backup window closes {state.final_deadline}" if info.has_backup else ""
        votes = (f" (the drawn members commit to their results until {state.vote_commits_close}; votes once all have, "
                 f"or from {state.votes_open_at})") if info.quorum > 1 else ""
        print(f"round {info.current_round} times (unix): opens {state.opens_at}, commits close {state.submit_deadline}, "
              f"reveals close {state.reveal_deadline}, result window closes {state.result_deadline}{votes}{backup_dl}; "
              f"next round opens {state.round_end}")
    if info.refundable:
        print(f"refunds: {_money(info.refundable, info.token, exact=True)} the owner can withdraw with "
              f"`market task refunds {info.task_id}`")
    print(f"spec {info.spec_cid}")
    return 0


def spec_lines(spec: TaskSpec) -> list[str]:
    """What a trainer reads before joining: the data it must hold, the model layer by layer with its weights, the rules."""
    from market.architecture import shape_text

    d, m = spec.data, spec.model
    summary = m.summary(d)
    image = f", images [{d.channels}, {d.image_shape[0]}, {d.image_shape[1]}]" if d.image_shape is not None else ""
    lines = [f"task {spec.name!r}",
             f"data {d.name or '(unnamed)'}: {d.n_features} features in [{d.feature_range[0]:g}, {d.feature_range[1]:g}]{image}; "
             f"{d.labels_text()}",
             f"model {m.arch}: {summary.params:,} weights, {summary.macs:,} multiply-adds per sample; "
             f"each sample enters as {shape_text(summary.input_shape)}"]
    width = max(len(row.text) for row in summary.layers)
    for row in summary.layers:
        shape = shape_text(row.out_shape)
        lines.append(f"  {row.index:>2}  {row.text:<{width}}  -> {shape:<16} {row.params:>12,} weights")
    t, r, v = spec.training, spec.robust, spec.valuation
    lines += [f"training: {t.epochs} epochs of SGD a round, lr {t.lr:g}, momentum {t.momentum:g}, batch {t.batch_size}",
              f"robust rule {r.rule} (f = {r.f}{', ' + json.dumps(r.params) if r.params else ''}); updates above norm "
              f"{spec.validation.max_update_norm:g} or more than {spec.validation.copy_cosine:g} alike another refused",
              f"valuation {v.rule} Shapley of {v.metric} ({v.utility} utility), paid {v.payout}",
              "settlement: " + ("a Groth16 proof each round, checked on chain, plus the drawn panel" if spec.proof.system != "none"
                               else "the drawn panel of aggregators recomputes each round (the task's quorum decides)")]
    return lines


def cmd_task_show(args: argparse.Namespace) -> int:
    """A task's spec as a trainer should read it before joining: data, model layer by layer, rules."""
    from market.spec import load_spec_file

    origin = ""
    if args.spec is not None:
        if args.task is not None:
            raise ConfigError("give a task number or --spec FILE, not both")
        spec, where = load_spec_file(args.spec), args.spec
    elif args.task is None:
        raise ConfigError("name the task (`market task show T`) or a spec file (`market task show --spec FILE`)")
    else:
        from market.task import load_task

        store = _store(args)
        view = load_task(_contract(args), store, args.task)
        spec, where = view.spec, f"task {args.task}, spec {view.info.spec_cid}"
        if spec.model.onnx_cid is not None:
            from market.task import check_onnx_origin

            origin = check_onnx_origin(spec, store)  # a task whose ONNX file does not give its model: exit 1, named
    if args.json:
        summary = spec.model.summary(spec.data)
        print(json.dumps({"spec": spec.model_dump(mode="json"), "input_shape": list(summary.input_shape),
                          "parameters": summary.params, "macs": summary.macs,
                          "layers": [{"layer": r.text, "out_shape": list(r.out_shape), "parameters": r.params, "macs": r.macs}
                                     for r in summary.layers]}, indent=2))
        return 0
    print(f"# {where}")
    for line in spec_lines(spec):
        print(line)
    if spec.model.onnx_cid is not None:
        print(origin if args.spec is None else f"converted from ONNX file {spec.model.onnx_cid} (checked once the task is "
              "created: `market task show T` converts the published file again)")
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
    lost = paid["stakes_lost"]
    if paid["settlement"] == "fallback":
        stakes = (f" (with {_money(lost, info.token, exact=True)} of stakes lost by committers that did not reveal)"
                  if lost else "")
        rest = f"; {_money(paid['refunded'], info.token, exact=True)} to the owner's refunds" if paid["refunded"] else ""
        proved = len(contract.available(tid, r, info))
        if proved:
            print(f"task {tid} round {r} settled without a result: {_money(paid['credited'], info.token, exact=True)} "
                  f"split equally among the {proved} of {info.submitted_count} revealed updates proved "
                  f"available{stakes}{rest}")
        else:
            ended = (f"; the task ended: {_money(paid['credited'], info.token, exact=True)} of lost stakes split among "
                     f"the {paid['trainers']} trainers still holding a stake" if paid["credited"] else "")
            print(f"task {tid} round {r} settled without a result: none of its {info.submitted_count} revealed updates "
                  f"was proved available, so its pool{stakes} carries over (to the next round's paid trainers; after "
                  f"the last round the pool goes back to the owner){rest}{ended}")
    else:
        pool = info.round_pool(r)
        extra = paid["refunded"] - pool  # carried pools, or lost stakes nobody holds a stake to take, at the end
        parts = []
        if paid["credited"]:
            parts.append(f"the task ended: {_money(paid['credited'], info.token, exact=True)} of lost stakes split "
                         f"among the {paid['trainers']} trainers still holding a stake")
        if extra:
            parts.append(f"{_money(extra, info.token, exact=True)} more refunded (the task ended: pools carried over "
                         "unearned, and lost stakes when no trainer a round paid holds a stake)")
        if lost and not paid["credited"] and not extra:
            parts.append(f"{_money(lost, info.token, exact=True)} of stakes lost by committers that did not reveal "
                         "goes to the next round's paid trainers")
        stakes = "".join("; " + part for part in parts)
        print(f"task {tid} round {r} settled: nothing was revealed, that round's pool of "
              f"{_money(pool, info.token, exact=True)} refunded to the owner "
              f"(withdraw with `market task refunds {tid}`){stakes}")
    return 0


def cmd_task_reclaim(args: argparse.Namespace) -> int:
    from market.errors import ContractRevert

    contract = _contract(args)
    owner = _account(args)
    info = contract.task(args.task)
    try:
        amount = contract.reclaimed(contract.reclaim_unused(owner, args.task))  # the contract says why it refuses
    except ContractRevert as exc:
        if exc.name != "MarketNotAbandoned":
            raise
        k, streak = info.empty_rounds_to_reclaim, info.empty_streak
        if k == 0:
            why = (f"task {args.task} was created with --empty-rounds-to-reclaim 0: the owner never reclaims early; "
                   "each empty round's pool comes back when the round is settled (`market task settle`)")
        else:
            why = (f"task {args.task}: the owner may reclaim only after {k} empty rounds in a row (nothing revealed), "
                   f"{streak} so far; each empty round's pool comes back when it is settled (`market task settle`)")
        raise ContractRevert(exc.name, f"{why} [{exc.name}]") from None
    print(f"task {args.task}: reclaimed {_money(amount, info.token, exact=True)} of unused rounds after "
          f"{info.empty_streak} empty rounds in a row; the task is finished; withdraw it with `market task refunds {args.task}`")
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
    from market.errors import NotFoundError
    from market.task import load_task
    from market_app.verify import verify_round

    contract = _contract(args)
    store = _store(args)
    if args.round is not None:
        _verifiable(contract, args.task, args.round)
        rounds = [args.round]
    else:
        info = contract.task(args.task)
        settled = contract.settled_rounds(args.task, info)
        rounds = sorted(r for r, done in settled.items() if done.settlement == "result")
        if not rounds:
            raise NotFoundError(f"task {args.task}: no round was settled by a posted result yet, so there is nothing to verify")
        print(f"task {args.task}: verifying rounds {', '.join(map(str, rounds))} (every round settled by a result)")
    validation = None
    if args.validation:
        spec = load_task(contract, store, args.task).spec
        validation = load_shard(args.validation, spec.data)
    failed = []
    for r in rounds:
        if len(rounds) > 1:
            print(f"round {r}:")
        rep = verify_round(contract, store, args.task, r, validation,
                           emit=lambda name, ok, detail: print(f"{'ok  ' if ok else 'FAIL'} {name:12} {detail}", flush=True))
        if not rep.ok:
            failed.append(r)
    if not args.validation:
        print("note: no --validation given, so utilities, outliers and the model were not recomputed "
              "(rejections were: they need no validation set)")
    if len(rounds) == 1:
        print("round verified" if not failed else "round FAILED verification")
    else:
        print(f"{len(rounds) - len(failed)} of {len(rounds)} rounds verified" if not failed
              else f"rounds {', '.join(map(str, failed))} FAILED verification")
    return 0 if not failed else 1


#: a trainer's status in a settled round (``TrainerRound.status``) as ``market task results`` words it
_RESULT_STATUS = {"kept": "paid", "outlier": "outlier (paid 0)", "not_submitted": "did not submit",
                  "fallback": "paid (equal split: no result was posted)", "submitted": "revealed (no result yet)",
                  "committed": "committed (not revealed yet)", "not_revealed": "committed, never revealed (stake lost)"}


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
        "seed": r.seed, "committed": r.committed, "revealed": r.revealed, "stakes_lost_wei": r.stakes_lost_wei,
        "trainers": [{"address": t.address, "status": _trainer_status(t), "reason": t.reason,
                      "bps": t.bps, "credited_wei": t.credited_wei, "stake_lost_wei": t.stake_lost_wei} for t in r.trainers],
        "receipt_error": r.receipt_error,
    } for r in settled]
    groups = {"paid": ("kept", "fallback"), "outlier": ("outlier",), "rejected": ("rejected",),
              "did_not_reveal": ("not_revealed",), "did_not_submit": ("not_submitted",)}
    counts = {p.address: {k: sum(1 for r in settled for t in r.trainers if t.address == p.address and t.status in v)
                          for k, v in groups.items()} for p in view.payouts.trainers}
    totals = [{"address": p.address, "credited_wei": p.credited_wei, "withdrawn_wei": p.withdrawn_wei,
               "owed_wei": p.owed_wei, "stake_wei": p.stake_wei, "stake_lost_wei": p.stake_lost_wei,
               "rounds": counts[p.address]} for p in view.payouts.trainers]
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
        seed = f", seed {r.seed[:10]}…" if r.seed else ""
        lost = f", stakes lost {_num(r.stakes_lost_wei, view.task.token)}" if int(r.stakes_lost_wei) else ""
        print(f"round {r.round} ({r.status}{acc}): {r.committed} committed, {r.revealed} revealed{seed}{lost}; "
              f"model {r.model_cid} receipt {r.receipt_cid}")
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
        print(f"  {p.address}  {_money(p.credited_wei, view.task.token)} credited ({_num(p.owed_wei, view.task.token)} owed now); "
              f"paid {c['paid']}, outlier {c['outlier']}, rejected {c['rejected']}, did not reveal {c['did_not_reveal']}, "
              f"did not submit {c['did_not_submit']}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("task", help="the owner's commands")
    tsub = p.add_subparsers(dest="task_command", required=True)
    q = tsub.add_parser(
        "create", help="publish a spec and escrow the reward",
        description="Publish the task's spec and initial model and escrow the reward, split into equal per-round "
        "pools. The schedule is fixed now: round 0 opens at once and round r at r periods later, each round running "
        "a commit window (trainers must join, with the stake, and commit before it ends; it closes early only when "
        "--max-trainers trainers have committed), a reveal window, the panel's result window and, with "
        "--backup, the backup's window. Each round's panel (and backup) is drawn from the market's registry of "
        "bonded aggregators with the round's seed: the owner picks nobody. The contract takes windows of at least 60 s (commit), "
        "30 s (reveal) and 60 s (result; 480 s with a quorum above one), at most 30 days each.",
    )
    _chain_opts(q)
    q.add_argument("--spec", help="task spec file (.json or .toml; see docs/spec-reference.md, or write one with "
                   "`market task init`); default: the built-in digits spec")
    q.add_argument("--validation", required=True, help="validation set (.npz/.csv) you give the aggregator; "
                   "checked against the spec before anything is sent")
    q.add_argument("--onnx", metavar="MODEL.onnx", help="the ONNX file the spec's model was converted from (`market task "
                   "init --onnx`): published with the task, its weights are the round-0 model")
    q.add_argument("--panel", type=int, metavar="K",
                   help="aggregators drawn from the registry each round, 1..7; each recomputes the round (default "
                   "3, quorum 2, when the registry holds 3 and --result-window leaves a "
                   "quorum time to commit and vote; else 1, and the one drawn member decides the pay unchecked)")
    q.add_argument("--quorum", type=int, metavar="Q",
                   help="identical results that settle a round (default: more than half the panel); panel members that "
                   "post another result lose bond")
    q.add_argument("--backup", action=argparse.BooleanOptionalAction, default=None,
                   help="also draw a backup that may post in a second result window (default: yes when the registry "
                   "holds more aggregators than the panel)")
    q.add_argument("--fee-bps", type=int, default=0, metavar="BPS",
                   help="the aggregators' fee, basis points of each round's pool (0..5000, default 0), shared by the "
                   "panel members whose result was accepted")
    q.add_argument("--rounds", type=int, default=3, metavar="N", help="training rounds, 1..10000")
    q.add_argument("--reward", default="1", metavar="ETH", help="reward in ETH, split equally over the rounds")
    q.add_argument("--stake", default="0", metavar="ETH",
                   help="what each trainer deposits to join, in ETH; lost to the round's paid trainers when it commits "
                   "and does not reveal or reveals an invalid update, given back when the task ends or it leaves "
                   "(0: none, for development)")
    q.add_argument("--submit-window", type=int, default=3600, metavar="SECONDS",
                   help="seconds each round accepts commitments (from the moment it opens), at least 60")
    q.add_argument("--reveal-window", type=int, default=600, metavar="SECONDS",
                   help="seconds committers then have to reveal, at least 30")
    q.add_argument("--result-window", type=int, default=3600, metavar="SECONDS",
                   help="seconds the aggregator then has to post (and the backup after it), at least 60 (480 with a "
                   "quorum above one: its members commit, then vote); after that "
                   "anyone may `market task settle`")
    q.add_argument("--max-trainers", type=int, default=64, metavar="N",
                   help="most trainers that may join, 1..256; commits close early only when this many have committed")
    q.add_argument("--empty-rounds-to-reclaim", type=int, default=0, metavar="K",
                   help="after K empty rounds in a row (nothing revealed) the owner may reclaim every remaining "
                   "pool; 0: never early")
    q.set_defaults(func=cmd_task_create)
    q = tsub.add_parser(
        "init", help="write a starting task spec (JSON) from a data file",
        description="Read a data file (.csv: label in the last column, optional header row; .npz: arrays x, y, x may "
        "hold images [n, channels, rows, columns]; or a folder of images, one subfolder per class number) and write a "
        "spec with its n_features, n_classes (largest label + 1; with --regression, real labels in [0, 1]), image "
        "shape and feature_range [0, 1]; with --onnx, the model from an ONNX file. Every other field keeps its default "
        "(docs/spec-reference.md). Features must already be scaled to [0, 1] (8-bit image pixels get data.scale 1/255).",
    )
    q.add_argument("--data", required=True, help="the data file to describe: .csv, .npz (x may hold images [n, channels, "
                   "rows, columns]) or a folder of images with one subfolder per class number")
    q.add_argument("--out", default="spec.json", help="where to write the spec (a .json file; default spec.json)")
    q.add_argument("--name", help="the task's short name, 1 to 80 characters (default: the data file's name without extension)")
    q.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    q.add_argument("--onnx", metavar="MODEL.onnx", help="take the model from this ONNX file (e.g. torch.onnx.export of "
                   "your network): written into the spec as declared layers, with the file's CID; its weights become "
                   "the round-0 model at `market task create --onnx`")
    q.add_argument("--regression", action="store_true", help="the label is a number to predict (scaled to [0, 1] like the "
                   "features), not a class: data.kind = 'regression', valued by R^2")
    q.set_defaults(func=cmd_task_init)
    q = tsub.add_parser(
        "show", help="a task's spec as a trainer reads it before joining: data, model layer by layer, weights, rules",
        description="Print the task's spec, read by the CID the chain holds (or a local spec file with --spec): the "
        "data every trainer's file must match, the model layer by layer with each layer's output shape and weights, "
        "the total weights and work per sample, local training, the robust rule, the valuation and how rounds settle.")
    q.add_argument("task", type=_task_id, nargs="?")
    q.add_argument("--spec", metavar="FILE", help="show a spec file (.json/.toml) instead of a task on chain")
    q.add_argument("--json", action="store_true", help="print the spec and the model's layer table as JSON")
    _chain_opts(q, key=False)
    q.set_defaults(func=cmd_task_show)
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
        ("reclaim", cmd_task_reclaim, "take back every remaining pool after the task's K empty rounds in a row",
         "The owner ends the task and moves every remaining pool to its refunds: allowed only after the number of "
         "empty rounds in a row (nothing revealed) the task fixed at creation (--empty-rounds-to-reclaim; 0: "
         "never), and while nobody has committed to the current round. Withdraw with `market task refunds`."),
        ("refunds", cmd_task_refunds, "withdraw the task's refunds (empty rounds' pools, reclaimed or unearned pools)",
         "The owner withdraws everything the task has refunded so far to its own address."),
        ("settle", cmd_task_settle, "settle a round nobody posted (equal split among updates proved available, or refund if none revealed)",
         "The fallback for a silent aggregator: once the round's result windows and then its availability window are "
         "over (trainer nodes post their revealed updates on chain in it), anyone may settle the current round: its "
         "pool, plus the stakes of committers that did not reveal, is split equally among the updates proved "
         "available; with none proved it carries to the next round. A round in which nothing was revealed is "
         "refunded to the owner (that round's pool only) as soon as its reveal window is over. `market task status` "
         "says when."),
    ):
        q = tsub.add_parser(name, help=helptext, description=description)
        q.add_argument("task", type=_task_id)
        if name == "settle":
            q.add_argument("--round", type=int, required=True, metavar="R",
                           help="the round to settle: must be the task's current round (see `market task status`)")
        _chain_opts(q)
        q.set_defaults(func=fn)

    p = sub.add_parser(
        "verify", help="re-derive settled rounds from chain and store (and the proof); exit 1 on any mismatch",
        description="Check a round's posted result against its receipt and the chain: the postResult calldata (basis "
        "points, model, receipt, seed, lost stakes) against the receipt, the receipt's input model against the "
        "chain's previous model, its submissions against the revealed ones, and every rejection that needs no "
        "validation set (unavailable update, wrong metadata, malformed, shape, NaN, norm, zero update, copy). With "
        "--validation the whole round is replayed with the chain's seed. Exit 1 on any mismatch.")
    p.add_argument("--task", type=_task_id, required=True, metavar="T")
    p.add_argument("--round", type=int, metavar="R",
                   help="a settled round of the task (0-based); default: every round settled by a posted result")
    p.add_argument("--validation", help="the task's validation set (.npz/.csv): also recompute utilities and the model")
    _chain_opts(p, key=False)
    p.set_defaults(func=cmd_verify)
