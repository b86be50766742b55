"""Protocol-level values both roles compute identically (no I/O).

* The submission commitment: ``Poseidon(packed fixed-point sketch of the update,
  binder)`` (:mod:`market.zk.sketch`), the binder being
  ``keccak256(abi.encode(taskId, round, trainer, cidDigest)) mod p``.  It commits
  the trainer to a public random projection of its update (what the round proof's
  outlier rule works on) and binds it to its submitter, task and round, so a
  trainer cannot claim another trainer's commitment as its own.
"""

from __future__ import annotations

from market.errors import MalformedUpdateError
from market.spec import TaskSpec
from market.zk.sketch import binder, commitment_bytes, sketch_blob, sketch_seed

COMMITMENT_VERSION = "poseidon-sketch-v1"


def update_sketch(spec: TaskSpec, task_id: int, blob: bytes) -> list[int]:
    """The task's sketch of an update blob (raises MalformedUpdateError for bytes that are not an update)."""
    try:
        return sketch_blob(blob, sketch_seed(task_id), spec.proof.sketch_k, spec.proof.sketch_scale)
    except ValueError as exc:
        raise MalformedUpdateError(str(exc)) from None


def submission_commitment(spec: TaskSpec, task_id: int, round_: int, trainer: str, cid: str, blob: bytes) -> bytes:
    """The 32-byte commitment a trainer posts with the CID of ``blob``."""
    return commitment_bytes(update_sketch(spec, task_id, blob), binder(task_id, round_, trainer, cid))
