"""Verb `export --format llava-hf|tokenizer --source EXPORT --out DIR`: a Loom export in a form other tools load.

- ``llava-hf``: one folder for ``LlavaForConditionalGeneration.from_pretrained`` and
  ``AutoProcessor.from_pretrained`` (convert/llava_hf.py; an SFT-stage export only, the module
  says why);
- ``tokenizer``: an ``AutoTokenizer.from_pretrained`` folder with eos, pad, the image token and the
  chat template (convert/hf_tokenizer.py).

The folder is written atomically; done carries ``{"out", "format"}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loom_compute.verbs.dispatch import Verb

FORMATS = ("llava-hf", "tokenizer")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="llava-hf: a stock LLaVA folder; tokenizer: an AutoTokenizer folder")
    parser.add_argument("--source", required=True, metavar="EXPORT", help="a Loom export directory (runs/NAME/export)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write (replaced atomically when it exists)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the verb table must load without torch, so `doctor` can report a broken one.
    from loom_compute.atomic import write_folder
    from loom_compute.convert.hf_tokenizer import export_tokenizer_files
    from loom_compute.convert.llava_hf import export_llava_hf
    from loom_compute.model.export_dir import read_export

    out = Path(args.out).resolve()
    if args.format == "llava-hf":
        export_llava_hf(args.source, out)
    else:
        write_folder(out, export_tokenizer_files(read_export(args.source)))
    return {"out": str(out), "format": args.format}


VERB = Verb(
    name="export",
    help="write a Loom export as a llava-hf folder (LlavaForConditionalGeneration + AutoProcessor) or an AutoTokenizer folder",
    run=run,
    add_arguments=_add_arguments,
)
