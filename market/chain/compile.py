"""Compile the Solidity contracts through py-solc-x and keep the artifacts in git.

No native ``solc`` can be installed on these machines, so unless one is on
``PATH`` (``MARKET_SOLC`` may name one), py-solc-x drives ``tools/solc-adapter.js``,
which answers ``--version`` and ``--standard-json`` with solcjs (npm ``solc``,
pinned in package-lock.json).  Source unit names are relative to the project
root (base path = root, relative remapping for OpenZeppelin) so that the
metadata hash, hence the bytecode, is the same on every checkout.

``python -m market.chain.compile`` rewrites ``contracts/artifacts/*.json``;
``python -m market.chain.compile --check`` exits 1 when they drift from the sources.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the project root (sources, node_modules); a checkout only
CONTRACTS = ROOT / "contracts"
#: compiled ABIs and bytecode ship inside the package (package data), so an installed wheel has them
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SOLC_VERSION = "0.8.28"
#: shanghai, not cancun: Ganache 7 (and other pre-Cancun nodes) cannot run TLOAD/TSTORE/MCOPY.
EVM_VERSION = "shanghai"

#: contracts whose artifacts are kept (source path relative to ROOT, contract name)
TARGETS: list[tuple[str, str]] = [
    ("contracts/ContributionMarket.sol", "ContributionMarket"),
    ("contracts/RoundVerifier.sol", "RoundVerifier"),
    ("contracts/AggregatorRegistry.sol", "AggregatorRegistry"),
]
#: extra sources compiled for the tests (attackers, tokens); artifacts go to artifacts/test/
TEST_TARGETS: list[tuple[str, str]] = []


def _discover_test_targets() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = list(TEST_TARGETS)
    test_dir = CONTRACTS / "test"
    if test_dir.is_dir():
        for sol in sorted(test_dir.glob("*.sol")):
            found.append((sol.relative_to(ROOT).as_posix(), sol.stem))
    return found


def solc_binary() -> str:
    """A native solc of the pinned version if there is one, else the solcjs adapter."""
    explicit = os.environ.get("MARKET_SOLC")
    if explicit:
        return explicit
    native = shutil.which("solc")
    if native:
        import subprocess

        out = subprocess.run([native, "--version"], capture_output=True, text=True).stdout
        if f"Version: {SOLC_VERSION}+" in out:
            return native
    adapter = ROOT / "tools" / "solc-adapter.js"
    if not (ROOT / "node_modules" / "solc").is_dir():
        from market.errors import ConfigError

        raise ConfigError("solcjs is not installed: run `make install` (npm ci) first")
    return str(adapter)


def standard_input(sources: list[str]) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": {s: {"urls": [s]} for s in sources},
        "settings": {
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "optimizer": {"enabled": True, "runs": 200},
            # via-IR: the market (with the aggregator panel) fits the 24,576-byte limit only this way
            "viaIR": True,
            "evmVersion": EVM_VERSION,
            "outputSelection": {"*": {"*": ["abi", "userdoc", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def compile_all() -> dict[str, dict[str, Any]]:
    """Compile every target; return {contract name: artifact dict}."""
    import solcx

    targets = TARGETS + _discover_test_targets()
    sources = sorted({s for s, _ in targets})
    std = standard_input(sources)
    # solcjs has no --allow-paths; its import callback reads relative to --base-path.
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        out = solcx.compile_standard(std, base_path=".", solc_binary=solc_binary())
    except solcx.exceptions.SolcError as exc:
        from market.errors import ConfigError

        raise ConfigError(f"solidity compilation failed: {str(exc).split('> command')[0].strip()}") from None
    finally:
        os.chdir(cwd)
    result: dict[str, dict[str, Any]] = {}
    for src, name in targets:
        c = out["contracts"][src][name]
        result[name] = {
            "contractName": name,
            "sourceName": src,
            "compiler": SOLC_VERSION,
            "evmVersion": EVM_VERSION,
            "sourceSha256": hashlib.sha256((ROOT / src).read_bytes()).hexdigest(),
            "abi": c["abi"],
            # NatSpec @notice texts; userdoc["errors"] holds the revert message templates (client.ErrorDecoder)
            "userdoc": c["userdoc"],
            "bytecode": "0x" + c["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
        }
    return result


def artifact_path(name: str) -> Path:
    if any(n == name for _, n in TARGETS):
        return ARTIFACTS / f"{name}.json"
    return ARTIFACTS / "test" / f"{name}.json"


def load_artifact(name: str) -> dict[str, Any]:
    path = artifact_path(name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        from market.errors import ConfigError

        raise ConfigError(f"contract artifact {path} is missing: run `python -m market.chain.compile`") from None


def write_artifacts(arts: dict[str, dict[str, Any]]) -> None:
    for name, art in arts.items():
        p = artifact_path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(art, indent=1, sort_keys=True) + "\n")


def drift(arts: dict[str, dict[str, Any]]) -> list[str]:
    """Names whose committed artifact differs from a fresh compile."""
    bad = []
    for name, art in arts.items():
        p = artifact_path(name)
        if not p.exists() or json.loads(p.read_text()) != art:
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if committed artifacts drift from the sources")
    args = ap.parse_args(argv)
    from market.errors import MarketError

    try:
        arts = compile_all()
    except MarketError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        bad = drift(arts)
        if bad:
            print(f"artifacts out of date: {', '.join(bad)} (run python -m market.chain.compile)", file=sys.stderr)
            return 1
        print(f"artifacts match sources ({len(arts)} contracts)")
        return 0
    write_artifacts(arts)
    for name, art in arts.items():
        print(f"{name}: {(len(art['deployedBytecode']) - 2) // 2} bytes deployed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
