"""The fixed-point sketch of an update that a trainer commits to on chain.

``sketch = clamp(round(scale * R @ delta))`` where ``R`` is a public ``k x d``
matrix of random signs (row ``j`` from PCG64 seeded with ``(seed, j)``, the
seed derived from the task id) and ``delta`` the update flattened in sorted
tensor-name order.  Everything is integer arithmetic after one rounding of
the float32 update to multiples of 2^-16, so the trainer and every verifier
compute the same integers on any machine.  Entries are signed
``SKETCH_BITS``-bit integers; the circuit takes them offset by ``2^(SKETCH_BITS-1)``.

The commitment is ``Poseidon(pack(offset sketch), binder)`` (the round circuit's
step 1), revealed as the ``commitment`` of ``reveal`` (and bound by the committed hash), where the binder is
``keccak256(abi.encode(taskId, round, trainer, cidDigest)) mod p``: a trainer that
re-posts another's CID and commitment is caught, as the binder names the other.  Random projections keep
pairwise distances to within a factor ``1 +- O(1/sqrt(k))`` (Johnson-Lindenstrauss),
which is what the provable outlier rule (Multi-Krum over sketches) needs.
Known limit: the projection is public before training, so an attacker can hide
a component in its null space, which the outlier rule cannot see; the proven round
therefore takes its model from the default robust rule over the full updates
(``aggregator.provable.FULL_RULE``), and `market verify` replays the full updates.
"""

from __future__ import annotations

import numpy as np
import torch
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from market.tensors import decode_state, flatten
from market.zk.poseidon import P, pack, poseidon

SKETCH_BITS = 12
SKETCH_MIN = -(1 << (SKETCH_BITS - 1))
SKETCH_MAX = (1 << (SKETCH_BITS - 1)) - 1
_FRAC_BITS = 16  # the update is rounded to multiples of 2^-16 first
_Q_LIMIT = 1 << 40  # |delta| beyond 2^24 is clamped (the norm check rejects such updates anyway)
_CHUNK = 1 << 20


def sketch_seed(task_id: int) -> int:
    """The public projection seed of a task."""
    return int.from_bytes(keccak(abi_encode(["string", "uint256"], ["poc-sketch-v1", task_id]))[:8], "big")


def _row_signs(seed: int, row: int, start: int, count: int) -> np.ndarray:
    """Bits (1 = +1, 0 = -1) of row ``row`` for columns ``start .. start+count`` (start a multiple of 64)."""
    gen = np.random.PCG64(np.random.SeedSequence([seed, row]))
    if start:
        gen.advance(start // 64)
    words = gen.random_raw((count + 63) // 64).astype("<u8")
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:count].astype(bool)


def sketch_vector(delta: torch.Tensor | np.ndarray, seed: int, k: int, scale: int) -> list[int]:
    """The signed integer sketch of a flat update."""
    x = delta.detach().cpu().double().numpy() if isinstance(delta, torch.Tensor) else np.asarray(delta, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("cannot sketch an update with NaN or Inf")
    q = np.clip(np.rint(x * (1 << _FRAC_BITS)), -_Q_LIMIT, _Q_LIMIT).astype(np.int64)
    d = q.size
    raw = [0] * k
    for start in range(0, d, _CHUNK):
        part = q[start:start + _CHUNK]
        total = int(part.sum())
        for j in range(k):
            plus = int(part[_row_signs(seed, j, start, part.size)].sum())
            raw[j] += 2 * plus - total  # sum of +q over + signs, -q over - signs
    half = 1 << (_FRAC_BITS - 1)
    return [max(SKETCH_MIN, min(SKETCH_MAX, (v * scale + half) >> _FRAC_BITS)) for v in raw]


def sketch_blob(blob: bytes, seed: int, k: int, scale: int) -> list[int]:
    """The sketch of an update blob (safetensors; the tensors in sorted-name order)."""
    tensors, _ = decode_state(blob)
    return sketch_vector(flatten(tensors), seed, k, scale)


def offset(sketch: list[int]) -> list[int]:
    """Sketch entries as the circuit takes them: non-negative ``SKETCH_BITS``-bit integers."""
    return [v - SKETCH_MIN for v in sketch]


def binder(task_id: int, round_: int, trainer: str, cid: str) -> int:
    """keccak256(abi.encode(taskId, round, trainer, cidDigest)) mod p."""
    from market.cid import cid_digest

    h = keccak(abi_encode(["uint256", "uint256", "address", "bytes32"],
                          [task_id, round_, to_checksum_address(trainer), cid_digest(cid)]))
    return int.from_bytes(h, "big") % P


def commitment(sketch: list[int], bind: int) -> int:
    """Poseidon over the packed offset sketch and the binder (a BN254 field element)."""
    return poseidon([*pack(offset(sketch), SKETCH_BITS), bind])


def commitment_bytes(sketch: list[int], bind: int) -> bytes:
    """The 32-byte on-chain form of :func:`commitment`."""
    return commitment(sketch, bind).to_bytes(32, "big")
