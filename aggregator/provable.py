"""The round a proof task runs, as ``zk/round.circom`` proves it (pure: no chain, no store).

Multi-Krum over the committed sketches of the valid updates (``proof.sketch_f`` left out of the pay, 0 by default),
the model by ccdrop over the full updates, the pay as an unproven round of the default rule pays (the task's
valuation of the updates ccdrop kept, cumulative), encoded as the integer utilities of an additive game whose
cyclic-permutation Shapley values the circuit splits into largest-remainder basis points; the circuit's inputs come
back as :class:`market.receipt.ProofInputs` and the statement as ``RoundOutcome.decision``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence
from fractions import Fraction

from torch import Tensor

from aggregator.fedavg import next_state
from aggregator.outcome import RoundOutcome, payout_record, published_accuracy
from aggregator.robust import effective_f
from aggregator.robust_rule import robust_update, run_rule
from aggregator.validate import Published, validate_all
from aggregator.valuation import value_survivors
from market.payout import contribution_shares, cumulative_shares, cumulative_values, to_basis_points
from market.receipt import ProofInputs
from market.spec import TaskSpec
from market.zk import statement as zs

#: The rule a proof task's model comes from, run over every valid full update. The circuit's outlier rule sees
#: each update only through its committed sketch, a projection public before training, so an update can hide any
#: component in the projection's null space (the same sketch as an honest update; tests/attacks/test_null_space.py).
#: The round's model is this rule's aggregate of the valid updates (the unproven default rule: centered clipping
#: bounds what any one update does to it, and what it flags by evidence is dropped), so the proven round's model is
#: the one an unproven round of the default rule would publish, whatever the sketches show; and what it flags is
#: left out of the coalitions and the pay, as an unproven round leaves it out (an update flagged but kept in the
#: coalitions handed the marginal of repairing it to whichever honest trainer followed it in the base permutation:
#: 2-3x the others' pay, attacker pass). The model is not bound by the proof: a quorum of drawn members recomputes
#: it, and `market verify --validation` replays it.
FULL_RULE = "ccdrop"


def full_update_check(spec: TaskSpec, deltas: Sequence[Tensor]) -> tuple[Tensor | None, tuple[int, ...], dict[str, list[float]]]:
    """:data:`FULL_RULE` over ``deltas``, run as an unproven round runs its rule (:mod:`aggregator.robust_rule`, the
    task's ``f``): the model update, the indices it flags, and its per-update treatment (e.g. each clipping factor)."""
    decision, _ = run_rule(spec.robust.model_copy(update={"rule": FULL_RULE, "params": {}}), deltas)
    kept = [deltas[i] for i in decision.selected]
    update = robust_update(decision, kept, [1.0] * len(kept))
    details = {k: [float(x) for x in v] for k, v in decision.details.items()}
    return update, tuple(i for i in range(len(deltas)) if i not in decision.selected), details


def _targets(values: Sequence[float], paid: Sequence[bool]) -> list[int]:
    """The circuit values a split by ``values`` (the players' cumulative values; 0 for the slots that are not
    ``paid`` players) is proven with: the positive values' shares of their sum, exactly (``Fraction`` of the
    floats), in integers that add up to at most ``8191 * n - 3 * n`` (the most the circuit's 13-bit utilities hold:
    :func:`_carry`), a positive value at least 1; 0 for the rest, whom the split pays nothing alike. So the split
    is the unproven round's to within a unit of several thousand per trainer, whatever the values' scale."""
    n = len(values)
    positive = [Fraction(v) if ok and v > 0 else Fraction(0) for v, ok in zip(values, paid)]
    total = sum(positive, Fraction(0))
    if total == 0:
        return [0] * n
    room = ((1 << zs.UTIL_BITS) - 1 - 3) * n
    return [max(1, math.floor(p / total * room)) if p > 0 else 0 for p in positive]


def _carry(n: int, perm: Sequence[int], paid: Sequence[bool], target: Sequence[int]) -> tuple[list[int], list[int]]:
    """The utilities the circuit proves, circuit order: the additive game whose cyclic-permutation Shapley value of
    each slot is its ``target`` (:func:`_targets`; a slot that is not a ``paid`` player: 0), and each slot's value
    (:func:`market.zk.statement.plus_additive_game` over a table of zeros).

    The circuit splits the pool over max(value, 0) of the sketch rule's survivors, or equally among them all when no
    value is positive; a survivor the model's rule flagged is paid nothing by the unproven rule, in that case too.
    So when no player's target is positive while a slot that is not a player exists, each player's value is made
    exactly 1, the others' 0: the equal split among the players, as an unproven round's. The values must add up to a
    multiple of ``n`` (the full coalition is shared by every rotation): the remainder (fewer than ``n`` units) is
    taken off a slot whose value is 0 when there is one, else one unit each off the largest targets. The targets
    add up to at most ``8189 * n``, so the game fits the circuit's 13-bit utilities.
    """
    if not all(paid) and not any(t > 0 for t, ok in zip(target, paid) if ok):
        target = [1 if ok else 0 for ok in paid]
    carry = list(target)
    rem = sum(carry) % n
    zero = [j for j in range(n) if target[j] == 0]
    if rem and zero:
        carry[zero[0]] -= rem
    for _ in range(0 if zero else rem):  # one unit at a time off the largest target (the lowest slot of a tie)
        carry[max(range(n), key=lambda j: (carry[j], -j))] -= 1
    return zs.plus_additive_game(n, perm, [0] * (2 + n * (n - 1)), carry)


def proven_split(spec: TaskSpec, slots: Sequence[str], perm: Sequence[int], players: Collection[str],
                 contributions: Mapping[str, float], prior: Mapping[str, float]) -> tuple[list[int], list[int]]:
    """The utilities the circuit proves and each slot's value (what it splits the pool by): the split an unproven
    round pays, by each player's cumulative value (``prior`` plus this round's ``contributions``) or this round's
    (``payout = "round"``); the valid ``slots`` that are not ``players`` are paid nothing."""
    on = cumulative_values(prior, contributions) if spec.valuation.payout == "cumulative" else contributions
    paid = [a in players for a in slots]
    return _carry(len(slots), perm, paid, _targets([on.get(a, 0.0) for a in slots], paid))


def proven_bps(addresses: Sequence[str], slots: Sequence[str], values: Sequence[int], survivors: Collection[str]) -> list[int]:
    """The basis points a proven round posts for ``addresses``: the survivors split by their slot's ``values`` (what
    the circuit splits the pool by, ``slots`` order). Rejected submitters are ineligible and the eligible keep their
    order, so this equals the circuit's split over the valid slots (market.zk.statement.settle asserts that when
    proving)."""
    value_of = dict(zip(slots, values))
    return to_basis_points([value_of.get(a, 0) for a in addresses], [a in survivors for a in addresses])


def provable_round(
    spec: TaskSpec,
    global_state: dict[str, Tensor],
    submissions: Sequence[tuple[str, bytes]],
    x_val: Tensor,
    y_val: Tensor,
    seed: int,
    digest: bytes,
    binders: Mapping[str, int],
    sketch_of: Mapping[str, Sequence[int]],
    earlier: Sequence[Published] = (),
    order: Mapping[str, int] | None = None,
    prior_values: Mapping[str, float] | None = None,
) -> RoundOutcome:
    """The round ``zk/round.circom`` proves: Multi-Krum over the sketches of the valid updates (slots in the given
    order, join order), the model by :data:`FULL_RULE` over the valid full updates, and the pay an unproven round of
    the default rule pays: the task's valuation (``prior_values``: the last receipt's cumulative values) of the
    sketch survivors :data:`FULL_RULE` kept, whose other updates are paid 0. The circuit proves the split of the
    values the published utilities give (:func:`_carry`), not the valuation itself."""

    addresses = tuple(a for a, _ in submissions)
    t0 = time.perf_counter()
    valid = validate_all(spec, global_state, submissions, earlier, order)
    n = len(valid.addresses)
    f_eff = effective_f(n, spec.proof.sketch_f, "multikrum") if n else 0
    sketches = [list(sketch_of[a]) for a in valid.addresses]
    perm = zs.permutation(digest, n) if n else []
    survivors: tuple[str, ...] = ()
    decision = None
    if n:
        decision = zs.decide(sketches, [binders[a] for a in valid.addresses], f_eff, perm)
        survivors = tuple(valid.addresses[i] for i in decision.survivors)
    slot = {a: i for i, a in enumerate(valid.addresses)}
    update, flagged_at, details = full_update_check(spec, list(valid.deltas))
    flagged = tuple(valid.addresses[j] for j in flagged_at)  # left out of the model, the coalitions and the pay
    # the players of the round's coalition game: the sketch rule's survivors the full-update rule did not flag (as
    # an unproven round of the default rule values and pays exactly the updates its rule kept); the others are
    # null players, valued exactly 0, since a flagged update inside the coalitions handed the marginal of repairing
    # it to whichever honest trainer followed it in the base permutation: a lottery (attacker pass)
    players = tuple(a for a in survivors if a not in flagged)
    kept = [valid.deltas[slot[a]] for a in players]
    weights = [1.0] * len(players)  # equal weights: a claimed sample count decides nothing
    new_state = next_state(global_state, update)
    t1 = time.perf_counter()

    prior = {a: float(v) for a, v in (prior_values or {}).items()}
    util: list[int] = []
    values: list[int] = [0] * n
    this_round: dict[str, float] = {}
    utilities: dict[str, float] = {}
    before = after = None
    evaluations = 0
    method, record = "none", {}
    if decision is not None and players:
        # the players are valued as an unproven round of the default rule values the updates its rule kept (the
        # task's valuation, e.g. exact Shapley over gce); the utilities the circuit proves are the additive game whose
        # cyclic-permutation Shapley values are the players' cumulative values (the proof does not bind the
        # valuation: the panel's quorum recomputes it, `market verify --validation` replays it)
        valued = value_survivors(spec, global_state, players, kept, weights, x_val, y_val, seed)
        evaluations = valued.evaluations
        before, after = valued.accuracy_before, valued.accuracy_after
        this_round = dict(zip(players, valued.values))
        util, values = proven_split(spec, valid.addresses, perm, players, this_round, prior)
        utilities = dict(valued.utilities)
        method, record = valued.method, valued.record
    elif decision is not None:  # every survivor flagged (the full-update rule flags fewer than half: not reached)
        raise ValueError("every update the sketch rule kept was flagged by the model's rule: nobody to value")
    published = published_accuracy(spec, new_state, x_val, y_val)
    t2 = time.perf_counter()

    eligible = [a in survivors for a in addresses]
    bps = proven_bps(addresses, valid.addresses, values, survivors)
    if any(b for a, b in zip(addresses, bps) if a in flagged):  # _carry rules this out; never post such a split
        raise AssertionError(f"a flagged update would be paid: {dict(zip(addresses, bps))}")
    flat_values = [float(this_round.get(a, 0.0)) for a in addresses]  # 0 for the updates the round did not value
    outliers = tuple(a for a in valid.addresses if a not in survivors)
    # the record the next round carries, as an unproven round's: this round's values added (0 for an update flagged
    # by the full-update rule or left out by the sketch rule, as an unproven round adds 0 for its outliers)
    cumulative = cumulative_values(prior, dict(zip(addresses, flat_values)))
    robust = {
        "rule": "multikrum",
        "applied": "multikrum-sketch" if f_eff else "mean",
        "f": spec.proof.sketch_f,
        "f_effective": f_eff,
        "full_rule_f": spec.robust.f,
        "scores": {a: float(decision.scores[i]) for i, a in enumerate(valid.addresses)} if decision else {},
        # the model: FULL_RULE's aggregate of the valid full updates (what it flags is left out of the pay too)
        "update": FULL_RULE,
        "full_rule_flagged": list(flagged),
        "treatment": {a: {"outlier": a in outliers, "flagged_by_full_rule": a in flagged,
                          **{k: v[slot[a]] for k, v in details.items()}} for a in valid.addresses},
    }
    proof = ProofInputs(
        system=spec.proof.system,
        slots=list(valid.addresses),
        n=n,
        k=spec.proof.sketch_k,
        f=f_eff,
        sketches=[list(s) for s in sketches],
        binders=[str(binders[a]) for a in valid.addresses],
        perm=list(perm),
        outlier_slots=list(decision.outliers) if decision else [],
        utilities=util,
        values=list(values),
    )
    return RoundOutcome(
        new_state=new_state,
        addresses=addresses,
        samples=valid.samples,
        rejected=valid.rejected,
        copies=tuple(sorted(valid.copies)),
        outliers=outliers,
        survivors=survivors,
        robust=robust,
        valuation=method,
        seed=seed,
        contributions=dict(zip(addresses, flat_values)),
        shares=dict(zip(addresses, contribution_shares(flat_values, eligible))),
        bps=tuple(bps),
        utilities=utilities,
        evaluations=evaluations,
        accuracy_before=before,
        accuracy_after=after,
        accuracy_model=published,
        timings={"aggregate": t1 - t0, "valuation": t2 - t1},
        valuation_record={**record, "proven": "cyclic-shapley", "permutation": list(perm),
                          # each valid slot's value in the circuit: what the pool is split by, in integers
                          "proven_values": dict(zip(valid.addresses, values))},
        cumulative_values=cumulative,
        cumulative_shares=cumulative_shares(cumulative),
        payout=payout_record(spec, method),
        proof=proof,
        decision=decision,
    )
