"""The TS data plane's squash resize (src/images/image.ts, sharp) against PIL's BICUBIC resize,
which is what HF's SiglipImageProcessor applies: the model must see the same pixels whichever
side prepared them. Runs the compiled TS through node on images made here with numpy and PIL.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.node import REPO, require_built, run_compiled_module

IMAGE_MODULE = REPO / "dist" / "src" / "images" / "image.js"

# (width, height, size): reductions, enlargements, mixed (one axis each way), extreme aspect, tiny.
CASES = [
    (640, 480, 384),
    (512, 512, 224),
    (1024, 300, 384),
    (200, 150, 384),
    (150, 900, 224),
    (97, 301, 64),
    (3000, 2000, 384),
    (2000, 40, 64),
    (7, 5, 384),
    (1, 1, 16),
]
# Mean absolute difference per channel value (0-255) allowed between TS and PIL. Enlargement and
# reductions under 4x match to a fraction of a level; from 4x libvips box-shrinks part of the way
# before its cubic reduce, which costs about a level at 8x and under two at 31x.
MEAN_TOLERANCE = 1.0
EXTREME_REDUCTION = 16
EXTREME_TOLERANCE = 2.0

NODE_SCRIPT = """
import { readFileSync, writeFileSync } from 'node:fs';
const { decodeDisplayed, decodeToRgb } = await import(process.argv[1]);
const jobs = JSON.parse(readFileSync(0, 'utf8'));
for (const job of jobs) {
  const data = readFileSync(job.input);
  const shown = await decodeDisplayed(data);
  writeFileSync(job.input + '.displayed.rgb', shown.data);
  const squashed = await decodeToRgb(data, { size: job.size, mode: 'squash' });
  writeFileSync(job.input + '.squashed.rgb', squashed.data);
}
"""


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth gradients, hard-edged shapes and mild sensor noise: edges and texture both matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([
        128 + 90 * np.sin(x / 9.0 + y / 17.0),
        128 + 90 * np.cos(x / 13.0 - y / 7.0),
        255 * x / max(width - 1, 1),
    ], axis=-1)
    image[height // 4: height // 2 + 1, width // 4: width // 2 + 1] = [240, 30, 30]
    disc = (x - 0.7 * width) ** 2 + (y - 0.6 * height) ** 2 < (0.15 * min(width, height)) ** 2
    image[disc] = [20, 40, 200]
    image += rng.normal(0, 6, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def run_ts(jobs: list[dict]) -> None:
    run_compiled_module(IMAGE_MODULE, NODE_SCRIPT, jobs)


def read_rgb(path: Path, width: int, height: int) -> np.ndarray:
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    assert data.size == width * height * 3, f"{path}: {data.size} bytes, expected {width}x{height}x3"
    return data.reshape(height, width, 3)


@pytest.fixture(scope="module")
def ts_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("images")
    jobs = []
    for index, (width, height, size) in enumerate(CASES):
        png = directory / f"case{index}_{width}x{height}.png"
        Image.fromarray(photo_like(width, height, index)).save(png)
        jobs.append({"input": str(png), "size": size})
    jpeg = directory / "photo.jpg"
    Image.fromarray(photo_like(400, 300, 99)).save(jpeg, quality=90)
    jobs.append({"input": str(jpeg), "size": 224})
    run_ts(jobs)
    return {"dir": directory, "jobs": jobs}


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{w}x{h}->{s}" for w, h, s in CASES])
def test_squash_matches_pil_bicubic(ts_outputs: dict, index: int) -> None:
    width, height, size = CASES[index]
    source = Path(ts_outputs["jobs"][index]["input"])
    pil_image = Image.open(source)
    # PNG is lossless: both sides must decode the very same pixels before resizing.
    displayed = read_rgb(Path(f"{source}.displayed.rgb"), width, height)
    np.testing.assert_array_equal(displayed, np.asarray(pil_image))

    reference = np.asarray(pil_image.resize((size, size), Image.BICUBIC)).astype(np.int16)
    ours = read_rgb(Path(f"{source}.squashed.rgb"), size, size).astype(np.int16)
    diff = np.abs(reference - ours)
    print(f"squash {width}x{height}->{size}: mean abs diff {diff.mean():.3f}, max {diff.max()}")
    tolerance = EXTREME_TOLERANCE if max(width, height) / size >= EXTREME_REDUCTION else MEAN_TOLERANCE
    assert diff.mean() <= tolerance, f"mean abs diff {diff.mean():.3f} > {tolerance}"
    # No systematic shift: a misplaced sampling grid shows up as a large share of big errors.
    assert (diff > 8).mean() < 0.01, f"{(diff > 8).mean():.2%} of values differ by more than 8 levels"


def test_jpeg_decode_and_squash_match_pil(ts_outputs: dict) -> None:
    job = ts_outputs["jobs"][-1]
    source = Path(job["input"])
    pil_image = Image.open(source).convert("RGB")
    displayed = read_rgb(Path(f"{source}.displayed.rgb"), 400, 300).astype(np.int16)
    decode_diff = np.abs(displayed - np.asarray(pil_image).astype(np.int16))
    # libjpeg-turbo (PIL) and libvips' decoder may round the IDCT differently, by a level at most.
    assert decode_diff.mean() < 0.5 and decode_diff.max() <= 3, f"decode diff mean {decode_diff.mean():.3f}"
    reference = np.asarray(pil_image.resize((224, 224), Image.BICUBIC)).astype(np.int16)
    ours = read_rgb(Path(f"{source}.squashed.rgb"), 224, 224).astype(np.int16)
    diff = np.abs(reference - ours)
    print(f"squash jpeg 400x300->224: mean abs diff {diff.mean():.3f}, max {diff.max()}")
    assert diff.mean() <= MEAN_TOLERANCE


def test_prepared_jpeg_decodes_in_pil(tmp_path: Path) -> None:
    """What packing writes must open as a plain size x size RGB JPEG in PIL."""
    source = tmp_path / "in.png"
    Image.fromarray(photo_like(120, 80, 5)).convert("RGBA").save(source)
    script = (
        "import { readFileSync, writeFileSync } from 'node:fs';"
        "const { prepareImage } = await import(process.argv[1]);"
        "writeFileSync(process.argv[2] + '.jpg', await prepareImage(readFileSync(process.argv[2]), { size: 96, mode: 'pad' }));"
    )
    require_built(IMAGE_MODULE)
    result = subprocess.run(["node", "--input-type=module", "-e", script, IMAGE_MODULE.as_uri(), str(source)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    prepared = Image.open(io.BytesIO((tmp_path / "in.png.jpg").read_bytes()))
    assert prepared.format == "JPEG" and prepared.mode == "RGB" and prepared.size == (96, 96)
    # 120x80 padded to 96: image rows 16..79, grey (127) bars above and below.
    top_bar = np.asarray(prepared)[:12].astype(np.int16)
    assert np.abs(top_bar - 127).max() <= 3
