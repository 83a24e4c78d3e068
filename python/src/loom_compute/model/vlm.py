"""The vision-language model: SigLIP vision tower -> pooled MLP projector -> Qwen2 causal LM.

One file, readable top to bottom: the model only. Building it from a run config (pretrained
weights, exports, tokenizer, attention backend) is model/builder.py; parallelism is
train/parallel.py. The layout follows Open-Qwen2VL: features from the vision tower's second-to-last block as a (N, C, g, g) grid,
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

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2ForCausalLM, SiglipVisionModel

from loom_compute.errors import LoomComputeError
from loom_compute.labels import IGNORE_INDEX
from loom_compute.model.attention import document_block_mask, document_causal_mask


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
