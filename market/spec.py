"""The task spec: the JSON document (stored by CID) that fixes a task's rules.

It names the data schema, the model architecture, the local training
hyper-parameters, the robust rule and the valuation rule, so that trainers,
the aggregator and anyone replaying a round all compute the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from market.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSchema(_Frozen):
    """Shape of every trainer's data: ``n_features`` floats in [0, 1] and a class label."""

    name: str = "digits"
    n_features: int = Field(64, gt=0)
    n_classes: int = Field(10, ge=2)
    image_shape: tuple[int, int] | None = (8, 8)


class ModelSpec(_Frozen):
    arch: Literal["logreg", "mlp", "cnn"] = "logreg"
    hidden: int = Field(64, gt=0, le=4096)


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
    """Outlier removal before aggregation (``multikrum`` with ``f`` suspected attackers, or ``mean``)."""

    rule: str = "multikrum"
    f: int = Field(1, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ValuationSpec(_Frozen):
    """Contribution valuation: ``auto`` = exact Shapley for n <= ``exact_max_n``, GTG-Shapley above."""

    rule: str = "auto"
    exact_max_n: int = Field(10, ge=1, le=24)
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class ValidationSpec(_Frozen):
    """Checks every update must pass before it is considered at all."""

    max_update_norm: float = Field(100.0, gt=0)


class TaskSpec(_Frozen):
    version: Literal[1] = 1
    name: str = "digits"
    data: DataSchema = DataSchema()
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    robust: RobustSpec = RobustSpec()
    valuation: ValuationSpec = ValuationSpec()
    validation: ValidationSpec = ValidationSpec()
    model_seed: int = 0
    initial_model_cid: str | None = None

    @model_validator(mode="after")
    def _cnn_needs_image(self) -> "TaskSpec":
        if self.model.arch == "cnn" and self.data.image_shape is None:
            raise ValueError("model.arch 'cnn' needs data.image_shape")
        if self.data.image_shape is not None:
            h, w = self.data.image_shape
            if h * w != self.data.n_features:
                raise ValueError("data.image_shape must multiply out to data.n_features")
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


def load_spec_file(path: str | Path) -> TaskSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read task spec {p}: {exc.strerror}") from None
    if p.suffix == ".toml":
        import tomllib

        try:
            obj = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    else:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    return parse_spec(obj, str(p))
