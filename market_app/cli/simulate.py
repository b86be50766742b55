"""``market simulate`` and ``market demo``: the whole marketplace on one machine, with progress bars and
per-round and final tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from market.errors import ConfigError
from market_app.cli.common import _check_address, _console, _eth, _short, _writable_file


def _sim_config(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from simulator.simulate import SimulateConfig

    fields = {k: getattr(args, k) for k in SimulateConfig.model_fields if getattr(args, k, None) is not None}
    if fields.get("rpc") and not fields.get("contract"):
        # the chain `market devnet` runs: use its contract (and store), the ones `market serve` and every role
        # command default to, so the dashboard shows the simulated task
        import os

        from market_app.settings import devnet_file, devnet_for_rpc

        devnet = devnet_for_rpc(fields["rpc"])
        if devnet is not None:
            fields["contract"] = devnet["contract"]
            if devnet.get("store_dir") and fields.get("store", "local") == "local" and not fields.get("store_dir") \
                    and not os.environ.get("MARKET_STORE_DIR"):
                fields["store_dir"] = devnet["store_dir"]
        if not getattr(args, "quiet", False):
            print(f"contract {devnet['contract']}: the devnet's (settings {devnet_file()})" if devnet is not None
                  else f"no --contract and no devnet settings for {fields['rpc']}: deploying a new contract", flush=True)
    try:
        return SimulateConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None


def _reveal_status(address: str, reveal: dict[str, Any], n_trainers: int) -> str:
    """A trainer's part in a round's reveal phase: revealed, committed but did not reveal (``no reveal``), or
    nothing (``—``); ``no reveal?`` when the counts cannot tell which of the silent trainers committed."""
    if not reveal:
        return "-"
    revealed_by = reveal.get("revealed_by", [])
    if address in revealed_by:
        return "revealed"
    committed_by = reveal.get("committed_by")
    if committed_by is not None:
        return "no reveal" if address in committed_by else "—"
    # the counts say it when every other trainer is alike (all of them committed, or none did)
    unrevealed = int(reveal.get("committed", 0)) - int(reveal.get("revealed", 0))
    others = n_trainers - len(revealed_by)
    if unrevealed == others:
        return "no reveal"  # committed, never revealed
    return "—" if unrevealed == 0 else "no reveal?"


def _short_seed(seed: str) -> str:
    return seed[:10] + "…" if seed and len(seed) > 10 else (seed or "-")


def _score(entry: dict[str, Any]) -> str:
    """What a round's test score is: accuracy, or R² for a regression task."""
    return "R²" if entry.get("score") == "r2" else "accuracy"


