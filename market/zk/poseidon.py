"""Poseidon over the BN254 scalar field, as circomlib's ``Poseidon(n)`` template computes it.

Round constants and MDS matrices come from circomlibjs (npm, pinned in
package-lock.json), the same numbers circomlib's circuits are generated from. A copy
ships as package data (``poseidon_constants.json.gz``, so an installed wheel needs no
``node_modules``); a test holds it equal to circomlibjs's file, and
``tests/test_zk_sketch.py`` checks the output against circomlibjs itself.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from market.errors import ConfigError

#: the BN254 (alt_bn128) scalar field: every circuit signal lives here
P = 21888242871839275222246405745257275088548364400416034343698204186575808495617

CONSTANTS = Path(__file__).resolve().parent / "poseidon_constants.json.gz"
_ROUNDS_F = 8
_ROUNDS_P = [56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68]


@lru_cache(maxsize=1)
def _constants() -> tuple[list[list[int]], list[list[list[int]]]]:
    try:
        raw = json.loads(gzip.decompress(CONSTANTS.read_bytes()))
    except OSError:
        raise ConfigError(f"Poseidon constants not found at {CONSTANTS}: reinstall the package") from None
    c = [[int(x, 16) for x in row] for row in raw["C"]]
    m = [[[int(x, 16) for x in row] for row in mat] for mat in raw["M"]]
    return c, m


def poseidon(inputs: Sequence[int]) -> int:
    """Poseidon hash of 1..16 field elements (circomlib ``Poseidon(len(inputs))``)."""
    if not 1 <= len(inputs) <= len(_ROUNDS_P):
        raise ValueError(f"poseidon takes 1 to {len(_ROUNDS_P)} inputs, got {len(inputs)}")
    c_all, m_all = _constants()
    t = len(inputs) + 1
    c, m = c_all[t - 2], m_all[t - 2]
    n_p = _ROUNDS_P[t - 2]
    state = [0] + [int(x) % P for x in inputs]
    for r in range(_ROUNDS_F + n_p):
        state = [(a + c[r * t + i]) % P for i, a in enumerate(state)]
        if r < _ROUNDS_F // 2 or r >= _ROUNDS_F // 2 + n_p:
            state = [pow(a, 5, P) for a in state]
        else:
            state[0] = pow(state[0], 5, P)
        state = [sum(m[i][j] * state[j] for j in range(t)) % P for i in range(t)]
    return state[0]


def poseidon_chain(elements: Sequence[int]) -> int:
    """``h = Poseidon(h, next chunk)`` over chunks of up to 15 elements, zero padded, from h = 0
    (the ``PoseidonChain`` template of ``zk/round.circom``)."""
    if not elements:
        raise ValueError("nothing to hash")
    ch = min(len(elements), 15)
    h = 0
    for start in range(0, len(elements), ch):
        chunk = list(elements[start:start + ch])
        chunk += [0] * (ch - len(chunk))
        h = poseidon([h, *chunk])
    return h


def pack(values: Sequence[int], bits: int) -> list[int]:
    """Pack non-negative ``bits``-bit integers, ``252 // bits`` per field element, first value lowest
    (the ``Pack`` template)."""
    per = 252 // bits
    out = []
    for start in range(0, len(values), per):
        acc = 0
        for j, v in enumerate(values[start:start + per]):
            if not 0 <= v < (1 << bits):
                raise ValueError(f"value {v} does not fit {bits} bits")
            acc |= int(v) << (bits * j)
        out.append(acc)
    return out
