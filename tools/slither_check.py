"""Run Slither on the market contract through the same solcjs adapter the build uses.

    .venv-lint/bin/python tools/slither_check.py        (what `make lint` runs)

Slither lives in its own virtual environment (.venv-lint): it pins web3 < 8, the
product uses web3 8. Exits 1 on any high or medium finding, or on a low/informational
finding that is neither fixed nor listed with its reason in tools/slither-triage.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["contracts/ContributionMarket.sol", "contracts/RoundVerifier.sol", "contracts/AggregatorRegistry.sol"]


def main() -> int:
    from crytic_compile.platform.solc_standard_json import SolcStandardJson
    from slither import Slither

    triage = json.loads((ROOT / "tools" / "slither-triage.json").read_text())
    accepted = {(a["check"], a["where"]) for a in triage["accepted"]}
    os.chdir(ROOT)
    std = SolcStandardJson()
    for t in TARGETS:
        std.add_source_file(t)
    std.add_remapping("@openzeppelin/=node_modules/@openzeppelin/")
    sl = Slither(std, solc=str(ROOT / "tools" / "solc-adapter.js"), solc_args="--base-path .")
    from slither.detectors import all_detectors
    from slither.detectors.abstract_detector import AbstractDetector

    for name in dir(all_detectors):
        d = getattr(all_detectors, name)
        if isinstance(d, type) and issubclass(d, AbstractDetector):
            sl.register_detector(d)
    results = [r for batch in sl.run_detectors() for r in batch]
    bad = 0
    for r in results:
        elems = r.get("elements") or [{}]
        where = elems[0].get("name", "?")
        first = elems[0].get("source_mapping", {}).get("filename_relative", "")
        if "node_modules" in first:
            continue
        impact = r["impact"]
        key = (r["check"], where)
        status = "accepted" if key in accepted else ("FAIL" if impact in ("High", "Medium") or key not in accepted else "")
        if key not in accepted:
            bad += 1
        print(f"[{impact:<13}] {r['check']:<28} {where:<28} {status}")
        if key not in accepted:
            print("    " + r["description"].strip().splitlines()[0][:200])
    high_medium = [r for r in results if r["impact"] in ("High", "Medium")]
    print(f"{len(results)} findings: {len(high_medium)} high/medium, {bad} not triaged")
    return 1 if bad or high_medium else 0


if __name__ == "__main__":
    sys.exit(main())
