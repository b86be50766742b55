"""Update and model blobs are byte-identical across processes (their CIDs must not change)."""

from __future__ import annotations

import subprocess
import sys

ENCODE = (
    "import torch, hashlib; from market.tensors import encode_state;"
    "print(hashlib.sha256(encode_state({'b': torch.zeros(2), 'a': torch.ones(3)},"
    " {'kind': 'model', 'round': '1', 'samples': '5'})).hexdigest())"
)


def test_encoding_is_identical_in_separate_processes() -> None:
    digests = {
        subprocess.run([sys.executable, "-c", ENCODE], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"}).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(digests) == 1


def test_metadata_round_trips() -> None:
    import torch

    from market.tensors import decode_state, encode_state

    _, meta = decode_state(encode_state({"w": torch.ones(2)}, {"kind": "delta", "samples": "12"}))

    assert meta == {"kind": "delta", "samples": "12"}
