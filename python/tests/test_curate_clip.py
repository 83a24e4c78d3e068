"""The CLIP-style scorer on tiny CLIP and SigLIP checkpoints: the cosine equals a hand computation
with the model's own feature functions and independently written preprocessing, the sidecars are
deterministic and in the contract's format, and a corrupt image is counted while its neighbours
keep exactly the scores they have in the clean shard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fixtures.curate_data import replace_member, synth_shards
from fixtures.curate_models import (
    EOT,
    IMAGE_SIZE,
    save_tiny_clip,
    save_tiny_siglip,
    tiny_tokenizer,
)
from loom_compute.curate.clip_score import ClipScorer
from loom_compute.curate.runner import run_scoring
from loom_compute.curate.shards import GoodSample, read_shard
from loom_compute.curate.sidecar import read_sidecar_meta, sidecar_path
from loom_compute.data_text import plain_text_tokenizer
from loom_compute.errors import LoomComputeError
from PIL import Image

OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {"clip": save_tiny_clip(root / "clip"), "siglip": save_tiny_siglip(root / "siglip")}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_shards(tmp_path_factory.mktemp("synth"), samples=60, per_shard=30)


def good_samples(shard: Path) -> list[GoodSample]:
    return [item for item in read_shard(shard) if isinstance(item, GoodSample)]


def pixels_by_hand(image: Image.Image, kind: str) -> torch.Tensor:
    if kind == "clip":  # shortest edge to 32 (bicubic), centre crop, OpenAI mean/std
        w, h = image.size
        scale = IMAGE_SIZE / min(w, h)
        resized = image.resize((max(IMAGE_SIZE, round(w * scale)), max(IMAGE_SIZE, round(h * scale))), Image.BICUBIC)
        left, top = (resized.width - IMAGE_SIZE) // 2, (resized.height - IMAGE_SIZE) // 2
        resized = resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
        mean, std = OPENAI_MEAN, OPENAI_STD
    else:  # SigLIP: squash to 32x32 (bicubic), mean = std = 0.5
        resized = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
        mean, std = (0.5,) * 3, (0.5,) * 3
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)


def text_by_hand(caption: str, kind: str, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = tiny_tokenizer()
    eot = tokenizer.convert_tokens_to_ids(EOT)
    # truncation keeps the end-of-text token, as HF tokenizers do with special tokens
    ids = plain_text_tokenizer(tokenizer.backend_tokenizer).encode(caption, add_special_tokens=False).ids[: max_length - 1] + [eot]
    length = max_length if kind == "siglip" else len(ids)
    return torch.tensor(ids + [eot] * (length - len(ids))), torch.tensor([1] * len(ids) + [0] * (length - len(ids)))


def features(output: object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_cosine_equals_the_model_features_computed_by_hand(checkpoints: dict[str, Path], shards: Path, kind: str) -> None:
    from transformers import AutoModel

    samples = good_samples(min(shards.glob("*.tar")))[:5]
    scorer = ClipScorer(str(checkpoints[kind]), device="cpu", batch_size=3)
    got = scorer.score([s.image for s in samples], [s.caption for s in samples])["cosine"]
    assert got.dtype == np.float32 and got.shape == (5,)

    model = AutoModel.from_pretrained(checkpoints[kind]).eval()
    max_length = model.config.text_config.max_position_embeddings
    expected = []
    with torch.no_grad():
        for s in samples:
            image = features(model.get_image_features(pixel_values=pixels_by_hand(s.image, kind)[None]))[0]
            ids, mask = text_by_hand(s.caption, kind, max_length)
            text = features(model.get_text_features(input_ids=ids[None], attention_mask=mask[None]))[0]
            expected.append(float(torch.nn.functional.cosine_similarity(image, text, dim=0)))
    np.testing.assert_allclose(got, np.array(expected, dtype=np.float32), atol=2e-5)
    assert len(set(np.round(got, 4))) == 5  # the pairs really differ


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_special_token_strings_in_captions_are_plain_text(checkpoints: dict[str, Path], kind: str) -> None:
    scorer = ClipScorer(str(checkpoints[kind]), device="cpu", batch_size=3)
    eot = scorer.tokenizer.convert_tokens_to_ids(EOT)
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    captions = ["a red <|endoftext|> square", "a red square <|endoftext|><|im_start|>"]
    inputs = scorer.preprocess([image, image], captions)
    max_length = scorer.max_text_length
    for caption, ids, mask in zip(captions, inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()):
        real = ids[: sum(mask)]
        assert real.count(eot) == 1 and real[-1] == eot, f"{caption!r} -> {real}"
        hand, hand_mask = text_by_hand(caption, kind, max_length)
        assert real == hand[: int(hand_mask.sum())].tolist()


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_scores_do_not_depend_on_the_batch_size(checkpoints: dict[str, Path], shards: Path, kind: str) -> None:
    samples = good_samples(sorted(shards.glob("*.tar"))[1])
    images, captions = [s.image for s in samples], [s.caption for s in samples]
    one = ClipScorer(str(checkpoints[kind]), device="cpu", batch_size=1).score(images, captions)["cosine"]
    many = ClipScorer(str(checkpoints[kind]), device="cpu", batch_size=7).score(images, captions)["cosine"]
    np.testing.assert_allclose(one, many, atol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_bf16_weights_score_close_to_fp32(checkpoints: dict[str, Path], shards: Path, kind: str) -> None:
    """The GPU's default (bf16 weights and images, fp32 cosine), run on the CPU: close to fp32, not equal."""
    samples = good_samples(min(shards.glob("*.tar")))[:8]
    images, captions = [s.image for s in samples], [s.caption for s in samples]
    full = ClipScorer(str(checkpoints[kind]), device="cpu").score(images, captions)["cosine"]
    half = ClipScorer(str(checkpoints[kind]), device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    low = half.score(images, captions)["cosine"]
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, full, atol=0.05)
    assert not np.array_equal(low, full)
    with pytest.raises(LoomComputeError, match="dtype must be one of"):
        ClipScorer(str(checkpoints[kind]), device="cpu", dtype="fp16")


