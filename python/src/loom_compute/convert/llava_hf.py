"""Loom export <-> llava-hf folder (``LlavaForConditionalGeneration`` + ``AutoProcessor``).

Export (``export_llava_hf``): one folder that stock transformers loads, 4.4x and 5.x alike:

- ``model.safetensors`` under the llava-hf names both versions load: ``vision_tower.vision_model.<SigLIP>``,
  ``multi_modal_projector.linear_{1,2}`` (Loom's ``fc1``/``fc2``: Linear -> exact GELU -> Linear,
  with biases), ``language_model.model.<Qwen2>`` and, untied, ``language_model.lm_head.weight``
  (5.x renames these on load; 4.4x reads them as they are);
- ``config.json``: ``vision_feature_layer`` = the export's feature layer (both index the vision
  tower's ``hidden_states`` the same way), ``vision_feature_select_strategy: "full"`` (SigLIP has
  no CLS token to drop), ``image_seq_length`` = patches per image, ``image_token_index``, and the
  text config with ``rope_theta`` written beside 5.x's ``rope_parameters`` (convert/hf_config.py);
- ``preprocessor_config.json``: a SiglipImageProcessor that squashes to the vision size with
  bicubic, rescales by 1/255 and normalizes with the export's mean/std (Loom's ``data.resize:
  squash``); ``processor_config.json``: a LlavaProcessor that expands ``<image>`` to
  ``image_seq_length`` tokens (its strategy/extra-token pair is chosen so 4.46 counts the same);
- the AutoTokenizer files and chat template (convert/hf_tokenizer.py) and ``generation_config.json``.

Stock LLaVA is vision -> Linear(vision, text) -> GELU -> Linear(text, text) on every patch. What it
cannot express is refused with the export and the reason, never approximated:

- a pooled grid (``image_grid`` below the patch grid, the pre-training stage's 12x12 from 27x27):
  LLaVA feeds every patch of the chosen layer to the projector, and nothing between the tower and
  the projector can average patches (the pool also changes the token count), so no rewrite of the
  weights reproduces it. Export the SFT stage, which runs at the full patch grid;
- a projector whose hidden width is not the LLM width;
- ``data.resize: "pad"``: Loom pads to a square before resizing; SiglipImageProcessor cannot;
- a ``prompt_format`` without a chat template in Loom (convert/hf_tokenizer.TEMPLATE_FORMATS).

With torchvision installed, transformers 5.x picks its torchvision image backend by default, whose
bicubic resize differs slightly from PIL's; ``AutoProcessor.from_pretrained(DIR, backend="pil")``
gives Loom's pixels exactly. Checked by hand with transformers 4.46.3 as well as 5.x: the same
prompt ids, pixels, logits and greedy tokens.

Import (``import_llava_hf``) is the reverse: a llava-hf folder (safetensors only, either key
layout) whose model is SigLIP + Qwen2 with the "full" strategy becomes a native export; its prompt
format is ``chatml`` when its chat template renders Loom's ChatML, else it is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from loom_compute.config import RunConfig, parse_run_config
from loom_compute.atomic import write_folder
from loom_compute.convert.hf_config import both_versions
from loom_compute.convert.hf_tokenizer import (
    IM_END,
    TEMPLATE_FORMATS,
    chat_template_for,
    chatml_template,
    export_tokenizer_files,
    generation_config,
    token_ids,
)
from loom_compute.errors import LoomComputeError
from loom_compute.model.export_dir import ExportInfo, read_export, write_export

FORMAT = "llava-hf"
WEIGHTS = "model.safetensors"
# transformers' resample code for bicubic (PIL.Image.BICUBIC).
BICUBIC = 3


class LlavaHfError(LoomComputeError):
    """An export that stock LLaVA cannot represent, or a llava-hf folder Loom cannot import."""


# ---- export ---------------------------------------------------------------------------------------


def export_llava_hf(source: str | Path, out: str | Path) -> Path:
    """Writes the llava-hf folder ``out`` for the Loom export ``source`` (atomically)."""
    from safetensors.torch import load_file, save_file

    info = read_export(source)
    vision_cfg = _read_json(info.path / "vision" / "config.json")
    llm_cfg = _read_json(info.path / "llm" / "config.json")
    _check_exportable(info, vision_cfg, llm_cfg)

    tok = info.config.tokenizer
    tokenizer_bytes = info.tokenizer_path.read_bytes()
    ids = token_ids(tokenizer_bytes, str(info.tokenizer_path), image_token=tok.image_token, eos_token=tok.eos_token, pad_token=tok.pad_token)
    if ids["image_token"] != info.image_token_id:
        raise LlavaHfError(f"{info.path}: loom.json image_token_id is {info.image_token_id} but the tokenizer's {tok.image_token!r} is {ids['image_token']}")

    weights: dict[str, torch.Tensor] = {}
    for key, value in load_file(str(info.path / "vision" / WEIGHTS)).items():
        # 5.x's SiglipVisionModel is flat (it strips the prefix on load); 4.4x's has vision_model.
        weights[f"vision_tower.{key}" if key.startswith("vision_model.") else f"vision_tower.vision_model.{key}"] = value
    for key, value in load_file(str(info.path / "llm" / WEIGHTS)).items():
        weights[f"language_model.{key}"] = value
    projector = load_file(str(info.path / "projector.safetensors"))
    for loom, hf in (("fc1", "linear_1"), ("fc2", "linear_2")):
        for part in ("weight", "bias"):
            weights[f"multi_modal_projector.{hf}.{part}"] = projector[f"{loom}.{part}"]

    patch_grid = int(vision_cfg["image_size"]) // int(vision_cfg["patch_size"])
    tied = bool(llm_cfg.get("tie_word_embeddings", False))
    text_config = both_versions({k: v for k, v in llm_cfg.items() if k not in ("transformers_version", "architectures")})
    text_config.update(eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"])
    vision_config = {k: v for k, v in vision_cfg.items() if k not in ("transformers_version", "architectures")}
    config = {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "vision_config": vision_config,
        "text_config": text_config,
        "image_token_index": info.image_token_id,
        "image_seq_length": patch_grid * patch_grid,
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True,
        "vision_feature_select_strategy": "full",
        "vision_feature_layer": info.feature_layer,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    vision = info.config.model.vision
    preprocessor = {
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "LlavaProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": int(vision_cfg["image_size"]), "width": int(vision_cfg["image_size"])},
        "resample": BICUBIC,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(vision.image_mean),
        "image_std": list(vision.image_std),
    }
    # The processor's strategy only counts placeholders: patches + num_additional_image_tokens, less
    # one for "default". 4.46 has no num_additional_image_tokens and always adds 1 (a CLS token), so
    # "default" with 1 is the one setting that gives image_seq_length in 4.46, 4.47+ and 5.x alike;
    # the model's own strategy (config.json) stays "full".
    processor = {
        "processor_class": "LlavaProcessor",
        "patch_size": int(vision_cfg["patch_size"]),
        "vision_feature_select_strategy": "default",
        "image_token": tok.image_token,
        "num_additional_image_tokens": 1,
    }
    files = export_tokenizer_files(info)
    template = files["chat_template.jinja"].decode("utf-8")
    files.update(
        {
            "config.json": _json_bytes(config),
            "preprocessor_config.json": _json_bytes(preprocessor),
            "processor_config.json": _json_bytes(processor),
            # What processors of transformers 4.4x read their chat template from.
            "chat_template.json": _json_bytes({"chat_template": template}),
            "generation_config.json": _json_bytes(generation_config(ids["eos_token"], ids["pad_token"])),
        }
    )

    def fill(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS), metadata={"format": "pt"})

    return write_folder(out, files, fill)


def _check_exportable(info: ExportInfo, vision_cfg: Mapping[str, Any], llm_cfg: Mapping[str, Any]) -> None:
    where = str(info.path)
    if vision_cfg.get("model_type") != "siglip_vision_model":
        raise LlavaHfError(f"{where}/vision/config.json: model_type {vision_cfg.get('model_type')!r}; Loom exports SigLIP vision towers only")
    patch_grid = int(vision_cfg["image_size"]) // int(vision_cfg["patch_size"])
    if info.image_grid != patch_grid:
        raise LlavaHfError(
            f"{where}: image_grid {info.image_grid} pools the {patch_grid}x{patch_grid} patch grid to "
            f"{info.image_grid}x{info.image_grid} (a pre-training stage export); stock LLaVA projects every patch and has no pooling, "
            "so it cannot reproduce this model. Export the SFT stage, which runs at the full patch grid",
            key="image_grid",
        )
    width = int(llm_cfg["hidden_size"])
    if info.projector_hidden_size != width:
        raise LlavaHfError(
            f"{where}: the projector is {info.projector_hidden_size} wide but the LLM is {width}; stock LlavaMultiModalProjector is "
            "Linear(vision, text) -> GELU -> Linear(text, text), so its hidden width must be the LLM width",
            key="model.projector.hidden_size",
        )
    if info.config.data.resize != "squash":
        raise LlavaHfError(
            f"{where}: the model was trained with data.resize = {info.config.data.resize!r} (pad to a square, then resize); "
            "SiglipImageProcessor only squashes, so it would feed the model other pixels",
            key="data.resize",
        )
    if info.prompt_format not in TEMPLATE_FORMATS:
        chat_template_for(info.prompt_format, info.config.tokenizer.image_token, where)  # raises the clear error
    if info.prompt_format == "chatml" and info.config.tokenizer.eos_token != IM_END:
        raise LlavaHfError(f"{where}: a chatml model's tokenizer.eos_token must be {IM_END!r}, not {info.config.tokenizer.eos_token!r}", key="tokenizer.eos_token")


# ---- import ---------------------------------------------------------------------------------------

# (llava-hf prefix, native part, prefix within the part): 4.4x names first, then 5.x's.
_KEY_MAP = (
    ("language_model.model.", "llm", "model."),
    ("language_model.lm_head.", "llm", "lm_head."),
    ("model.language_model.", "llm", "model."),
    ("lm_head.", "llm", "lm_head."),
    ("vision_tower.vision_model.", "vision", ""),
    ("vision_tower.", "vision", ""),
    ("model.vision_tower.vision_model.", "vision", ""),
    ("model.vision_tower.", "vision", ""),
    ("multi_modal_projector.linear_1.", "projector", "fc1."),
    ("multi_modal_projector.linear_2.", "projector", "fc2."),
    ("model.multi_modal_projector.linear_1.", "projector", "fc1."),
    ("model.multi_modal_projector.linear_2.", "projector", "fc2."),
)


def import_llava_hf(src: Path, out: Path, base_config: RunConfig) -> ExportInfo:
    """Writes the native export ``out`` for the llava-hf folder ``src``; shapes, tokenizer and image
    settings come from the folder, everything else from ``base_config``."""
    from transformers import Qwen2Config, SiglipVisionConfig

    from loom_compute.model.export_dir import read_export

    src, out = Path(src), Path(out)
    config_path = src / "config.json"
    config = _read_json(config_path)
    vision_cfg, text_cfg = _check_importable(config, config_path)
    image_size, patch_size = int(vision_cfg["image_size"]), int(vision_cfg["patch_size"])
    grid = image_size // patch_size
    mean, std = _read_image_settings(src, image_size)

    tokenizer_path = src / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise LlavaHfError(f"{src}: tokenizer.json is missing; Loom needs the fast tokenizer file (a slow-only tokenizer cannot be imported)")
    tokenizer_bytes = tokenizer_path.read_bytes()
    tok_cfg_path = src / "tokenizer_config.json"
    tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
    proc_path = src / "processor_config.json"
    image_token = str((_read_json(proc_path) if proc_path.is_file() else {}).get("image_token") or _token(tok_cfg.get("image_token")) or "<image>")
    eos_token = _token(tok_cfg.get("eos_token"))
    pad_token = _token(tok_cfg.get("pad_token"))
    if not eos_token or not pad_token:
        raise LlavaHfError(f"{tok_cfg_path}: eos_token and pad_token must both be set (found {eos_token!r}, {pad_token!r})")
    ids = token_ids(tokenizer_bytes, str(tokenizer_path), image_token=image_token, eos_token=eos_token, pad_token=pad_token)
    image_token_id = int(config.get("image_token_index", config.get("image_token_id", -1)))
    if ids["image_token"] != image_token_id:
        raise LlavaHfError(f"{config_path}: image_token_index is {image_token_id} but the tokenizer's {image_token!r} is {ids['image_token']}")
    prompt_format = _prompt_format(src, tok_cfg, image_token)

    states = _split_weights(_read_weights(src))
    if set(states["projector"]) != {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}:
        raise LlavaHfError(f"{src}: the projector weights are {sorted(states['projector'])}; Loom needs linear_1/linear_2 with biases")
    projector_hidden = int(states["projector"]["fc1.weight"].shape[0])

    raw = base_config.to_dict()
    model = raw["model"]
    model["vision"].update(
        source={"pretrained": None, "config": _shape_fields(vision_cfg)},
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=int(vision_cfg["hidden_size"]),
        feature_layer=int(config.get("vision_feature_layer", -2)),
        image_mean=mean,
        image_std=std,
    )
    model["projector"]["hidden_size"] = projector_hidden
    model["llm"].update(source={"pretrained": None, "config": _shape_fields(text_cfg)}, hidden_size=int(text_cfg["hidden_size"]))
    model["init_from"] = None
    raw["tokenizer"].update(path=str(out / "tokenizer.json"), image_token=image_token, eos_token=eos_token, pad_token=pad_token)
    raw["data"]["resize"] = "squash"
    raw["stage"] = "sft"
    raw["image_grid"] = grid
    run_config = parse_run_config(raw, f"{src} imported onto the base config")

    vision_config = SiglipVisionConfig(**_shape_fields(vision_cfg))
    llm_config = Qwen2Config(**_shape_fields(text_cfg))
    write_export(
        out,
        vision_config=vision_config,
        vision_state=states["vision"],
        llm_config=llm_config,
        llm_state=states["llm"],
        projector_state=states["projector"],
        tokenizer_json=tokenizer_bytes,
        config=run_config,
        stage="sft",
        step=None,
        image_grid=grid,
        feature_layer=int(config.get("vision_feature_layer", -2)),
        image_token_id=image_token_id,
        prompt_format=prompt_format,
        source={"format": FORMAT, "path": str(src.resolve())},
    )
    return read_export(out)


def _check_importable(config: Mapping[str, Any], where: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if config.get("model_type") != "llava":
        raise LlavaHfError(f"{where}: model_type {config.get('model_type')!r}; --format llava-hf reads LlavaForConditionalGeneration folders")
    vision, text = config.get("vision_config"), config.get("text_config")
    if not isinstance(vision, dict) or vision.get("model_type") not in ("siglip_vision_model", "siglip"):
        raise LlavaHfError(f"{where}: vision_config is {vision.get('model_type') if isinstance(vision, dict) else vision!r}; Loom's model has a SigLIP vision tower")
    if not isinstance(text, dict) or text.get("model_type") != "qwen2":
        raise LlavaHfError(f"{where}: text_config is {text.get('model_type') if isinstance(text, dict) else text!r}; Loom's model has a Qwen2 LLM")
    if config.get("vision_feature_select_strategy", "default") != "full":
        raise LlavaHfError(f"{where}: vision_feature_select_strategy {config.get('vision_feature_select_strategy', 'default')!r}; "
                           "SigLIP has no CLS token, Loom projects every patch ('full')")
    if not isinstance(config.get("vision_feature_layer", -2), int):
        raise LlavaHfError(f"{where}: vision_feature_layer {config.get('vision_feature_layer')!r}; Loom reads one layer")
    if config.get("projector_hidden_act", "gelu") != "gelu" or config.get("multimodal_projector_bias", True) is not True:
        raise LlavaHfError(f"{where}: Loom's projector is Linear -> exact GELU -> Linear with biases; this one has projector_hidden_act "
                           f"{config.get('projector_hidden_act')!r}, multimodal_projector_bias {config.get('multimodal_projector_bias', True)!r}")
    return dict(vision), dict(text)


def _read_image_settings(src: Path, image_size: int) -> tuple[list[float], list[float]]:
    """mean/std of a preprocessor Loom reproduces exactly (squash, bicubic, /255, normalize).

    4.4x keeps it in preprocessor_config.json; 5.x nests it in processor_config.json."""
    path = src / "preprocessor_config.json"
    nested = src / "processor_config.json"
    if path.is_file():
        cfg = _read_json(path)
    elif nested.is_file() and isinstance(_read_json(nested).get("image_processor"), dict):
        path, cfg = nested, _read_json(nested)["image_processor"]
    else:
        raise LlavaHfError(f"{src}: no preprocessor_config.json (nor processor_config.json with an image_processor); "
                           "Loom needs the image preprocessing the model was trained with")
    size = cfg.get("size") or {}
    problems = []
    if cfg.get("do_resize", True) is not True or size.get("height") != image_size or size.get("width") != image_size:
        problems.append(f"size {size!r} is not a squash to {image_size}x{image_size}")
    if cfg.get("resample", BICUBIC) != BICUBIC:
        problems.append(f"resample {cfg.get('resample')!r} is not bicubic (3)")
    if cfg.get("do_center_crop") or cfg.get("do_pad"):
        problems.append("it crops or pads")
    if cfg.get("do_rescale", True) is not True or not math.isclose(float(cfg.get("rescale_factor", 1 / 255)), 1 / 255):
        problems.append("it does not rescale by 1/255")
    if cfg.get("do_normalize", True) is not True:
        problems.append("it does not normalize")
    if problems:
        raise LlavaHfError(f"{path}: Loom's image pipeline cannot reproduce it: {'; '.join(problems)}")
    mean, std = cfg.get("image_mean"), cfg.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == 3 and len(std) == 3):
        raise LlavaHfError(f"{path}: image_mean and image_std must be lists of 3 numbers")
    return [float(x) for x in mean], [float(x) for x in std]


def _prompt_format(src: Path, tok_cfg: Mapping[str, Any], image_token: str) -> str:
    """'chatml' when the folder's chat template renders what Loom's does on probe conversations."""
    template = None
    for name in ("chat_template.jinja",):
        if (src / name).is_file():
            template = (src / name).read_text(encoding="utf-8")
    if template is None and isinstance(tok_cfg.get("chat_template"), str):
        template = tok_cfg["chat_template"]
    if template is None and (src / "chat_template.json").is_file():
        template = _read_json(src / "chat_template.json").get("chat_template")
    if not isinstance(template, str):
        raise LlavaHfError(f"{src}: no chat template (chat_template.jinja, tokenizer_config.json or chat_template.json); "
                           "Loom cannot tell which prompt format the model was trained with")
    if _renders_like(template, chatml_template(image_token)):
        return "chatml"
    raise LlavaHfError(f"{src}: its chat template does not render Loom's ChatML (src/pack/sft.ts), the one format a llava-hf import "
                       "records; chat with it in transformers, or convert it with the template it was trained with")


def _renders_like(template: str, reference: str) -> bool:
    """Whether ``template`` renders ``reference``'s text for probe conversations (string contents
    always; content-part lists too when the template takes them: Qwen2-Instruct's does not)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    strings = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "<image>\nWhat is it?"}, {"role": "assistant", "content": "A cat."}, {"role": "user", "content": "Sure?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x\ny "}, {"role": "assistant", "content": " z"}],
    ]
    parts = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is it?"}]}, {"role": "assistant", "content": "A cat."},
         {"role": "user", "content": [{"type": "text", "text": "Sure?"}]}],
    ]
    try:
        mine, ref = env.from_string(template), env.from_string(reference)
    except TemplateError:
        return False

    def same(messages: list[dict[str, Any]], generation: bool) -> bool:
        return mine.render(messages=messages, add_generation_prompt=generation) == ref.render(messages=messages, add_generation_prompt=generation)

    try:
        if not all(same(m, g) for m in strings for g in (False, True)):
            return False
    except (TemplateError, TypeError, KeyError, AttributeError):
        return False
    for m in parts:
        try:
            if not same(m, True):
                return False
        except (TemplateError, TypeError, KeyError, AttributeError):
            pass  # a template for string contents only
    return True


