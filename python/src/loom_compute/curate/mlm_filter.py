"""MLM-Filter quality scores from a Loom-format LLaVA-style model, read without generating.

Four metrics, each an integer 0..100 the model would write as its answer. Instead of generating
(the original greedy-decodes 1-3 new tokens, so "100" can be read as "10"), every candidate
string s in "0".."100" gets its exact probability under the model: the chain rule over s's
tokens, times the probability that the answer ends there. Columns per metric: ``<metric>`` = the
expected value sum_s P(s) * s / sum_s P(s) (renormalised over the 101 candidates) and
``<metric>_argmax`` = the most probable candidate.

Rendering: the model's own prompt format (loom.json ``prompt_format``, loom_compute.infer.prompts):
Loom's ChatML (the SFT packer's, src/pack/sft.ts) for a Loom-trained scorer, ``llava-qwen2`` for the
imported published scorer (``<s>``, no newlines between turns: the format it was fine-tuned on; its
published batch script instead sends no ``<s>``, a trailing " " and squashed images). In ChatML: system "You are a helpful
assistant.", the user turn = image (image_grid^2 ``<image>`` ids) + "\\n" + "Text Caption:
{caption}\\n\\n{criteria} ...", then ``<|im_start|>assistant\\n``. Each fixed piece and each value
is tokenized on its own and the ids concatenated; the caption/criteria split sits after "\\n\\n",
which the Qwen pre-tokenizer regex always ends a pre-token at, so the ids equal tokenizing the
whole user value (tested on the tiny tokenizer). The caption is data text (DESIGN.md, "Data text
is plain text"): "Text Caption: {caption}\\n\\n" is encoded as plain text (loom_compute.data_text),
so a special-token string in a caption is ordinary tokens and nothing is deleted; the prompt's
own words in that piece hold no special string, so they encode as in a template.

Cost per batch of B samples: two LLM forwards in all.
1. Prefill: the shared prefix (system, image, caption: ~P tokens) of the B samples, right-padded,
   into a KV cache. Run once per sample, however many metrics.
2. Continuation: the cache repeated 4x (one copy per metric), then 4B rows of [metric suffix
   (S_m tokens) + the candidate trie (N nodes: 101 under digit-by-digit tokenization, since
   "1" -> "10" -> "100" and every node is itself a candidate)], with a tree attention mask: a
   trie node sees the prefix, its row's suffix and its own ancestors, and sits at the position
   it would have in a plain left-to-right prompt. One forward scores all 4 x 101 candidates.
   Tokens per sample: P + sum_m (S_m) + 4 N (plus padding to the longest suffix).
Then the LM head runs only at the 1 + N positions per row whose next-token distribution is read.

The vision tower's image goes through loom_compute.infer.images (the squash resize, PIL bicubic,
and mean/std of the data plane's packed images; src/images/image.ts is tested against it).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from loom_compute.config import RunConfig
from loom_compute.data_text import encode_data_text
from loom_compute.errors import LoomComputeError
from loom_compute.infer.images import ImageSpec, pixel_values
from loom_compute.infer.prompts import Message, PromptRenderer, PromptSettings, make_renderer
from loom_compute.curate.batch_scorer import score_in_batches

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from tokenizers import Tokenizer

    from loom_compute.model.vlm import VisionLanguageModel


# The published MLM-Filter prompt wording (MIT licence, Copyright (c) 2025 Weizhi Wang), from
# Victorwz/MLM_Filter, mlm_filter_scoring_single_image.py and
# mlm_filter_scoring_datacomp_batch_inference_v3.py (LLAVA_INSTRUCTION_TEMPLATE and criteria_*).
# Kept verbatim, including "1-100" in the criteria and the double space, because the published
# scorer models were fine-tuned on exactly these strings.
INSTRUCTION_TEMPLATE = (
    "Text Caption: {caption}\n\n{criteria} A higher score indicates higher level of {aspect}. Ensure that your scoring is "
    "nuanced and uses the entire range from 0 to 100, reflecting the subtle differences. The score should be given as an "
    "integer, with each number between 0 and 100 considered as a potential score, avoiding the tendency to round to "
    "multiples of 10.  Please first output a single line containing the value indicating the scores. In the subsequent "
    "line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias."
)
CRITERIA: dict[str, str] = {
    "image_text_matching": (
        "Please evaluate if the provided text caption accurately represents the main features and objects of the image. "
        "The caption doesn't need to detail every aspect of the image, but it should capture its primary theme. Rate the "
        "overall quality of the text caption's match to the image on a scale of 1-100, considering the criteria mentioned."
    ),
    "object_detail_fulfillment": (
        "Please evaluate the text caption to determine if it provides detailed descriptions of objects that align with the "
        "image. Specifically, assess if the caption sufficiently describes the color, size, position, shape, material, etc., "
        "of the objects. Afterward, rate the caption's overall accuracy in capturing object details from the image on a "
        "scale of 1-100, based on the criteria provided."
    ),
    "caption_text_quality": (
        "Please evaluate the text caption based on the following criteria: Grammatical Correctness, Diversity of Vocabulary "
        "(e.g., the range and uniqueness of words used), Fluency (e.g., smoothness and natural flow of sentences), "
        "Readability, Length, and Structure. Assign an overall quality score on a scale of 1-100."
    ),
    "semantic_understanding": (
        "Evaluate the given text caption in relation to its corresponding image. Your goal is to determine if the text "
        "caption provides additional semantic information that isn't readily apparent just from the image itself.\n\n"
        "For example:\n\n"
        "1. If the image mentions \"a man\" but the caption elaborates he is a \"homeless man\" or a \"businessman,\" then "
        "the caption is enriching the semantic context.\n"
        "2. If the caption introduces concepts like the mathematical tangent function, which require in-depth knowledge to "
        "deduce, it is imparting external semantics.\n"
        "3. Captions revealing specific location addresses, festival details, or other nuanced data not easy to infer from "
        "the image also provide external semantic information.\n"
        "4. Directly identifying specific entities in the image such as buildings, people, bird species, animal breeds, car "
        "models, engines, etc., in the caption introduces additional insights.\n"
        "5. Should the image act as a contextual backdrop and the caption describes elements not explicitly showcased in "
        "the image, it has semantic depth.\n"
        "6. Lastly, if the caption depicts relationships between the subjects in the image, which need commonsense "
        "knowledge to understand, it should be considered semantically rich.\n\n"
        "Please assess and determine the extent of semantic enrichment the caption provides over the image. Rate the text "
        "caption's semantic depth on a scale from 1 to 100."
    ),
}
METRICS: tuple[str, ...] = tuple(CRITERIA)
CANDIDATE_VALUES: tuple[int, ...] = tuple(range(101))
CAPTION_MARK = "{caption}"

AnswerEnd = Literal["im_end", "non_digit"]


def user_value_parts(caption: str, metric: str) -> tuple[str, str]:
    """The user turn's text split after the caption: ("Text Caption: {caption}\\n\\n", "{criteria} ...")."""
    text = INSTRUCTION_TEMPLATE.replace("{criteria}", CRITERIA[metric]).replace("{aspect}", metric.replace("_", " "))
    head, tail = text.split(CAPTION_MARK)
    cut = tail.index("\n\n") + 2
    return head + caption + tail[:cut], tail[cut:]


