"""The round circuit's statement in plain integers (``zk/round.circom`` checks exactly this).

Given the valid submitters' sketches (join order), the task's ``f`` and the
round's public seed, :func:`decide` computes the outliers (Multi-Krum over
sketches), asks for the prefix utilities of the cyclic-permutation Shapley
estimator, and :func:`settle` turns them into values and basis points.  It
also returns the circuit's witness, so the prover and this module can never
disagree about what is being proven.

The estimator: one base permutation ``perm`` of the n valid slots (drawn on
chain from the round seed, the hash of the block that closed the reveal window, so
no party of the round chooses it) and its n rotations; in rotation ``r`` the slot at
position ``t`` is ``perm[(r + t) % n]`` and its marginal is
``U(prefix t+1) - U(prefix t)``.  Each slot is thus valued once at every
position (a stratified Monte Carlo Shapley with n permutations, n·(n-1)+2
distinct prefix utilities), unbiased over the random base permutation.
Utilities are 13-bit integers. The circuit reads them as coalition utilities; a proof
task publishes the additive game (:func:`plus_additive_game`) whose values are the pay the
default rule computes (``aggregator.provable``), so the proof binds the split, and the
panel's quorum the valuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak

from market.payout import to_basis_points
from market.zk.poseidon import P, pack, poseidon_chain
from market.zk.sketch import SKETCH_BITS, commitment, offset

UTIL_BITS = 13
UTIL_SCALE = 4096
BPS_BITS = 14
BPS_PER_ELEMENT = 18


def bits_for(n: int) -> int:
    """Smallest b >= 1 with 2^b >= n (``bitsFor`` in the circuit)."""
    b = 1
    while (1 << b) < n:
        b += 1
    return b


def permutation(digest: bytes, n: int) -> list[int]:
    """Fisher-Yates from the round seed: ``j = keccak(seed, i) mod (i + 1)`` (as on chain)."""
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [digest, i])), "big") % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def pack_permutation(perm: Sequence[int]) -> int:
    pb = bits_for(len(perm))
    return sum(v << (pb * p) for p, v in enumerate(perm))


def pack_bps(bps: Sequence[int]) -> list[int]:
    out = []
    for start in range(0, len(bps), BPS_PER_ELEMENT):
        out.append(sum(int(b) << (BPS_BITS * j) for j, b in enumerate(bps[start:start + BPS_PER_ELEMENT])))
    return out


def binding(chain_id: int, market: str, verifier: str, task_id: int, round_: int, model_digest: bytes, receipt_digest: bytes) -> int:
    """keccak256(abi.encode(chainid, market, verifier, taskId, round, modelCid, receiptCid)) mod p."""
    h = keccak(abi_encode(
        ["uint256", "address", "address", "uint256", "uint256", "bytes32", "bytes32"],
        [chain_id, market, verifier, task_id, round_, model_digest, receipt_digest],
    ))
    return int.from_bytes(h, "big") % P


def utility_hash(utilities: Sequence[int]) -> int:
    return poseidon_chain(pack(list(utilities), UTIL_BITS))


@dataclass(frozen=True)
class Decision:
    """Outliers and what the valuation must evaluate; ``coalitions`` lists slot sets in circuit order."""

    n: int
    f: int
    sketches: tuple[tuple[int, ...], ...]
    binders: tuple[int, ...]
    perm: tuple[int, ...]
    outliers: tuple[int, ...]  # slots
    scores: tuple[int, ...]
    dist: tuple[tuple[int, ...], ...]
    coalitions: tuple[frozenset[int], ...]  # utility i is U(coalitions[i] minus outliers)

    @property
    def survivors(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n) if i not in self.outliers)


def krum_neighbours(n: int, f: int) -> int:
    return n - f - 1


def decide(sketches: Sequence[Sequence[int]], binders: Sequence[int], f: int, perm: Sequence[int]) -> Decision:
    n = len(sketches)
    if len(binders) != n:
        raise ValueError("one binder per sketch")
    if n < 1 or sorted(perm) != list(range(n)):
        raise ValueError("perm must be a permutation of the slots")
    kn = krum_neighbours(n, f)
    if f < 0 or kn < 0 or f >= n:
        raise ValueError(f"Multi-Krum over sketches needs 0 <= f < n - 1 (n={n}, f={f})")
    dist = [[sum((a - b) ** 2 for a, b in zip(sketches[i], sketches[j])) for j in range(n)] for i in range(n)]
    scores = []
    for i in range(n):
        others = sorted((dist[i][j], j) for j in range(n) if j != i)
        scores.append(sum(d for d, _ in others[:kn]))
    ranked = sorted(range(n), key=lambda i: (-scores[i], i))
    outliers = tuple(sorted(ranked[:f]))
    coalitions = [frozenset(), frozenset(range(n))]
    for r in range(n):
        order = [perm[(r + t) % n] for t in range(n)]
        for t in range(1, n):
            coalitions.append(frozenset(order[:t]))
    return Decision(n, f, tuple(tuple(s) for s in sketches), tuple(binders), tuple(perm), outliers, tuple(scores),
                    tuple(tuple(row) for row in dist), tuple(coalitions))


def slot_values(n: int, perm: Sequence[int], util: Sequence[int]) -> list[int]:
    """Each slot's sum of marginals over the n rotations (integer units of 1/4096)."""
    def u(r: int, t: int) -> int:
        if t == 0:
            return util[0]
        if t == n:
            return util[1]
        return util[2 + r * (n - 1) + t - 1]

    phi = [sum(u(r, (p - r) % n + 1) - u(r, (p - r) % n) for r in range(n)) for p in range(n)]
    values = [0] * n
    for p, slot in enumerate(perm):
        values[slot] = phi[p]
    return values