def _read_weights(src: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = src / WEIGHTS
    index = src / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_file(str(src / shard)))
        return weights
    if any(src.glob("*.bin")):
        raise LlavaHfError(f"{src}: only pytorch_model*.bin (pickle) weights; Loom imports safetensors only. "
                           "Re-save the model with save_pretrained(..., safe_serialization=True)")
    raise LlavaHfError(f"{src}: no {WEIGHTS} or model.safetensors.index.json")


def _split_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "llm": {}, "projector": {}}
    for key, value in weights.items():
        for prefix, part, inner in _KEY_MAP:
            if key.startswith(prefix):
                parts[part][inner + key[len(prefix) :]] = value
                break
        else:
            raise LlavaHfError(f"weight {key!r} belongs to no part Loom knows (vision_tower, multi_modal_projector, language_model, lm_head)")
    return parts


def _shape_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """A sub-config as transformers config kwargs: the bookkeeping keys dropped, rope_theta kept."""
    drop = {"transformers_version", "architectures", "model_type", "_name_or_path", "torch_dtype", "dtype"}
    fields = {k: v for k, v in config.items() if k not in drop}
    if fields.get("rope_scaling") is None or "rope_parameters" in fields:
        # 4.4x's spelling of what rope_parameters says (convert/hf_config.both_versions).
        fields.pop("rope_scaling", None)
    params = fields.get("rope_parameters")
    if isinstance(params, dict) and params.get("rope_type", "default") == "default":
        fields.pop("rope_parameters")
        fields["rope_theta"] = params.get("rope_theta", fields.get("rope_theta"))
    return fields


def _token(value: Any) -> str | None:
    """A tokenizer_config token entry: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlavaHfError(f"{path}: missing") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LlavaHfError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(value, dict):
        raise LlavaHfError(f"{path}: expected a JSON object")
    return value


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
