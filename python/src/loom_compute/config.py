"""The run config: validated against the JSON Schema that the TypeScript CLI exports, then typed.

TypeScript owns the schema (src/config/schema.ts); `loom config schema` writes it into this package
(schema/run-config.schema.json) and a test keeps the two identical. Python never re-implements the
rules: it validates against the same file, so both sides reach the same verdict on every config.

After validation the JSON becomes a tree of frozen dataclasses (``RunConfig``), so code reads
``config.train.lr`` instead of string keys. The schema requires every key, so no field here has a
default: a default in Python would be a second source for a value TS already decided. The shape of
these classes is checked against the schema by python/tests/test_config_shape.py, which fails when
a key is added, removed or retyped on one side only.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union

import jsonschema

from loom_compute.errors import ConfigError

SCHEMA_PATH = Path(__file__).parent / "schema" / "run-config.schema.json"

# ---- the typed tree (fields in the schema's key order) ----


@dataclass(frozen=True)
class ModelSource:
    """Exactly one of the two is set: a checkpoint to load, or transformers config fields for fresh weights."""

    pretrained: str | None
    config: dict[str, Any] | None


@dataclass(frozen=True)
class VisionConfig:
    source: ModelSource
    image_size: int
    patch_size: int
    hidden_size: int
    feature_layer: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    trainable: bool


@dataclass(frozen=True)
class ProjectorConfig:
    hidden_size: int


@dataclass(frozen=True)
class LlmConfig:
    source: ModelSource
    hidden_size: int
    trainable: bool


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig
    projector: ProjectorConfig
    llm: LlmConfig
    init_from: str | None


@dataclass(frozen=True)
class TokenizerConfig:
    path: str | None
    image_token: str
    eos_token: str
    pad_token: str


@dataclass(frozen=True)
class DataConfig:
    shards: str | None
    seq_len: int
    pretrain_template: str
    resize: Literal["squash", "pad"]
    overlong: Literal["truncate", "drop"]
    max_images_per_sequence: int | None
    pack: bool
    packed: str | None


@dataclass(frozen=True)
class TrainConfig:
    global_batch: int
    micro_batch: int
    lr: float
    min_lr_ratio: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    warmup_fraction: float
    schedule: Literal["cosine", "linear", "constant"]
    epochs: float
    max_steps: int | None
    grad_clip: float | None
    precision: Literal["bf16", "fp32"]
    attention: Literal["auto", "flex", "sdpa", "eager"]
    isolate_documents: bool
    activation_checkpointing: bool
    compile: bool
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    loader_workers: int
    shuffle_buffer: int
    tensorboard: bool


@dataclass(frozen=True)
class DistConfig:
    nnodes: int
    nproc_per_node: int
    backend: Literal["auto", "nccl", "gloo"]
    master_addr: str
    master_port: int


@dataclass(frozen=True)
class RunConfig:
    version: int
    name: str
    preset: Literal["tiny", "open-qwen2vl-2b"]
    stage: Literal["pretrain", "sft"]
    seed: int
    image_grid: int
    model: ModelConfig
    tokenizer: TokenizerConfig
    data: DataConfig
    train: TrainConfig
    dist: DistConfig

    @property
    def image_tokens_per_image(self) -> int:
        return self.image_grid**2

    def to_dict(self) -> dict[str, Any]:
        """The JSON form again (tuples as lists), e.g. for the export's loom.json."""
        return _to_json(self)


# ---- JSON -> dataclasses ------------------------------------------------------------------------


def _from_json(annotation: Any, value: Any) -> Any:
    """Builds ``annotation`` from validated JSON: dataclasses recursively, arrays as tuples, JSON numbers
    as float where the field is a float (JSON writes 1.0 as 1)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(annotation):
        hints = _field_types(annotation)
        return annotation(**{f.name: _from_json(hints[f.name], value[f.name]) for f in dataclasses.fields(annotation)})
    options = [a for a in _union_members(annotation) if a is not type(None)]
    if len(options) == 1 and options[0] is not annotation:
        return _from_json(options[0], value)
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return tuple(_from_json(item, v) for item, v in zip(typing.get_args(annotation), value))
    if annotation is float:
        return float(value)
    if annotation is int:
        return int(value)  # the schema's "integer" also admits 2.0
    return value


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # as JSON.stringify writes it, so the file reads as the CLI wrote it
    return value


@lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


# ---- validation -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def config_error_paths(config: Any) -> list[str]:
    """Dotted key paths of every problem in `config` ([] when valid)."""
    return [".".join(str(p) for p in error.absolute_path) for error in _validator().iter_errors(config)]


def validate_run_config(config: Any, source: str = "config") -> dict[str, Any]:
    """Checks the JSON form against the schema; returns it unchanged, or raises ConfigError naming every problem."""
    errors = sorted(_validator().iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            lines.append(f"  at {where}: {_short_message(error)}")
        raise ConfigError(f"invalid run config ({source}):\n" + "\n".join(lines))
    return config


def parse_run_config(config: Mapping[str, Any], source: str = "config") -> RunConfig:
    """The typed config of a JSON run config, after validating it against the schema."""
    return _from_json(RunConfig, validate_run_config(config, source))


def load_run_config(path: str | Path) -> RunConfig:
    """Reads, validates and types a resolved run config written by `loom config init` or the CLI."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read run config {path}: {exc.strerror or exc}") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run config {path} is not valid JSON: {exc}") from exc
    return parse_run_config(config, str(path))


def _short_message(error: jsonschema.ValidationError) -> str:
    # anyOf failures (model sources) say which alternatives exist instead of dumping the instance.
    if error.validator == "anyOf":
        return "matches none of the allowed forms (e.g. {pretrained: <dir or hub id>, config: null} or {pretrained: null, config: {...}})"
    message = error.message
    return message if len(message) <= 200 else message[:197] + "..."