def _print_round(console: Any, report_trainers: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    from rich.table import Table

    reveal = entry.get("reveal") or {}
    phase = ""
    if reveal:
        phase = (f"  ·  {reveal.get('committed', 0)} committed · {reveal.get('revealed', 0)} revealed · "
                 f"seed {_short_seed(str(reveal.get('seed', '')))}")
    panel = entry.get("panel") or {}
    if panel:
        phase += (f"  ·  judged by {', '.join(_short(a) for a in panel['agreed'])} ({len(panel['agreed'])} of the "
                  f"{len(panel['drawn'])} drawn agreed)")
    proof = entry.get("proof") or {}
    if proof.get("verified_on_chain"):
        phase += (f"  ·  {proof.get('system', 'groth16').capitalize()} proof verified on chain "
                  f"(n{proof['n']}-k{proof['k']}-f{proof['f']}, proved in {float(proof['prove_s']):.1f} s)")
    lost = int(reveal.get("stakes_lost_wei", 0) or 0)
    caption = ("round value: this round's Shapley share; bps: the pool's split"
               + (" by each trainer's running sum of values" if entry.get("payout") == "cumulative" else "")
               + "; reveal: revealed, or committed and no reveal (stake lost), or — (no commitment)"
               + (f"; stakes lost this round: {_eth(lost)} ETH, paid to the round's paid trainers" if lost else ""))
    table = Table(title=f"round {entry['round']}  ·  test {_score(entry)} {entry['accuracy']:.3f}{phase}", title_justify="left",
                  caption=caption, caption_justify="left")
    for col in ("trainer", "attack", "reveal", "status", "round value", "bps", "credited ETH"):
        table.add_column(col, justify="right" if col in ("round value", "bps", "credited ETH") else "left",
                         no_wrap=col in ("trainer", "reveal"))
    n = len(report_trainers)
    for t in report_trainers:
        a = t["address"]
        shown = _reveal_status(a, reveal, n)
        if a in entry["outliers"] or a in entry.get("flagged", ()):
            status = "outlier"
        elif a in entry["rejected"]:
            status = "rejected: " + entry["rejected"][a]
        elif reveal and shown != "revealed":
            status = "-"
        else:
            status = "kept"
        table.add_row(
            _short(a), t["attack"] or "-", shown, status, f"{100 * entry['contributions'].get(a, 0.0):.1f}%",
            str(entry["bps"].get(a, 0)), _eth(entry["credited_wei"].get(a, "0")),
        )
    console.print(table)


def _money_identity(report: dict[str, Any]) -> tuple[str, bool]:
    """The final money identity line and whether it holds to the wei: what left the contract or is still in it
    (trainers' withdrawals, the owner's refunds, the escrow left) is the reward, plus the stakes given back and
    the stakes lost (paid to other trainers or refunded)."""
    fin = report["final"]
    withdrawn = sum(int(v) for v in fin["withdrawn_wei"].values())
    total = withdrawn + int(fin["refunded_wei"]) + int(fin["escrow_left_wei"])
    reward = int(report["reward_wei"])
    returned = int(fin.get("stakes_returned_wei", 0) or 0)
    lost = int(fin.get("stakes_lost_wei", 0) or 0)
    fees = int(fin.get("fees_wei", 0) or 0)
    total += fees
    expected = reward + returned + lost
    ok = "=" if total == expected else "≠"
    left = "withdrawn + refunded + escrow left" + (" + aggregators' fees" if fees else "")
    if not returned and not lost:
        return f"{left} = {total} wei {ok} reward {reward} wei", total == expected
    return (f"{left} = {total} wei {ok} reward {reward} + stakes returned {returned} "
            f"+ stakes lost {lost} wei", total == expected)


def _print_final(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    fin = report["final"]
    table = Table(title="final balances (read from the chain)", title_justify="left")
    table.add_column("account")
    table.add_column("attack")
    table.add_column("withdrawn ETH", justify="right")
    returned = fin.get("stakes_returned_by") or {}
    if not any(int(v) for v in returned.values()):
        returned = {}
    if returned:
        table.add_column("of it, stake back ETH", justify="right")
    for t in report["trainers"]:
        row = [_short(t["address"]), t["attack"] or "-", _eth(fin["withdrawn_wei"][t["address"]])]
        if returned:
            row.append(_eth(returned.get(t["address"], "0")))
        table.add_row(*row)
    table.add_row("owner (refunds)", "-", _eth(fin["refunded_wei"]), *([""] if returned else []))
    table.add_row("escrow left", "-", _eth(fin["escrow_left_wei"]), *([""] if returned else []))
    console.print(table)
    line, _ok = _money_identity(report)
    last = report["rounds"][-1] if report["rounds"] else {}
    console.print(f"{line}; final {_score(last)} {fin['accuracy']:.3f}")


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
                 note=f"round {entry['round']}: {_score(entry)} {entry['accuracy']:.3f}")
        p.update(self.train, completed=self.done_rounds * self.cfg.trainers,
                 note=f"{sec.get('train', 0.0):.1f} s this round")
        out = set(entry["outliers"]) | set(entry.get("flagged", ()))
        kept = sum(1 for a in entry["bps"] if a not in out and a not in entry["rejected"])
        p.update(self.value, completed=self.done_rounds,
                 note=f"{kept} kept, {len(out)} outliers, {len(entry['rejected'])} rejected, "
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
                f"round {entry['round']}: {_score(entry)} {entry['accuracy']:.3f}, "
                f"outliers {[_short(a) for a in entry['outliers']]}, rejected {len(entry['rejected'])}"
            )

    def on_note(message: str) -> None:
        if not args.quiet:
            bars.progress.console.print(message)

    hooks: dict[str, Any] = {"on_round": on_round}
    offered = inspect.signature(simulate).parameters
    if "on_progress" in offered:  # finer hook, when the simulator offers it
        hooks["on_progress"] = bars.on_progress
    if "on_note" in offered:  # one-time set-up steps (a proof task's development setup)
        hooks["on_note"] = on_note
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


#: ``market demo``'s own defaults (the rest are ``market simulate``'s)
#: Proven rounds by default: Multi-Krum is the robust rule the round circuit proves (``--proof none --robust ccdrop``
#: is ``market simulate``'s unproven default); the first run builds the development setup for n = 5 and 4 (~3-5 min)
DEMO_DEFAULTS: dict[str, object] = dict(trainers=5, attackers=1, attack="sign_flip", rounds=3, partition="dirichlet:0.5",
                                        seed=0, proof="groth16", robust="multikrum", panel=3, fee_bps=100)
#: ``SimulateConfig``'s defaults, as ``--help`` shows them (parsing must not import torch; a test keeps them equal)
SIMULATE_DEFAULTS: dict[str, object] = dict(trainers=6, attackers=0, attack="sign_flip", rounds=3, robust="ccdrop",
                                            valuation="auto", task="digits", model=None, model_spec=None, onnx=None, partition="iid", seed=0, reward="1",
                                            stake="0", chain="anvil", store="local", proof="none", sketch_k=16, sketch_f=0,
                                            panel=1, fee_bps=0)


def cmd_demo(args: argparse.Namespace) -> int:
    for k, v in DEMO_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return cmd_simulate(args)


def _sim_opts(p: argparse.ArgumentParser, demo: bool = False) -> None:
    d = {**SIMULATE_DEFAULTS, **(DEMO_DEFAULTS if demo else {})}

    def dflt(key: str) -> str:
        return f" (default {d[key]})"

    # every option defaults to None (the config's default applies), so each help names its default itself
    p.add_argument("--trainers", type=int, metavar="N", help="trainer nodes; the task's max-trainers is set to this, "
                   "so each round closes as soon as all have submitted" + dflt("trainers"))
    p.add_argument("--attackers", type=int, metavar="F", help="how many of the trainers attack (the last ones)" + dflt("attackers"))
    p.add_argument("--attack", help="sign_flip | gaussian | label_flip | free_rider | noisy_free_rider | alie | ipm | mimic | copier" + dflt("attack"))
    p.add_argument("--rounds", type=int, metavar="N", help="training rounds" + dflt("rounds"))
    p.add_argument("--robust", help="robust rule, optionally nnm+/clip+/arc+ in front" + dflt("robust"))
    p.add_argument("--f", type=int, help="suspected attackers for the robust rule (default: --attackers, at least 1)")
    p.add_argument("--valuation", help="auto | exact | gtg | tmc | loo" + dflt("valuation"))
    p.add_argument("--task", help="the example task: digits | breast_cancer | diabetes | mnist5k (data that ships inside installed "
                   "packages, nothing downloads)" + dflt("task"))
    p.add_argument("--model", help="logreg | mlp | cnn (default: the task's usual one: logreg; for mnist5k a two-convolution "
                   "network declared as layers)")
    p.add_argument("--model-spec", metavar="FILE", help="a spec file (.toml/.json) with a model table, e.g. your own "
                   "layers (docs/spec-reference.md, 'Your own model'), and optionally a training table; replaces --model")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="the model from an ONNX file (e.g. torch.onnx.export of your "
                   "network): its layers, and its weights as the round-0 model; replaces --model")
    p.add_argument("--partition", help="iid | dirichlet:ALPHA" + dflt("partition"))
    p.add_argument("--seed", type=int, metavar="N", help="seed of the data split, training and valuation" + dflt("seed"))
    p.add_argument("--reward", metavar="ETH", help="reward in ETH (decimal)" + dflt("reward"))
    p.add_argument("--stake", metavar="ETH", help="each trainer's stake in ETH (0: none)" + dflt("stake"))
    p.add_argument("--chain", choices=["anvil", "ganache", "tester"],
                   help="anvil (default), ganache (a throwaway Ganache 7) or the in-process tester EVM")
    p.add_argument("--rpc", help="use this chain instead of a throwaway Anvil")
    p.add_argument("--contract", help="with --rpc: use this deployed contract")
    p.add_argument("--store", choices=["local", "kubo"], help="content store" + dflt("store"))
    p.add_argument("--store-dir", help="folder of the local store (default: $MARKET_STORE_DIR, the devnet's with --rpc, else the per-user store)")
    p.add_argument("--ipfs-api", help="Kubo RPC API URL for --store kubo")
    p.add_argument("--proof", choices=["none", "groth16"],
                   help="groth16: prove every round (cyclic Shapley, cumulative, over the published utilities) and verify it on chain "
                        "before crediting; needs --robust multikrum; the first run builds a development setup (~1-2 min)"
                        + dflt("proof"))
    p.add_argument("--sketch-k", type=int, metavar="K", help="sketch length trainers commit to (16..64)" + dflt("sketch_k"))
    p.add_argument("--sketch-f", type=int, metavar="F", help="with --proof: updates the proven Multi-Krum over the "
                   "sketches leaves out of each round's pay, honest or not (0: none; a harmful update is paid nothing "
                   "by its value and the model's rule)" + dflt("sketch_f"))
    p.add_argument("--panel", type=int, metavar="K", help="aggregators drawn from the registry each round; each "
                   "recomputes the round and posts (the simulation registers the panel plus a backup)" + dflt("panel"))
    p.add_argument("--quorum", type=int, metavar="Q", help="identical results that settle a round (default: more than "
                   "half the panel)")
    p.add_argument("--backup", action=argparse.BooleanOptionalAction, default=None,
                   help="also draw a backup aggregator each round (default: yes)")
    p.add_argument("--fee-bps", type=int, metavar="BPS", help="the aggregators' fee, basis points of each round's pool"
                   + dflt("fee_bps"))
    p.add_argument("--report", metavar="PATH", help="write the JSON report here")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="the whole marketplace with sensible defaults and a per-round table")
    _sim_opts(p, demo=True)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("simulate", help="owner, N trainer nodes (some attackers) and an aggregator on one machine")
    _sim_opts(p)
    p.set_defaults(func=cmd_simulate)
