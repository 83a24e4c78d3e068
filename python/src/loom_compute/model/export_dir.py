"""The Loom-native export folder: the one place that writes, reads and loads it.

Layout (each part loads with the stock ``transformers`` class, so any tool can use it)::

    export/
      loom.json                 what this is (below)
      vision/                   SiglipVisionModel.from_pretrained(...)  (config.json, model.safetensors)
      llm/                      Qwen2ForCausalLM.from_pretrained(...)   (config.json, model.safetensors,
                                generation_config.json), AutoTokenizer.from_pretrained(...) (tokenizer
                                files and chat template, convert/hf_tokenizer.py)
      projector.safetensors     fc1.weight, fc1.bias, fc2.weight, fc2.bias
      tokenizer.json            the tokenizer the model was trained with

``loom.json`` (version 2; version 1 had no ``prompt_format`` or ``source``, read as "chatml"/"caption"
by stage and null)::

    format: "loom-export", version, stage ("pretrain" | "sft"), step (int or null),
    image_grid, feature_layer, image_token_id, projector_hidden_size,
    prompt_format: how a conversation becomes ids for this model (loom_compute.infer.prompts),
    source: null for a trained run, {"format", "path", ...} for an imported checkpoint,
    config: the full run config (its model, data.resize, vision mean/std and tokenizer settings
            are what a loader needs)

Writers: the trainer (train/export.py, gathered from FSDP shards) and the importers
(loom_compute/convert/). Readers: ``model.init_from`` (builder.build_model), the MLM-Filter
scorer, generation and the converters, all through ``read_export``/``load_export``.

The folder is built as ``<out>.tmp`` and swapped in at the end, so a crash never leaves a
half-written export and the previous one survives until the new one is complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from loom_compute.atomic import write_folder
from loom_compute.config import RunConfig, parse_run_config
from loom_compute.errors import LoomComputeError

FORMAT = "loom-export"
VERSION = 2
# A stage's prompt format when loom.json does not name one (version 1 exports).
DEFAULT_PROMPT_FORMAT = {"pretrain": "caption", "sft": "chatml"}


class ExportError(LoomComputeError):
    """A folder that is not a readable Loom export."""


@dataclass(frozen=True)
class ExportInfo:
    path: Path
    stage: str
    step: int | None
    image_grid: int
    feature_layer: int
    image_token_id: int
    projector_hidden_size: int
    prompt_format: str
    source: dict[str, Any] | None
    config: RunConfig
    raw: dict[str, Any]

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"


def read_export(path: str | Path) -> ExportInfo:
    """The export's ``loom.json``, checked and typed; errors name the file and the key."""
    path = Path(path)
    info_path = path / "loom.json"
    try:
        raw = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: no loom.json here; is it a Loom export directory (runs/<name>/export)?") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{info_path}: cannot read it ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ExportError(f"{info_path}: not a Loom export (format {found!r}, expected {FORMAT!r})")
    version = raw.get("version")
    if version not in (1, VERSION):
        raise ExportError(f"{info_path}: version {version!r} is not one this Loom reads (1 or {VERSION})")
    try:
        stage = str(raw["stage"])
        config = parse_run_config(raw["config"], str(info_path))
        info = ExportInfo(
            path=path,
            stage=stage,
            step=None if raw.get("step") is None else int(raw["step"]),
            image_grid=int(raw["image_grid"]),
            feature_layer=int(raw["feature_layer"]),
            image_token_id=int(raw["image_token_id"]),
            projector_hidden_size=int(raw["projector_hidden_size"]),
            prompt_format=str(raw.get("prompt_format") or DEFAULT_PROMPT_FORMAT.get(stage, "chatml")),
            source=raw.get("source"),
            config=config,
            raw=raw,
        )
    except KeyError as exc:
        raise ExportError(f"{info_path}: key {exc.args[0]!r} is missing") from None
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{info_path}: {exc}") from None
    for part in ("vision/config.json", "llm/config.json", "projector.safetensors"):
        if not (path / part).is_file():
            raise ExportError(f"{path}: {part} is missing; the export is incomplete")
    return info


