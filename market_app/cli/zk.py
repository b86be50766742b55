"""``market zk audit`` and ``market zk contribute``: who could forge a proof, checked from public files.

The market takes a proof task's Groth16 verifiers by code hash (its allowlist). ``audit`` checks the
chain from ``zk/round.circom`` to such a hash: the powers of tau transcript, the proving key's phase-2
contributions over this circuit, the exported verifier's code hash and, with ``--task``, that this hash
is what the task's RoundVerifier calls for the shape and what the market allows. ``contribute`` adds one
phase-2 contribution with fresh entropy: independent parties run it in turn, so that the key is sound
if any one of them destroyed its secret.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from market.errors import ConfigError
from market_app.cli.common import _chain_opts, _contract, _task_id

if TYPE_CHECKING:
    from market.zk.audit import Audit
    from market.zk.setup import Shape


def _shape(text: str) -> Shape:
    from market.zk.setup import Shape

    try:
        n, k, f = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not N:K:F (valid updates, sketch length, outliers)") from None
    try:
        return Shape(n, k, f)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _on_chain(args: argparse.Namespace, audit: Audit, emit: Callable[[str, bool, str], None]) -> None:
    """The task's RoundVerifier calls, for the shape's round size, a verifier with the audited code, and the
    market allows that code (and the RoundVerifier's) on its allowlist."""
    from web3 import Web3

    from market.chain.contract import ZERO_ADDRESS

    contract = _contract(args)
    info = contract.task(args.task)
    if info.verifier == ZERO_ADDRESS:
        raise ConfigError(f"task {args.task} has no verifier: its rounds are settled by its panel's votes, not by proofs")
    shape = audit.shape
    rv = contract.round_verifier(info.verifier)
    k = int(contract.chain.call(rv.functions.sketchK()))
    emit("sketch length", k == shape.k, f"the task's RoundVerifier checks sketches of {k}" + ("" if k == shape.k else f", not {shape.k}"))
    part = Web3.to_checksum_address(contract.chain.call(rv.functions.verifierFor(shape.n)))
    if part == ZERO_ADDRESS:
        emit("deployed", False, f"the task's RoundVerifier has no verifier for rounds of {shape.n} valid updates")
        return
    deployed = contract.code_hash(part)
    same = deployed == audit.code_hash
    emit("deployed", same, f"task {args.task}'s verifier for n={shape.n} ({part}) has " +
         ("this code" if same else f"other code (0x{deployed.hex()})"))
    part_kind, rv_kind = contract.code_kind(deployed), contract.code_kind(contract.code_hash(info.verifier))
    allowed = part_kind == 2 and rv_kind == 1
    emit("allowlist", allowed, "the market allows this code as a Groth16 verifier and the task's RoundVerifier's code"
         if allowed else f"the market's allowlist does not hold them (kinds: this code {part_kind}, want 2; "
         f"the RoundVerifier {rv_kind}, want 1)")


def cmd_zk_audit(args: argparse.Namespace) -> int:
    from market.zk.audit import audit_setup, cached_zkey

    zkey = Path(args.zkey) if args.zkey else cached_zkey(args.shape)
    failed: list[str] = []

    def emit(name: str, ok: bool, detail: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name:14} {detail}", flush=True)
        if not ok:
            failed.append(name)

    audit = audit_setup(args.shape, zkey, Path(args.ptau) if args.ptau else None,
                        progress=None if args.quiet else (lambda m: print(f"... {m}", flush=True)))
    for name, ok, detail in audit.checks:
        emit(name, ok, detail)
    if audit.code_hash:
        print(f"     verifier code hash 0x{audit.code_hash.hex()}")
    if audit.ok and args.task is not None:
        _on_chain(args, audit, emit)
    for phase, cs in (("powers of tau", audit.ptau_contributions), ("phase 2", audit.zkey_contributions)):
        for i, c in enumerate(cs, 1):
            print(f"     {phase} contribution #{i}: {c.name or '(no name)'}" + (f"  {c.hash}" if c.hash else ""))
    if audit.development:
        print("warning: development setup: one contribution per phase, made on the machine that built it, so whoever "
              "ran it can forge proofs; a real deployment takes a public powers of tau and independent phase-2 "
              "contributions (market zk contribute)")
    print("setup audited" if not failed else f"setup FAILED: {', '.join(failed)}")
    return 0 if not failed else 1


def cmd_zk_contribute(args: argparse.Namespace) -> int:
    from market.zk.audit import contribute

    done = contribute(Path(args.zkey_in), Path(args.zkey_out), args.name)
    print(f"contribution {done.name!r} written to {args.zkey_out}; publish its hash: {done.hash or '(snarkjs printed none)'}")
    print("the entropy came from the OS and was not kept: nothing of it is on disk")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("zk", help="audit a proof setup from public files; add a phase-2 contribution")
    zsub = p.add_subparsers(dest="zk_command", required=True)
    a = zsub.add_parser(
        "audit", help="check a proving key against zk/round.circom and its powers of tau, and its verifier against a task",
        description="Compile zk/round.circom for the shape, verify the powers of tau transcript and the proving key's "
        "phase-2 contributions over it (snarkjs), export and compile its Solidity verifier and print its code hash; "
        "with --task, also check that the task's RoundVerifier calls that code for rounds of N valid updates and that "
        "the market allows it. Exit 1 on any failed check.")
    a.add_argument("--shape", type=_shape, required=True, metavar="N:K:F",
                   help="round size (valid updates), sketch length, outliers removed, e.g. 5:16:0")
    a.add_argument("--zkey", help="the proving key to audit (default: this machine's development setup for the shape)")
    a.add_argument("--ptau", help="the powers of tau file it claims to use (default: this machine's cached one)")
    a.add_argument("--task", type=_task_id, metavar="T", help="also check this task's deployed verifier and the allowlist")
    a.add_argument("--quiet", action="store_true", help="no progress lines")
    _chain_opts(a, key=False)
    a.set_defaults(func=cmd_zk_audit)
    c = zsub.add_parser("contribute", help="add one phase-2 contribution (fresh OS entropy) to a proving key",
                        description="snarkjs zkey contribute with 64 random bytes from the OS, never written anywhere. "
                        "Each independent party runs it on the previous party's file and publishes the printed hash; "
                        "`market zk audit` lists every contribution.")
    c.add_argument("zkey_in", metavar="IN.zkey")
    c.add_argument("zkey_out", metavar="OUT.zkey")
    c.add_argument("--name", required=True, help="who contributes (shown by every audit)")
    c.set_defaults(func=cmd_zk_contribute)
