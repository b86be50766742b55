"""Coalition utility: how good the model would be if only a coalition had contributed.

Data-Shapley-style valuation in federated learning (Song et al. 2019,
"Profit Allocation for Federated Learning", IEEE BigData; Liu et al. 2022,
GTG-Shapley) scores a coalition ``S`` of trainers by a validation score of
the model the round would have produced from their updates alone,
reconstructed without retraining:

    U(S) = score(theta_0 + sum_{i in S} w_i delta_i / sum_{i in S} w_i),
    U({}) = score(theta_0),

with ``w_i`` the FedAvg weights (a round passes equal ones) -- the ``fedavg``
utility, the default.  The score (``metric``, ``ValuationSpec.metric``) is the
validation ``accuracy``, minus the mean ``cross_entropy``,
``-(1/V) sum_v (logsumexp(z_v) - z_{v, y_v})`` in nats, or minus the mean
generalized cross-entropy ``gce``, ``(1 - p_y^q) / q`` (higher is better;
unlike accuracy both still move when an update changes no prediction).  The
``partial`` utility (a named option, ``ValuationSpec.utility``) scores ``S``
by its part of the round's actual update instead,

    U(S) = score(theta_0 + sum_{i in S} w_i delta_i / sum_{all j} w_j),

which has the same ``U({})`` and ``U(N)`` but makes a zero update an exact
null player: under ``fedavg`` a zero update shrinks the coalition's step,
which after convergence can raise accuracy and so earn a free rider a large
share of a round.  Parameters and logits are
float64 and sums run over players in index order, so a coalition's value
does not depend on which batch it was evaluated in.  (The published model is
float32, so ``U(N)`` may differ from its accuracy by a validation sample
whose two top logits tie to within float32 rounding.)  A cross-entropy table
computed in batches equals the one-at-a-time values to float64 rounding
(~1e-15 relative), not bit for bit: its sums run in another order.

For logistic regression the logits are linear in the parameters, so each
player's logit contribution ``x @ dW_i^T + db_i`` is computed once and a
coalition costs a weighted sum of ``[V, C]`` matrices instead of a forward
pass: the same numbers, much faster.

:meth:`CoalitionUtility.table` evaluates all ``2^n`` coalitions at once with
the batched methods of :mod:`aggregator.valuation.batched` (``linear`` for logreg,
``mlp`` for the MLP, ``vmap`` for any other model, each for either metric;
``fast=False`` keeps the one-coalition-at-a-time path, the baseline they are
measured against).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from aggregator.valuation.batched import (
    GCE_Q,
    METRICS,
    MLPTerms,
    linear_ce_table,
    linear_table,
    mlp_ce_table,
    mlp_table,
    naive_table,
    sample_block,
    score,
    torch_threads,
    vmap_table,
)
from market.errors import ConfigError
from market.models import MLP, build_model
from market.spec import TaskSpec
from market.tensors import flatten, unflatten

Coalition = Iterable[int]
_CHUNK = 512
#: ``fedavg``: U(S) = the score of the FedAvg of S's updates (the default; the issue's definition).
#: ``partial``: U(S) = the score of theta_0 + sum_{i in S} w_i delta_i / W_N, S's part of the round's
#: actual update -- a zero update is then exactly a null player (Shapley value 0).
UTILITIES = ("fedavg", "partial")


class CoalitionUtility:
    """``U(S)`` for coalitions of the ``n`` players whose flat ``deltas`` are given; each ``S`` is computed once."""

    def __init__(
        self,
        spec: TaskSpec,
        global_state: dict[str, Tensor],
        deltas: Sequence[Tensor],
        weights: Sequence[float],
        x_val: Tensor,
        y_val: Tensor,
        fast: bool | None = None,
        utility: str = "fedavg",
        threads: int | None = 1,
        metric: str = "accuracy",
    ) -> None:
        """``threads``: torch threads for the evaluations (None = the process setting); one by default because
        on a shared 2-core machine two OpenMP threads were measured up to 100x slower (see
        :func:`aggregator.valuation.batched.torch_threads`).  ``metric``: ``accuracy``, ``cross_entropy`` or ``gce``
        (``U`` is then minus the mean (generalized) cross-entropy); a round passes its spec's ``valuation.metric``."""
        if utility not in UTILITIES:
            raise ConfigError(f"unknown coalition utility {utility!r}: use one of {', '.join(UTILITIES)}")
        if metric not in METRICS:
            raise ConfigError(f"unknown utility metric {metric!r}: use one of {', '.join(METRICS)}")
        if len(deltas) != len(weights):
            raise ValueError(f"{len(deltas)} deltas but {len(weights)} weights")
        if any(not w > 0 for w in weights):
            raise ValueError("coalition weights (sample counts) must be positive")
        self.n = len(deltas)
        self.evaluations = 0
        regression = spec.data.regression
        self.fast = spec.model.arch == "logreg" and not regression if fast is None else fast
        self.naive = fast is False  # one coalition model at a time, for tables too
        self.utility = utility
        self.metric = metric
        self.threads = threads
        if self.fast and (spec.model.arch != "logreg" or regression):
            raise ConfigError(f"the fast utility path needs a logreg classification model, not {spec.model.arch} "
                              f"{spec.data.kind}")
        if regression != (metric == "r2"):
            raise ConfigError(f"a {spec.data.kind} task's coalitions are not scored by {metric!r}" +
                              (": use r2" if regression else ""))
        self.regression = regression
        self._cache: dict[frozenset[int], float] = {}
        self._table: np.ndarray | None = None
        self._w = torch.tensor([float(w) for w in weights], dtype=torch.float64)
        self._template = OrderedDict((k, v.to(torch.float64)) for k, v in sorted(global_state.items()))
        self._theta0 = flatten(global_state).to(torch.float64)
        d = self._theta0.numel()
        self._deltas = torch.stack([v.to(torch.float64).reshape(-1) for v in deltas]) if deltas else torch.zeros(0, d)
        if self._deltas.shape[1] != d:
            raise ValueError(f"deltas have {self._deltas.shape[1]} values, the model has {d}")
        self._x = x_val.to(torch.float64)
        self._y = y_val.to(torch.float64) if regression else y_val.to(torch.int64)
        self._net = build_model(spec.model, spec.data).to(torch.float64).eval()
        self._values = spec.model.summary(spec.data).values  # per sample: bounds the samples and models of one forward
        self._block = sample_block(self._values)
        if self.fast:
            self._logits0 = self._linear_logits(self._theta0)
            self._contrib = torch.stack([self._linear_logits(v) for v in self._deltas]) if deltas else None

    def _linear_logits(self, theta: Tensor) -> Tensor:
        state = unflatten(theta, self._template)
        return self._x @ state["linear.weight"].T + state["linear.bias"]

    def _weights_of(self, coalition: frozenset[int]) -> Tensor:
        a = torch.zeros(self.n, dtype=torch.float64)
        if coalition:
            idx = torch.tensor(sorted(coalition))
            a[idx] = self._w[idx] / (self._w[idx].sum() if self.utility == "fedavg" else self._w.sum())
        return a

    @torch.no_grad()
    def _evaluate(self, keys: list[frozenset[int]], metric: str | None = None) -> list[float]:
        metric = metric or self.metric
        out: list[float] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            a = torch.stack([self._weights_of(k) for k in chunk])  # [k, n]
            if self.fast:
                logits = self._logits0.expand(len(chunk), -1, -1).clone()
                for j in range(self.n):  # index order: batch-invariant sums
                    logits += a[:, j, None, None] * self._contrib[j]  # type: ignore[index]
                out.extend(float(u) for u in score(logits, self._y, metric))
            else:
                for row in a:
                    theta = self._theta0.clone()
                    for j in range(self.n):
                        theta += row[j] * self._deltas[j]
                    self._net.load_state_dict(unflatten(theta, self._template))
                    logits = torch.cat([self._net(self._x[b : b + self._block]) for b in range(0, len(self._x), self._block)])
                    out.append(float(score(logits, self._y, metric)))
        return out

    @torch.no_grad()
    def _batched_table(self) -> np.ndarray:
        fedavg, metric = self.utility == "fedavg", self.metric
        w = self._w if fedavg else self._w / self._w.sum()  # partial: the round's FedAvg coefficients
        if self.fast:  # logreg: logits affine in the parameters
            assert self._contrib is not None
            if fedavg:  # sum of w_i * (logits of trainer i's own model), up to the factor 1 / W_S
                own = w[:, None, None] * (self._logits0[None] + self._contrib)
                if metric == "accuracy":
                    return linear_table(own, self._y, empty=self._logits0).numpy()
                # cross-entropy and gce need the logits themselves: the factor 1 / W_S too
                q = GCE_Q if metric == "gce" else None
                return linear_ce_table(own, self._y, empty=self._logits0, weights=self._w, q=q).numpy()
            if metric == "gce":  # no subset-sum shortcut: every coalition's logits, in chunks of _CHUNK
                return np.array(self._evaluate([frozenset(i for i in range(self.n) if m >> i & 1) for m in range(1 << self.n)]))
            table = linear_ce_table if metric == "cross_entropy" else linear_table
            return table(w[:, None, None] * self._contrib, self._y, offset=self._logits0).numpy()
        if isinstance(self._net, MLP) and metric in ("accuracy", "cross_entropy"):
            players, offset = self._mlp_terms(w, fedavg)
            empty = self._forward(self._theta0) if fedavg else None
            if metric == "cross_entropy":
                return mlp_ce_table(players, self._y, offset, empty=empty).numpy()
            return mlp_table(players, self._y, offset, empty=empty, weights=self._w).numpy()
        return vmap_table(
            self._net, self._template, self._theta0, self._deltas, w, self._x, self._y, normalize=fedavg, metric=metric,
            values_per_sample=self._values,
        ).numpy()

    def _forward(self, theta: Tensor) -> Tensor:
        from torch.func import functional_call

        return functional_call(self._net, dict(unflatten(theta, self._template)), (self._x,))

    def _mlp_terms(self, w: Tensor, fedavg: bool) -> tuple[MLPTerms, MLPTerms | None]:
        """fedavg: each trainer's own model scaled by w_i; partial: each delta scaled by w_i / W_N, plus the base."""
        base = unflatten(self._theta0, self._template)
        states = [unflatten((self._theta0 if fedavg else 0) + d, self._template) for d in self._deltas]
        players = MLPTerms(
            hidden=torch.stack([w[i] * (self._x @ m["fc1.weight"].T + m["fc1.bias"]) for i, m in enumerate(states)]),
            out_weight=torch.stack([w[i] * m["fc2.weight"] for i, m in enumerate(states)]),
            out_bias=torch.stack([w[i] * m["fc2.bias"] for i, m in enumerate(states)]),
            scale=w if fedavg else torch.zeros_like(w),
        )
        if fedavg:
            return players, None
        offset = MLPTerms(
            self._x @ base["fc1.weight"].T + base["fc1.bias"], base["fc2.weight"], base["fc2.bias"], torch.tensor(1.0, dtype=torch.float64)
        )
        return players, offset

    def table(self) -> np.ndarray:
        """``U`` of every one of the ``2^n`` coalitions (float64, entry ``m`` = the players of bitmask ``m``).

        Computed once, in batches (see :mod:`aggregator.valuation.batched`); with
        ``fast=False`` one coalition at a time.  Counts ``2^n`` evaluations.
        """
        if self._table is None:
            if self.n > 24:
                raise ConfigError(f"a table of all 2^{self.n} coalitions is too large")
            with torch_threads(self.threads):
                if self.naive or self.n == 0:
                    table = naive_table(lambda c: self._evaluate([c])[0], self.n)
                else:
                    table = self._batched_table()
            self._table = table
            self.evaluations = 1 << self.n
        return self._table.copy()

    def _key(self, coalition: Coalition) -> frozenset[int]:
        key = frozenset(int(i) for i in coalition)
        if any(not 0 <= i < self.n for i in key):
            raise ValueError(f"coalition {sorted(key)} names players outside 0..{self.n - 1}")
        return key

    def __call__(self, coalition: Coalition) -> float:
        return self.evaluate_many([coalition])[0]

    def evaluate_many(self, coalitions: Iterable[Coalition]) -> list[float]:
        """``U`` of each coalition, computing the not-yet-cached ones in batches."""
        keys = [self._key(c) for c in coalitions]
        if self._table is not None:
            return [float(self._table[sum(1 << i for i in k)]) for k in keys]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        with torch_threads(self.threads):
            computed = self._evaluate(todo) if todo else []
        for k, u in zip(todo, computed):
            self._cache[k] = u
        self.evaluations += len(todo)
        return [self._cache[k] for k in keys]

    def accuracy(self, coalition: Coalition) -> float:
        """Validation accuracy of the coalition's model, whatever the metric (``U`` itself under ``accuracy``);
        a regression task's R^2 (its ``U``).

        For the other metrics it is computed aside: not cached, not counted in :attr:`evaluations`.
        """
        if self.metric == "accuracy" or self.regression:  # a regression task's score is its utility, R^2
            return self(coalition)
        with torch_threads(self.threads):
            return self._evaluate([self._key(coalition)], metric="accuracy")[0]

    def symmetric_players(self) -> list[list[int]]:
        """Groups (two or more players, ascending) whose deltas are bit-identical and whose weights are equal.

        Such players are interchangeable in every coalition under either
        utility (``U(S + i) = U(S + j)`` for ``S`` holding neither), so their
        Shapley values are equal (the symmetry axiom); the sampling estimators
        only get there on average, which :func:`aggregator.valuation.estimators.estimate`
        corrects by averaging within each group.
        """
        groups: dict[tuple[float, bytes], list[int]] = {}
        for i in range(self.n):
            digest = hashlib.sha256(self._deltas[i].numpy().tobytes()).digest()
            groups.setdefault((float(self._w[i]), digest), []).append(i)
        return [g for g in groups.values() if len(g) > 1 and all(torch.equal(self._deltas[g[0]], self._deltas[j]) for j in g)]

    @property
    def evaluated(self) -> dict[frozenset[int], float]:
        """Every coalition computed one at a time so far and its utility (a copy; see :meth:`table` for the rest)."""
        return dict(self._cache)

    @property
    def has_table(self) -> bool:
        return self._table is not None
