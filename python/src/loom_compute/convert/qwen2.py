"""The Qwen2 LLM of an imported model: its config, and its weights checked against that config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from loom_compute.convert.files import CheckpointError, check_shapes, read_json

# Keys of a LLaVA-style config that describe the vision side; a Qwen2Config keeps unknown keys, so
# they are dropped before the LLM's config is written.
_NOT_QWEN2 = ("mm_", "image_aspect_ratio", "image_grid_pinpoints", "tokenizer_model_max_length", "tokenizer_padding_side",
              "tune_mm_", "freeze_mm_", "unfreeze_mm_", "use_mm_proj", "num_labels", "id2label", "label2id",
              "problem_type", "auto_map")


def qwen2_config(fields: Mapping[str, Any], where: str) -> Qwen2Config:
    kept = {k: v for k, v in fields.items() if not k.startswith(_NOT_QWEN2) and k not in ("architectures", "model_type", "transformers_version", "_name_or_path")}
    try:
        config = Qwen2Config(**kept)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a Qwen2 config ({exc})") from None
    if config.hidden_size % config.num_attention_heads:
        raise CheckpointError(f"{where}: hidden_size {config.hidden_size} is not a multiple of num_attention_heads")
    return config


def qwen2_config_from_dir(directory: Path, flag: str) -> Qwen2Config:
    fields = read_json(directory / "config.json")
    if fields.get("model_type") not in ("qwen2", None):
        raise CheckpointError(f"{directory / 'config.json'}: model_type {fields.get('model_type')!r}; {flag} must be a Qwen2 checkpoint folder")
    return qwen2_config(fields, str(directory / "config.json"))


def expected_shapes(model_class: Any, config: Any) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = model_class(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_llm_state(state: Mapping[str, torch.Tensor], config: Qwen2Config, where: str) -> dict[str, torch.Tensor]:
    """The LLM weights, complete and shaped as ``config`` says; a tied head must equal the embedding."""
    state = dict(state)
    embed = state.get("model.embed_tokens.weight")
    if config.tie_word_embeddings and "lm_head.weight" in state and embed is not None:
        if not torch.equal(state["lm_head.weight"], embed):
            raise CheckpointError(
                f"{where}: the config ties the output head to the embedding (tie_word_embeddings) but lm_head.weight "
                "differs from model.embed_tokens.weight"
            )
        del state["lm_head.weight"]
    ignore = ("lm_head.weight",) if config.tie_word_embeddings else ()
    check_shapes(state, expected_shapes(Qwen2ForCausalLM, config), where, ignore=ignore)
    return state


def check_vision_state(state: Mapping[str, torch.Tensor], config: SiglipVisionConfig, where: str) -> None:
    check_shapes(state, expected_shapes(SiglipVisionModel, config), where)


def load_hf_vision(directory: Path, flag: str = "--vision") -> tuple[SiglipVisionConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """(config, weights, image processor fields) of a local transformers SigLIP folder.

    The folder may hold a whole ``SiglipModel`` (google/siglip-so400m-patch14-384 does): its
    vision half is what ``SiglipVisionModel.from_pretrained`` takes, as LLaVA's tower does.
    """
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{flag} {directory}: no config.json; pass a local transformers SigLIP folder", file=str(directory))
    try:
        model = SiglipVisionModel.from_pretrained(str(directory), dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{flag} {directory}: cannot load it as a SigLIP vision model ({exc})", file=str(directory)) from None
    processor_path = directory / "preprocessor_config.json"
    processor = read_json(processor_path) if processor_path.is_file() else {}
    config = model.config
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return config, state, processor
