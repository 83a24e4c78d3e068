"""The imported model's run config: the base config (``--config``) with the source's own model.

The importer keeps the base config's training and data choices and replaces everything that
describes the model itself: tower shapes, feature layer, projector width, image grid, stage,
image size / mean / std / resize, and the tokenizer (the export's own ``tokenizer.json`` and the
source's eos/pad). Model sources become ``{pretrained: null, config: ...}`` (the transformers
config fields): the weights live in the export and reach a run through ``model.init_from``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom_compute.config import RunConfig, parse_run_config


@dataclass(frozen=True)
class ImportedModel:
    """What the source says about the model, beyond its weights."""

    vision_config: Any  # SiglipVisionConfig
    llm_config: Any  # Qwen2Config
    feature_layer: int
    image_grid: int
    stage: str  # "pretrain" | "sft"
    resize: str  # "squash" | "pad"
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    eos_token: str
    pad_token: str


def imported_run_config(base: RunConfig, model: ImportedModel, out_dir: Path) -> RunConfig:
    config = copy.deepcopy(base.to_dict())
    vision, llm = model.vision_config, model.llm_config
    config["stage"] = model.stage
    config["image_grid"] = int(model.image_grid)
    config["model"]["vision"].update(
        source={"pretrained": None, "config": _fields(vision)},
        image_size=int(vision.image_size),
        patch_size=int(vision.patch_size),
        hidden_size=int(vision.hidden_size),
        feature_layer=int(model.feature_layer),
        image_mean=[float(x) for x in model.image_mean],
        image_std=[float(x) for x in model.image_std],
    )
    config["model"]["projector"]["hidden_size"] = int(llm.hidden_size)
    config["model"]["llm"].update(source={"pretrained": None, "config": _fields(llm)}, hidden_size=int(llm.hidden_size))
    config["model"]["init_from"] = None
    config["tokenizer"].update(path=str(Path(out_dir).resolve() / "tokenizer.json"), eos_token=model.eos_token, pad_token=model.pad_token)
    config["data"]["resize"] = model.resize
    return parse_run_config(config, "the imported model's run config")


def _fields(hf_config: Any) -> dict[str, Any]:
    """The config's non-default fields, as a from-scratch build would take them."""
    fields = hf_config.to_diff_dict()
    for key in ("transformers_version", "architectures", "model_type", "_name_or_path", "torch_dtype", "dtype", "attn_implementation"):
        fields.pop(key, None)
    return fields
