"""The trainer's export: ``runs/<name>/export/``, gathered from the FSDP shards.

Weights are gathered on rank 0 (``full_state_dict``, CPU offload) and kept in their master
dtype, then written by ``model.export_dir.write_export`` (the one writer of the layout, atomic).
``model.init_from: runs/<name>/export`` starts the next stage (SFT after pre-training) from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from loom_compute.config import RunConfig
from loom_compute.model.export_dir import write_export
from loom_compute.train.distributed import DistContext, barrier


def _part(full: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}


def export_model(model: nn.Module, out_dir: Path, config: RunConfig, step: int, ctx: DistContext) -> Path:
    """Writes ``out_dir`` (collective: every rank calls it; rank 0 writes)."""
    out_dir = Path(out_dir)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ctx.is_primary:
        write_export(
            out_dir,
            vision_config=model.vision.config,
            vision_state=_part(full, "vision."),
            llm_config=model.llm.config,
            llm_state=_part(full, "llm."),
            projector_state=_part(full, "projector."),
            tokenizer_json=config.tokenizer.path,
            config=config,
            stage=config.stage,
            step=step,
            image_grid=model.image_grid,
            feature_layer=model.feature_layer,
            image_token_id=model.image_token_id,
        )
    barrier()
    return out_dir