# ---- the pure part: per-position log-probs -> candidate probabilities -------------------------


@dataclass(frozen=True)
class CandidateTrie:
    """The candidates' token sequences as a trie; node j's parent comes before j (-1 = the root).

    ``candidate_node[c]`` is the node at which candidate c's tokens end."""

    parents: tuple[int, ...]
    tokens: tuple[int, ...]
    depths: tuple[int, ...]
    candidate_node: tuple[int, ...]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> CandidateTrie:
        index: dict[tuple[int, ...], int] = {}
        parents: list[int] = []
        tokens: list[int] = []
        depths: list[int] = []
        ends: list[int] = []
        for seq in sequences:
            if len(seq) == 0:
                raise ValueError("a candidate tokenizes to no tokens")
            for depth in range(1, len(seq) + 1):
                key = tuple(seq[:depth])
                if key not in index:
                    index[key] = len(parents)
                    parents.append(index[key[:-1]] if depth > 1 else -1)
                    tokens.append(int(seq[depth - 1]))
                    depths.append(depth)
            ends.append(index[tuple(seq)])
        if len(set(ends)) != len(ends):
            raise ValueError("two candidates tokenize to the same ids")
        return cls(tuple(parents), tuple(tokens), tuple(depths), tuple(ends))

    @property
    def size(self) -> int:
        return len(self.parents)

    def ancestors_or_self(self, node: int) -> list[int]:
        path = []
        while node >= 0:
            path.append(node)
            node = self.parents[node]
        return path