def score_dir(shard_inputs: list[Path], out: Path, checkpoint: Path, batch_size: int = 8, decode_workers: int = 0) -> dict:
    return run_scoring(shard_inputs, out, "clip", lambda: ClipScorer(str(checkpoint), device="cpu", batch_size=batch_size), decode_workers=decode_workers)


def test_sidecars_follow_the_contract_and_are_deterministic(checkpoints: dict[str, Path], shards: Path, tmp_path: Path) -> None:
    first = score_dir([shards], tmp_path / "a", checkpoints["siglip"])
    second = score_dir([shards], tmp_path / "b", checkpoints["siglip"], decode_workers=3)  # images decoded in threads
    assert first["shards_scored"] == second["shards_scored"] == 2 and first["samples"] == 60 and first["bad"] == 0
    assert (first["decode_workers"], second["decode_workers"]) == (0, 3)
    for shard in sorted(shards.glob("*.tar")):
        a, b = sidecar_path(tmp_path / "a", shard, "clip"), sidecar_path(tmp_path / "b", shard, "clip")
        assert a.name == f"{shard.stem}.clip.parquet"
        assert a.read_bytes() == b.read_bytes()
        table = pq.read_table(a)
        assert table.schema.names == ["uid", "key", "cosine"]
        assert [str(t) for t in table.schema.types] == ["string", "string", "float"]
        samples = good_samples(shard)
        assert table.column("key").to_pylist() == [s.key for s in samples]
        assert table.column("uid").to_pylist() == [s.uid for s in samples]
        assert np.isfinite(table.column("cosine").to_numpy()).all()
        meta = read_sidecar_meta(a)
        assert meta == {
            "format": "loom-scores", "version": 1, "scorer": "clip", "model": str(checkpoints["siglip"]),
            "shard": shard.name, "samples": 30, "bad": 0, "bad_by_reason": {}, "columns": ["cosine"],
        }
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_a_corrupt_image_is_counted_and_its_neighbours_keep_their_scores(checkpoints: dict[str, Path], shards: Path, tmp_path: Path) -> None:
    clean = min(shards.glob("*.tar"))
    victim = good_samples(clean)[10]
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    broken = replace_member(clean, broken_dir / clean.name, f"{victim.key}.{victim.ext}", b"this is not an image at all" * 10)
    summary = score_dir([broken], tmp_path / "scores-broken", checkpoints["clip"])
    score_dir([clean], tmp_path / "scores-clean", checkpoints["clip"])
    assert summary["samples"] == 29 and summary["bad"] == 1 and summary["bad_by_reason"] == {"corrupt_image": 1}
    meta = read_sidecar_meta(sidecar_path(tmp_path / "scores-broken", broken, "clip"))
    assert meta["samples"] == 29 and meta["bad_by_reason"] == {"corrupt_image": 1}
    with_bad = pq.read_table(sidecar_path(tmp_path / "scores-broken", broken, "clip")).to_pydict()
    without = pq.read_table(sidecar_path(tmp_path / "scores-clean", clean, "clip")).to_pydict()
    assert victim.key not in with_bad["key"]
    expected = {k: c for k, c in zip(without["key"], without["cosine"]) if k != victim.key}
    # batches shift by one sample after the bad one, so compare values, not bytes
    got = dict(zip(with_bad["key"], with_bad["cosine"]))
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-5)


