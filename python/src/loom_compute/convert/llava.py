"""Import a LLaVA-style checkpoint folder on Qwen2 (the MLM-Filter and UniFilter scorers).

Read in Victorwz/LLaVA-Unified (the code ``weizhiwang/mlm-filter-qwen2.5-1.5b-gpt4o`` was trained
and is run with; MLM_Filter's README points there) and Victorwz/UniFilter ``LLaVA/``:

* folder: ``config.json`` (``LlavaQwenConfig`` = a Qwen2 config plus ``mm_*`` keys), weights as
  ``model.safetensors`` / ``pytorch_model.bin`` (or sharded, with an ``.index.json``), tokenizer
  files. Weight names: the Qwen2 LLM as ``model.*`` / ``lm_head.weight``, the projector under
  ``model.mm_projector.``, the tower (when saved) under ``model.vision_tower.vision_tower.``.
* vision (``multimodal_encoder/siglip_encoder.py``): ``SiglipVisionModel.from_pretrained(
  mm_vision_tower)`` — loaded from that path, not from the checkpoint (the tower is built with
  ``delay_load``; only ``unfreeze_mm_vision_tower`` makes the checkpoint's tower weights count), so
  ``--vision DIR`` is a local copy of ``mm_vision_tower`` unless that is a local folder already.
  Features: ``hidden_states[mm_vision_select_layer]`` for ``mm_vision_select_feature`` "patch"
  (SigLIP has no class token, nothing dropped); "cls_patch" (the pooled vector) has no Loom form.
* projector (``multimodal_projector/builder.py``): ``aapool_mlp`` = ``AvgPoolProjector(query_num=
  mm_num_image_tokens)``: ``sampler`` AdaptiveAvgPool2d to isqrt(query_num)^2 first, then
  ``mlp_projector`` Linear -> GELU -> Linear (Loom's Projector); ``mlp2x_gelu`` = the same MLP
  without a pool. ``linear``, deeper MLPs and ``identity`` have no Loom form.
* images (``mm_utils.process_images``): ``image_aspect_ratio: pad`` = expand2square with the
  processor's mean colour, then the SigLIP processor's square resize -> Loom ``pad``; anything else
  but ``anyres`` = the processor's squash -> ``squash``.
* features replace the ``<image>`` sentinel (-200) in order (``llava_arch.py``,
  ``prepare_inputs_labels_for_multimodal``).

Prompt format ``llava-qwen2`` (the ``qwen_instruct`` conversation, ``llava/conversation.py``
``conv_qwen_instruct``, ``SeparatorStyle.MPT``; used by ``--version qwen_instruct`` in
``scripts/mlm_filter/finetune.sh``), every piece:

* ``<s>`` (bos: ``train.py`` adds ``<s>`` as a special token and sets it as bos for qwen_instruct;
  ``preprocess_qwen`` prepends it to every training sample),
* system ``<|im_start|>system\\nYou are a helpful assistant`` (no final period) + ``<|im_end|>``,
* each turn ``<|im_start|>user\\n`` + message + ``<|im_end|>``, ``<|im_start|>assistant\\n`` +
  answer + ``<|im_end|>`` — no newline between turns (MPT style: role + message + sep),
* the image as ``<image>\\n`` before the first user message's text,
* generation starts after ``<|im_start|>assistant\\n``.

So, against Loom's ChatML: ``<s>`` first, no period after "assistant", no "\\n" after any
``<|im_end|>``. MLM_Filter's published batch scorer
(``mlm_filter_scoring_datacomp_batch_inference_v2.py``) deviates from its own training: it sends no
``<s>``, appends one " " token (id 220) after ``assistant\\n``, and squashes images with the
processor whatever ``image_aspect_ratio`` says; the training format is recorded here.

UniFilter (``LlavaQwenClassifier``, ``llava_qwen.py``) replaces the LM head with ``score``
(Linear(hidden, num_labels), no bias) read at the last non-padding token. The export keeps the
Qwen2 body (its output head tied to the embedding: there is no trained LM head) and the score head
in ``classifier.safetensors``; loom.json's ``source.head`` describes it. Its prompt
(``data_scoring/data_quality_classifier_caption_scoring.py``) is ``unifilter-qwen2``: bos + the
tokens of ``"<image>\\n" + caption`` (a literal ``<image>`` in the caption written as "image") + eos.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from loom_compute.config import RunConfig
from loom_compute.convert.export import write_imported
from loom_compute.convert.files import CheckpointError, check_shapes, load_pickle_weights, load_safetensors, read_json, tensor_dict
from loom_compute.convert.qwen2 import check_llm_state, check_vision_state, load_hf_vision, qwen2_config
from loom_compute.convert.run_config import ImportedModel
from loom_compute.convert.tokens import add_special, check_fits, eos_pad, read_tokenizer_json, require_tokens
from loom_compute.model.export_dir import ExportInfo

PROJECTOR = "model.mm_projector."
TOWER = "model.vision_tower.vision_tower."
NOT_LLM = (PROJECTOR, "model.vision_tower.", "model.image_newline", "score.")
BOS = "<s>"
CLASSIFIER_FILE = "classifier.safetensors"


def import_llava(
    src: Path,
    out: Path,
    base_config: RunConfig,
    *,
    vision: Path | None = None,
    tokenizer: Path | None = None,
) -> ExportInfo:
    src = Path(src)
    if not src.is_dir():
        raise CheckpointError(f"{src}: no such checkpoint folder", file=str(src))
    config_path = src / "config.json"
    cfg = read_json(config_path)
    where = str(config_path)
    architectures = cfg.get("architectures") or []
    if cfg.get("model_type") not in ("llava_qwen", "qwen2") and not any("Qwen" in a for a in architectures):
        raise CheckpointError(f"{where}: model_type {cfg.get('model_type')!r} is not a LLaVA on Qwen2; Loom's LLM is Qwen2", key="model_type")
    for key, allowed in (("mm_patch_merge_type", ("flat", None)), ("mm_vision_select_feature", ("patch", None))):
        if cfg.get(key) not in allowed:
            raise CheckpointError(f"{where}: {key} {cfg.get(key)!r} has no Loom form (Loom takes every patch of one image grid: 'patch', 'flat')", key=key)
    if cfg.get("mm_use_im_start_end"):
        raise CheckpointError(f"{where}: mm_use_im_start_end wraps images in extra tokens; Loom's prompts do not", key="mm_use_im_start_end")
    aspect = cfg.get("image_aspect_ratio")
    if aspect == "anyres":
        raise CheckpointError(f"{where}: image_aspect_ratio 'anyres' (several crops per image) has no Loom form", key="image_aspect_ratio")
    select_layer = cfg.get("mm_vision_select_layer")
    if not isinstance(select_layer, int):
        raise CheckpointError(f"{where}: mm_vision_select_layer is missing", key="mm_vision_select_layer")
    pool_tokens, (fc1, fc2) = _projector_layout(cfg, where)
    classifier = any("Classifier" in a for a in architectures)

    state = _read_weights(src)
    weights_where = f"{src} (weights)"

    # ---- vision ----
    tower_name = str(cfg.get("mm_vision_tower") or cfg.get("vision_tower") or "")
    if "siglip" not in tower_name.lower():
        raise CheckpointError(f"{where}: mm_vision_tower {tower_name!r} is not a SigLIP tower; Loom's vision tower is SigLIP", key="mm_vision_tower")
    vision_dir = vision or (Path(tower_name) if Path(tower_name).is_dir() else None)
    if vision_dir is None:
        raise CheckpointError(f"{where}: mm_vision_tower is {tower_name!r}, not a local folder; pass --vision DIR, a local copy of it (transformers format)")
    vision_config, vision_state, processor = load_hf_vision(Path(vision_dir))
    saved = {k[len(TOWER) :].removeprefix("vision_model."): v for k, v in state.items() if k.startswith(TOWER)}
    if cfg.get("unfreeze_mm_vision_tower"):
        if not saved:
            raise CheckpointError(f"{weights_where}: unfreeze_mm_vision_tower is set but no {TOWER}* weights are saved")
        vision_state = saved
    else:
        _same_tower(saved, vision_state, Path(vision_dir), tower_name)
    check_vision_state(vision_state, vision_config, f"{weights_where}: vision tower")
    if cfg.get("mm_hidden_size") not in (None, vision_config.hidden_size):
        raise CheckpointError(f"{where}: mm_hidden_size {cfg['mm_hidden_size']} but the vision tower is {vision_config.hidden_size} wide", key="mm_hidden_size")
    patch_grid = vision_config.image_size // vision_config.patch_size
    image_grid = patch_grid if pool_tokens is None else math.isqrt(pool_tokens)

    # ---- LLM ----
    llm_config = qwen2_config(cfg, where)
    head: dict[str, Any] | None = None
    extra_files: dict[str, bytes] = {}
    if classifier:
        score = state.get("score.weight")
        labels = int(cfg.get("num_labels") or (score.shape[0] if score is not None else 0))
        if score is None or tuple(score.shape) != (labels, llm_config.hidden_size):
            found = None if score is None else tuple(score.shape)
            raise CheckpointError(f"{weights_where}: a {architectures[0]} needs score.weight of shape ({labels}, {llm_config.hidden_size}), found {found}")
        llm_config.tie_word_embeddings = True  # no LM head was trained; the body's output head is the embedding
        extra_files[CLASSIFIER_FILE] = safetensors_bytes({"weight": score.contiguous()}, metadata={"format": "pt"})
        head = {"kind": "sequence-classifier", "file": CLASSIFIER_FILE, "num_labels": labels, "position": "last-token", "bias": False}
    llm_state = check_llm_state({k: v for k, v in state.items() if not k.startswith(NOT_LLM)}, llm_config, f"{weights_where}: LLM")

    # ---- projector ----
    vision_width, llm_width = vision_config.hidden_size, llm_config.hidden_size
    projector = {k[len(PROJECTOR) :]: v for k, v in state.items() if k.startswith(PROJECTOR)}
    check_shapes(
        projector,
        {f"{fc1}.weight": (llm_width, vision_width), f"{fc1}.bias": (llm_width,), f"{fc2}.weight": (llm_width, llm_width), f"{fc2}.bias": (llm_width,)},
        f"{weights_where}: {PROJECTOR}* ({cfg.get('mm_projector_type')})",
    )
    projector_state = {f"fc{i}.{leaf}": projector[f"{name}.{leaf}"] for i, name in ((1, fc1), (2, fc2)) for leaf in ("weight", "bias")}

    # ---- tokenizer ----
    tokenizer_path = tokenizer or src / "tokenizer.json"
    tok = read_tokenizer_json(tokenizer_path)
    image_token = base_config.tokenizer.image_token
    ids = add_special(tok, [BOS, image_token], str(tokenizer_path))
    eos, pad = eos_pad(src / "tokenizer_config.json", base_config)
    require_tokens(tok, [eos, pad], str(tokenizer_path))
    check_fits(tok, int(llm_state["model.embed_tokens.weight"].shape[0]), str(tokenizer_path))

    mean = tuple(float(x) for x in processor.get("image_mean", (0.5, 0.5, 0.5)))
    std = tuple(float(x) for x in processor.get("image_std", (0.5, 0.5, 0.5)))
    model = ImportedModel(
        vision_config=vision_config,
        llm_config=llm_config,
        feature_layer=select_layer,
        image_grid=image_grid,
        stage="sft",
        resize="pad" if aspect == "pad" else "squash",
        image_mean=mean,  # type: ignore[arg-type]
        image_std=std,  # type: ignore[arg-type]
        eos_token=eos,
        pad_token=pad,
    )
    source: dict[str, Any] = {
        "format": "llava",
        "path": str(src.resolve()),
        "architecture": architectures[0] if architectures else None,
        "mm_vision_tower": tower_name,
        "vision_weights": "checkpoint" if cfg.get("unfreeze_mm_vision_tower") else str(Path(vision_dir).resolve()),
        "mm_projector_type": cfg.get("mm_projector_type"),
        "mm_num_image_tokens": cfg.get("mm_num_image_tokens"),
        "mm_vision_select_layer": select_layer,
        "image_aspect_ratio": aspect,
        "conv_template": None if classifier else "qwen_instruct",
        "tokenizer": str(Path(tokenizer_path).resolve()),
        "added_tokens": ids,
        "head": head,
    }
    return write_imported(
        Path(out),
        base_config=base_config,
        model=model,
        vision_state=vision_state,
        llm_state=llm_state,
        projector_state=projector_state,
        tokenizer=tok,
        image_token_id=ids[image_token],
        prompt_format="unifilter-qwen2" if classifier else "llava-qwen2",
        source=source,
        extra_files=extra_files,
    )


def _same_tower(saved: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], vision_dir: Path, tower_name: str) -> None:
    """A frozen tower the checkpoint happens to carry must be the one --vision gives (compared in the
    saved dtype): LLaVA itself ignores the saved copy, so a difference means the wrong folder."""
    for key, tensor in saved.items():
        other = loaded.get(key)
        if other is not None and not torch.equal(tensor, other.to(tensor.dtype)):
            raise CheckpointError(
                f"{vision_dir}: its {key} differs from the vision tower saved in the checkpoint; pass --vision DIR, "
                f"a local copy of {tower_name!r}",
                key=key,
            )


def _projector_layout(cfg: dict[str, Any], where: str) -> tuple[int | None, tuple[str, str]]:
    kind = cfg.get("mm_projector_type", "linear")
    if kind == "aapool_mlp":
        tokens = cfg.get("mm_num_image_tokens")
        if not isinstance(tokens, int) or tokens < 1:
            raise CheckpointError(f"{where}: mm_projector_type aapool_mlp needs mm_num_image_tokens", key="mm_num_image_tokens")
        return tokens, ("mlp_projector.0", "mlp_projector.2")
    if kind == "mlp2x_gelu":
        return None, ("0", "2")
    raise CheckpointError(
        f"{where}: mm_projector_type {kind!r} has no Loom form (Loom's projector is pool -> Linear -> GELU -> Linear: "
        "'aapool_mlp' or 'mlp2x_gelu')",
        key="mm_projector_type",
    )


def _read_weights(src: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weights: one file or the shards an index names."""
    for index_name, loader in (("model.safetensors.index.json", load_safetensors), ("pytorch_model.bin.index.json", _load_bin)):
        index_path = src / index_name
        if index_path.is_file():
            weight_map = read_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index_path}: weight_map is missing or empty", file=str(index_path))
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(loader(src / shard))
            missing = sorted(set(weight_map) - set(state))
            if missing:
                raise CheckpointError(f"{index_path}: {missing[0]} is listed but no shard holds it", file=str(index_path))
            return state
    if (src / "model.safetensors").is_file():
        return load_safetensors(src / "model.safetensors")
    if (src / "pytorch_model.bin").is_file():
        return _load_bin(src / "pytorch_model.bin")
    raise CheckpointError(f"{src}: no weights (model.safetensors, pytorch_model.bin, or an .index.json with shards)", file=str(src))


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    return tensor_dict(load_pickle_weights(path), str(path))
