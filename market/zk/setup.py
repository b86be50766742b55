"""Development Groth16 setup for the round circuit, built once per circuit shape and cached.

NOT FOR PRODUCTION.  The powers of tau here come from ``snarkjs powersoftau new``
plus one contribution made on this machine, and each proving key has one
contribution; whoever ran it could forge proofs.  For a real deployment take a
public ceremony file instead (e.g. the Hermez/Polygon ``powersOfTau28_hez_final_<p>.ptau``,
placed as ``$MARKET_ZK_DIR/ptau/pot<p>.ptau``: it is used as is) and run a phase-2
ceremony with several independent contributors (``snarkjs zkey contribute``) before
exporting the verifier.

Layout of the cache (``$MARKET_ZK_DIR``, default ``~/.cache/poc-market/zk``)::

    ptau/pot<p>.ptau                    prepared powers of tau, 2^p constraints
    circuits/<shape>-<hash>/            one per (n, k, f) and circuit source
        main.circom  main.r1cs  main_js/main.wasm  main.zkey  vkey.json
        Verifier.sol  verifier.json (abi + bytecode)  meta.json (sizes, timings)

The hash covers ``zk/round.circom`` and the tool versions, so editing the
circuit builds afresh.  Builds take a file lock and rename into place, so
concurrent processes and crashes never leave a half-built shape behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from market.errors import ConfigError
from market.zk.sketch import SKETCH_BITS
from market.zk.statement import UTIL_BITS, bits_for, public_input_count

ROOT = Path(__file__).resolve().parents[2]
CIRCUIT = ROOT / "zk" / "round.circom"
NODE_BIN = ROOT / "node_modules" / ".bin"
MIN_POWER = 12
DEV_ENTROPY = "poc-market development setup - NOT FOR PRODUCTION"
DEV_NAME = "dev"  # the name of the development contributions (one per phase, made on the machine that builds)

Progress = Callable[[str], None]


def cache_dir() -> Path:
    return Path(os.environ.get("MARKET_ZK_DIR") or Path.home() / ".cache" / "poc-market" / "zk")


@dataclass(frozen=True)
class Shape:
    n: int  # valid submitters in the round
    k: int  # sketch length
    f: int  # outliers removed

    def __post_init__(self) -> None:
        if self.n < 2 or self.n > 64:
            raise ConfigError(f"proof circuits cover 2 to 64 valid submitters, not {self.n}")
        if self.k < 16 or self.k > 64:
            raise ConfigError(f"sketch length k must be 16 to 64, not {self.k}")
        if not 0 <= self.f or self.n - self.f - 1 < 1:
            raise ConfigError(f"Multi-Krum over {self.n} sketches cannot remove f={self.f}")

    @property
    def name(self) -> str:
        return f"n{self.n}-k{self.k}-f{self.f}"


@dataclass(frozen=True)
class Built:
    shape: Shape
    path: Path
    meta: dict

    @property
    def wasm(self) -> Path:
        return self.path / "main_js" / "main.wasm"

    @property
    def zkey(self) -> Path:
        return self.path / "main.zkey"

    @property
    def vkey(self) -> dict:
        return json.loads((self.path / "vkey.json").read_text())

    @property
    def verifier(self) -> dict:
        return json.loads((self.path / "verifier.json").read_text())


def _tool(name: str) -> str:
    p = NODE_BIN / name
    if not p.exists():
        raise ConfigError(f"{name} is not installed in node_modules: run `make install` (npm ci) first")
    return str(p)


def _run(args: list[str], what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ConfigError(f"{what} failed: {' | '.join(tail)}")
    return proc.stdout


def _source_hash() -> str:
    h = hashlib.sha256(CIRCUIT.read_bytes())
    for pkg in ("circom2", "snarkjs", "circomlib"):
        try:
            h.update(json.loads((ROOT / "node_modules" / pkg / "package.json").read_text())["version"].encode())
        except OSError:
            raise ConfigError(f"{pkg} is not installed in node_modules: run `make install` (npm ci) first") from None
    return h.hexdigest()[:12]


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ptau(power: int, progress: Progress | None = None) -> Path:
    """Prepared powers of tau for at least 2^power constraints: the smallest cached file that is large
    enough (a larger one serves smaller circuits too), else one built for 2^power (measured here:
    67 s for 2^12, 292 s for 2^13 on a loaded 2-core machine; ``prepare phase2`` dominates)."""
    power = max(power, MIN_POWER)
    base = cache_dir() / "ptau"
    final = base / f"pot{power}.ptau"

    def cached() -> Path | None:
        sizes = sorted(int(m.group(1)) for p in base.glob("pot*.ptau") if (m := re.fullmatch(r"pot(\d+)\.ptau", p.name)))
        return next((base / f"pot{p}.ptau" for p in sizes if p >= power), None)

    if (hit := cached()) is not None:
        return hit
    with _lock(base / f".pot{power}.lock"):
        if (hit := cached()) is not None:
            return hit
        snarkjs = _tool("snarkjs")
        if progress:
            progress(f"zk setup: powers of tau 2^{power} (development, one time; 3-5 min for 2^13 on 2 cores)")
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            t = Path(tmp)
            _run([snarkjs, "powersoftau", "new", "bn128", str(power), str(t / "0.ptau")], "powersoftau new")
            _run([snarkjs, "powersoftau", "contribute", str(t / "0.ptau"), str(t / "1.ptau"),
                  f"--name={DEV_NAME}", f"-e={DEV_ENTROPY}"], "powersoftau contribute")
            _run([snarkjs, "powersoftau", "prepare", "phase2", str(t / "1.ptau"), str(t / "final.ptau")],
                 "powersoftau prepare phase2")
            os.replace(t / "final.ptau", final)
    return final


def ptau_for(constraints: int, shape: Shape, progress: Progress | None = None) -> Path:
    """The powers of tau a circuit of ``shape`` with ``constraints`` is set up over (see :func:`ptau`)."""
    return ptau(bits_for(constraints + public_input_count(shape.n) + 1), progress)


def _main_source(shape: Shape) -> str:
    return (
        "pragma circom 2.1.0;\n"
        'include "round.circom";\n'
        "component main {public [binding, perm, commit, bpsPacked, utilHash]} = "
        f"RoundResult({shape.n}, {shape.k}, {shape.f}, {SKETCH_BITS}, {UTIL_BITS});\n"
    )


def _compile_verifier(sol: Path, runtime: bool = False) -> dict:
    """The Groth16 verifier's artifact (with ``runtime``: also its deployed code, whose keccak is the code
    hash the market's allowlist holds; the verifier has no immutables, so that code is exactly what runs)."""
    import solcx

    from market.chain.compile import SOLC_VERSION, solc_binary

    wanted = ["abi", "evm.bytecode.object"] + (["evm.deployedBytecode.object"] if runtime else [])
    std = {
        "language": "Solidity",
        "sources": {"Verifier.sol": {"content": sol.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "paris",  # plain precompile calls: runs on any EVM node
            "outputSelection": {"*": {"*": wanted}},
        },
    }
    try:
        out = solcx.compile_standard(std, solc_binary=solc_binary())
    except solcx.exceptions.SolcError as exc:
        raise ConfigError(f"verifier compilation failed: {str(exc).splitlines()[0]}") from None
    (name, c), = out["contracts"]["Verifier.sol"].items()
    art = {"contractName": name, "compiler": SOLC_VERSION, "abi": c["abi"], "bytecode": "0x" + c["evm"]["bytecode"]["object"]}
    if runtime:
        art["deployedBytecode"] = "0x" + c["evm"]["deployedBytecode"]["object"]
    return art


def compile_circuit(shape: Shape, work: Path) -> int:
    """``zk/round.circom`` for ``shape`` compiled into ``work`` (main.r1cs, main_js/main.wasm); returns the
    number of non-linear constraints. Anyone can run this from the source: the r1cs is deterministic."""
    circom = _tool("circom2")
    (work / "main.circom").write_text(_main_source(shape))
    # circom2 (WebAssembly) only sees paths under the working directory's ancestors: run it from /
    rel = lambda p: os.path.relpath(p, "/")  # noqa: E731
    out = _run([circom, rel(work / "main.circom"), "--r1cs", "--wasm", "--O2",
                "-l", rel(ROOT / "node_modules"), "-l", rel(ROOT / "zk"), "-o", rel(work)],
               f"circom {shape.name}", cwd=Path("/"))
    m = re.search(r"non-linear constraints: (\d+)", out)
    return int(m.group(1)) if m else 0


def cached(shape: Shape) -> Built | None:
    """This machine's setup for ``shape`` if it was built already (never builds)."""
    final = cache_dir() / "circuits" / f"{shape.name}-{_source_hash()}"
    if (final / "meta.json").exists():
        return Built(shape, final, json.loads((final / "meta.json").read_text()))
    return None


def build(shape: Shape, progress: Progress | None = None) -> Built:
    """The compiled circuit, proving key and verifier contract for ``shape`` (cached)."""
    final = cache_dir() / "circuits" / f"{shape.name}-{_source_hash()}"
    if (final / "meta.json").exists():
        return Built(shape, final, json.loads((final / "meta.json").read_text()))
    with _lock(final.parent / f".{final.name}.lock"):
        if (final / "meta.json").exists():
            return Built(shape, final, json.loads((final / "meta.json").read_text()))
        snarkjs = _tool("snarkjs")
        if progress:
            progress(f"zk setup: circuit {shape.name} (one time)")
        t0 = time.perf_counter()
        work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{shape.name}-"))
        try:
            constraints = compile_circuit(shape, work)
            t1 = time.perf_counter()
            power = bits_for(constraints + public_input_count(shape.n) + 1)
            pt = ptau_for(constraints, shape, progress)
            t2 = time.perf_counter()
            if progress:
                progress(f"zk setup: proving key {shape.name} ({constraints} constraints)")
            _run([snarkjs, "groth16", "setup", str(work / "main.r1cs"), str(pt), str(work / "0.zkey")], "groth16 setup")
            _run([snarkjs, "zkey", "contribute", str(work / "0.zkey"), str(work / "main.zkey"), f"--name={DEV_NAME}",
                  f"-e={DEV_ENTROPY}"], "zkey contribute")
            (work / "0.zkey").unlink()
            _run([snarkjs, "zkey", "export", "verificationkey", str(work / "main.zkey"), str(work / "vkey.json")],
                 "export verification key")
            _run([snarkjs, "zkey", "export", "solidityverifier", str(work / "main.zkey"), str(work / "Verifier.sol")],
                 "export verifier")
            (work / "verifier.json").write_text(json.dumps(_compile_verifier(work / "Verifier.sol")))
            t3 = time.perf_counter()
            meta = {
                "n": shape.n, "k": shape.k, "f": shape.f, "constraints": constraints, "power": power,
                "public_inputs": public_input_count(shape.n), "compile_s": round(t1 - t0, 2),
                "ptau_s": round(t2 - t1, 2), "keys_s": round(t3 - t2, 2), "development_setup": True,
            }
            (work / "meta.json").write_text(json.dumps(meta, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return Built(shape, final, json.loads((final / "meta.json").read_text()))


def main() -> int:
    """``python -m market.zk.setup [n:k:f ...]``: build shapes ahead (default: the test suite's)."""
    import sys

    specs = sys.argv[1:] or ["5:16:1", "5:16:0", "4:16:0"]  # the larger first: the smaller reuses its powers of tau
    for text in specs:
        n, k, f = (int(x) for x in text.split(":"))
        t0 = time.perf_counter()
        built = build(Shape(n, k, f), progress=lambda m: print(m, flush=True))
        print(f"{built.shape.name}: {built.meta['constraints']} constraints, ready ({time.perf_counter() - t0:.1f} s) in {built.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
