"""Protocol-level values both roles compute identically (no I/O).

* The submission commitment binds an update's CID to its submitter, task and
  round, so a trainer cannot claim another trainer's commitment as its own.
  (A later version commits to a fixed-point sketch of the update instead.)
* The global model blob for a round.
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3 import Web3

from market.cid import cid_digest

COMMITMENT_VERSION = "keccak-binding-v1"


def submission_commitment(task_id: int, round_: int, trainer: str, cid: str) -> bytes:
    """keccak256(abi.encode(taskId, round, trainer, cidDigest))."""
    return keccak(
        abi_encode(
            ["uint256", "uint256", "address", "bytes32"],
            [task_id, round_, Web3.to_checksum_address(trainer), cid_digest(cid)],
        )
    )
