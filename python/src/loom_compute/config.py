"""The run config, validated against the JSON Schema that the TypeScript CLI exports.

TypeScript owns the schema (src/config/schema.ts); `loom config schema` writes it into this package
(schema/run-config.schema.json) and a test keeps the two identical. Python never re-implements the
rules: it validates against the same file, so both sides reach the same verdict on every config.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from loom_compute.errors import ConfigError

SCHEMA_PATH = Path(__file__).parent / "schema" / "run-config.schema.json"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def config_error_paths(config: Any) -> list[str]:
    """Dotted key paths of every problem in `config` ([] when valid)."""
    return [".".join(str(p) for p in error.absolute_path) for error in _validator().iter_errors(config)]


def validate_run_config(config: Any, source: str = "config") -> dict[str, Any]:
    errors = sorted(_validator().iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            lines.append(f"  at {where}: {_short_message(error)}")
        raise ConfigError(f"invalid run config ({source}):\n" + "\n".join(lines))
    return config


def load_run_config(path: str | Path) -> dict[str, Any]:
    """Reads and validates a resolved run config written by `loom config init` or the CLI."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read run config {path}: {exc.strerror or exc}") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run config {path} is not valid JSON: {exc}") from exc
    return validate_run_config(config, str(path))


def read_tokenizer(config: dict[str, Any]) -> tuple[str, bytes]:
    """(sha256 hex, bytes) of the run's tokenizer.json, the file the packed shards were made with.

    The CLI resolves a null ``tokenizer.path`` to the local LLM checkpoint's tokenizer.json when it
    writes the config (src/config/resolve.ts), so a null here means there was none to find.
    """
    path = config["tokenizer"]["path"]
    if not path:
        raise ConfigError(
            "tokenizer.path is not set (and model.llm.source.pretrained is no local checkpoint directory to take "
            "tokenizer.json from): name the tokenizer.json the data was packed with",
            key="tokenizer.path",
        )
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tokenizer.path = {path!r}: cannot read it ({exc.strerror or exc})", key="tokenizer.path") from None
    return hashlib.sha256(data).hexdigest(), data


def image_tokens_per_image(config: dict[str, Any]) -> int:
    return int(config["image_grid"]) ** 2


def _short_message(error: jsonschema.ValidationError) -> str:
    # anyOf failures (model sources) say which alternatives exist instead of dumping the instance.
    if error.validator == "anyOf":
        return "matches none of the allowed forms (e.g. {pretrained: <dir or hub id>, config: null} or {pretrained: null, config: {...}})"
    message = error.message
    return message if len(message) <= 200 else message[:197] + "..."
