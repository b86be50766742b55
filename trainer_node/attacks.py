"""Attacks a trainer node can run in simulation, chosen by name.

The standard Byzantine behaviours of the robust-aggregation literature, as
collected by EPFL's ByzFL library (https://byzfl.epfl.ch):

- ``sign_flip``: submit ``-scale *`` the attacker's own honest delta (ByzFL's
  ``SignFlipping`` is ``-1 *`` the honest mean).  Scale 1 is not enough on
  non-IID data: an attacker whose own data is skewed has a small, odd delta,
  and its mirror image can sit closer to the honest cluster than an honest
  outlier does (measured: Multi-Krum missed it in 9 of 24 rounds of 6 trainers
  on dirichlet:0.5).  The default scale 3 puts it on the far side of the global
  model at three times an honest length; its norm (at most ~65 for the default
  logreg task, where honest first-round deltas are 12-21 long) stays under the
  default ``max_update_norm`` of 100, so it is the robust rule, not the norm
  check, that has to catch it.
- ``gaussian``: replace the delta with N(0, sigma^2) noise per coordinate
  (Blanchard et al. 2017, Sec. 5; ByzFL ``Gaussian``), as a real attacker would
  size it: the task spec publishes ``validation.max_update_norm`` (the
  aggregator rejects longer updates), so by default sigma is set so the noise
  is ``GAUSSIAN_NORM_FRACTION`` (0.99) of that bound long, i.e. sigma ~ 0.99 *
  bound / sqrt(d) (~3.9 for the default logreg task: d = 650, bound 100), whatever
  the model's size; ``strength`` sets sigma directly instead.  The noise comes
  from ``seed``; nodes and the benchmark pass one seed per attacker and task
  (:func:`attack_seed`), so the attacker submits the same noise vector every
  round and it adds up in the global model (fresh noise each round averages out
  like a random walk: with 2 of 10 trainers attacking for 10 rounds it cost
  plain FedAvg only 12 (IID) / 17 (Dirichlet 0.5) points at this sigma, 9 / 13 at
  sigma 3).  Measured with ``bench/robustness.py``; see the README.
- ``label_flip``: train honestly on labels ``y -> n_classes - 1 - y`` (regression: ``low + high - y``)
  (Tolpegin et al. 2020, "Data Poisoning Attacks Against Federated Learning
  Systems"; ByzFL ``LabelFlipping``).
- ``free_rider``: submit a zero delta, i.e. the global model unchanged
  (Lin et al. 2019, "Free-riders in Federated Learning").
- ``noisy_free_rider``: the global model plus tiny N(0, sigma^2) noise per
  coordinate, sigma = strength, default ``NOISY_FREE_RIDER_SIGMA`` (1e-3); no
  training (Lin et al. 2019's "disguised" free rider).  Unlike a zero delta it
  passes validation, so it is the valuation that has to pay it nothing
  (``bench/fairness.py``).

Colluding attacks see the honest updates of the same round (the standard
omniscient threat model: in a public marketplace they could read them from the
store) and all attackers submit the same vector:

- ``alie``: "A Little Is Enough" (Baruch, Baruch & Goldberg 2019, NeurIPS):
  ``mean + z * std`` of the honest updates, coordinate-wise (std with ``ddof=1``);
  ``z`` = strength, default 1.5 (ByzFL ``ALittleIsEnough(tau=1.5)``).
- ``ipm``: inner-product manipulation (Xie, Koyejo & Gupta 2020, "Fall of
  Empires", UAI): ``-eps * mean``; eps = strength, default 2.0 (ByzFL
  ``InnerProductManipulation(tau=2.0)``).
- ``mimic``: copy one honest update, over-representing that trainer's data
  (Karimireddy, He & Jaggi 2022, "Byzantine-Robust Learning on Heterogeneous
  Datasets via Bucketing", ICLR); the first honest one (ByzFL ``Mimic(epsilon=0)``).
- ``copier``: re-upload the first honest update it sees under a new CID, as a
  trainer who copies another's work to be paid for it would: the same tensors
  plus N(0, sigma^2) noise, sigma = strength, default ``COPIER_SIGMA`` (1e-6),
  just enough that the bytes (and so the CID) differ.  In a real market it
  submits after the trainer it copies (it read that update from the store).

Data attacks act before training (:func:`poison_data`), update attacks after
(:func:`poison_update`); each is the identity where it does not apply.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from market.data import Dataset
from market.errors import ConfigError
from market.spec import ValidationSpec

SIGN_FLIP_SCALE = 3.0
GAUSSIAN_NORM_FRACTION = 0.99  # default gaussian noise: this fraction of the published max_update_norm
DEFAULT_MAX_NORM = float(ValidationSpec.model_fields["max_update_norm"].default)  # when the caller names no bound
ALIE_Z = 1.5
IPM_EPSILON = 2.0
NOISY_FREE_RIDER_SIGMA = 1e-3
COPIER_SIGMA = 1e-6

Delta = Mapping[str, Tensor]
_DataFn = Callable[[Dataset, "int | tuple[float, float]"], Dataset]


@dataclass(frozen=True)
class Collusion:
    """What colluding attackers see: this round's honest updates (at least one)."""

    honest: tuple[Delta, ...]

    def stacked(self, key: str) -> Tensor:
        return torch.stack([h[key].to(torch.float32) for h in self.honest])