def candidate_log_probs(step_log_probs: torch.Tensor, trie: CandidateTrie, end_mask: torch.Tensor) -> torch.Tensor:
    """log P(candidate tokens, then the answer ends) for every candidate.

    ``step_log_probs`` (..., 1 + N, V): normalised next-token log-probs; index 0 is after the
    prompt (predicts a candidate's first token), index 1 + j after trie node j. ``end_mask`` (V,)
    bool: the tokens that end the answer (disjoint from the candidates' tokens). Returns (..., C).
    """
    import torch

    device = step_log_probs.device
    parents = torch.tensor(trie.parents, dtype=torch.long, device=device)
    tokens = torch.tensor(trie.tokens, dtype=torch.long, device=device)
    # edge[j] = log P(token_j | prompt, ancestors of j), read at the parent's position.
    rows = step_log_probs[..., parents + 1, :]  # (..., N, V)
    edge = rows.gather(-1, tokens.expand(*rows.shape[:-2], -1)[..., None])[..., 0]
    path = torch.zeros_like(edge)
    for depth in sorted(set(trie.depths)):  # parents are shallower, so their sums are final
        at = torch.tensor([j for j, d in enumerate(trie.depths) if d == depth], dtype=torch.long, device=device)
        parent_of = parents[at]
        base = torch.where(parent_of >= 0, path[..., parent_of.clamp(min=0)], torch.zeros_like(edge[..., at]))
        path[..., at] = base + edge[..., at]
    end = torch.logsumexp(step_log_probs[..., 1:, :].masked_fill(~end_mask, float("-inf")), dim=-1)  # (..., N)
    nodes = torch.tensor(trie.candidate_node, dtype=torch.long, device=device)
    return path[..., nodes] + end[..., nodes]


