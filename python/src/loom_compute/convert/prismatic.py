"""Import a prismatic-vlms run folder (the released Open-Qwen2VL and Open-Qwen2VL-Base).

Read in Victorwz/Open-Qwen2VL, ``prismatic-vlms/prismatic``:

* the run folder holds ``config.json`` (``model``: ``vision_backbone_id``, ``llm_backbone_id``,
  ``arch_specifier``, ``image_resize_strategy``; top level ``stage``) and
  ``checkpoints/latest-checkpoint.pt`` = ``{"model": {"projector", "llm_backbone",
  ["vision_backbone"]}}`` (``models/vlms/prismatic.py``, ``from_pretrained``; saved by
  ``training/strategies/fsdp.py``). The vision weights are saved only by "full" stages; without
  them prismatic loads timm's pretrained SigLIP, so ``--vision DIR`` (a local transformers SigLIP
  folder of the same model) stands in for it. The LLM's config and tokenizer are not in the run
  folder either (prismatic loads them from the hub path): ``--llm DIR`` (Qwen2.5-1.5B-Instruct).
* vision (``models/backbones/vision/base_vision.py``): timm ViT, features =
  ``get_intermediate_layers(n={len(blocks) - 2})`` = the output of the second-to-last block =
  transformers' ``hidden_states[-2]``; SigLIP has no class token, so all patches. Transform:
  ``resize-naive`` = squash to the backbone's size (bicubic), ``letterbox`` = pad to square with
  the mean colour, then resize; mean = std = 0.5.
* projector (``util/nn_utils.py``): ``AvgPoolProjector`` for ``...avgpool`` arch specifiers
  (``no-align+avgpool`` = 144 tokens, ``full-align+729-avgpool`` = 729): patches -> (B, C, h, w)
  row-major -> ``AdaptiveAvgPool2d`` -> ``mlp_projector`` Linear -> GELU -> Linear. Pool first,
  then the MLP: Loom's ``Projector`` exactly. ``gelu-mlp`` is the same MLP without a pool (Loom's
  pool to the full grid is the identity). ``linear`` and ``fused-gelu-mlp`` have no Loom form.
* image features replace the ``<image>`` sentinel (-200) in order (``forward``), as Loom's
  placeholder ids are replaced.
* LLM (``models/backbones/llm/qwen2.py``): ``Qwen2ForCausalLM`` under ``llm.``; the tokenizer gets
  ``<|endofchunk|>`` and ``<s>`` (bos) as added special tokens, embeddings not resized.
* prompt (``prompting/qwen2_prompter.py``): ``<s><|im_start|>system\\nYou are a helpful
  assistant.<|im_end|>\\n<|im_start|>user\\n{msg}<|im_end|>assistant\\n`` -> ``prismatic-qwen2``;
  pre-training samples (``preprocessing/datasets/datasets.py``) are ``<s><image>\\n{caption}`` +
  eos -> ``prismatic-qwen2-caption`` for a pre-trained (``stage`` pretrain) checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from loom_compute.config import RunConfig
from loom_compute.convert.export import write_imported
from loom_compute.convert.files import CheckpointError, check_shapes, load_pickle_weights, read_json, tensor_dict
from loom_compute.convert.qwen2 import check_llm_state, check_vision_state, load_hf_vision, qwen2_config_from_dir
from loom_compute.convert.run_config import ImportedModel
from loom_compute.convert.timm_siglip import TIMM_ACT, timm_to_hf, timm_vision_config
from loom_compute.convert.tokens import add_special, check_fits, eos_pad, read_tokenizer_json, require_tokens
from loom_compute.model.export_dir import ExportInfo

CHECKPOINT = Path("checkpoints") / "latest-checkpoint.pt"
# The tokens Qwen2LLMBackbone adds, in its order; "<s>" is its bos.
ADDED_TOKENS = ["<|endofchunk|>", "<s>"]
# vision_backbone_id -> the image size prismatic resizes to (models/materialize.py).
IMAGE_SIZE = {
    "siglip-vit-so400m": 224,
    "siglip-vit-so400m-384px": 384,
    "siglip-vit-b16-224px": 224,
    "siglip-vit-b16-256px": 256,
    "siglip-vit-b16-384px": 384,
}
RESIZE = {"resize-naive": "squash", "letterbox": "pad"}
PRETRAIN_STAGES = ("align", "pretrain", "full-pretrain")
SIGLIP_MEAN_STD = (0.5, 0.5, 0.5)


def import_prismatic(
    src: Path,
    out: Path,
    base_config: RunConfig,
    *,
    vision: Path | None = None,
    llm: Path | None = None,
    tokenizer: Path | None = None,
) -> ExportInfo:
    run_dir, checkpoint = _locate(Path(src))
    config_path = run_dir / "config.json"
    run_config = read_json(config_path)
    model_cfg = run_config.get("model")
    if not isinstance(model_cfg, dict):
        raise CheckpointError(f"{config_path}: key 'model' is missing; not a prismatic run config", file=str(config_path))
    fields = {}
    for key in ("vision_backbone_id", "llm_backbone_id", "arch_specifier", "image_resize_strategy"):
        if not isinstance(model_cfg.get(key), str):
            raise CheckpointError(f"{config_path}: model.{key} is missing", file=str(config_path), key=f"model.{key}")
        fields[key] = model_cfg[key]
    backbone = fields["vision_backbone_id"]
    if backbone not in IMAGE_SIZE:
        raise CheckpointError(
            f"{config_path}: model.vision_backbone_id {backbone!r} is not a SigLIP ViT; Loom's vision tower is SigLIP "
            f"({', '.join(IMAGE_SIZE)})",
            key="model.vision_backbone_id",
        )
    if not fields["llm_backbone_id"].startswith("qwen2"):
        raise CheckpointError(
            f"{config_path}: model.llm_backbone_id {fields['llm_backbone_id']!r} is not a Qwen2 model; Loom's LLM is Qwen2",
            key="model.llm_backbone_id",
        )
    resize = RESIZE.get(fields["image_resize_strategy"])
    if resize is None:
        raise CheckpointError(
            f"{config_path}: model.image_resize_strategy {fields['image_resize_strategy']!r} has no Loom form "
            "(Loom resizes by squash = resize-naive or pad = letterbox; resize-crop cuts the image)",
            key="model.image_resize_strategy",
        )
    pool_tokens, projector_names = _projector_layout(fields["arch_specifier"], config_path)

    where = str(checkpoint)
    parts = _model_parts(load_pickle_weights(checkpoint), where)

    # ---- vision ----
    if "vision_backbone" in parts:
        timm_state = _strip(parts["vision_backbone"], "featurizer.", f"{where}: model.vision_backbone")
        vision_state = timm_to_hf(timm_state, f"{where}: model.vision_backbone")
        if vision is not None:
            vision_config = load_hf_vision(vision)[0]
            vision_config.hidden_act = TIMM_ACT
        else:
            vision_config = timm_vision_config(timm_state, backbone, f"{where}: model.vision_backbone")
        vision_weights = "checkpoint"
    elif vision is not None:
        vision_config, vision_state, _ = load_hf_vision(vision)
        vision_config.hidden_act = TIMM_ACT  # as timm ran these weights; see timm_siglip.py
        vision_weights = str(vision)
    else:
        raise CheckpointError(
            f"{where}: the checkpoint holds no vision weights (prismatic loads timm's pretrained {backbone}); "
            "pass --vision DIR, a local copy of google/siglip-so400m-patch14-384 (transformers format)"
        )
    check_vision_state(vision_state, vision_config, f"{where}: vision weights")
    if vision_config.image_size != IMAGE_SIZE[backbone]:
        raise CheckpointError(
            f"the vision tower takes {vision_config.image_size} px images but {backbone} runs at {IMAGE_SIZE[backbone]} px"
        )
    patch_grid = vision_config.image_size // vision_config.patch_size
    image_grid = patch_grid if pool_tokens is None else math.isqrt(pool_tokens)

    # ---- LLM ----
    if llm is None:
        raise CheckpointError(
            f"{where}: a prismatic checkpoint has no LLM config or tokenizer (prismatic loads them from "
            f"{fields['llm_backbone_id']!r} on the hub); pass --llm DIR, a local copy of Qwen/Qwen2.5-1.5B-Instruct"
        )
    llm_config = qwen2_config_from_dir(llm, "--llm")
    llm_state = check_llm_state(_strip(parts["llm_backbone"], "llm.", f"{where}: model.llm_backbone"), llm_config, f"{where}: model.llm_backbone")

    # ---- projector ----
    fc1, fc2 = projector_names
    vision_width, llm_width = vision_config.hidden_size, llm_config.hidden_size
    check_shapes(
        parts["projector"],
        {f"{fc1}.weight": (llm_width, vision_width), f"{fc1}.bias": (llm_width,), f"{fc2}.weight": (llm_width, llm_width), f"{fc2}.bias": (llm_width,)},
        f"{where}: model.projector ({fields['arch_specifier']})",
    )
    projector_state = {f"fc{i}.{leaf}": parts["projector"][f"{name}.{leaf}"] for i, name in ((1, fc1), (2, fc2)) for leaf in ("weight", "bias")}

    # ---- tokenizer ----
    tokenizer_path = tokenizer or llm / "tokenizer.json"
    tok = read_tokenizer_json(tokenizer_path)
    image_token = base_config.tokenizer.image_token
    ids = add_special(tok, [*ADDED_TOKENS, image_token], str(tokenizer_path))
    eos, pad = eos_pad(llm / "tokenizer_config.json", base_config)
    require_tokens(tok, [eos, pad], str(tokenizer_path))
    check_fits(tok, int(llm_state["model.embed_tokens.weight"].shape[0]), str(tokenizer_path))

    stage_name = run_config.get("stage")
    if isinstance(stage_name, str):
        stage = "pretrain" if stage_name in PRETRAIN_STAGES else "sft"
    else:
        stage = "pretrain" if image_grid < patch_grid else "sft"
    model = ImportedModel(
        vision_config=vision_config,
        llm_config=llm_config,
        feature_layer=-2,
        image_grid=image_grid,
        stage=stage,
        resize=resize,
        image_mean=SIGLIP_MEAN_STD,
        image_std=SIGLIP_MEAN_STD,
        eos_token=eos,
        pad_token=pad,
    )
    source: dict[str, Any] = {
        "format": "prismatic",
        "path": str(run_dir.resolve()),
        "checkpoint": str(checkpoint.resolve()),
        **fields,
        "prismatic_stage": stage_name,
        "vision_weights": vision_weights,
        "vision_hidden_act": TIMM_ACT,
        "llm_config": str(llm.resolve()),
        "tokenizer": str(Path(tokenizer_path).resolve()),
        "added_tokens": ids,
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
        prompt_format="prismatic-qwen2-caption" if stage == "pretrain" else "prismatic-qwen2",
        source=source,
    )


def _locate(src: Path) -> tuple[Path, Path]:
    """(run folder, checkpoint file) from a run folder or the checkpoint inside one."""
    if src.is_file():
        run_dir = src.parent.parent if src.parent.name == "checkpoints" else src.parent
        return run_dir, src
    if not src.is_dir():
        raise CheckpointError(f"{src}: no such run folder or checkpoint file", file=str(src))
    checkpoint = src / CHECKPOINT
    if not checkpoint.is_file():
        raise CheckpointError(f"{src}: {CHECKPOINT} is missing; not a prismatic run folder", file=str(src))
    return src, checkpoint


def _projector_layout(arch: str, where: Path) -> tuple[int | None, tuple[str, str]]:
    """(pooled token count or None for no pool, the two Linear layers' names) for an arch_specifier."""
    if arch.endswith("avgpool"):
        head = arch.split("+")[-1].split("-")[0]
        tokens = 144 if head == "avgpool" else int(head)  # prismatic's default query_num
        return tokens, ("mlp_projector.0", "mlp_projector.2")
    if arch.endswith("fused-gelu-mlp"):
        raise CheckpointError(f"{where}: arch_specifier {arch!r}: a three-layer projector for fused backbones has no Loom form", key="model.arch_specifier")
    if arch.endswith("gelu-mlp"):
        return None, ("projector.0", "projector.2")
    raise CheckpointError(
        f"{where}: arch_specifier {arch!r} has no Loom form (Loom's projector is pool -> Linear -> GELU -> Linear: "
        "'...avgpool' or 'gelu-mlp')",
        key="model.arch_specifier",
    )


def _model_parts(loaded: Any, where: str) -> dict[str, dict[str, torch.Tensor]]:
    if not isinstance(loaded, dict) or not isinstance(loaded.get("model"), dict):
        raise CheckpointError(f"{where}: expected a dict with key 'model' (prismatic's {{'model': {{...}}}}), found {type(loaded).__name__}")
    model = loaded["model"]
    for key in ("projector", "llm_backbone"):
        if key not in model:
            raise CheckpointError(f"{where}: model.{key} is missing (a prismatic checkpoint holds projector and llm_backbone)", key=f"model.{key}")
    unknown = sorted(set(model) - {"projector", "llm_backbone", "vision_backbone"})
    if unknown:
        raise CheckpointError(f"{where}: unexpected parts under 'model': {', '.join(map(str, unknown))}")
    return {key: tensor_dict(value, f"{where}: model.{key}") for key, value in model.items()}


def _strip(state: dict[str, torch.Tensor], prefix: str, where: str) -> dict[str, torch.Tensor]:
    bad = [k for k in state if not k.startswith(prefix)]
    if bad:
        raise CheckpointError(f"{where}: key {bad[0]!r} does not start with {prefix!r}")
    return {k[len(prefix) :]: v for k, v in state.items()}