_UpdateFn = Callable[[Delta, int, float, "Collusion | None"], "OrderedDict[str, Tensor]"]


def _same_data(data: Dataset, labels: int | tuple[float, float]) -> Dataset:
    return data


def _flip_labels(data: Dataset, labels: int | tuple[float, float]) -> Dataset:
    """Classes ``y -> n_classes - 1 - y``; a regression label mirrored in its range, ``y -> low + high - y``."""
    if isinstance(labels, tuple):
        return Dataset(data.x, (labels[0] + labels[1]) - data.y)
    return Dataset(data.x, (labels - 1) - data.y)


def _same_update(delta: Delta, seed: int, strength: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    return OrderedDict((k, v.clone()) for k, v in delta.items())


def _sign_flip(delta: Delta, seed: int, scale: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    return OrderedDict((k, -scale * v) for k, v in delta.items())


def _gaussian(delta: Delta, seed: int, sigma: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, sigma * torch.randn(v.shape, generator=gen, dtype=torch.float32)) for k, v in sorted(delta.items())
    )


def gaussian_sigma(delta: Delta, seed: int, max_norm: float) -> float:
    """The sigma that makes ``gaussian``'s noise for ``seed`` exactly ``GAUSSIAN_NORM_FRACTION * max_norm`` long."""
    unit = _gaussian(delta, seed, 1.0, None)
    norm = math.sqrt(sum(float(t.double().pow(2).sum()) for t in unit.values()))
    return GAUSSIAN_NORM_FRACTION * max_norm / norm if norm > 0 else 0.0


def attack_seed(seed: int, task: int, trainer: str | int) -> int:
    """One seed per attacker and task (not per round): ``gaussian`` then keeps submitting the same noise."""
    h = hashlib.sha256(f"attack:{seed}:{task}:{str(trainer).lower()}".encode()).digest()
    return int.from_bytes(h[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def _zero(delta: Delta, seed: int, strength: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    return OrderedDict((k, torch.zeros_like(v)) for k, v in delta.items())


def _alie(delta: Delta, seed: int, z: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    assert seen is not None
    out: OrderedDict[str, Tensor] = OrderedDict()
    for k in sorted(delta):
        h = seen.stacked(k)
        std = h.std(dim=0, correction=1) if h.shape[0] > 1 else torch.zeros_like(h[0])
        out[k] = h.mean(dim=0) + z * std
    return out


def _ipm(delta: Delta, seed: int, eps: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    assert seen is not None
    return OrderedDict((k, -eps * seen.stacked(k).mean(dim=0)) for k in sorted(delta))


def _mimic(delta: Delta, seed: int, strength: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    assert seen is not None
    return OrderedDict((k, seen.honest[0][k].to(torch.float32).clone()) for k in sorted(delta))


def _noisy_zero(delta: Delta, seed: int, sigma: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, sigma * torch.randn(v.shape, generator=gen, dtype=torch.float32)) for k, v in sorted(delta.items())
    )


def _copier(delta: Delta, seed: int, sigma: float, seen: Collusion | None) -> "OrderedDict[str, Tensor]":
    assert seen is not None
    gen = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, Tensor] = OrderedDict()
    for k in sorted(delta):
        v = seen.honest[0][k].to(torch.float32)
        out[k] = v + sigma * torch.randn(v.shape, generator=gen, dtype=torch.float32)
    return out


@dataclass(frozen=True)
class Attack:
    """One named attack: a data step, an update step and its default strength."""

    name: str
    poison_data: _DataFn
    poison_update: _UpdateFn
    strength: float | None = 0.0  # scale (sign_flip), sigma (gaussian; None: sized to the norm bound;
    # noisy_free_rider; copier), z (alie), eps (ipm)
    colluding: bool = False  # needs the honest updates of the round


ATTACKS: dict[str, Attack] = {
    "sign_flip": Attack("sign_flip", _same_data, _sign_flip, SIGN_FLIP_SCALE),
    "gaussian": Attack("gaussian", _same_data, _gaussian, None),
    "label_flip": Attack("label_flip", _flip_labels, _same_update),
    "free_rider": Attack("free_rider", _same_data, _zero),
    "alie": Attack("alie", _same_data, _alie, ALIE_Z, colluding=True),
    "ipm": Attack("ipm", _same_data, _ipm, IPM_EPSILON, colluding=True),
    "mimic": Attack("mimic", _same_data, _mimic, colluding=True),
    "noisy_free_rider": Attack("noisy_free_rider", _same_data, _noisy_zero, NOISY_FREE_RIDER_SIGMA),
    "copier": Attack("copier", _same_data, _copier, COPIER_SIGMA, colluding=True),
}
ATTACK_NAMES: tuple[str, ...] = tuple(sorted(ATTACKS))
COLLUDING_ATTACKS: tuple[str, ...] = tuple(sorted(n for n, a in ATTACKS.items() if a.colluding))


def get_attack(name: str) -> Attack:
    """The attack called ``name``; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise ConfigError(f"unknown attack {name!r}: use one of {', '.join(ATTACK_NAMES)}") from None


def is_colluding(name: str) -> bool:
    """Whether the attack needs the honest updates of the round (:class:`Collusion`)."""
    return get_attack(name).colluding


def poison_data(name: str, data: Dataset, n_classes: int | tuple[float, float]) -> Dataset:
    """The data the attacker trains on (unchanged unless the attack poisons data); ``n_classes``: the task's
    :attr:`~market.spec.DataSchema.label_space` (a regression task's label range)."""
    return get_attack(name).poison_data(data, n_classes)


def poison_update(
    name: str, delta: Delta, seed: int, strength: float | None = None, collusion: Collusion | None = None,
    max_norm: float | None = None,
) -> "OrderedDict[str, Tensor]":
    """The delta the attacker submits instead of its honest ``delta``.

    ``strength`` overrides the attack's default (see the module docstring);
    ``seed`` drives the noise of ``gaussian``; ``max_norm`` is the task's published
    ``validation.max_update_norm`` (default 100, the spec's default), which sizes
    ``gaussian``'s noise unless ``strength`` is given; colluding attacks need
    ``collusion`` (the round's honest updates, same tensor names as ``delta``).
    """
    attack = get_attack(name)
    if strength is not None and not strength >= 0:
        raise ConfigError(f"attack {name}: strength must be a non-negative number, got {strength}")
    if max_norm is not None and not 0 < max_norm < math.inf:
        raise ConfigError(f"attack {name}: max_norm must be a positive finite number, got {max_norm}")
    s = attack.strength if strength is None else strength
    if s is None:  # gaussian: as long as the published bound lets it be
        s = gaussian_sigma(delta, seed, DEFAULT_MAX_NORM if max_norm is None else max_norm)
    if attack.colluding:
        if collusion is None or not collusion.honest:
            raise ConfigError(f"attack {name} colludes: it needs the round's honest updates (simulation only)")
        missing = [k for k in delta if any(k not in h for h in collusion.honest)]
        if missing:
            raise ConfigError(f"attack {name}: honest updates lack tensors {missing}")
    return attack.poison_update(delta, seed, s, collusion)
