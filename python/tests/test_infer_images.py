"""Inference image preprocessing (loom_compute/infer/images.py) against the data plane's
(src/images/image.ts decodeToRgb, run under node): squash and pad give the pixels training saw;
EXIF orientation and transparency are handled as the data plane does; normalisation is the
loader's; the MLM-Filter scorer uses the same function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures.node import REPO, run_compiled_module
from loom_compute.infer.images import ImageLoadError, ImageSpec, fit_inside, load_image, pixel_values, resize_square

IMAGE_MODULE = REPO / "dist" / "src" / "images" / "image.js"
NODE_SCRIPT = """
import { readFileSync, writeFileSync } from 'node:fs';
const { decodeToRgb } = await import(process.argv[1]);
for (const job of JSON.parse(readFileSync(0, 'utf8'))) {
  const out = await decodeToRgb(readFileSync(job.input), { size: job.size, mode: job.mode });
  writeFileSync(job.input + '.' + job.mode + '.rgb', out.data);
}
"""
# (width, height, size): wide, tall, enlarged, odd sizes whose fitted side rounds at .5.
CASES = [(640, 480, 96), (120, 300, 64), (30, 20, 64), (97, 33, 64), (65, 130, 64), (50, 50, 64)]


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([128 + 90 * np.sin(x / 7.0 + y / 11.0), 128 + 90 * np.cos(x / 5.0 - y / 9.0), 255 * x / max(width - 1, 1)], axis=-1)
    image[height // 4 : height // 2 + 1, width // 4 : width // 2 + 1] = [240, 30, 30]
    image += rng.normal(0, 4, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ts_pixels(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("infer-images")
    jobs = []
    for index, (width, height, size) in enumerate(CASES):
        png = directory / f"case{index}.png"
        Image.fromarray(photo_like(width, height, index)).save(png)
        for mode in ("squash", "pad"):
            jobs.append({"input": str(png), "size": size, "mode": mode})
    run_compiled_module(IMAGE_MODULE, NODE_SCRIPT, jobs)
    return {"dir": directory}


@pytest.mark.parametrize("mode", ["squash", "pad"])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{w}x{h}->{s}" for w, h, s in CASES])
def test_resize_matches_the_data_plane(ts_pixels: dict, index: int, mode: str) -> None:
    width, height, size = CASES[index]
    png = ts_pixels["dir"] / f"case{index}.png"
    ours = np.asarray(resize_square(load_image(png), size, mode)).astype(np.int16)
    theirs = np.frombuffer(Path(f"{png}.{mode}.rgb").read_bytes(), dtype=np.uint8).reshape(size, size, 3).astype(np.int16)
    diff = np.abs(ours - theirs)
    assert diff.mean() <= 1.0, f"mean abs diff {diff.mean():.3f}"
    assert (diff > 8).mean() < 0.01, "a misplaced image or pad band shows as many large differences"
    if mode == "pad" and width != height:
        w, h = fit_inside(width, height, size)
        left, top = (size - w) // 2, (size - h) // 2
        inside = np.zeros((size, size), dtype=bool)
        inside[top : top + h, left : left + w] = True
        assert np.all(ours[~inside] == 127) and np.all(theirs[~inside] == 127), "the same grey bars on both sides"


def test_exif_orientation_and_transparency_are_applied(tmp_path: Path) -> None:
    pixels = photo_like(40, 20, 1)
    rotated = tmp_path / "rotated.jpg"
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: displayed rotated 90 degrees clockwise
    image.save(rotated, exif=exif, quality=95)
    shown = load_image(rotated)
    assert shown.size == (20, 40)
    alpha = np.zeros((8, 8, 4), dtype=np.uint8)
    alpha[..., 0] = 200
    alpha[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(alpha, "RGBA").save(tmp_path / "alpha.png")
    rgb = np.asarray(load_image(tmp_path / "alpha.png"))
    assert rgb[0, 0].tolist() == [200, 0, 0] and rgb[-1, 0].tolist() == [255, 255, 255]


def test_bad_files_are_named_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as missing:
        load_image(tmp_path / "nope.png")
    assert missing.value.reason == "missing_image" and "nope.png" in missing.value.message
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageLoadError) as corrupt:
        load_image(tmp_path / "bad.jpg")
    assert corrupt.value.reason == "corrupt_image" and "bad.jpg" in corrupt.value.message


def test_pixel_values_normalise_like_the_training_loader() -> None:
    image = Image.fromarray(photo_like(64, 64, 2))
    spec = ImageSpec(64, "squash", (0.5, 0.4, 0.3), (0.5, 0.25, 0.2))
    values = pixel_values([image, image], spec)
    assert values.shape == (2, 3, 64, 64) and values.dtype == torch.float32
    raw = torch.from_numpy(np.asarray(image).astype(np.float32)).permute(2, 0, 1) / 255.0
    expected = (raw - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    torch.testing.assert_close(values[0], expected)


def test_the_mlm_filter_scorer_uses_the_same_preprocessing() -> None:
    from test_curate_mlm_filter import TOKENIZER, tiny_config, tiny_model

    from loom_compute.curate.mlm_filter import MlmFilterScorer

    scorer = MlmFilterScorer.from_model(tiny_model(), TOKENIZER, tiny_config(), device="cpu")
    image = Image.fromarray(photo_like(90, 40, 3))
    spec = ImageSpec.from_config(tiny_config())
    torch.testing.assert_close(scorer.pixels([image]), pixel_values([image], spec), rtol=0, atol=0)
