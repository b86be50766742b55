"""Prove a round with snarkjs (Groth16) and encode what the on-chain RoundVerifier takes.

``prove`` writes the witness input to a private temporary directory, runs
``snarkjs groth16 fullprove`` (witness generation in WebAssembly + proof) and
returns the proof, its public signals and the time taken.  ``verify_py``
checks a proof in pure Python with py_ecc (``market verify``), independently
of node and of the chain.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode

from market.errors import ConfigError
from market.zk.setup import Built, _tool


@dataclass(frozen=True)
class Proof:
    a: tuple[int, int]
    b: tuple[tuple[int, int], tuple[int, int]]  # as snarkjs writes it: ((x0, x1), (y0, y1))
    c: tuple[int, int]
    public: tuple[int, ...]
    prove_s: float

    def words(self) -> list[int]:
        """The 8 words of verifyProof's (pA, pB, pC): pB's coordinates swapped, as EIP-197 wants."""
        (bx0, bx1), (by0, by1) = self.b
        return [self.a[0], self.a[1], bx1, bx0, by1, by0, self.c[0], self.c[1]]

    def to_json(self) -> dict[str, Any]:
        return {"a": [str(x) for x in self.a], "b": [[str(x) for x in p] for p in self.b],
                "c": [str(x) for x in self.c], "public": [str(x) for x in self.public]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Proof":
        a0, a1 = (int(x) for x in obj["a"])
        (b00, b01), (b10, b11) = ((int(x) for x in p) for p in obj["b"])
        c0, c1 = (int(x) for x in obj["c"])
        return cls((a0, a1), ((b00, b01), (b10, b11)), (c0, c1), tuple(int(x) for x in obj["public"]), 0.0)


def prove(built: Built, witness: dict[str, Any]) -> Proof:
    snarkjs = _tool("snarkjs")
    with tempfile.TemporaryDirectory(prefix="poc-prove-") as tmp:
        t = Path(tmp)
        (t / "input.json").write_text(json.dumps(witness))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [snarkjs, "groth16", "fullprove", str(t / "input.json"), str(built.wasm), str(built.zkey),
             str(t / "proof.json"), str(t / "public.json")],
            capture_output=True, text=True,
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or not (t / "proof.json").exists():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise ConfigError(f"proving {built.shape.name} failed: {lines[-1] if lines else 'no output'}")
        p = json.loads((t / "proof.json").read_text())
        pub = json.loads((t / "public.json").read_text())
    return Proof(
        (int(p["pi_a"][0]), int(p["pi_a"][1])),
        ((int(p["pi_b"][0][0]), int(p["pi_b"][0][1])), (int(p["pi_b"][1][0]), int(p["pi_b"][1][1]))),
        (int(p["pi_c"][0]), int(p["pi_c"][1])),
        tuple(int(x) for x in pub),
        elapsed,
    )


def encode_round_proof(proof: Proof, prev_digest: bytes, subs: Sequence[tuple[int, bytes, bytes]],
                       rejected_mask: int, util_hash: int) -> bytes:
    """``abi.encode(uint256[8], bytes32, uint256[3][], uint256, uint256)`` for RoundVerifier."""
    rows = [[idx, int.from_bytes(cid, "big"), int.from_bytes(com, "big")] for idx, cid, com in subs]
    return abi_encode(["uint256[8]", "bytes32", "uint256[3][]", "uint256", "uint256"],
                      [proof.words(), prev_digest, rows, rejected_mask, util_hash])


def decode_round_proof(data: bytes) -> tuple[list[int], bytes, list[tuple[int, bytes, bytes]], int, int]:
    from eth_abi import decode as abi_decode

    words, prev, rows, mask, uh = abi_decode(["uint256[8]", "bytes32", "uint256[3][]", "uint256", "uint256"], data)
    subs = [(int(r[0]), int(r[1]).to_bytes(32, "big"), int(r[2]).to_bytes(32, "big")) for r in rows]
    return list(words), bytes(prev), subs, int(mask), int(uh)


def verify_py(vkey: dict[str, Any], words: Sequence[int], public: Sequence[int]) -> bool:
    """Groth16 verification in pure Python (py_ecc, BN254 pairing): e(A,B) = e(alpha,beta) e(L,gamma) e(C,delta)."""
    from py_ecc.bn128 import FQ, FQ2, FQ12, add, curve_order, multiply, neg, pairing

    def g1(v: Sequence[Any]) -> tuple[FQ, FQ]:
        return (FQ(int(v[0])), FQ(int(v[1])))

    def g2(v: Sequence[Sequence[Any]]) -> tuple[FQ2, FQ2]:
        return (FQ2([int(v[0][0]), int(v[0][1])]), FQ2([int(v[1][0]), int(v[1][1])]))

    if len(public) != int(vkey["nPublic"]) or any(not 0 <= x < curve_order for x in public):
        return False
    a = (FQ(words[0]), FQ(words[1]))
    b = (FQ2([words[3], words[2]]), FQ2([words[5], words[4]]))
    c = (FQ(words[6]), FQ(words[7]))
    ic = vkey["IC"]
    acc: Any = g1(ic[0])  # py_ecc types a sum as Optional (the point at infinity)
    for x, point in zip(public, ic[1:]):
        if x:
            acc = add(acc, multiply(g1(point), x))
    lhs = pairing(b, neg(a))
    rhs = pairing(g2(vkey["vk_beta_2"]), g1(vkey["vk_alpha_1"])) * pairing(g2(vkey["vk_gamma_2"]), acc) \
        * pairing(g2(vkey["vk_delta_2"]), c)
    return lhs * rhs == FQ12.one()