def plus_additive_game(n: int, perm: Sequence[int], util: Sequence[int], carry: Sequence[int]) -> tuple[list[int], list[int]]:
    """``util`` (circuit order) plus an additive game: the circuit's value of slot ``j`` over the result is its
    value over ``util`` plus ``carried[j]`` (returned: ``carry``, exactly when ``n`` divides its sum).

    Shapley values are linear in the game, and an additive game (``v(S) = sum of a_j over S``) gives each player
    exactly its ``a_j``. So rotation ``r``'s prefix ``t`` gets ``sum of a[j][r]`` over its first ``t`` slots, the
    full coalition ``D``, the empty one 0: a slot's marginal in rotation ``r`` gains ``a[j][r]``, its value
    ``sum_r a[j][r]``. The full coalition is shared by every rotation, so each rotation's ``a`` must add up to
    the same ``D``: ``a[j][r] = carry_j // n`` plus one in ``carry_j mod n`` rotations, laid out round-robin
    over the slots, which fills every rotation alike only when ``n`` divides the sum of the carries; so the
    ``sum mod n`` remainder units are first taken from the largest carries, one each (ties to the lower slot).
    Then every entry is shifted by one constant (marginals are differences), so the least is 0. Integers
    throughout; a ValueError when the result does not fit the circuit's ``UTIL_BITS``.
    """
    if len(carry) != n or len(util) != 2 + n * (n - 1) or sorted(perm) != list(range(n)):
        raise ValueError(f"plus_additive_game needs {n} carries, {2 + n * (n - 1)} utilities and a permutation of {n} slots")
    x = [int(v) for v in carry]
    rem = sum(x) % n
    carried = list(x)
    for j in sorted(range(n), key=lambda j: (-x[j], j))[:rem]:
        carried[j] -= 1
    d = sum(carried) // n
    a = [[c // n] * n for c in carried]
    unit = 0
    for j, c in enumerate(carried):
        for _ in range(c % n):
            a[j][unit % n] += 1
            unit += 1
    out = [util[0], util[1] + d]
    for r in range(n):
        order = [perm[(r + t) % n] for t in range(n)]
        offset = 0
        for t in range(1, n):
            offset += a[order[t - 1]][r]
            out.append(util[2 + r * (n - 1) + t - 1] + offset)
    low = min(out)
    out = [u - low for u in out]
    if max(out) >= 1 << UTIL_BITS:
        raise ValueError(f"the carried utilities span {max(out)} units, more than the circuit's {UTIL_BITS} bits")
    return out, carried


@dataclass(frozen=True)
class Settlement:
    values: tuple[int, ...]
    bps: tuple[int, ...]
    public: tuple[int, ...]  # the circuit's public inputs, in order
    witness: dict[str, Any]  # snarkjs input.json


def settle(decision: Decision, util: Sequence[int], binding_value: int) -> Settlement:
    """Values, basis points, public inputs and the full witness for ``util`` (circuit order)."""
    n, f = decision.n, decision.f
    if len(util) != len(decision.coalitions):
        raise ValueError(f"expected {len(decision.coalitions)} utilities, got {len(util)}")
    if any(not 0 <= x < 1 << UTIL_BITS for x in util):
        raise ValueError(f"utilities must be integers in [0, {(1 << UTIL_BITS) - 1}]")
    values = slot_values(n, decision.perm, util)
    out = [1 if i in decision.outliers else 0 for i in range(n)]
    bps = to_basis_points(values, [not o for o in out])
    # the circuit's helpers
    w = [max(v, 0) if not o else 0 for v, o in zip(values, out)]
    total = sum(w)
    zero_inv = pow(total, -1, P) if total else 0
    weights = w if total else [0 if o else 1 for o in out]
    W = sum(weights)
    q = [10_000 * x // W for x in weights]
    r = [10_000 * x % W for x in weights]
    pb = bits_for(n)
    keys = [r[i] * (1 << pb) + (n - 1 - i) for i in range(n)]
    leftover = 10_000 - sum(q)
    ranked = sorted(range(n), key=lambda i: -keys[i])
    bonus = [0] * n
    for i in ranked[:leftover]:
        bonus[i] = 1
    rest = [keys[i] for i in range(n) if not bonus[i]]
    bonus_t = max(rest) if rest else min(keys) - 1
    mine = [qi + bi for qi, bi in zip(q, bonus)]
    if mine != list(bps):
        raise AssertionError(f"circuit payout {mine} differs from market/payout.py {bps}")
    kn = krum_neighbours(n, f)
    sel = [[0] * n for _ in range(n)]
    tau = []
    for i in range(n):
        others = sorted((decision.dist[i][j], j) for j in range(n) if j != i)
        for _, j in others[:kn]:
            sel[i][j] = 1
        tau.append(others[kn - 1][0] if kn > 0 else (others[0][0] if others else 0))
    out_t = min(decision.scores[i] for i in decision.outliers) if decision.outliers else max(decision.scores)
    perm_hot = [[1 if decision.perm[p] == i else 0 for i in range(n)] for p in range(n)]
    commits = [commitment(list(s), b) for s, b in zip(decision.sketches, decision.binders)]
    u_hash = utility_hash(util)
    public = (binding_value, pack_permutation(decision.perm), *commits, *pack_bps(bps), u_hash)
    fe = lambda x: str(x % P)  # noqa: E731 - negative helpers are field elements
    witness = {
        "binding": fe(binding_value),
        "perm": fe(pack_permutation(decision.perm)),
        "commit": [fe(c) for c in commits],
        "bpsPacked": [fe(x) for x in pack_bps(bps)],
        "utilHash": fe(u_hash),
        "sketch": [[fe(v) for v in offset(list(s))] for s in decision.sketches],
        "binder": [fe(b) for b in decision.binders],
        "util": [fe(x) for x in util],
        "sel": [[fe(x) for x in row] for row in sel],
        "tau": [fe(x) for x in tau],
        "out": [fe(x) for x in out],
        "outT": fe(out_t),
        "permHot": [[fe(x) for x in row] for row in perm_hot],
        "zeroInv": fe(zero_inv),
        "q": [fe(x) for x in q],
        "r": [fe(x) for x in r],
        "bonus": [fe(x) for x in bonus],
        "bonusT": fe(bonus_t),
    }
    return Settlement(tuple(values), tuple(bps), public, witness)


def public_input_count(n: int) -> int:
    return 3 + n + len(pack_bps([0] * n))


__all__ = [
    "Decision", "Settlement", "SKETCH_BITS", "UTIL_BITS", "binding", "bits_for", "decide", "pack_bps",
    "pack_permutation", "permutation", "public_input_count", "settle", "slot_values",
    "plus_additive_game", "utility_hash",
]


def provable_f(n: int, f: int) -> int:
    """The ``f`` a proven round of ``n`` valid updates uses: Multi-Krum needs ``n > 2f + 2``, so the
    largest ``f' <= f`` with ``n >= 2f' + 3`` (0 when none).  The aggregator's robust registry applies
    the same precondition (``effective_f(n, f, "multikrum")``); a test holds the two together."""
    if n < 0 or f < 0:
        raise ValueError(f"provable_f needs n, f >= 0 (got n={n}, f={f})")
    return max(0, min(f, (n - 3) // 2))
