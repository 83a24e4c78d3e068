"""Batched generation for image + text prompts with a KV cache.

The algorithm, for a batch of B prompts (token ids from infer/prompts.py, each with 0 or 1 image):

1. **Left padding.** Prompts of lengths L_i are padded on the left to W = max L_i, so every
   row's last prompt token sits in column W - 1 and each step appends one column for all rows.
   ``attention_mask`` (B, W) is 1 on real tokens; padding keys are never attended to.
2. **Positions.** A row's first real token has position 0 whatever its padding:
   ``position_ids = cumsum(mask) - 1`` (padding gets 1; it is masked anyway). After the prompt,
   row i's next token has position L_i + t, not W + t: the rotary phases must be those the model
   saw in training, where each sequence starts at 0.
3. **Prefill.** ``VisionLanguageModel.embed`` turns the ids into embeddings with each row's
   ``<image>`` placeholders replaced by its projected image features (the vision tower runs once
   for all images of the batch); one forward of ``model.llm.model`` over those ``inputs_embeds``
   fills a transformers ``DynamicCache`` with every layer's keys and values. Only the last
   position goes through the LM head.
4. **Decode.** One token per row per step: the chosen token's embedding, the mask grown by one
   column of ones, the row's next position, and the cache (which appends the new keys/values).
   Cost per step is one token per row against the cached context, instead of a full forward.
5. **Choosing a token.** Temperature 0: argmax (greedy). Otherwise logits / temperature, keep the
   top-k (k > 0), keep the smallest set of most probable tokens whose probability reaches top-p,
   and sample from the renormalised rest with a ``torch.Generator`` seeded by ``seed``: the same
   requests, batch size and seed give the same answers.
6. **Stopping.** A row finishes with ``stop`` on a stop id (the format's ``<|im_end|>``/eos; it
   counts as a new token but is not part of the answer) or when a stop string appears in its
   decoded answer (the answer is cut before it), and with ``length`` at its token budget
   (``max_new_tokens``, or less where the model's context ends). Finished rows leave the batch:
   their cache rows are dropped (``batch_select_indices``), so they stop growing and cost nothing.
7. **Streaming.** ``on_token(i, delta)`` gets request i's new text: each step the whole answer so
   far is decoded and only the new suffix is sent. A trailing U+FFFD (the first bytes of a
   character whose last byte is still to come) and any tail that could begin a stop string are
   held back, so a multi-byte character is never split and a stop string is never shown.

Greedy fp32 output equals batch-1 output, a naive loop of full forwards without a cache, and
``model.llm.generate(inputs_embeds=..., attention_mask=...)`` (python/tests/test_infer_generate.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch

from loom_compute.errors import LoomComputeError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from loom_compute.model.vlm import VisionLanguageModel

FinishReason = Literal["stop", "length"]
TokenCallback = Callable[[int, str], None]
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise LoomComputeError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise LoomComputeError(f"--temperature must be 0 (greedy) or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise LoomComputeError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise LoomComputeError(f"--top-k must be 0 (off) or more, got {self.top_k}")
        if any(s == "" for s in self.stop_strings):
            raise LoomComputeError("--stop must not be empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class GenerationRequest:
    ids: list[int]
    pixel_values: torch.Tensor | None = None  # (3, S, S), normalised (infer/images.py)
    max_new_tokens: int | None = None  # a tighter budget for this row (the context's end)


@dataclass
class GenerationResult:
    text: str
    finish_reason: FinishReason
    tokens: list[int] = field(default_factory=list)  # every generated id, a final stop id included

    @property
    def new_tokens(self) -> int:
        return len(self.tokens)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """(N, V) float logits -> tempered logits with everything outside top-k / top-p at -inf."""
    logits = logits / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # Drop a token when the more probable ones already reach top_p (the first always stays).
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return logits


def held_back(text: str, stop_strings: Sequence[str]) -> int:
    """How many trailing characters of ``text`` may not be shown yet: trailing U+FFFD (an
    unfinished character), and before them the longest tail that begins some stop string."""
    base = text.rstrip(REPLACEMENT)
    prefix = 0
    for stop in stop_strings:
        for n in range(min(len(stop) - 1, len(base)), prefix, -1):
            if base.endswith(stop[:n]):
                prefix = n
                break
    return len(text) - len(base) + prefix


class Generator:
    """Generation with one model: ``generate(requests, params, on_token)`` -> results in request order."""

    def __init__(self, model: VisionLanguageModel, tokenizer: Tokenizer, stop_ids: Sequence[int], pad_id: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = tuple(int(i) for i in stop_ids)
        self.pad_id = int(pad_id)
        if self.pad_id == model.image_token_id:
            raise LoomComputeError("the padding id must not be the image token")
        self.max_positions = int(getattr(model.llm.config, "max_position_embeddings", 0) or 0)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # ---- the two forwards ---------------------------------------------------------------------

    def prefill(self, requests: Sequence[GenerationRequest]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
        """(next-token logits (B, V) float32, attention mask (B, W), next positions (B,), cache)."""
        from transformers import DynamicCache

        dev = self.device
        lengths = [len(r.ids) for r in requests]
        width = max(lengths)
        ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for i, r in enumerate(requests):
            ids[i, width - len(r.ids) :] = torch.tensor(r.ids, dtype=torch.long)
            mask[i, width - len(r.ids) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        images = [r.pixel_values.reshape(-1, *r.pixel_values.shape[-3:]) for r in requests if r.pixel_values is not None]
        pixels = torch.cat(images).to(dev, self.dtype) if images else None
        embeds = self.model.embed(ids, pixels)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        cache = DynamicCache()
        out = self.model.llm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        logits = self.model.llm.lm_head(out.last_hidden_state[:, -1]).float()
        return logits, mask, torch.tensor(lengths, device=dev), cache

    def step(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: object) -> torch.Tensor:
        """One new token per row; ``mask`` already holds the new column."""
        embeds = self.model.llm.get_input_embeddings()(tokens[:, None])
        out = self.model.llm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions[:, None], cache=cache, use_cache=True)
        return self.model.llm.lm_head(out.last_hidden_state[:, -1]).float()

    # ---- the loop ---------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        on_token: TokenCallback | None = None,
    ) -> list[GenerationResult]:
        if not requests:
            return []
        budgets = []
        for i, r in enumerate(requests):
            if not r.ids:
                raise LoomComputeError(f"request {i} has no prompt tokens")
            budget = params.max_new_tokens if r.max_new_tokens is None else min(params.max_new_tokens, r.max_new_tokens)
            if budget < 1:
                raise LoomComputeError(f"request {i} leaves no room for a new token")
            budgets.append(budget)
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        stops = torch.tensor(self.stop_ids, device=self.device, dtype=torch.long)
        results = [GenerationResult(text="", finish_reason="length") for _ in requests]
        shown = [""] * len(requests)

        logits, mask, positions, cache = self.prefill(requests)
        active = list(range(len(requests)))  # request index of each batch row
        while True:
            if params.greedy:
                chosen = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(filter_logits(logits, params.temperature, params.top_k, params.top_p), dim=-1)
                chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]
            is_stop = torch.isin(chosen, stops).tolist() if len(stops) else [False] * len(active)
            chosen_list = chosen.tolist()
            keep = []
            for row, index in enumerate(active):
                result = results[index]
                result.tokens.append(chosen_list[row])
                answer = result.tokens[:-1] if is_stop[row] else result.tokens
                text = self.decode(answer)
                done = False
                if is_stop[row]:
                    result.finish_reason, done = "stop", True
                cut = min((at for at in (text.find(s) for s in params.stop_strings) if at >= 0), default=-1)
                if cut >= 0:
                    text, result.finish_reason, done = text[:cut], "stop", True
                if not done and len(result.tokens) >= budgets[index]:
                    result.finish_reason, done = "length", True
                result.text = text
                if on_token is not None:
                    visible = text if done else text[: len(text) - held_back(text, params.stop_strings)]
                    if len(visible) > len(shown[index]) and visible.startswith(shown[index]):
                        on_token(index, visible[len(shown[index]) :])
                        shown[index] = visible
                if not done:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(rows)  # type: ignore[attr-defined]
                mask, positions, chosen = mask[rows], positions[rows], chosen[rows]
                active = [active[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            logits = self.step(chosen, mask, positions, cache)
            positions = positions + 1
        return results
