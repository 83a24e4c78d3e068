"""Everything between a run config and a ``VisionLanguageModel``: where the weights come from.

vlm.py only defines the model; this module decides the attention backend, reads the run's
tokenizer, checks and loads a Loom export (``model.init_from``) or pretrained checkpoints, and
builds fresh towers from config fields. Freezing is not done here: ``train.optim.apply_freeze``
is the one place that sets ``requires_grad``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from loom_compute.config import ModelConfig, ModelSource, RunConfig, TokenizerConfig
from loom_compute.errors import ConfigError, LoomComputeError
from loom_compute.model.export_dir import ExportError, ExportInfo, read_export
from loom_compute.model.vocab import grow_vocabulary
from loom_compute.model.vlm import VisionLanguageModel

# train.attention -> the attn_implementation transformers loads the modules with.
HF_ATTENTION = {"sdpa": "sdpa", "flex": "flex_attention", "eager": "eager"}


def attention_backend(config: RunConfig) -> str:
    """``train.attention`` with ``auto`` decided: FlexAttention on CUDA (unless dist.backend is gloo), else SDPA (dense mask)."""
    wanted = config.train.attention
    if wanted == "auto":
        on_gpu = torch.cuda.is_available() and config.dist.backend != "gloo"
        return "flex" if on_gpu else "sdpa"
    return wanted


# ---- tokenizer ----------------------------------------------------------------------------------


def read_tokenizer(tokenizer: TokenizerConfig) -> tuple[str, bytes]:
    """(sha256 hex, bytes) of the run's tokenizer.json, the file the packed shards were made with.

    The CLI resolves a null ``tokenizer.path`` to the local LLM checkpoint's tokenizer.json when it
    writes the config (src/config/resolve.ts), so a null here means there was none to find.
    """
    path = tokenizer.path
    if not path:
        raise ConfigError(
            "tokenizer.path is not set (and model.llm.source.pretrained is no local checkpoint directory to take "
            "tokenizer.json from): name the tokenizer.json the data was packed with",
            key="tokenizer.path",
        )
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        hint = ""
        if re.search(r"[/\\]tokenizers[/\\][0-9a-f]{64}[/\\]tokenizer\.json$", str(path)):
            # The copy with the image token that config resolution derived into Loom's cache.
            hint = (
                "; it is the copy with the image token Loom derived into its cache (LOOM_CACHE_DIR): resolve the config "
                "again with `loom config init`, or write it with `loom tokenizer add-image-token`; an export of the run holds it too"
            )
        raise ConfigError(f"tokenizer.path = {path!r}: cannot read it ({exc.strerror or exc}){hint}", key="tokenizer.path") from None
    return hashlib.sha256(data).hexdigest(), data


def tokenizer_info(tokenizer: TokenizerConfig) -> tuple[str, int]:
    """(sha256 of tokenizer.json, its vocabulary size)."""
    from tokenizers import Tokenizer

    sha256, data = read_tokenizer(tokenizer)
    return sha256, Tokenizer.from_str(data.decode("utf-8")).get_vocab_size()


def lookup_image_token_id(tokenizer: TokenizerConfig) -> int:
    from tokenizers import Tokenizer

    if not tokenizer.path:
        raise LoomComputeError("tokenizer.path is not set: pass image_token_id to build_model")
    token_id = Tokenizer.from_file(str(tokenizer.path)).token_to_id(tokenizer.image_token)
    if token_id is None:
        raise LoomComputeError(f"tokenizer {tokenizer.path} has no token {tokenizer.image_token!r} (tokenizer.image_token)")
    return int(token_id)


# ---- the model ------------------------------------------------------------------------------------


def build_model(
    config: RunConfig,
    tokenizer_vocab_size: int | None = None,
    image_token_id: int | None = None,
) -> VisionLanguageModel:
    """The model a resolved run config describes (pretrained directories/hub ids, fresh configs, or a Loom export).

    ``image_token_id`` defaults to the id of ``tokenizer.image_token`` in ``tokenizer.path``.
    A ``tokenizer_vocab_size`` larger than the LLM's embedding table grows the table, new rows set to
    the mean of the old ones (model/vocab.py).
    """
    model_cfg = config.model
    attention = HF_ATTENTION[attention_backend(config)]
    init_from = model_cfg.init_from
    if init_from:
        read_export_info(init_from, model_cfg)
        vision_source = ModelSource(pretrained=str(Path(init_from) / "vision"), config=None)
        llm_source = ModelSource(pretrained=str(Path(init_from) / "llm"), config=None)
    else:
        vision_source, llm_source = model_cfg.vision.source, model_cfg.llm.source
    vision = _load_vision(vision_source, attention)
    llm = _load_llm(llm_source, attention)
    if tokenizer_vocab_size is not None:
        grow_vocabulary(llm, tokenizer_vocab_size)
    model = VisionLanguageModel(
        vision,
        llm,
        projector_hidden_size=model_cfg.projector.hidden_size,
        image_token_id=lookup_image_token_id(config.tokenizer) if image_token_id is None else image_token_id,
        image_grid=config.image_grid,
        feature_layer=model_cfg.vision.feature_layer,
        isolate_documents=config.train.isolate_documents,
        attention=attention_backend(config),
    )
    if init_from:
        model.projector.load_state_dict(load_file(str(Path(init_from) / "projector.safetensors")))
    return model


def read_export_info(init_from: str | Path, model_cfg: ModelConfig) -> ExportInfo:
    """The export named by ``model.init_from``, checked against this run's model."""
    try:
        info = read_export(init_from)
    except ExportError as exc:
        raise LoomComputeError(f"model.init_from = {str(init_from)!r}: {exc}", key="model.init_from") from None
    width = model_cfg.projector.hidden_size
    if info.projector_hidden_size != width:
        raise LoomComputeError(
            f"model.init_from: the export's projector is {info.projector_hidden_size} wide but "
            f"model.projector.hidden_size is {width}",
            key="model.projector.hidden_size",
        )
    return info


def _load_vision(source: ModelSource, attention: str) -> SiglipVisionModel:
    if source.pretrained:
        return _pretrained(SiglipVisionModel, source.pretrained, attention, "vision")
    return SiglipVisionModel(SiglipVisionConfig(**(source.config or {}), attn_implementation=attention))


def _load_llm(source: ModelSource, attention: str) -> Qwen2ForCausalLM:
    if source.pretrained:
        return _pretrained(Qwen2ForCausalLM, source.pretrained, attention, "llm")
    return Qwen2ForCausalLM(Qwen2Config(**(source.config or {}), attn_implementation=attention))


def _pretrained(model_class: Any, where: str, attention: str, part: str) -> Any:
    try:
        # fp32 master weights whatever the checkpoint's storage dtype (Qwen2.5 ships bf16): mixed
        # precision casts for compute, the optimizer updates fp32.
        return model_class.from_pretrained(where, attn_implementation=attention, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise LoomComputeError(f"cannot load model.{part}.source.pretrained = {where!r}: {exc}") from exc