def test_a_directory_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    from loom_compute.errors import LoomComputeError

    with pytest.raises(LoomComputeError, match="cannot load a CLIP/SigLIP checkpoint"):
        ClipScorer(str(tmp_path), device="cpu")


def test_a_hub_id_is_read_from_the_local_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loom_compute.errors import LoomComputeError

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(LoomComputeError, match="local cache only"):
        ClipScorer("loom-tests/no-such-model", device="cpu")


def test_scorer_sidecars_feed_loom_select_and_reshard(checkpoints: dict[str, Path], shards: Path, tmp_path: Path) -> None:
    # The seam end to end: Python writes sidecars, TypeScript selects from them and reshards.
    from fixtures.node import LOOM, run_node

    score_dir([shards], tmp_path / "scores", checkpoints["clip"])
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "scores").glob("*.parquet"))])
    cosine = rows.column("cosine").to_numpy()
    threshold = float(np.median(cosine))
    out = tmp_path / "sel"
    summary = json.loads(run_node(str(LOOM), "select", "--scores", str(tmp_path / "scores"), "--rule", f"clip.cosine >= {threshold!r}",
                                  "--out", str(out), "--truth", str(shards), "--json"))
    expected = sorted(u for u, c in zip(rows.column("uid").to_pylist(), cosine) if c >= np.float32(threshold))
    selection = np.load(f"{out}.npy")
    assert selection.dtype == np.dtype("u8,u8")
    assert [f"{int(a):016x}{int(b):016x}" for a, b in selection] == expected
    assert len(expected) >= 30  # half the 60 samples, ties included
    truth = summary["truth"]  # synthetic json carries the noise truth: kept per kind adds up to the selection
    assert truth["labelled"] == 60 and sum(k["kept"] for k in truth["kinds"].values()) == len(expected)
    assert json.loads(Path(f"{out}.json").read_text())["truth"] == truth

    resharded = tmp_path / "resharded"
    run_node(str(LOOM), "reshard", "--shards", str(shards), "--selection", f"{out}.npy", "--out", str(resharded), "--json")
    kept = sorted(s.uid for shard in sorted(resharded.glob("*.tar")) for s in read_shard(shard) if isinstance(s, GoodSample))
    assert kept == expected