def write_export(
    out_dir: str | Path,
    *,
    vision_config: Any,
    vision_state: Mapping[str, torch.Tensor],
    llm_config: Any,
    llm_state: Mapping[str, torch.Tensor],
    projector_state: Mapping[str, torch.Tensor],
    tokenizer_json: str | Path | bytes | None,
    config: RunConfig,
    stage: str,
    step: int | None,
    image_grid: int,
    feature_layer: int,
    image_token_id: int,
    prompt_format: str | None = None,
    source: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Writes a complete export atomically: ``<out>.tmp`` is filled, then renamed over ``<out>``.

    ``vision_config``/``llm_config`` are transformers ``PretrainedConfig`` objects; the states are
    the towers' own state dicts (no ``vision.``/``llm.`` prefix) and the projector's
    ``fc1``/``fc2`` weights. A tied LLM's ``lm_head.weight`` is dropped: it is the embedding.
    """
    out_dir = Path(out_dir)
    # Made before anything is written, so a tokenizer without eos/pad/image token fails cleanly.
    llm_files = {}
    if tokenizer_json is not None:
        data = tokenizer_json if isinstance(tokenizer_json, bytes) else Path(tokenizer_json).read_bytes()
        llm_files = _llm_tokenizer_files(data, config, prompt_format or DEFAULT_PROMPT_FORMAT.get(stage, "chatml"), llm_config)
    prompt_format = prompt_format or DEFAULT_PROMPT_FORMAT.get(stage, "chatml")
    files: dict[str, bytes] = {f"llm/{name}": data for name, data in llm_files.items()}
    if tokenizer_json is not None:
        files["tokenizer.json"] = tokenizer_json if isinstance(tokenizer_json, bytes) else Path(tokenizer_json).read_bytes()
    files.update(extra_files or {})
    info = {
        "format": FORMAT,
        "version": VERSION,
        "stage": stage,
        "step": step,
        "image_grid": int(image_grid),
        "feature_layer": int(feature_layer),
        "image_token_id": int(image_token_id),
        "projector_hidden_size": int(projector_state["fc1.weight"].shape[0]),
        "prompt_format": prompt_format,
        "source": dict(source) if source is not None else None,
        "config": config.to_dict(),
    }
    files["loom.json"] = json.dumps(info, indent=1).encode("utf-8")

    def write_weights(tmp: Path) -> None:
        (tmp / "vision").mkdir(exist_ok=True)
        (tmp / "llm").mkdir(exist_ok=True)
        vision_config.save_pretrained(tmp / "vision")
        # Under SiglipVisionModel's vision_model. prefix: 4.4x loads only that; 5.x (flat) strips it.
        vision_weights = {k if k.startswith("vision_model.") else f"vision_model.{k}": v for k, v in _contiguous(vision_state).items()}
        save_file(vision_weights, str(tmp / "vision" / "model.safetensors"), metadata={"format": "pt"})
        llm_config.save_pretrained(tmp / "llm")
        _write_both_versions(tmp / "llm" / "config.json")
        llm_weights = _contiguous(llm_state)
        if getattr(llm_config, "tie_word_embeddings", False):
            llm_weights.pop("lm_head.weight", None)
        save_file(llm_weights, str(tmp / "llm" / "model.safetensors"), metadata={"format": "pt"})
        save_file(_contiguous(projector_state), str(tmp / "projector.safetensors"), metadata={"format": "pt"})

    return write_folder(out_dir, files, write_weights)


def inference_config(info: ExportInfo, attention: str = "sdpa") -> RunConfig:
    """The export's run config pointed at the export itself: its weights, grid and tokenizer."""
    trained = info.config
    tokenizer = trained.tokenizer
    if info.tokenizer_path.is_file():
        tokenizer = replace(tokenizer, path=str(info.tokenizer_path))
    return replace(
        trained,
        image_grid=info.image_grid,
        model=replace(trained.model, init_from=str(info.path)),
        tokenizer=tokenizer,
        train=replace(trained.train, attention=attention),
    )


def load_export(path: str | Path, attention: str = "sdpa") -> tuple[Any, ExportInfo]:
    """(VisionLanguageModel in eval mode, fp32 on the CPU, ExportInfo) for an export folder."""
    from loom_compute.model.builder import build_model

    info = read_export(path)
    if not info.tokenizer_path.is_file():
        raise ExportError(f"{info.path}: tokenizer.json is missing; an export needs the tokenizer it was trained with")
    model = build_model(inference_config(info, attention), image_token_id=info.image_token_id)
    return model.eval(), info


def _write_both_versions(path: Path) -> None:
    """The LLM config with the keys transformers 4.4x reads (rope_theta, torch_dtype) beside 5.x's."""
    from loom_compute.convert.hf_config import both_versions

    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(both_versions(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _llm_tokenizer_files(tokenizer_json: bytes, config: RunConfig, prompt_format: str, llm_config: Any) -> dict[str, bytes]:
    """``llm/``'s AutoTokenizer files and generation_config.json, so ``AutoTokenizer.from_pretrained(export/llm)``
    is the whole tokenizer (a bare config.json gives one of length 1) and generation stops at eos."""
    from loom_compute.convert.hf_tokenizer import TEMPLATE_FORMATS, chat_template_for, generation_config, token_ids, tokenizer_files

    tok = config.tokenizer
    where = f"tokenizer of run {config.name!r}"
    template = chat_template_for(prompt_format, tok.image_token, where) if prompt_format in TEMPLATE_FORMATS else None
    max_length = int(getattr(llm_config, "max_position_embeddings", 0) or config.data.seq_len)
    files = tokenizer_files(
        tokenizer_json, image_token=tok.image_token, eos_token=tok.eos_token, pad_token=tok.pad_token,
        model_max_length=max_length, chat_template=template, where=where, require_special=False,
    )
    ids = token_ids(tokenizer_json, where, eos_token=tok.eos_token, pad_token=tok.pad_token)
    generation = generation_config(ids["eos_token"], ids["pad_token"])
    files["generation_config.json"] = (json.dumps(generation, indent=2) + "\n").encode("utf-8")
    return files


def _contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in state.items()}
