"""The last step of every importer: the checked pieces written as one Loom export."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from loom_compute.config import RunConfig
from loom_compute.convert.run_config import ImportedModel, imported_run_config
from loom_compute.model.export_dir import ExportInfo, read_export, write_export


def write_imported(
    out: Path,
    *,
    base_config: RunConfig,
    model: ImportedModel,
    vision_state: Mapping[str, torch.Tensor],
    llm_state: Mapping[str, torch.Tensor],
    projector_state: Mapping[str, torch.Tensor],
    tokenizer: Tokenizer,
    image_token_id: int,
    prompt_format: str,
    source: Mapping[str, Any],
    extra_files: Mapping[str, bytes] | None = None,
) -> ExportInfo:
    out = Path(out)
    config = imported_run_config(base_config, model, out)
    write_export(
        out,
        vision_config=model.vision_config,
        vision_state=vision_state,
        llm_config=model.llm_config,
        llm_state=llm_state,
        projector_state=projector_state,
        tokenizer_json=tokenizer.to_str(pretty=True).encode("utf-8"),
        config=config,
        stage=model.stage,
        step=None,
        image_grid=model.image_grid,
        feature_layer=model.feature_layer,
        image_token_id=image_token_id,
        prompt_format=prompt_format,
        source=dict(source),
        extra_files=extra_files,
    )
    return read_export(out)
