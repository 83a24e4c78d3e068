"""UniFilter quality scores from an imported UniFilter classifier (``loom import --format llava``).

UniFilter (Victorwz/UniFilter; ``LlavaQwenClassifier`` in ``LLaVA/llava/model/language_model/
llava_qwen.py``) is a LLaVA on Qwen2 whose LM head is replaced by ``score``, a bias-free
Linear(hidden, num_labels) read at the last non-padding position. The import keeps the Qwen2 body
and puts ``score.weight`` in the export's ``classifier.safetensors`` (loom.json ``source.head``).

Everything below follows the published scoring script,
https://github.com/Victorwz/UniFilter/blob/main/data_scoring/data_quality_classifier_caption_scoring.py
(``DataCollatorForImagePreprocessing`` and ``main``):

* text: ``"<image>\\n" + caption.replace("<image>", "image")``, split on ``<image>`` by LLaVA's
  ``tokenizer_image_token`` (so the ids are the image sentinel, then the tokens of
  ``"\\n" + caption`` encoded as one string: a caption that starts with a newline or spaces merges
  with that "\\n" as Qwen's pre-tokenizer does), with bos (``<s>``, which UniFilter's training adds
  for Qwen) put first and eos last;
* every sequence cut to its first ``max_ids`` = 75 ids (the collator's ``max_len``, counting the
  image sentinel as one id: a long caption loses its end and its eos), right-padded;
* ``attention_mask = input_ids != pad_token_id``, and LLaVA's ``prepare_inputs_labels_for_multimodal``
  drops every masked id before splicing the image in, so an id equal to pad goes wherever it sits
  (eos too, when a tokenizer's eos is its pad); the head then reads ``attention_mask.sum() - 1``,
  the last id left;
* images: the vision tower's image processor called directly (``image_processor(images)``), i.e. the
  SigLIP processor's square bicubic resize (squash) and mean/std whatever ``image_aspect_ratio``
  says; here that is loom_compute.infer.images with ``squash`` and the export's mean/std;
* the score: for ``num_labels >= 2``, ``quality_score = softmax(logits)[1]`` (the probability of the
  positive class; "We only use the normalized logits on the positive class") and
  ``quality_class = argmax(logits)``; for ``num_labels == 1``, ``quality_score = logits[0]``.

One deliberate difference: captions are data text (DESIGN.md, loom_compute.data_text), so a
special-token string in a caption ("<|im_end|>", "<s>") is ordinary tokens, where the script's
tokenizer call would turn it into the special id (and a pad string would even be deleted).

Columns: ``quality_score`` (float), and for a classifier with labels ``quality_class`` (the argmax
as a float) and ``logit_<k>`` per label. One LLM forward per batch (``VisionLanguageModel.
hidden_states``: right padding under plain causal attention never reaches an earlier position),
then the score head on the B read positions only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loom_compute.data_text import encode_data_text, plain_text_tokenizer
from loom_compute.errors import LoomComputeError
from loom_compute.infer.images import ImageSpec, pixel_values
from loom_compute.curate.batch_scorer import score_in_batches

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from tokenizers import Tokenizer

    from loom_compute.model.vlm import VisionLanguageModel

BOS = "<s>"
IMAGE_MARK = "<image>"
MAX_IDS = 75  # DataCollatorForImagePreprocessing(tokenizer, image_processor, 75) in the script
SENTINEL = -200  # LLaVA's IMAGE_TOKEN_INDEX: one id in the cut, image_grid**2 features after it
SCORE = "quality_score"
CLASS = "quality_class"


class UniFilterError(LoomComputeError):
    pass


def caption_text(caption: str) -> str:
    """The text after the image: format_text's "<image>\\n" + caption with "<image>" -> "image", less the mark."""
    return "\n" + caption.replace(IMAGE_MARK, "image")


