"""Deploy a task's RoundVerifier: one Groth16 verifier per round size it must cover."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from market.chain.client import Chain
from market.spec import TaskSpec
from market.zk.setup import Shape, build
from market.zk.statement import provable_f, public_input_count


def shapes_for(spec: TaskSpec, sizes: Iterable[int]) -> list[Shape]:
    """The circuit shape of each round size (valid submitters), ``f`` lowered as the round lowers it."""
    return [Shape(n, spec.proof.sketch_k, provable_f(n, spec.proof.sketch_f)) for n in sorted(set(sizes)) if n >= 2]


def selector(n: int) -> bytes:
    return keccak(text=f"verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[{public_input_count(n)}])")[:4]


def deploy_round_verifier(
    chain: Chain, account: LocalAccount, spec: TaskSpec, sizes: Iterable[int],
    progress: Callable[[str], None] | None = None,
) -> str:
    """Build (or reuse) each shape's setup, deploy its Groth16 verifier and a RoundVerifier over them."""
    from market.chain.compile import load_artifact

    shapes = shapes_for(spec, sizes)
    # the largest first: its powers of tau serve the smaller shapes too (else a fresh machine builds two)
    built = {shape: build(shape, progress) for shape in sorted(shapes, key=lambda s: -s.n)}
    verifiers = [chain.deploy(account, built[shape].verifier) for shape in shapes]
    # RoundVerifier derives each size's selector itself (see ``selector``, which tests check it against)
    return chain.deploy(account, load_artifact("RoundVerifier"), spec.proof.sketch_k, [s.n for s in shapes], verifiers)
