"""Verifiable rounds: sketch commitments, the round circuit's statement, Groth16 setup and proving.

* :mod:`market.zk.poseidon` -- the Poseidon hash circomlib's circuits compute (BN254).
* :mod:`market.zk.sketch` -- the fixed-point random-projection sketch a trainer commits to.
* :mod:`market.zk.statement` -- the round circuit's statement in plain integers: outliers,
  values, basis points, public inputs and the witness (``zk/round.circom`` checks the same).
* :mod:`market.zk.setup` -- development trusted setup (powers of tau, proving keys) built once
  per circuit shape and cached; NOT for production.
* :mod:`market.zk.prover` -- witness, proof and the calldata the on-chain verifier takes.
"""
