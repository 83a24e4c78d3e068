"""The one image preprocessing for inference (generation, chat, the MLM-Filter scorer).

A model must see at inference the pixels it was trained on. Training images come from the data
plane (src/images/image.ts, sharp): decoded as displayed (EXIF orientation, sRGB, alpha composited
on white), resized to the square ``model.vision.image_size`` by ``data.resize``, stored as JPEG;
the loader then normalises ``(x / 255 - mean) / std`` with ``model.vision.image_mean/std``.
Here the same steps run in PIL:

- ``squash``: ``Image.resize((S, S), BICUBIC)``, aspect ignored (the recipe's mode). The TS
  resize is tuned to match exactly this (python/tests/test_images_parity.py).
- ``pad``: scaled to fit inside S x S with the aspect kept (each side ``round(side * scale)``,
  halves rounded up as JavaScript's Math.round does, at least 1 pixel), BICUBIC, then centred on
  grey (127, 127, 127) at ``floor((S - w) / 2), floor((S - h) / 2)``, as image.ts ``layoutFor``.

Not reproduced: the JPEG round trip of packed shards (quality 95, a fraction of a level).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from loom_compute.errors import LoomComputeError
from loom_compute.images_limit import MAX_IMAGE_PIXELS

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from loom_compute.config import RunConfig

ResizeMode = Literal["squash", "pad"]
# src/images/image.ts DEFAULT_PAD_COLOR: LLaVA's expand2square with SigLIP's mean 0.5, rounded down.
PAD_COLOR = (127, 127, 127)


class ImageLoadError(LoomComputeError):
    """An image that cannot be used; ``reason`` is a short word (missing_image, corrupt_image, ...)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageSpec:
    size: int
    resize: ResizeMode
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: RunConfig) -> ImageSpec:
        vision = config.model.vision
        return cls(int(vision.image_size), config.data.resize, tuple(vision.image_mean), tuple(vision.image_std))  # type: ignore[arg-type]


def to_rgb(image: Image.Image) -> Image.Image:
    """transformers' convert_to_rgb (and the data plane's flatten): transparency goes on white."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """An image file as displayed (EXIF orientation applied), RGB; a clear ImageLoadError otherwise."""
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: no such image file", "missing_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the limit is checked below
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageLoadError(f"{path}: {width}x{height} is more than the limit of {MAX_IMAGE_PIXELS} pixels", "image_too_large")
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: {exc}", "image_too_large") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{path}: cannot decode the image ({exc})", "corrupt_image") from None


def fit_inside(width: int, height: int, size: int) -> tuple[int, int]:
    """image.ts fitInside: the aspect kept, Math.round (halves up), 1..size per side."""
    scale = min(size / width, size / height)
    return (min(size, max(1, math.floor(width * scale + 0.5))), min(size, max(1, math.floor(height * scale + 0.5))))


def resize_square(image: Image.Image, size: int, mode: ResizeMode) -> Image.Image:
    """The data plane's square input: squash, or fit + centre on grey."""
    from PIL import Image

    if mode == "squash":
        return image.resize((size, size), Image.BICUBIC)
    if mode != "pad":
        raise ValueError(f"resize mode must be 'squash' or 'pad', got {mode!r}")
    width, height = fit_inside(image.width, image.height, size)
    inner = image if (width, height) == image.size else image.resize((width, height), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), PAD_COLOR)
    canvas.paste(inner, ((size - width) // 2, (size - height) // 2))
    return canvas


def pixel_values(images: Sequence[Image.Image], spec: ImageSpec) -> torch.Tensor:
    """(N, 3, S, S) float32: resized, scaled to [0, 1], normalised per channel."""
    import torch

    if not images:
        return torch.zeros((0, 3, spec.size, spec.size), dtype=torch.float32)
    arrays = [np.asarray(resize_square(to_rgb(im), spec.size, spec.resize), dtype=np.float32) / 255.0 for im in images]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    stacked = (np.stack(arrays) - mean) / std
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
