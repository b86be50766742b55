"""Contribution valuation: Shapley values of the round's coalition utility.

- ``exact``: the Shapley value (Shapley 1953) by the subset-weight formula
  ``phi_i = sum_{S without i} |S|! (n-|S|-1)! / n! * (U(S + i) - U(S))``,
  each of the ``2^n`` coalitions evaluated once (feasible to n ~ 16).
- ``gtg``: GTG-Shapley (Liu, Chen, Yang, Zhou & Zhao 2022, "GTG-Shapley:
  Efficient and Accurate Participant Contribution Evaluation in Federated
  Learning", ACM TIST 13(4)), a truncated Monte-Carlo estimate: zero values
  when the round barely moved the utility (between-round truncation), stop a
  permutation once its prefix is within ``eps`` of ``U(N)`` (within-round
  truncation), guided sampling that puts each player first in turn, and a
  stop when the running average settles (relative L1 change per cycle of n
  permutations below ``convergence``) or after ``max_perms`` permutations.
- ``loo``: leave-one-out, ``U(N) - U(N without i)`` (a cheap baseline).

A utility is any callable on a frozenset of player indices; if it also has
``evaluate_many`` (as :class:`aggregator.utility.CoalitionUtility` does) the
coalitions are evaluated in batches.  Every estimator is deterministic given
its ``seed`` (a local ``numpy`` generator).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from market.errors import ConfigError
from market.spec import ValuationSpec

EXACT_LIMIT = 20  # 2^20 coalitions: beyond this, exact Shapley is not a sensible request


class Utility(Protocol):
    def __call__(self, coalition: frozenset[int]) -> float: ...


def _evaluate(utility: Utility, coalitions: Sequence[frozenset[int]]) -> list[float]:
    many = getattr(utility, "evaluate_many", None)
    if callable(many):
        return [float(u) for u in many(coalitions)]
    return [float(utility(c)) for c in coalitions]


def _members(mask: int, n: int) -> frozenset[int]:
    return frozenset(i for i in range(n) if mask >> i & 1)


def exact_shapley(n: int, utility: Utility) -> list[float]:
    """Exact Shapley values; evaluates all ``2^n`` coalitions once."""
    if n == 0:
        return []
    if n > EXACT_LIMIT:
        raise ConfigError(f"exact Shapley with n={n} needs 2^{n} evaluations; use valuation rule 'gtg'")
    masks = np.arange(1 << n, dtype=np.int64)
    u = np.array(_evaluate(utility, [_members(int(m), n) for m in masks]), dtype=np.float64)
    size = np.zeros(1 << n, dtype=np.int64)
    for i in range(n):
        size += (masks >> i) & 1
    weight = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    values = []
    for i in range(n):
        without = masks[((masks >> i) & 1) == 0]
        values.append(float(np.sum(weight[size[without]] * (u[without | (1 << i)] - u[without]))))
    return values


def gtg_shapley(
    n: int,
    utility: Utility,
    seed: int = 0,
    *,
    eps: float = 1e-3,
    max_perms: int = 500,
    convergence: float = 0.01,
    min_cycles: int = 2,
) -> list[float]:
    """GTG-Shapley estimate (Liu et al. 2022, Algorithm 1) with the truncation thresholds ``eps``."""
    if not eps >= 0 or max_perms < 1 or not convergence > 0 or min_cycles < 1:
        raise ConfigError("gtg: need eps >= 0, max_perms >= 1, convergence > 0, min_cycles >= 1")
    if n == 0:
        return []
    v_empty, v_all = _evaluate(utility, [frozenset(), frozenset(range(n))])
    phi = np.zeros(n, dtype=np.float64)
    if abs(v_all - v_empty) <= eps:  # between-round truncation
        return phi.tolist()
    rng = np.random.default_rng(seed % 2**64)  # any int seed, negative included
    t = 0
    previous = phi.copy()
    cycles = 0
    while t < max_perms:
        for first in range(n):  # guided sampling: each player leads one permutation per cycle
            rest = [i for i in range(n) if i != first]
            perm = [first] + [rest[j] for j in rng.permutation(n - 1)]
            t += 1
            v_prev, prefix = v_empty, frozenset[int]()
            for player in perm:
                prefix = prefix | {player}
                v_now = v_prev if abs(v_all - v_prev) < eps else float(utility(prefix))  # within-round truncation
                phi[player] += (v_now - v_prev - phi[player]) / t
                v_prev = v_now
            if t >= max_perms:
                break
        cycles += 1
        scale = float(np.abs(phi).sum())
        change = float(np.abs(phi - previous).sum()) / scale if scale > 0 else 0.0
        if cycles >= min_cycles and change < convergence:
            break
        previous = phi.copy()
    return phi.tolist()


def loo(n: int, utility: Utility) -> list[float]:
    """Leave-one-out values ``U(N) - U(N without i)``."""
    everyone = frozenset(range(n))
    u = _evaluate(utility, [everyone] + [everyone - {i} for i in range(n)])
    return [u[0] - u[1 + i] for i in range(n)]


VALUATIONS: dict[str, Callable[..., list[float]]] = {"exact": exact_shapley, "gtg": gtg_shapley, "loo": loo}


def choose_valuation(spec: ValuationSpec, n: int) -> str:
    """The estimator to run for ``n`` players: ``auto`` is exact up to ``spec.exact_max_n``, then GTG."""
    if spec.rule == "auto":
        return "exact" if n <= spec.exact_max_n else "gtg"
    if spec.rule not in VALUATIONS:
        raise ConfigError(f"unknown valuation rule {spec.rule!r}: use auto or one of {', '.join(sorted(VALUATIONS))}")
    if spec.rule == "exact" and n > EXACT_LIMIT:
        raise ConfigError(f"valuation 'exact' with {n} trainers is infeasible; use 'gtg' or 'auto'")
    return spec.rule


def _keyword_params(fn: Callable[..., list[float]]) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def run_valuation(name: str, n: int, utility: Utility, seed: int, params: dict[str, Any] | None = None) -> list[float]:
    """Run the estimator ``name`` with the ``params`` it accepts.

    ``params`` come from the task spec, which may name GTG's settings under
    rule ``auto`` even when the round is small enough for ``exact``; so each
    estimator takes the parameters it knows, and a name no estimator knows is
    a :class:`ConfigError` (a typo should not be silently ignored).
    """
    if name not in VALUATIONS:
        raise ConfigError(f"unknown valuation rule {name!r}: use one of {', '.join(sorted(VALUATIONS))}")
    params = dict(params or {})
    known = set().union(*(_keyword_params(f) for f in VALUATIONS.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"valuation: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    fn = VALUATIONS[name]
    mine = {k: v for k, v in params.items() if k in _keyword_params(fn)}
    if "seed" in inspect.signature(fn).parameters:
        return fn(n, utility, seed, **mine)
    return fn(n, utility, **mine)