def unifilter_scores(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The script's formula on (B, num_labels) head logits: softmax's positive class and the argmax,
    or the raw value of a one-label (regression) head."""
    import torch

    logits = logits.float()
    if logits.shape[-1] >= 2:
        return {SCORE: torch.softmax(logits, dim=-1)[:, 1], CLASS: logits.argmax(dim=-1).float()}
    return {SCORE: logits[:, 0]}


def read_head(export: Path, source: Mapping[str, Any] | None) -> tuple[torch.Tensor, dict[str, Any]]:
    """(score weight (num_labels, hidden), source.head) of an imported UniFilter export, checked."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = f"{export / 'loom.json'}"
    head = (source or {}).get("head") if isinstance(source, Mapping) else None
    if not isinstance(head, Mapping):
        kind = "a model trained by Loom" if source is None else f"an import of format {source.get('format')!r}"
        raise UniFilterError(
            f"{where}: source.head is missing: {export} is {kind} with no classifier head, not a UniFilter classifier "
            "(import one with `loom import --format llava` from a LlavaQwenClassifier folder)"
        )
    if head.get("kind") != "sequence-classifier" or head.get("position") != "last-token" or head.get("bias") not in (False, None):
        raise UniFilterError(f"{where}: source.head {json.dumps(dict(head))} is not a bias-free last-token sequence classifier (UniFilter's score head)")
    labels = head.get("num_labels")
    if not isinstance(labels, int) or labels < 1:
        raise UniFilterError(f"{where}: source.head.num_labels must be a positive integer, got {labels!r}")
    path = export / str(head.get("file") or "classifier.safetensors")
    if not path.is_file():
        raise UniFilterError(f"{path}: missing; loom.json source.head names it as the score head")
    try:
        weight = load_file(str(path)).get("weight")
    except (SafetensorError, OSError) as exc:
        raise UniFilterError(f"{path}: cannot read the score head: {exc}") from exc
    if weight is None or weight.ndim != 2 or weight.shape[0] != labels:
        found = None if weight is None else tuple(weight.shape)
        raise UniFilterError(f"{path}: key 'weight' must have shape ({labels}, hidden), found {found}")
    return weight, dict(head)


class UniFilterScorer:
    """The runner's BatchScorer for UniFilter: quality_score (+ quality_class, logit_<k>)."""

    def __init__(
        self,
        model: VisionLanguageModel,
        tokenizer: Tokenizer,
        head_weight: torch.Tensor,
        *,
        image_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        eos_token: str,
        pad_token: str,
        bos_token: str = BOS,
        image_token: str = IMAGE_MARK,
        source: str = "in-memory",
        device: str | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 16,
        max_ids: int = MAX_IDS,
    ) -> None:
        import torch

        if batch_size < 1:
            raise UniFilterError(f"--batch-size must be at least 1, got {batch_size}")
        if max_ids < 3:
            raise UniFilterError(f"max_ids must be at least 3 (bos, image, eos), got {max_ids}")
        self.source = source
        self.batch_size = batch_size
        self.max_ids = int(max_ids)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        hidden = model.llm.config.hidden_size
        if head_weight.ndim != 2 or head_weight.shape[1] != hidden:
            raise UniFilterError(f"the score head is {tuple(head_weight.shape)} but the LLM is {hidden} wide")
        self.num_labels = int(head_weight.shape[0])
        # The head in fp32: B x hidden x num_labels is nothing, and the softmax is read in fp32 anyway.
        self.head = head_weight.detach().to(self.device, torch.float32)
        self.columns: tuple[str, ...] = (SCORE,) if self.num_labels == 1 else (SCORE, CLASS, *(f"logit_{k}" for k in range(self.num_labels)))
        self.tokenizer = tokenizer
        self.plain = plain_text_tokenizer(tokenizer)
        special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
        ids: dict[str, int] = {}
        for what, token in (("bos", bos_token), ("eos", eos_token), ("pad", pad_token), ("image", image_token)):
            found = tokenizer.token_to_id(token)
            if found is None or token not in special:
                state = "has no" if found is None else "has a non-special"
                raise UniFilterError(f"the tokenizer {state} {token!r} ({what} of UniFilter's input); a UniFilter export has it as a special token")
            ids[what] = int(found)
        if ids["image"] != model.image_token_id:
            raise UniFilterError(f"the tokenizer's {image_token!r} is id {ids['image']} but the model's image token is {model.image_token_id}")
        self.bos_id, self.eos_id, self.pad_id, self.image_token_id = ids["bos"], ids["eos"], ids["pad"], ids["image"]
        self.image_tokens = model.image_grid * model.image_grid
        self.image_spec = ImageSpec(int(image_size), "squash", tuple(float(x) for x in image_mean), tuple(float(x) for x in image_std))  # type: ignore[arg-type]

    @classmethod
    def from_export(cls, export_dir: str | Path, **options: Any) -> UniFilterScorer:
        """Loads an imported UniFilter export: the body (load_export), the head (source.head), the tokenizer."""
        from tokenizers import Tokenizer

        from loom_compute.model.export_dir import inference_config, load_export, read_export

        info = read_export(export_dir)
        weight, _ = read_head(info.path, info.source)  # refused before the body loads
        if info.prompt_format != "unifilter-qwen2":
            raise UniFilterError(f"{info.path / 'loom.json'}: prompt_format is {info.prompt_format!r}; a UniFilter classifier import has 'unifilter-qwen2'")
        model, info = load_export(info.path, attention="sdpa")
        config = inference_config(info)
        vision, tok = config.model.vision, config.tokenizer
        return cls(
            model,
            Tokenizer.from_file(str(info.tokenizer_path)),
            weight,
            image_size=vision.image_size,
            image_mean=vision.image_mean,
            image_std=vision.image_std,
            eos_token=tok.eos_token,
            pad_token=tok.pad_token,
            image_token=tok.image_token,
            source=str(info.path),
            **options,
        )

    # ---- rendering ----------------------------------------------------------------------------

    def script_ids(self, caption: str) -> list[int]:
        """The script's ids for one caption, before padding: bos, the sentinel, "\\n" + caption, eos,
        cut to ``max_ids``, with every pad id dropped (the attention mask LLaVA unpads by)."""
        (text,) = encode_data_text(self.plain, [caption_text(caption)])
        ids = [self.bos_id, SENTINEL, *text, self.eos_id][: self.max_ids]
        return [i for i in ids if i != self.pad_id]

    def input_ids(self, caption: str) -> list[int]:
        """Loom's ids: the sentinel expanded to image_grid**2 image tokens; the head reads the last one."""
        out: list[int] = []
        for i in self.script_ids(caption):
            out.extend([self.image_token_id] * self.image_tokens if i == SENTINEL else [i])
        return out

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return pixel_values(images, self.image_spec)

    def preprocess(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, Any]:
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images for {len(captions)} captions")
        return {"pixel_values": self.pixels(images), "input_ids": [self.input_ids(c) for c in captions]}

    # ---- scoring ------------------------------------------------------------------------------

    def logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """(B, num_labels) fp32 head logits: one forward, the head at the B read positions."""
        import torch

        rows: list[list[int]] = inputs["input_ids"]
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        ids = torch.full((len(rows), int(lengths.max())), self.pad_id, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, device=self.device)
        with torch.inference_mode():
            batch = {"input_ids": ids, "pixel_values": inputs["pixel_values"].to(self.device, self.dtype)}
            hidden = self.model.hidden_states(batch, isolate_documents=False)
            read = hidden[torch.arange(len(rows), device=self.device), lengths - 1]
            return read.float() @ self.head.T

    def score_inputs(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        logits = self.logits(inputs)
        scores = {name: t.cpu().numpy().astype(np.float32) for name, t in unifilter_scores(logits).items()}
        if self.num_labels > 1:
            for k in range(self.num_labels):
                scores[f"logit_{k}"] = logits[:, k].cpu().numpy().astype(np.float32)
        return scores

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        """Scores pairs in batches of ``batch_size``."""
        return score_in_batches(self, images, captions)
