"""The vision-language model: SigLIP vision tower -> pooled MLP projector -> Qwen2 causal LM.

One file, readable top to bottom, no parallelism code (the trainer wraps it). The layout follows
Open-Qwen2VL: features from the vision tower's second-to-last block as a (N, C, g, g) grid,
``AdaptiveAvgPool2d`` to ``image_grid`` x ``image_grid`` (12 -> 144 tokens in pre-training, 27 ->
729 in SFT; the same weights serve both), Linear -> GELU -> Linear into the LLM's width, and those
vectors replace the embeddings of the ``<image>`` placeholder tokens, in order.

Packed rows: with ``isolate_documents`` every document attends only to itself and its positions
restart at 0 (``position_ids`` from ``collate_packed``); without it the row is one causal stream
with continuing positions, as the original trained. The loss runs the vocabulary projection only
at positions whose next token is labelled and returns (summed loss, count) so the trainer can
divide by the count over the whole global batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from loom_compute.errors import LoomComputeError
from loom_compute.model.attention import document_block_mask, document_causal_mask

IGNORE_INDEX = -100
# train.attention -> the attn_implementation transformers loads the modules with.
HF_ATTENTION = {"sdpa": "sdpa", "flex": "flex_attention", "eager": "eager"}


def attention_backend(config: Mapping[str, Any]) -> str:
    """``train.attention`` with ``auto`` decided: FlexAttention on CUDA (unless dist.backend is gloo), else SDPA (dense mask)."""
    wanted = config.get("train", {}).get("attention", "auto")
    if wanted == "auto":
        on_gpu = torch.cuda.is_available() and config.get("dist", {}).get("backend") != "gloo"
        return "flex" if on_gpu else "sdpa"
    if wanted not in HF_ATTENTION:
        raise LoomComputeError(f"train.attention: unknown backend {wanted!r} (auto, flex, sdpa or eager)")
    return wanted


class ImageTokenMismatchError(LoomComputeError):
    """The batch's ``<image>`` placeholders do not match its images times tokens per image."""


class Projector(nn.Module):
    """Pool the vision grid to image_grid x image_grid, then a two-layer GELU MLP into the LLM width."""

    def __init__(self, vision_width: int, hidden_size: int, llm_width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_width, hidden_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_size, llm_width)

    def forward(self, grid: torch.Tensor, image_grid: int) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(grid, (image_grid, image_grid))  # (N, C, g, g)
        tokens = pooled.flatten(2).transpose(1, 2)  # (N, g*g, C), row-major like the patch order
        return self.fc2(self.act(self.fc1(tokens)))


