"""An export made ready to answer: model on its device and dtype, tokenizer, prompt format,
image preprocessing and generator, from the export's own loom.json (model/export_dir.py).

    runner = InferenceModel.load("runs/tiny-sft/export", device="auto", dtype="auto")
    request = runner.request(parse_messages([...]), image="/abs/cat.jpg")   # or raises RowError
    result, = runner.generator.generate([request], SamplingParams())

``auto`` picks CUDA with bf16 when a GPU is visible (this rank's, by LOCAL_RANK), else the CPU with
fp32. A request that cannot be served (unreadable image, no user message, a prompt that leaves no
room before ``max_position_embeddings``) raises ``RowError`` with a short ``reason``, so a batch
job can record it and go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from loom_compute.errors import LoomComputeError, UsageError
from loom_compute.infer.generate import GenerationRequest, Generator
from loom_compute.infer.images import ImageLoadError, ImageSpec, load_image, pixel_values
from loom_compute.infer.prompts import Message, PromptError, PromptRenderer, PromptSettings, make_renderer

if TYPE_CHECKING:
    from PIL import Image
    from tokenizers import Tokenizer

    from loom_compute.model.export_dir import ExportInfo
    from loom_compute.model.vlm import VisionLanguageModel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class RowError(LoomComputeError):
    """One request that cannot be answered; ``reason`` is a short word for counting."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """(device, dtype) from the command line's choices; ``auto`` = cuda + bf16 if available, else cpu + fp32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available here")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0) % torch.cuda.device_count()}"
    elif device != "cpu":
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    dev = torch.device(device)
    if dtype == "auto":
        chosen = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif dtype in DTYPES:
        chosen = DTYPES[dtype]
    else:
        raise UsageError(f"--dtype must be auto, float32 or bfloat16, got {dtype!r}")
    return dev, chosen


@dataclass
class InferenceModel:
    model: VisionLanguageModel
    info: ExportInfo
    tokenizer: Tokenizer
    renderer: PromptRenderer
    image_spec: ImageSpec
    generator: Generator

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: str = "auto") -> InferenceModel:
        from tokenizers import Tokenizer

        from loom_compute.model.export_dir import inference_config, load_export

        dev, chosen = resolve_device(device, dtype)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        model, info = load_export(path, attention="sdpa")
        model = model.to(device=dev, dtype=chosen).eval()
        config = inference_config(info)
        tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
        try:
            renderer = make_renderer(info.prompt_format, tokenizer, PromptSettings.from_config(config, info.image_grid))
        except PromptError as exc:
            raise LoomComputeError(f"{info.path}: prompt format {info.prompt_format!r}: {exc.message}") from None
        pad = tokenizer.token_to_id(config.tokenizer.pad_token)
        generator = Generator(model, tokenizer, renderer.stop_ids, pad_id=0 if pad is None else pad)
        return cls(model, info, tokenizer, renderer, ImageSpec.from_config(config), generator)

    @property
    def max_positions(self) -> int:
        return self.generator.max_positions

    def request(self, messages: list[Message], image: str | Path | Image.Image | None) -> GenerationRequest:
        """A ready request, or RowError (missing/corrupt image, unrenderable conversation, too long)."""
        pixels: Any = None
        if image is not None:
            try:
                picture = load_image(image) if isinstance(image, (str, Path)) else image
            except ImageLoadError as exc:
                raise RowError(exc.message, exc.reason) from None
            pixels = pixel_values([picture], self.image_spec)[0]
        try:
            ids = self.renderer.render(messages, has_image=image is not None)
        except PromptError as exc:
            raise RowError(exc.message, "bad_messages") from None
        room = self.max_positions - len(ids) if self.max_positions else None
        if room is not None and room < 1:
            raise RowError(
                f"the prompt is {len(ids)} tokens; the model's context (max_position_embeddings) is {self.max_positions}, leaving no room for an answer",
                "too_long",
            )
        return GenerationRequest(ids, pixels, max_new_tokens=room)

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.info.path), "prompt_format": self.info.prompt_format, "stage": self.info.stage}
