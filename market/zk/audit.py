"""Audit a round circuit's Groth16 setup from public files: anyone can check who could forge proofs.

A Groth16 proving key is sound as long as one contributor to its powers of tau and one to its
phase 2 destroyed its secret.  The market's allowlist takes verifiers by code hash; this module
checks the chain from the circuit's source to that hash, with nothing taken on trust:

1. ``zk/round.circom`` compiled for the shape here (the r1cs is deterministic);
2. the powers of tau file's own transcript (``snarkjs powersoftau verify``): its contributions;
3. the proving key against that r1cs and that file (``snarkjs zkey verify``): its phase-2
   contributions, each a hash anyone can compare with what the contributor published;
4. the Solidity verifier exported from the proving key, compiled with the project's pinned solc:
   its code hash (``Audit.code_hash``, information, not a check), to compare with the verifier deployed
   for a task and with the market's allowlist.

The development setup (:mod:`market.zk.setup`) has one contribution in each phase, made on the
machine that built it: **whoever ran it can forge proofs under it**.  The audit says so.  A production setup takes a
public ceremony's powers of tau and phase-2 contributions from independent parties
(:func:`contribute`, run by each in turn); the audit lists them.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from eth_utils import keccak

from market.checks import Checks
from market.errors import ConfigError
from market.zk.setup import DEV_NAME, Built, Progress, Shape, _compile_verifier, _run, _tool, compile_circuit, ptau_for

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Contribution:
    name: str
    hash: str  # as snarkjs prints it, without spaces ("" where it prints none)


@dataclass
class Audit(Checks):
    shape: Shape = field(kw_only=True)
    ptau_contributions: list[Contribution] = field(default_factory=list)
    zkey_contributions: list[Contribution] = field(default_factory=list)
    code_hash: bytes = b""

    @property
    def development(self) -> bool:
        """Every contribution of a phase is a development one: whoever built the setup holds its secret."""
        dev = lambda cs: bool(cs) and all(c.name == DEV_NAME for c in cs)  # noqa: E731
        return dev(self.ptau_contributions) or dev(self.zkey_contributions)


def _snarkjs(args: list[str], what: str) -> str:
    return _ANSI.sub("", _run([_tool("snarkjs"), *args], what))


def _contributions(text: str, header: re.Pattern[str]) -> list[Contribution]:
    """Contributions as snarkjs lists them, oldest first: a header line with the number (group ``n``, when the
    pattern has one; ``zkey verify`` lists the newest first) and the name, then 4 lines of 8-hex-digit words."""
    out: list[tuple[int, Contribution]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = header.search(line)
        if not m:
            continue
        words = []
        for nxt in lines[i + 1:i + 5]:
            found = re.findall(r"\b[0-9a-f]{8}\b", nxt.split("snarkJS:")[-1])
            if len(found) != 4 or "snarkJS:" in nxt:
                break
            words.extend(found)
        order = int(m.group("n")) if "n" in header.groupindex else len(out)
        out.append((order, Contribution(m.group("name").strip(), "".join(words))))
    return [c for _, c in sorted(out, key=lambda oc: oc[0])]


def runtime_code_hash(zkey: Path, work: Path) -> bytes:
    """keccak of the deployed code of the Solidity verifier exported from ``zkey``."""
    sol = work / "Verifier.sol"
    _snarkjs(["zkey", "export", "solidityverifier", str(zkey), str(sol)], "export verifier")
    art = _compile_verifier(sol, runtime=True)
    return keccak(bytes.fromhex(art["deployedBytecode"][2:]))


def audit_setup(shape: Shape, zkey: Path, ptau: Path | None = None, progress: Progress | None = None) -> Audit:
    """Check ``zkey`` (a proving key for ``shape``) against the circuit's source and ``ptau`` (default: the
    cached powers of tau the development setup would use); every step is a check in the result."""
    audit = Audit(shape=shape)
    if not zkey.is_file():
        raise ConfigError(f"no proving key at {zkey}")
    if ptau is not None and not ptau.is_file():
        raise ConfigError(f"no powers of tau file at {ptau}")
    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="poc-audit-") as tmp:
        work = Path(tmp)
        say(f"compiling zk/round.circom for {shape.name}")
        constraints = compile_circuit(shape, work)
        audit.add("circuit", constraints > 0, f"zk/round.circom for {shape.name}: {constraints} constraints")
        pt = ptau if ptau is not None else ptau_for(constraints, shape)
        say(f"checking the powers of tau transcript ({pt.name})")
        try:
            text = _snarkjs(["powersoftau", "verify", str(pt)], "powersoftau verify")
            audit.ptau_contributions = _contributions(text, re.compile(r"Contribution #(?P<n>\d+): ?(?P<name>.*)$"))
            audit.add("powers of tau", "Powers of Tau Ok!" in text,
                      f"{pt.name}: {len(audit.ptau_contributions)} contribution(s), transcript verified")
        except ConfigError as exc:
            audit.add("powers of tau", False, str(exc))
            return audit
        say("checking the proving key against the circuit and the powers of tau")
        try:
            text = _snarkjs(["zkey", "verify", str(work / "main.r1cs"), str(pt), str(zkey)], "zkey verify")
            audit.zkey_contributions = _contributions(text, re.compile(r"contribution #(?P<n>\d+) ?(?P<name>.*?):?\s*$"))
            audit.add("proving key", "ZKey Ok!" in text,
                      f"derived from this circuit and {pt.name} through {len(audit.zkey_contributions)} contribution(s)")
        except ConfigError as exc:
            audit.add("proving key", False, str(exc).replace(str(zkey), zkey.name))
            return audit
        say("exporting and compiling the Solidity verifier")
        audit.code_hash = runtime_code_hash(zkey, work)
    return audit


def contribute(zkey_in: Path, zkey_out: Path, name: str) -> Contribution:
    """One phase-2 contribution to a proving key, with fresh entropy from the OS (never written anywhere):
    each independent party runs this in turn on the previous party's file and publishes the printed hash."""
    if not zkey_in.is_file():
        raise ConfigError(f"no proving key at {zkey_in}")
    if not name or name == DEV_NAME:
        raise ConfigError(f"a contribution needs a name of its own (not {DEV_NAME!r}, the development one)")
    if zkey_out.exists():
        raise ConfigError(f"{zkey_out} exists: a contribution writes a new file")
    text = _snarkjs(["zkey", "contribute", str(zkey_in), str(zkey_out), f"--name={name}",
                     f"-e={secrets.token_hex(64)}"], "zkey contribute")
    found = _contributions(text, re.compile(r"Contribution Hash: ?(?P<name>.*)$"))
    digest = found[0].hash if found else ""
    return Contribution(name, digest)


def cached_zkey(shape: Shape) -> Path:
    """The development setup's proving key for ``shape`` (built if missing)."""
    from market.zk.setup import build

    built: Built = build(shape)
    return built.zkey


__all__ = ["Audit", "Contribution", "audit_setup", "cached_zkey", "contribute", "runtime_code_hash"]
