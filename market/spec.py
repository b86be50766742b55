"""The task spec: the JSON document (stored by CID) that fixes a task's rules.

It names the data schema, the model architecture, the local training
hyper-parameters, the robust rule and the valuation rule, so that trainers,
the aggregator and anyone replaying a round all compute the same thing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from market.architecture import MAX_PARAMETERS, Activation, Conv2d, Flatten, Layer, Linear, Pool2d, Summary, infer
from market.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: bounds that keep a spec's model buildable on an ordinary machine (a spec is untrusted input: the API
#: and every trainer build its model); no model has more than MAX_PARAMETERS weights, 40 MB of float32
MAX_FEATURES = 1_000_000
MAX_CLASSES = 1_000
#: values one training step may hold (batch x values per sample): 400 MB of float32, about 1.2 GB with its gradients
MAX_BATCH_VALUES = 100_000_000
#: the largest magnitude a range may name: data is float32 once read
MAX_MAGNITUDE = 1e30


class DataSchema(_Frozen):
    """Shape of every party's data: rows of ``n_features`` numbers in ``feature_range`` and a label.

    ``kind``: ``classification`` (the default): labels are the whole numbers ``0 .. n_classes - 1`` and
    the model gives one score per class; ``regression``: labels are real numbers in ``label_range``
    (scale them there first, like the features), the model gives one number, and ``n_classes`` is
    not used (leave it out).  Every data file (a trainer's shard, the
    aggregator's validation set) is checked against this schema before it is used
    (:func:`market.data.load_shard`); nobody rescales data for you, so scale every feature
    column into ``feature_range`` (min-max per column) before training.

    ``image_shape`` (rows, columns) says the features are an image of ``channels`` channels (1, the
    default: grey; 3: colour), flattened channel by channel, each row by row; the ``cnn`` and a
    ``layers`` model see it as ``[channels, rows, columns]``, and ``channels x rows x columns`` must be
    ``n_features``.  It is
    ``None`` (not an image) unless a spec sets it: a spec that writes a ``data`` table without
    ``image_shape`` has none.  The built-in task (a spec with no ``data`` table at all) is
    scikit-learn's digits, :data:`DIGITS`, whose ``image_shape`` is ``(8, 8)``.
    """

    name: str = Field("", max_length=80)
    n_features: int = Field(64, gt=0, le=MAX_FEATURES)
    n_classes: int = Field(10, ge=2, le=MAX_CLASSES)
    image_shape: tuple[int, int] | None = None
    channels: int = Field(1, ge=1, le=64)
    feature_range: tuple[float, float] = (0.0, 1.0)
    kind: Literal["classification", "regression"] = "classification"
    label_range: tuple[float, float] = (0.0, 1.0)
    #: the preprocessing every party applies when it reads a data file, before anything is checked: feature =
    #: value * scale + shift (1/255 and 0 for 8-bit pixels; 1/std and -mean/std to normalise)
    scale: float = 1.0
    shift: float = 0.0

    @model_validator(mode="after")
    def _shapes(self) -> "DataSchema":
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.shift) and abs(self.shift) <= MAX_MAGNITUDE
                and abs(self.scale) <= MAX_MAGNITUDE):
            raise ValueError(f"scale and shift must be finite numbers, scale not 0 (got {self.scale:g}, {self.shift:g})")
        for field in ("feature_range", "label_range"):
            lo, hi = getattr(self, field)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and max(abs(lo), abs(hi)) <= MAX_MAGNITUDE):
                raise ValueError(f"{field} must be two finite numbers [low, high] with low < high, within ±1e30 "
                                 f"(got [{lo:g}, {hi:g}])")
        if self.kind == "regression" and "n_classes" in self.model_fields_set:
            raise ValueError("a regression task's labels are numbers, not classes: leave n_classes out")
        if self.kind == "classification" and "label_range" in self.model_fields_set:
            raise ValueError("label_range is for kind = 'regression'; a classification task's labels are 0 .. n_classes - 1")
        if self.n_features * self.n_classes > MAX_PARAMETERS:
            raise ValueError(f"n_features x n_classes = {self.n_features * self.n_classes} is more than the "
                             f"{MAX_PARAMETERS} parameters a task's model may have")
        if self.image_shape is not None:
            h, w = self.image_shape
            c = self.channels
            if h <= 0 or w <= 0 or c * h * w != self.n_features:
                got = f"[{h}, {w}]" + (f" x {c} channels" if c != 1 else "")
                raise ValueError(
                    f"channels x image_shape must multiply out to n_features (got {got} for {self.n_features} features); "
                    "leave image_shape out unless the features are an image"
                )
        elif self.channels != 1:
            raise ValueError(f"channels = {self.channels} needs an image_shape [rows, columns]")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a one-channel classification schema is every spec written before channels and regression existed: its JSON
        # (and CID) stays what it was; a regression schema has no classes to publish
        out = handler(self)
        if self.channels == 1:
            out.pop("channels", None)
        if self.scale == 1.0 and self.shift == 0.0:
            out.pop("scale", None)
            out.pop("shift", None)
        if self.kind == "classification":
            out.pop("kind", None)
            out.pop("label_range", None)
        else:
            out.pop("n_classes", None)
        return out

    @property
    def regression(self) -> bool:
        return self.kind == "regression"

    @property
    def outputs(self) -> int:
        """What the model gives per sample: a score per class, or one number for regression."""
        return 1 if self.regression else self.n_classes

    @property
    def label_space(self) -> int | tuple[float, float]:
        """``n_classes`` (classification) or ``label_range`` (regression): what a label may be."""
        return self.label_range if self.regression else self.n_classes

    def labels_text(self) -> str:
        lo, hi = self.label_range
        return f"labels in [{lo:g}, {hi:g}] (regression)" if self.regression else f"labels 0..{self.n_classes - 1} ({self.n_classes} classes)"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample as the model sees it: ``(channels, rows, columns)`` for an image, ``(n_features,)`` otherwise."""
        if self.image_shape is None:
            return (self.n_features,)
        return (self.channels, *self.image_shape)


# The built-in task's data: scikit-learn's bundled digits, 8x8 images scaled to [0, 1], 10 classes.
DIGITS = DataSchema(name="digits", n_features=64, n_classes=10, image_shape=(8, 8))


class ModelSpec(_Frozen):
    """The architecture: a built-in one (``logreg``, ``mlp``, ``cnn``) or ``layers``, a declared list of standard layers
    (:mod:`market.architecture`).  :meth:`summary` gives every layer's output shape and weights, and the totals."""

    arch: Literal["logreg", "mlp", "cnn", "layers"] = "logreg"
    hidden: int = Field(64, gt=0, le=4096)
    layers: tuple[Layer, ...] | None = Field(None, max_length=64)
    #: the CID of the ONNX file the layers and the round-0 weights were converted from (``market task init --onnx``)
    onnx_cid: str | None = Field(None, min_length=1, max_length=128)

    @model_serializer(mode="wrap")
    def _without_absent_layers(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a spec that declares no layers publishes the same JSON (so the same CID) as before layers existed
        out = handler(self)
        if self.layers is None:
            out.pop("layers", None)
        if self.onnx_cid is None:
            out.pop("onnx_cid", None)
        return out

    @model_validator(mode="after")
    def _layers_iff_declared(self) -> "ModelSpec":
        if self.arch == "layers" and not self.layers:
            raise ValueError("model.arch 'layers' needs model.layers: the list of layers (docs/spec-reference.md, 'Your own model')")
        if self.arch != "layers" and self.layers is not None:
            raise ValueError(f"model.layers is only read with model.arch = 'layers', not {self.arch!r}: set arch = 'layers' or drop the list")
        if self.onnx_cid is not None and self.arch != "layers":
            raise ValueError("model.onnx_cid names the ONNX file a 'layers' model was converted from: it needs arch = 'layers'")
        return self

    def layer_list(self) -> tuple[Layer, ...]:
        """The layers of this model; the built-in ones written as the declared layers they are."""
        if self.arch == "layers":
            assert self.layers is not None
            return self.layers
        if self.arch == "logreg":
            return (Linear(type="linear"),)
        if self.arch == "mlp":
            return (Linear(type="linear", out_features=self.hidden), Activation(type="relu"), Linear(type="linear"))
        return (Conv2d(type="conv2d", out_channels=8, kernel_size=3, padding=1), Activation(type="relu"),
                Pool2d(type="maxpool2d", kernel_size=2), Flatten(type="flatten"),
                Linear(type="linear", out_features=self.hidden), Activation(type="relu"), Linear(type="linear"))

    def summary(self, data: DataSchema) -> Summary:
        """Each layer's output shape, weights and multiply-adds over ``data``; ValueError naming the layer that does not fit."""
        if self.arch == "cnn" and data.image_shape is None:
            raise ValueError("model.arch 'cnn' needs data.image_shape")
        flat = self.arch in ("logreg", "mlp")  # the built-in dense models read the flat features, even of an image
        shape = (data.n_features,) if flat else data.input_shape
        return infer(self.layer_list(), shape, data.outputs, data.feature_range)


class TrainingSpec(_Frozen):
    """Local SGD per round, tuned for the default task (digits, logreg).

    With these defaults 3 FedAvg rounds over 5-6 trainers reach ~0.91-0.97 test
    accuracy on iid and Dirichlet(0.5) splits.  For ``mlp``/``cnn`` set ``lr`` to
    0.1: at 0.5 with momentum 0.9 the CNN diverges.
    """

    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(0.5, gt=0, le=10)
    batch_size: int = Field(32, ge=1, le=65536)
    momentum: float = Field(0.9, ge=0, lt=1)


class RobustSpec(_Frozen):
    """The robust rule run over the valid updates, with ``f`` suspected attackers.

    ``rule`` names a rule (``ccdrop``, the default, chosen by ``bench/robustness.py``
    (README, "Robust aggregation"); ``multikrum``, ``krum``, ``cwmed``, ``cwtm``,
    ``geomed``, ``cc``, or ``mean`` for no defence), optionally preceded by pre-aggregation
    steps joined with ``+`` (``nnm+cwtm``, ``arc+cc``).  ``params`` go to the rule
    (e.g. ``{"m": 4}`` for multikrum, ``{"L": 5}`` for cc); a key named after a
    pre-step holds that step's parameters (``{"clip": {"c": 5.0}}``).  Outliers are
    paid nothing; the down-weighting rules flag them by evidence (at most ``f``, only
    those far from the aggregate), ``krum``/``multikrum`` select ``n - f`` by quota.  Names, preconditions
    and the outlier policy: :mod:`aggregator.robust`; ``bench/robustness.py``
    measures each rule under the attack suite.
    """

    rule: str = "ccdrop"
    f: int = Field(1, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ValuationSpec(_Frozen):
    """Contribution valuation (``aggregator.valuation.estimators``).

    ``rule``: ``auto`` | ``exact`` | ``gtg`` | ``tmc`` | ``loo``.  ``auto`` is exact
    Shapley up to ``exact_max_n`` trainers if that is set, otherwise wherever the
    batched exact method's predicted cost fits ``time_budget_s`` (a fixed cost model,
    so replays choose the same), GTG-Shapley beyond.  ``utility``: ``fedavg`` scores a
    coalition by the model the FedAvg of its updates gives; ``partial`` by its part of
    the round's update (a zero update is then worth exactly 0).  ``metric``: what the
    coalition's model is scored by on the validation set: ``gce`` (the default: minus the
    mean generalized cross-entropy ``(1 - p_y^q) / q`` with ``q = 0.25``, Zhang & Sabuncu 2018;
    smooth like cross-entropy, so it keeps moving after accuracy has stopped, but bounded, so a
    trainer is not punished without limit for confident mistakes on classes it never saw),
    ``cross_entropy`` (minus the mean cross-entropy, nats) or ``accuracy``; chosen on
    ``bench/fairness.py``; a regression task takes (and needs) ``r2``, the coefficient of
    determination ``1 - SSE / SST`` of the coalition's predictions (an affine function of
    their mean squared error, so it splits the pool as the error would).  ``payout``: ``cumulative`` (the default) pays each round's pool by each
    trainer's running sum of values over the rounds so far (negative rounds count
    against it; shares clip at 0), which averages the per-round noise out
    (``bench/fairness.py``); ``round`` splits each round's pool by that round's values.
    A proof task takes the same rules: the circuit proves the split of the values they give
    (:mod:`aggregator.provable`).
    """

    rule: str = "auto"
    exact_max_n: int | None = Field(None, ge=1, le=24)
    time_budget_s: float = Field(10.0, gt=0)
    utility: Literal["fedavg", "partial"] = "fedavg"
    metric: Literal["gce", "cross_entropy", "accuracy", "r2"] = "gce"
    payout: Literal["round", "cumulative"] = "cumulative"
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class ValidationSpec(_Frozen):
    """Checks every update must pass before it is considered at all.

    ``copy_cosine``: an update whose cosine similarity with an update submitted earlier in the
    same round, or with another trainer's published in the previous round, is above this is a
    copy: it is refused (paid 0, left out of the model) and the earlier one keeps its value.
    Two honest digits updates were measured at most 0.936 alike in a round, and at most 0.69
    alike across rounds (``bench/fairness.py``: ``honest_cosine_same_round_max``,
    ``honest_cosine_previous_round_other_max``).
    """

    max_update_norm: float = Field(100.0, gt=0)
    copy_cosine: float = Field(0.99, gt=0, le=1)


class ProofSpec(_Frozen):
    """Verifiable rounds (:mod:`market.zk`, ``zk/round.circom``).

    Every trainer commits to a ``sketch_k``-entry fixed-point sketch of its update
    (a public random projection, ``sketch_scale`` integer units per unit of
    projected update, 12-bit signed entries).  With ``system = "groth16"`` the
    aggregator also proves, and the task's RoundVerifier checks on chain before
    anything is credited, that the outliers are Multi-Krum over the committed
    sketches (``sketch_f`` of them) and the basis points the split of the
    cyclic-permutation Shapley values of the published utilities. Those utilities are
    the additive game whose values are the task's own valuation of the updates the
    model's rule kept (cumulative with the ``cumulative`` payout): the split an unproven
    round pays. The model (ccdrop over the valid full updates, with ``robust.f``:
    ``aggregator.provable.FULL_RULE``) and the valuation are not bound by the proof: the
    panel's quorum recomputes them. Such a task needs ``robust.rule = "multikrum"``.
    """

    system: Literal["none", "groth16"] = "none"
    sketch_k: int = Field(16, ge=16, le=64)
    sketch_scale: int = Field(8, ge=1, le=1 << 16)
    #: updates the proven Multi-Krum over the sketches leaves out of each round's pay (at most what the round's
    #: size allows). 0, the default: Multi-Krum always leaves out this many, honest or not, so it paid equal
    #: honest trainers a lottery and the trainers with the most data least (bench/fairness.py --proof); an
    #: update that hurts the coalitions it joins is paid nothing by its value, and the model is ccdrop's
    #: over the full updates with ``robust.f`` (:data:`aggregator.provable.FULL_RULE`).
    sketch_f: int = Field(0, ge=0)


class TaskSpec(_Frozen):
    """A task's rules; every field, its default and who uses it: ``docs/spec-reference.md``."""

    version: Literal[1] = 1
    name: str = Field("digits", min_length=1, max_length=80)  # a short human name, shown by the API and CLI
    data: DataSchema = DIGITS
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    robust: RobustSpec = RobustSpec()
    valuation: ValuationSpec = ValuationSpec()
    validation: ValidationSpec = ValidationSpec()
    proof: ProofSpec = ProofSpec()
    model_seed: int = 0
    initial_model_cid: str | None = None

    @model_validator(mode="after")
    def _provable(self) -> "TaskSpec":
        if self.proof.system != "none":
            if self.robust.rule != "multikrum":
                raise ValueError(f"proof.system {self.proof.system!r} proves Multi-Krum over sketches: set robust.rule to 'multikrum'")
        return self

    @model_validator(mode="after")
    def _metric_fits_the_labels(self) -> "TaskSpec":
        if self.data.regression and self.valuation.metric != "r2":
            raise ValueError(f"a regression task is valued by R^2 on the validation set: set valuation.metric = 'r2' "
                             f"(not {self.valuation.metric!r})")
        if not self.data.regression and self.valuation.metric == "r2":
            raise ValueError("valuation.metric 'r2' is for data.kind = 'regression'; a classification task takes gce, "
                             "cross_entropy or accuracy")
        return self

    @model_validator(mode="after")
    def _model_fits(self) -> "TaskSpec":
        summary = self.model.summary(self.data)  # every layer fits its input, and the weights and work stay within bounds
        if self.training.batch_size * summary.values > MAX_BATCH_VALUES:
            raise ValueError(f"training.batch_size {self.training.batch_size} x the {summary.values} values a sample holds "
                             f"through the model is more than the {MAX_BATCH_VALUES} a trainer's step may hold: use a "
                             "smaller batch")
        return self

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def parse_spec(obj: Any, source: str = "task spec") -> TaskSpec:
    """Validate a spec; the error names the first bad field in one line."""
    try:
        return TaskSpec.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: field {loc}: {first['msg']}{more}") from None


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub-)model that holds ``loc``'s last part, for an 'unknown field' error."""
    model: Any = TaskSpec
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field is not None else None
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def spec_field_errors(exc: ValidationError) -> list[str]:
    """One clear line per bad field: ``where: what is wrong (got …)``."""
    out = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(whole spec)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(tuple(e["loc"]))
            out.append(f"{where}: unknown field" + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
            continue
        msg = str(e["msg"]).removeprefix("Value error, ")
        got = e.get("input")
        if e["type"] != "missing" and e["loc"] and not isinstance(got, (dict, list)):
            msg += f" (got {got!r})"[:120]
        out.append(f"{where}: {msg}")
    return out


def read_spec_document(path: str | Path) -> dict[str, Any]:
    """The object a ``.toml`` or ``.json`` spec file holds, not yet validated; a one-line ConfigError if it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read task spec {p}: {exc.strerror}") from None
    if p.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{p}: a task spec is a JSON object ({{...}}), not {type(obj).__name__}")
    return obj


def validate_spec_document(obj: dict[str, Any], where: str) -> TaskSpec:
    """``obj`` as a TaskSpec; a bad one is one ConfigError naming every bad field."""
    try:
        return TaskSpec.model_validate(obj)
    except ValidationError as exc:
        errors = spec_field_errors(exc)
        head = f"{where}: {len(errors)} bad fields: " if len(errors) > 1 else f"{where}: "
        raise ConfigError(head + "; ".join(errors)) from None


def load_spec_file(path: str | Path) -> TaskSpec:
    """Read a spec from a ``.toml`` or ``.json`` file; a bad file is one ConfigError naming every bad field."""
    return validate_spec_document(read_spec_document(path), str(Path(path)))
