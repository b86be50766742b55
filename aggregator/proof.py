"""Proving a round for a task whose spec asks for proofs (``proof.system = "groth16"``).

After the round's model and receipt are stored (their CIDs enter the proof's
binding), :func:`prove_round` rebuilds the circuit's statement from the
round's :class:`market.receipt.ProofInputs` (and the statement the round computed once), proves it with snarkjs (building the
development setup for the round's shape first if this machine has none yet)
and returns the bytes ``postResult`` carries to the task's RoundVerifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from aggregator.outcome import RoundOutcome
from market.chain.contract import MarketContract, RoundSnapshot
from market.cid import cid_digest
from market.errors import ConfigError, MarketError
from market.zk import statement as zs
from market.zk.prover import Proof, encode_round_proof, prove
from market.zk.setup import Shape, build


@dataclass(frozen=True)
class RoundProof:
    calldata: bytes
    proof: Proof
    shape: Shape
    constraints: int
    public: tuple[int, ...]

    def report(self) -> dict[str, Any]:
        return {"system": "groth16", "n": self.shape.n, "k": self.shape.k, "f": self.shape.f,
                "constraints": self.constraints, "prove_s": round(self.proof.prove_s, 3),
                "proof_bytes": 256, "calldata_bytes": len(self.calldata)}


def verifier_abi() -> list[dict[str, Any]]:
    from market.chain.compile import load_artifact

    return load_artifact("RoundVerifier")["abi"]


def prove_round(
    contract: MarketContract,
    snap: RoundSnapshot,
    outcome: RoundOutcome,
    model_cid: str,
    receipt_cid: str,
    progress: Callable[[str], None] | None = None,
) -> RoundProof:
    """The proof bytes for ``postResult`` (an empty proof when no update was valid: nothing to prove)."""
    task_id, round_, verifier, submissions = snap.task_id, snap.round, snap.info.verifier, list(snap.submissions)
    inputs = outcome.proof
    if inputs is None:
        raise ValueError("the round was not computed as a provable round (its spec names no proof system)")
    decision = outcome.decision
    prev = snap.digest_before
    subs = [(s.index, cid_digest(s.cid), s.commitment) for s in sorted(submissions, key=lambda s: s.seq)]
    mask = inputs.rejected_mask([s.trainer for s in sorted(submissions, key=lambda s: s.index)])
    if decision is None:  # no valid update: nothing a proof could back, and the verifier refuses the claim
        raise MarketError(f"task {task_id} round {round_}: every update was rejected; a proof task cannot settle that "
                          "by a result (no proof backs it): the round goes to the fallback, which pays only updates "
                          "proved available")
    n = decision.n
    rv = contract.chain.w3.eth.contract(address=Web3.to_checksum_address(verifier), abi=verifier_abi())
    if int(contract.chain.call(rv.functions.sketchK())) != inputs.k:
        raise ConfigError(f"task {task_id}'s verifier checks sketches of another length than the spec's proof.sketch_k")
    if int(str(contract.chain.call(rv.functions.verifierFor(n))), 16) == 0:
        raise ConfigError(f"task {task_id}'s verifier has no circuit for {n} valid updates; the round can only be settled by the fallback")
    binding = zs.binding(contract.chain.chain_id, contract.address, Web3.to_checksum_address(verifier), task_id, round_,
                         cid_digest(model_cid), cid_digest(receipt_cid))
    settlement = zs.settle(decision, inputs.utilities, binding)
    shape = Shape(n, inputs.k, decision.f)
    built = build(shape, progress)
    if progress:
        progress(f"proving round {round_} ({shape.name}, {built.meta['constraints']} constraints)")
    proof = prove(built, settlement.witness)
    if proof.public != settlement.public:
        raise AssertionError("snarkjs's public signals differ from the statement's")
    util_hash = settlement.public[-1]
    return RoundProof(encode_round_proof(proof, prev, subs, mask, util_hash), proof, shape, int(built.meta["constraints"]),
                      settlement.public)
