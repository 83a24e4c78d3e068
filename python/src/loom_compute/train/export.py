"""The consolidated export of trained weights: ``runs/<name>/export/``.

Layout (each part loads with the stock ``transformers`` class, so any tool can use it)::

    export/
      loom.json                 what this is: stage, step, image_grid, feature_layer, image token,
                                projector width, the run config
      vision/                   SiglipVisionModel.from_pretrained(...)  (config.json, model.safetensors)
      llm/                      Qwen2ForCausalLM.from_pretrained(...)   (config.json, model.safetensors)
      projector.safetensors     fc1.weight, fc1.bias, fc2.weight, fc2.bias
      tokenizer.json            the run's tokenizer, when the config names one

Weights are gathered from the FSDP shards on rank 0 (``full_state_dict``, CPU offload) and kept
in their master dtype. The directory is built as ``export.tmp`` and swapped in at the end, so a
crash never leaves a half-written export. ``model.init_from: runs/<name>/export`` starts the next
stage (SFT after pre-training) from it; ``model.builder.build_model`` reads it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from loom_compute.config import RunConfig
from loom_compute.train.distributed import DistContext, barrier

FORMAT = "loom-export"
VERSION = 1


def _part(full: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v.contiguous() for k, v in full.items() if k.startswith(prefix)}


def export_model(model: nn.Module, out_dir: Path, config: RunConfig, step: int, ctx: DistContext) -> Path:
    """Writes ``out_dir`` (collective: every rank calls it; rank 0 writes)."""
    out_dir = Path(out_dir)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if ctx.is_primary:
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "vision").mkdir(parents=True)
        (tmp / "llm").mkdir()
        inner = model
        vision_config, llm_config = inner.vision.config, inner.llm.config
        vision_config.save_pretrained(tmp / "vision")
        save_file(_part(full, "vision."), str(tmp / "vision" / "model.safetensors"), metadata={"format": "pt"})
        llm_config.save_pretrained(tmp / "llm")
        llm_weights = _part(full, "llm.")
        if getattr(llm_config, "tie_word_embeddings", False):
            llm_weights.pop("lm_head.weight", None)  # the same tensor as the input embeddings
        save_file(llm_weights, str(tmp / "llm" / "model.safetensors"), metadata={"format": "pt"})
        save_file(_part(full, "projector."), str(tmp / "projector.safetensors"), metadata={"format": "pt"})
        tokenizer_path = config.tokenizer.path
        if tokenizer_path:
            shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
        (tmp / "loom.json").write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "stage": config.stage,
                    "step": step,
                    "image_grid": inner.image_grid,
                    "feature_layer": inner.feature_layer,
                    "image_token_id": inner.image_token_id,
                    "projector_hidden_size": inner.projector.fc1.out_features,
                    "config": config.to_dict(),
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        old = out_dir.with_name(out_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    barrier()
    return out_dir