class VisionLanguageModel(nn.Module):
    def __init__(
        self,
        vision: SiglipVisionModel,
        llm: Qwen2ForCausalLM,
        projector_hidden_size: int,
        image_token_id: int,
        image_grid: int,
        feature_layer: int = -2,
        isolate_documents: bool = True,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        self.vision = vision
        self.llm = llm
        vision_width = vision.config.hidden_size
        self.projector = Projector(vision_width, projector_hidden_size, llm.config.hidden_size)
        self.image_token_id = int(image_token_id)
        self.image_grid = int(image_grid)
        self.feature_layer = int(feature_layer)
        self.isolate_documents = bool(isolate_documents)
        self.attention = attention
        self.patch_grid = vision.config.image_size // vision.config.patch_size

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_run_config(
        cls,
        config: Mapping[str, Any],
        tokenizer_vocab_size: int | None = None,
        image_token_id: int | None = None,
    ) -> "VisionLanguageModel":
        """Builds the model a resolved run config describes (pretrained directories/hub ids or fresh configs).

        ``image_token_id`` defaults to the id of ``tokenizer.image_token`` in ``tokenizer.path``.
        A ``tokenizer_vocab_size`` larger than the LLM's embedding table grows the table.
        """
        model_cfg = config["model"]
        attention = attention_backend(config)
        init_from = model_cfg.get("init_from")
        export = read_export_info(init_from, model_cfg) if init_from else None
        vision_source = {"pretrained": str(Path(init_from) / "vision")} if export else model_cfg["vision"]["source"]
        llm_source = {"pretrained": str(Path(init_from) / "llm")} if export else model_cfg["llm"]["source"]
        vision = _load_vision(vision_source, HF_ATTENTION[attention])
        llm = _load_llm(llm_source, HF_ATTENTION[attention])
        if tokenizer_vocab_size is not None and tokenizer_vocab_size > llm.get_input_embeddings().num_embeddings:
            llm.resize_token_embeddings(tokenizer_vocab_size)
        if image_token_id is None:
            image_token_id = _token_id(config["tokenizer"], config["tokenizer"]["image_token"])
        model = cls(
            vision,
            llm,
            projector_hidden_size=int(model_cfg["projector"]["hidden_size"]),
            image_token_id=image_token_id,
            image_grid=int(config["image_grid"]),
            feature_layer=int(model_cfg["vision"].get("feature_layer", -2)),
            isolate_documents=bool(config.get("train", {}).get("isolate_documents", True)),
            attention=attention,
        )
        if export:
            model.projector.load_state_dict(load_file(str(Path(init_from) / "projector.safetensors")))
        model.vision.requires_grad_(bool(model_cfg["vision"].get("trainable", False)))
        model.llm.requires_grad_(bool(model_cfg["llm"].get("trainable", True)))
        return model

    # ---- forward ------------------------------------------------------------------------------

    def image_features(self, pixel_values: torch.Tensor, image_grid: int | None = None) -> torch.Tensor:
        """(N, 3, S, S) pixels -> (N, image_grid**2, llm hidden) projected image tokens."""
        out = self.vision(pixel_values=pixel_values, output_hidden_states=True)
        features = out.hidden_states[self.feature_layer]  # (N, P, C)
        n, p, c = features.shape
        g = self.patch_grid
        if p != g * g:
            raise ValueError(f"vision tower gave {p} patches, expected {g}x{g} = {g * g}")
        grid = features.transpose(1, 2).reshape(n, c, g, g)
        return self.projector(grid, image_grid or self.image_grid)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None, image_grid: int | None = None) -> torch.Tensor:
        """Token embeddings with the ``<image>`` placeholders replaced by image features, in order."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        positions = input_ids == self.image_token_id
        found = int(positions.sum())
        grid = image_grid or self.image_grid
        n_images = 0 if pixel_values is None else int(pixel_values.shape[0])
        expected = n_images * grid * grid
        if found != expected:
            raise ImageTokenMismatchError(
                f"image token count mismatch: expected {expected} <image> tokens "
                f"({n_images} image(s) x {grid * grid} tokens at image_grid {grid}) but found {found} in input_ids",
                expected=expected,
                found=found,
            )
        if n_images == 0:
            return embeds
        features = self.image_features(pixel_values, grid).to(embeds.dtype)
        # masked_scatter fills positions in row-major order: image i lands on the i-th run of placeholders.
        return embeds.masked_scatter(positions[..., None], features.reshape(-1, features.shape[-1]))

    def hidden_states(self, batch: Mapping[str, Any], image_grid: int | None = None, isolate_documents: bool | None = None) -> torch.Tensor:
        """Final LLM hidden states (B, T, H) for a collated batch."""
        input_ids = batch["input_ids"]
        embeds = self.embed(input_ids, batch.get("pixel_values"), image_grid)
        isolate = self.isolate_documents if isolate_documents is None else isolate_documents
        if isolate:
            if self.attention == "flex":
                mask = document_block_mask(batch["document_ids"])
            else:
                mask = document_causal_mask(batch["document_ids"], embeds.dtype)
            position_ids = batch["position_ids"]
        else:
            # The original: one causal stream per row, positions running on across documents.
            # Padding sits after every real token, so plain causal attention never lets it leak in.
            mask = None
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        out = self.llm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False)
        return out.last_hidden_state

    def forward(
        self,
        batch: Mapping[str, Any],
        image_grid: int | None = None,
        isolate_documents: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss_sum, n_valid): cross-entropy summed over positions whose next token has a label.

        ``labels`` are unshifted (``labels[t]`` is the target for the token at t); the vocab
        projection runs only on the hidden states that predict a labelled token.
        """
        hidden = self.hidden_states(batch, image_grid, isolate_documents)
        targets = batch["labels"][:, 1:]
        valid = targets != IGNORE_INDEX
        logits = self.llm.lm_head(hidden[:, :-1][valid])
        loss_sum = F.cross_entropy(logits.float(), targets[valid], reduction="sum")
        return loss_sum, valid.sum()

    @torch.no_grad()
    def full_logits(self, batch: Mapping[str, Any], image_grid: int | None = None, isolate_documents: bool | None = None) -> torch.Tensor:
        """Logits at every position (B, T, vocab): for tests and debugging, not for training."""
        return self.llm.lm_head(self.hidden_states(batch, image_grid, isolate_documents))


def read_export_info(init_from: str, model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``loom.json`` of a Loom export (``model.init_from``), checked against this run's model."""
    path = Path(init_from) / "loom.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LoomComputeError(f"model.init_from = {init_from!r}: cannot read {path} ({exc}); is it a Loom export directory?") from None
    if info.get("format") != "loom-export":
        raise LoomComputeError(f"model.init_from: {path} is not a Loom export (format {info.get('format')!r})")
    width = int(model_cfg["projector"]["hidden_size"])
    if int(info["projector_hidden_size"]) != width:
        raise LoomComputeError(
            f"model.init_from: the export's projector is {info['projector_hidden_size']} wide but "
            f"model.projector.hidden_size is {width}",
            key="model.projector.hidden_size",
        )
    return info


def _load_vision(source: Mapping[str, Any], attention: str) -> SiglipVisionModel:
    if source.get("pretrained"):
        return _pretrained(SiglipVisionModel, source["pretrained"], attention, "vision")
    return SiglipVisionModel(SiglipVisionConfig(**source["config"], attn_implementation=attention))


def _load_llm(source: Mapping[str, Any], attention: str) -> Qwen2ForCausalLM:
    if source.get("pretrained"):
        return _pretrained(Qwen2ForCausalLM, source["pretrained"], attention, "llm")
    return Qwen2ForCausalLM(Qwen2Config(**source["config"], attn_implementation=attention))


def _pretrained(model_class: Any, where: str, attention: str, part: str) -> Any:
    try:
        # fp32 master weights whatever the checkpoint's storage dtype (Qwen2.5 ships bf16): mixed
        # precision casts for compute, the optimizer updates fp32.
        return model_class.from_pretrained(where, attn_implementation=attention, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise LoomComputeError(f"cannot load model.{part}.source.pretrained = {where!r}: {exc}") from exc


def _token_id(tokenizer_cfg: Mapping[str, Any], token: str) -> int:
    from tokenizers import Tokenizer

    path = tokenizer_cfg.get("path")
    if not path:
        raise LoomComputeError("tokenizer.path is not set: pass image_token_id to VisionLanguageModel.from_run_config")
    token_id = Tokenizer.from_file(str(path)).token_to_id(token)
    if token_id is None:
        raise LoomComputeError(f"tokenizer {path} has no token {token!r} (tokenizer.image_token)")
    return int(token_id)
