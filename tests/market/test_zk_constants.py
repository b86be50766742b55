"""Two small copies held equal to their sources: the packaged Poseidon constants (circomlibjs) and the
``f`` a proven round uses (the aggregator's Multi-Krum precondition)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from aggregator.robust import effective_f
from market.zk import poseidon
from market.zk.statement import provable_f

ROOT = Path(__file__).resolve().parents[2]
CIRCOMLIBJS = ROOT / "node_modules" / "circomlibjs" / "src" / "poseidon_constants.json"


def test_packaged_poseidon_constants_are_circomlibjs_s() -> None:
    if not CIRCOMLIBJS.is_file():
        pytest.fail(f"{CIRCOMLIBJS} missing: run `make install` (npm ci)")
    packaged = Path(poseidon.__file__).resolve().parent / "poseidon_constants.json.gz"
    assert poseidon.CONSTANTS == packaged

    assert json.loads(gzip.decompress(packaged.read_bytes())) == json.loads(CIRCOMLIBJS.read_text())


def test_provable_f_is_the_multikrum_effective_f() -> None:
    mismatches = [(n, f, provable_f(n, f), effective_f(n, f, "multikrum"))
                  for n in range(41) for f in range(11)
                  if provable_f(n, f) != effective_f(n, f, "multikrum")]

    assert mismatches == [], "(n, f, provable_f, effective_f): " + repr(mismatches[:10])
