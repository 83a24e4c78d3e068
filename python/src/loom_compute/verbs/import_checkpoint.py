"""Verb `import --format prismatic|llava|llava-hf --source SRC --out EXPORT --config BASE.json`.

Brings a published checkpoint into a Loom-native export (model/export_dir.py), so `loom chat`,
generation, the MLM-Filter scorer and `model.init_from` take it like a trained run's export.
``--config`` is the base run config (the CLI writes a preset's resolved config); the importer
replaces the model's shapes, image settings and tokenizer with the source's. The converters live
in loom_compute.convert (llava-hf: convert/llava_hf.py, imported only when asked for).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loom_compute.errors import LoomComputeError, UsageError
from loom_compute.verbs.dispatch import Verb

FORMATS = ("prismatic", "llava", "llava-hf")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="the source's layout")
    parser.add_argument("--source", required=True, metavar="SRC", help="the checkpoint folder (prismatic: the run folder or its .pt)")
    parser.add_argument("--out", required=True, metavar="EXPORT", help="the export folder to write (replaced atomically)")
    parser.add_argument("--vision", metavar="DIR", help="a local transformers SigLIP folder, for sources that do not carry the vision weights")
    parser.add_argument("--llm", metavar="DIR", help="a local Qwen2 folder (config.json, tokenizer files): prismatic run folders lack them")
    parser.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.json to use instead of the source's (or --llm's)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from loom_compute.config import load_run_config

    if not args.config:
        raise UsageError("import: --config BASE.json is required (the base run config the import overrides)")
    base = load_run_config(args.config)
    source, out = Path(args.source), Path(args.out)
    vision = Path(args.vision) if args.vision else None
    llm = Path(args.llm) if args.llm else None
    tokenizer = Path(args.tokenizer) if args.tokenizer else None
    if args.format == "prismatic":
        from loom_compute.convert.prismatic import import_prismatic

        info = import_prismatic(source, out, base, vision=vision, llm=llm, tokenizer=tokenizer)
    elif args.format == "llava":
        from loom_compute.convert.llava import import_llava

        info = import_llava(source, out, base, vision=vision, tokenizer=tokenizer)
    else:
        try:
            from loom_compute.convert.llava_hf import import_llava_hf
        except ModuleNotFoundError as exc:
            if exc.name != "loom_compute.convert.llava_hf":
                raise
            raise LoomComputeError("import --format llava-hf is not in this build (loom_compute.convert.llava_hf is missing)") from None
        info = import_llava_hf(source, out, base)
    return {"out": str(info.path), "format": args.format, "prompt_format": info.prompt_format, "stage": info.stage}


VERB = Verb(
    name="import",
    help="import a published checkpoint (prismatic, llava, llava-hf) as a Loom export",
    run=run,
    add_arguments=_add_arguments,
    config_required=True,
)