def summarize(log_probs: torch.Tensor, values: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(expected value over the renormalised candidates, the most probable candidate's value)."""
    import torch

    weights = torch.softmax(log_probs.float(), dim=-1)
    vals = torch.tensor(values, dtype=torch.float32, device=log_probs.device)
    expected = (weights * vals).sum(-1).clamp(min=float(min(values)), max=float(max(values)))
    argmax = vals[log_probs.argmax(dim=-1)]
    return expected, argmax


# ---- the scorer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ContinuationTemplates:
    """One continuation row per metric, the same for every sample: [suffix | trie nodes | padding]."""

    tokens: torch.Tensor  # (4, span) token ids (padding: <|im_end|>, hidden from everything)
    position_offsets: torch.Tensor  # (4, span) added to the sample's prefix length
    allowed: torch.Tensor  # (4, span, span) which continuation keys each continuation query sees
    read_at: torch.Tensor  # (4, 1 + nodes): the suffix's last position, then each trie node's


def _continuation_templates(suffix_ids: Sequence[Sequence[int]], trie: CandidateTrie, pad_id: int, device: torch.device) -> _ContinuationTemplates:
    """Built once per scorer, so a batch only tiles them (no per-row work on the hot path)."""
    import torch

    nodes = trie.size
    span = max(len(s) for s in suffix_ids) + nodes
    count = len(suffix_ids)
    tokens = torch.full((count, span), pad_id, dtype=torch.long)
    offsets = torch.zeros((count, span), dtype=torch.long)
    allowed = torch.zeros((count, span, span), dtype=torch.bool)
    read_at = torch.zeros((count, 1 + nodes), dtype=torch.long)
    depths = torch.tensor(trie.depths)
    node_allowed = torch.zeros((nodes, nodes), dtype=torch.bool)
    for j in range(nodes):
        node_allowed[j, trie.ancestors_or_self(j)] = True
    for m, suffix in enumerate(suffix_ids):
        s = len(suffix)
        tokens[m, :s] = torch.tensor(suffix)
        tokens[m, s : s + nodes] = torch.tensor(trie.tokens)
        offsets[m, :s] = torch.arange(s)
        offsets[m, s : s + nodes] = s - 1 + depths  # a node sits where its digit would in a plain prompt
        allowed[m, :s, :s] = torch.ones(s, s, dtype=torch.bool).tril()
        allowed[m, s : s + nodes, :s] = True
        allowed[m, s : s + nodes, s : s + nodes] = node_allowed
        tail = torch.arange(s + nodes, span)
        allowed[m, tail, tail] = True  # padding sees only itself
        read_at[m, 0] = s - 1
        read_at[m, 1:] = torch.arange(s, s + nodes)
    return _ContinuationTemplates(tokens.to(device), offsets.to(device), allowed.to(device), read_at.to(device))


def _turn_frame(renderer: PromptRenderer) -> tuple[list[int], list[int]]:
    """(ids before the image, ids after the user value) of a one-turn prompt in ``renderer``'s format.

    Every conversational format puts the image, then "\\n", then the user's text into the first user
    turn, so rendering an empty user message with an image gives head + image + "\\n" + close:
    the scorer's prompt is head + image + "\\n" + value + close, whatever the format's system block,
    BOS or turn separators are.
    """
    probe = renderer.render([Message("user", "")], has_image=True)
    image = renderer.image_ids()
    start = probe.index(renderer.image_token_id) if renderer.image_token_id in probe else -1
    after = probe[start + len(image) :] if start >= 0 else []
    if start < 0 or probe[start : start + len(image)] != image or after[: len(renderer.newline)] != renderer.newline:
        raise LoomComputeError(f"the prompt format {renderer.name!r} does not put the image and a newline before the user's text; the MLM-Filter scorer cannot use it")
    return probe[:start], after[len(renderer.newline) :]


class MlmFilterScorer:
    """The runner's BatchScorer for MLM-Filter: 8 float32 columns (4 expected values, 4 argmaxes)."""

    columns = (*METRICS, *(f"{m}_argmax" for m in METRICS))

    def __init__(
        self,
        model: VisionLanguageModel,
        tokenizer: Tokenizer,
        *,
        image_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        image_token: str = "<image>",
        eos_token: str = "<|im_end|>",
        pad_token: str = "<|endoftext|>",
        source: str = "in-memory",
        device: str | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 8,
        answer_end: AnswerEnd = "im_end",
        max_caption_tokens: int = 512,
        prompt_format: str = "chatml",
        resize: str = "squash",
    ) -> None:
        import torch

        if batch_size < 1:
            raise LoomComputeError(f"--batch-size must be at least 1, got {batch_size}")
        if answer_end not in ("im_end", "non_digit"):
            raise LoomComputeError(f"answer_end must be 'im_end' or 'non_digit', got {answer_end!r}")
        if model.attention == "flex":
            raise LoomComputeError("the MLM-Filter scorer needs the sdpa or eager attention backend (it passes a tree mask)")
        self.source = source
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.image_mean = np.asarray(image_mean, dtype=np.float32)
        self.image_std = np.asarray(image_std, dtype=np.float32)
        self.max_caption_tokens = int(max_caption_tokens)
        if resize not in ("squash", "pad"):
            raise LoomComputeError(f"resize must be 'squash' or 'pad', got {resize!r}")
        self.resize = resize
        self.answer_end = answer_end
        # The model's own prompt format (infer/prompts.py: Loom's ChatML, or an imported scorer's
        # llava-qwen2), with its checks that the image, turn, eos and pad tokens exist and are
        # special (else a caption could write them).
        renderer = make_renderer(prompt_format, tokenizer, PromptSettings(image_token, eos_token, pad_token, model.image_grid * model.image_grid))
        self.prompt_format = prompt_format
        self.plain = renderer.plain
        # The caption piece is encoded as plain text whole; its prompt words must mean the same either way.
        empty_head = user_value_parts("", METRICS[0])[0]
        if encode_data_text(self.plain, [empty_head])[0] != self._encode(empty_head):
            raise LoomComputeError("the MLM-Filter caption piece holds a special-token string; it cannot be encoded as plain text")
        self.image_token_id = renderer.image_token_id
        if self.image_token_id != model.image_token_id:
            raise LoomComputeError(f"the tokenizer's {image_token!r} is id {self.image_token_id} but the model's image token is {model.image_token_id}")
        self.im_end_id = renderer.special_id("<|im_end|>", "the answer's end")
        self.newline_ids = renderer.newline
        self.image_ids = renderer.image_ids()
        self.head_ids, self.close_ids = _turn_frame(renderer)
        encode = self._encode
        # The per-metric suffix: the rest of the user value, then the format's turn closer and assistant header.
        self.suffix_ids = [encode(user_value_parts("", m)[1]) + self.close_ids for m in METRICS]
        self.trie = CandidateTrie.build([encode(str(v)) for v in CANDIDATE_VALUES])
        vocab = model.llm.get_output_embeddings().weight.shape[0]
        end = torch.zeros(vocab, dtype=torch.bool)
        if answer_end == "im_end":
            end[self.im_end_id] = True
        else:  # any token that cannot continue the number ends it ("\n" before an explanation, <|im_end|>, ...)
            for i in range(min(vocab, tokenizer.get_vocab_size(with_added_tokens=True))):
                piece = tokenizer.id_to_token(i)
                end[i] = piece is not None and not (piece[:1] in "0123456789" and piece[:1] != "")
        if end[list(set(self.trie.tokens))].any():
            raise LoomComputeError("a token of a candidate score also ends the answer")
        self.end_mask = end.to(self.device)
        self.templates = _continuation_templates(self.suffix_ids, self.trie, self.im_end_id, self.device)
        # transformers 5.x renamed the forward's `past_key_values` to `cache` (the old name warns).
        self._cache_arg = "cache" if "cache" in inspect.signature(type(model.llm.model).forward).parameters else "past_key_values"

    @classmethod
    def from_export(cls, export_dir: str | Path, **options: Any) -> MlmFilterScorer:
        """Loads a Loom export (``runs/<name>/export``) with its tokenizer and the run's image settings."""
        from tokenizers import Tokenizer

        from loom_compute.model.export_dir import inference_config, load_export

        # The export's own weights, grid and tokenizer; SDPA because scoring runs anywhere, CPU included.
        model, info = load_export(export_dir, attention="sdpa")
        options.setdefault("prompt_format", info.prompt_format)
        return cls.from_model(model, Tokenizer.from_file(str(info.tokenizer_path)), inference_config(info), source=str(info.path), **options)

    @classmethod
    def from_model(cls, model: VisionLanguageModel, tokenizer: Tokenizer, config: RunConfig, **options: Any) -> MlmFilterScorer:
        """Wraps an in-memory model; image and token settings come from its run config."""
        vision, tok = config.model.vision, config.tokenizer
        return cls(
            model,
            tokenizer,
            image_size=vision.image_size,
            image_mean=vision.image_mean,
            image_std=vision.image_std,
            image_token=tok.image_token,
            eos_token=tok.eos_token,
            pad_token=tok.pad_token,
            resize=config.data.resize,
            **options,
        )

    # ---- rendering ----------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prefix_ids(self, caption: str) -> list[int]:
        """system, user header, image, "\\n", "Text Caption: {caption}\\n\\n": shared by the 4 metrics."""
        head, _ = user_value_parts(caption, METRICS[0])
        (value,) = encode_data_text(self.plain, [head])
        closing = self._encode("\n\n")
        if self.max_caption_tokens and len(value) > self.max_caption_tokens + len(closing):
            value = value[: self.max_caption_tokens] + closing
        return self.head_ids + self.image_ids + self.newline_ids + value

    def prompt_ids(self, caption: str, metric: str) -> list[int]:
        """The whole prompt for one metric, ending with the assistant header."""
        return self.prefix_ids(caption) + self.suffix_ids[METRICS.index(metric)]

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The one inference preprocessing (infer/images.py), squashed as the scorer's models were trained."""
        return pixel_values(images, ImageSpec(self.image_size, self.resize, tuple(self.image_mean), tuple(self.image_std)))  # type: ignore[arg-type]

    def preprocess(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, Any]:
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images for {len(captions)} captions")
        return {"pixel_values": self.pixels(images), "prefix_ids": [self.prefix_ids(c) for c in captions]}

    # ---- scoring ------------------------------------------------------------------------------

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        from loom_compute.model.attention import additive_mask

        return additive_mask(allowed, self.dtype)

    def candidate_log_probs(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """(B, 4, 101) log P(candidate, then the end) per sample and metric: the two forwards."""
        import torch
        from transformers import DynamicCache

        prefixes: list[list[int]] = inputs["prefix_ids"]
        batch, metrics = len(prefixes), len(METRICS)
        dev = self.device
        lengths = torch.tensor([len(p) for p in prefixes], device=dev)
        width = int(lengths.max())
        ids = torch.full((batch, width), self.im_end_id, dtype=torch.long, device=dev)  # padding: any text token
        for i, p in enumerate(prefixes):
            ids[i, : len(p)] = torch.tensor(p, device=dev)
        with torch.inference_mode():
            llm = self.model.llm
            embeds = self.model.embed(ids, inputs["pixel_values"].to(dev, self.dtype))
            # Prefill: right-padded prefixes; padding keys are hidden from every query.
            key_ok = torch.arange(width, device=dev)[None, :] < lengths[:, None]  # (B, W)
            causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
            allowed = causal[None] & (key_ok[:, None, :] | torch.eye(width, dtype=torch.bool, device=dev)[None])
            cache = DynamicCache()
            positions = torch.arange(width, device=dev).expand(batch, -1)
            llm.model(inputs_embeds=embeds, attention_mask=self._additive(allowed[:, None]), position_ids=positions, use_cache=True, **{self._cache_arg: cache})
            cache.batch_repeat_interleave(metrics)  # rows i*4 + m: one copy of sample i's prefix per metric

            # Continuation rows i*4 + m: metric m's template; positions continue sample i's prefix.
            t = self.templates
            rows, span = batch * metrics, t.tokens.shape[1]
            cont = t.tokens.repeat(batch, 1)
            pos = lengths.repeat_interleave(metrics)[:, None] + t.position_offsets.repeat(batch, 1)
            new_ok = t.allowed.repeat(batch, 1, 1)
            read_at = t.read_at.repeat(batch, 1)
            old_ok = key_ok.repeat_interleave(metrics, dim=0)[:, None, :].expand(rows, span, width)
            mask = self._additive(torch.cat([old_ok, new_ok], dim=-1)[:, None])
            out = llm.model(inputs_embeds=llm.get_input_embeddings()(cont), attention_mask=mask, position_ids=pos, use_cache=True, **{self._cache_arg: cache})
            hidden = out.last_hidden_state.gather(1, read_at[..., None].expand(-1, -1, out.last_hidden_state.shape[-1]))
            results = []
            for i in range(batch):  # the vocab projection one sample at a time bounds its memory
                chunk = hidden[i * metrics : (i + 1) * metrics]
                step = torch.log_softmax(llm.lm_head(chunk).float(), dim=-1)
                results.append(candidate_log_probs(step, self.trie, self.end_mask))
        return torch.stack(results)

    def score_inputs(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        log_probs = self.candidate_log_probs(inputs)
        expected, argmax = summarize(log_probs, CANDIDATE_VALUES)
        scores: dict[str, np.ndarray] = {}
        for m, metric in enumerate(METRICS):
            scores[metric] = expected[:, m].cpu().numpy().astype(np.float32)
            scores[f"{metric}_argmax"] = argmax[:, m].cpu().numpy().astype(np.float32)
        return scores

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        """Scores pairs in batches of ``batch_size``."""
        return score_in_batches(self, images, captions)
