"""The typed run config (loom_compute.config.RunConfig) has exactly the shape of the exported JSON Schema.

TypeScript owns the schema (src/config/schema.ts, exported to schema/run-config.schema.json); Python
reads the config through frozen dataclasses. This walks both trees together and fails on any key
that is in one and not the other, a key the schema leaves optional (the dataclasses have no
defaults), or a type that does not match (integer/number/string/boolean, enum vs Literal, null
allowed or not, fixed-length arrays vs tuples, free-form objects vs dicts).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import pytest

from loom_compute.config import SCHEMA_PATH, RunConfig, load_run_config, parse_run_config

ROOT = Path(__file__).resolve().parents[2]
SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _alternatives(node: dict[str, Any]) -> list[dict[str, Any]]:
    if "anyOf" in node:
        return [alt for option in node["anyOf"] for alt in _alternatives(option)]
    return [node]


def shape_problems(node: dict[str, Any], annotation: Any, path: str = "(config)") -> list[str]:
    """Every difference between a schema node and a Python annotation, as readable lines."""
    alts = _alternatives(node)
    members = _members(annotation)
    schema_null = any(alt.get("type") == "null" for alt in alts)
    python_null = type(None) in members
    problems = []
    if schema_null != python_null:
        problems.append(f"{path}: null is {'allowed' if schema_null else 'refused'} by the schema but {'allowed' if python_null else 'refused'} in Python")
    alts = [alt for alt in alts if alt.get("type") != "null"]
    members = [m for m in members if m is not type(None)]
    if len(members) != 1:
        return problems + [f"{path}: Python type {annotation!r} is not one type or one type | None"]
    (python,) = members
    if not alts:
        return problems + [f"{path}: the schema allows only null, Python has {python!r}"]

    if dataclasses.is_dataclass(python):
        return problems + _object_problems(alts, python, path)
    for alt in alts:
        problems += _value_problems(alt, python, path)
    return problems


def _object_problems(alts: list[dict[str, Any]], cls: type, path: str) -> list[str]:
    problems = []
    if any(alt.get("type") != "object" or "properties" not in alt for alt in alts):
        return [f"{path}: Python has dataclass {cls.__name__}, the schema is not an object with properties"]
    schema_keys: dict[str, list[dict[str, Any]]] = {}
    for alt in alts:
        for key, sub in alt["properties"].items():
            schema_keys.setdefault(key, []).append(sub)
        optional = set(alt["properties"]) - set(alt.get("required", []))
        if optional:
            problems.append(f"{path}: the schema leaves {sorted(optional)} optional; the dataclass {cls.__name__} has no defaults")
        if alt.get("additionalProperties") is not False:
            problems.append(f"{path}: the schema accepts unknown keys; {cls.__name__} would drop them")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in schema_keys.keys() - set(fields):
        problems.append(f"{path}.{key}: in the schema, not in {cls.__name__}")
    for key in set(fields) - schema_keys.keys():
        problems.append(f"{path}.{key}: in {cls.__name__}, not in the schema")
    for key in fields:
        if key in schema_keys:
            problems += shape_problems({"anyOf": schema_keys[key]}, hints[key], f"{path}.{key}".removeprefix("(config)."))
    return problems


def _value_problems(alt: dict[str, Any], python: Any, path: str) -> list[str]:
    kind = alt.get("type")
    origin = typing.get_origin(python)
    if origin is Literal:
        if kind != "string" or set(alt.get("enum", [])) != set(typing.get_args(python)):
            return [f"{path}: schema {kind} enum {alt.get('enum')} vs Python Literal{list(typing.get_args(python))}"]
        return []
    if origin is tuple:
        items = alt.get("prefixItems", [])
        args = typing.get_args(python)
        if kind != "array" or alt.get("items") is not False or len(items) != len(args):
            return [f"{path}: schema array of {len(items)} fixed items (items: {alt.get('items')}) vs Python {python!r}"]
        return [p for i, (item, arg) in enumerate(zip(items, args)) for p in shape_problems(item, arg, f"{path}[{i}]")]
    if origin is dict or python is dict:
        if kind != "object" or "properties" in alt:
            return [f"{path}: Python has a free-form dict, the schema has {kind} with properties {list(alt.get('properties', {}))}"]
        return []
    if python in SCALARS:
        wanted = SCALARS[python]
        # A number pinned to an integer constant (version: 1) is an int.
        if kind == wanted or (python is int and kind == "number" and isinstance(alt.get("const"), int)):
            if "enum" in alt:
                return [f"{path}: the schema has enum {alt['enum']}, Python should say Literal[...]"]
            return []
        return [f"{path}: schema type {kind} vs Python {python.__name__}"]
    return [f"{path}: no rule for Python type {python!r}"]


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_the_dataclasses_have_the_shape_of_the_schema():
    assert shape_problems(_schema(), RunConfig) == []


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        (lambda s: s["properties"]["train"]["properties"].update(new_knob={"type": "integer"}), "train.new_knob: in the schema, not in TrainConfig"),
        (lambda s: (s["properties"]["train"]["properties"].pop("lr"), s["properties"]["train"]["required"].remove("lr")), "train.lr: in TrainConfig, not in the schema"),
        (lambda s: s["properties"]["data"]["properties"]["seq_len"].update(type="number"), "data.seq_len: schema type number vs Python int"),
        (lambda s: s["properties"]["train"]["properties"]["schedule"].update(enum=["cosine", "wsd"]), "train.schedule: schema string enum"),
        (lambda s: s["properties"]["tokenizer"]["properties"].update(path={"type": "string"}), "tokenizer.path: null is refused by the schema"),
        (lambda s: s["properties"]["dist"]["required"].remove("master_port"), "optional; the dataclass DistConfig has no defaults"),
        (lambda s: s["properties"]["model"]["properties"]["vision"]["properties"]["image_mean"].update(prefixItems=[{"type": "number"}] * 4), "model.vision.image_mean: schema array of 4"),
    ],
)
def test_the_check_fails_when_the_schema_drifts(drift, expected):
    schema = copy.deepcopy(_schema())
    drift(schema)
    problems = shape_problems(schema, RunConfig)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("vector", sorted((ROOT / "vectors" / "config" / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_every_valid_vector_types_and_writes_back_unchanged(vector):
    data = json.loads(vector.read_text(encoding="utf-8"))["config"]
    config = parse_run_config(data)
    assert isinstance(config.train.lr, float) and isinstance(config.model.vision.image_mean, tuple)
    assert json.dumps(config.to_dict(), sort_keys=True) == json.dumps(data, sort_keys=True)


def test_the_config_is_frozen(tmp_path):
    data = json.loads((ROOT / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text(encoding="utf-8"))["config"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    config = load_run_config(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0  # type: ignore[misc]
