"""Verb `validate-config --config FILE`: loads and validates a run config, reports what it is.

The loading and the schema belong to loom_compute.config; this verb only runs it under the
protocol, so a bad config reaches the CLI as one clear `error` event naming file, key and reason.
"""

from __future__ import annotations

import argparse
from typing import Any

from loom_compute.config import load_run_config
from loom_compute.verbs.dispatch import Verb

SUMMARY_KEYS = ("name", "preset", "stage")


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = load_run_config(args.config)
    return {"config": args.config, "valid": True, **{key: getattr(config, key) for key in SUMMARY_KEYS}}


VERB = Verb(
    name="validate-config",
    help="load and validate a run config; report its name, preset and stage",
    run=run,
    config_required=True,
)
