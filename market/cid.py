"""Content identifiers: CIDv1, raw codec, sha2-256, base32 (``bafkrei…``).

This is the CID Kubo/helia give single-block content added with
``cid-version=1, raw-leaves=true`` (multiformats spec: https://github.com/multiformats/cid).
On chain only the 32-byte sha2-256 digest is stored; :func:`cid_from_digest`
turns it back into the CID string.
"""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from market.errors import CidMismatchError, ConfigError


def compute_cid(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256) of ``data`` in base32."""
    digest = multihash.digest(data, "sha2-256")
    return str(CID("base32", 1, "raw", digest))


def parse_cid(cid: str) -> CID:
    """Parse any CID string; a one-line error when it is not a CID."""
    try:
        return CID.decode(cid)
    except Exception as exc:  # multiformats raises several types
        raise ConfigError(f"not a valid CID: {cid!r} ({exc})") from None


def normalize_cid(cid: str) -> str:
    """Canonical base32 CIDv1 form of any CID string (e.g. ``zb2…`` → ``bafk…``)."""
    parsed = parse_cid(cid)
    return str(parsed.set(base="base32", version=1))


def cid_digest(cid: str) -> bytes:
    """The 32-byte sha2-256 digest inside a raw CID (what the contract stores)."""
    parsed = parse_cid(cid)
    if parsed.hashfun.name != "sha2-256" or parsed.codec.name != "raw":
        raise ConfigError(f"CID {cid} is not a raw sha2-256 CID")
    return bytes(parsed.raw_digest)


def cid_from_digest(digest: bytes) -> str:
    """Inverse of :func:`cid_digest`."""
    if len(digest) != 32:
        raise ConfigError("a sha2-256 digest has 32 bytes")
    mh = multihash.wrap(digest, "sha2-256")
    return str(CID("base32", 1, "raw", mh))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_blob(cid: str, data: bytes) -> bytes:
    """Raise :class:`CidMismatchError` unless ``data`` hashes to ``cid``."""
    actual = compute_cid(data)
    if actual != normalize_cid(cid):
        raise CidMismatchError(f"blob {cid} failed its hash check: its bytes hash to {actual}")
    return data
