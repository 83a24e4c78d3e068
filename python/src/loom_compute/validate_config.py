"""Verb `validate-config --config FILE`: loads and validates a run config, reports what it is.

The loading and the schema belong to loom_compute.config (`load_run_config(path) -> dict`,
raising `ConfigError`); this verb only runs it under the protocol, so a bad config reaches
the CLI as one clear `error` event naming file, key and reason.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from loom_compute.errors import ConfigError, LoomComputeError
from loom_compute.verbs import Verb

SUMMARY_KEYS = ("name", "preset", "stage")


def _config_module() -> Any:
    try:
        return importlib.import_module("loom_compute.config")
    except ModuleNotFoundError as exc:
        if exc.name == "loom_compute.config":
            raise LoomComputeError("this loom_compute has no config support (loom_compute/config.py is missing)") from None
        raise


def load_config(path: str) -> dict[str, Any]:
    """`loom_compute.config.load_run_config(path)`, with its config errors as `ConfigError`."""
    module = _config_module()
    module_error = getattr(module, "ConfigError", ConfigError)
    try:
        config = module.load_run_config(path)
    except LoomComputeError:
        raise
    except module_error as exc:  # a ConfigError that does not derive from ours
        raise ConfigError(str(exc)) from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the config loader returned {type(config).__name__}, not an object")
    return config


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    return {"config": args.config, "valid": True, **{key: config.get(key) for key in SUMMARY_KEYS}}


VERB = Verb(
    name="validate-config",
    help="load and validate a run config; report its name, preset and stage",
    run=run,
    config_required=True,
)
