"""`train-filter`: a small CLIP trained contrastively on trusted synthetic pairs; its loss falls, it
is saved as a transformers checkpoint the scorer loads, and it already ranks mismatched pairs
below clean ones."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from fixtures.curate_data import synth_shards
from loom_compute.curate.clip_score import ClipScorer
from loom_compute.curate.shards import GoodSample, read_shard
from loom_compute.curate.train_filter import REPO_TINY_TOKENIZER, FilterConfig, tokenize_captions, tokenizer_with_end_of_text, train_filter
from loom_compute.errors import UsageError

SMALL = FilterConfig(steps=200, batch_size=32, lr=2e-3, image_size=32, patch_size=8, width=32, layers=2, heads=2, projection_dim=32, max_text_length=48)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("filter")
    trusted = synth_shards(root / "trusted", samples=300, per_shard=300, seed=11, noise=0)
    return root / "dfn", train_filter([trusted], root / "dfn", SMALL)


def test_the_contrastive_loss_falls_below_chance(trained: tuple[Path, dict]) -> None:
    out, summary = trained
    report = json.loads((out / "train_filter.json").read_text())
    assert summary["pairs"] == 300 and len(report["losses"]) == 200
    assert summary["loss_last"] < 0.8 * summary["chance_loss"] < summary["loss_first"] * 1.1
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}


def test_the_filter_loads_in_the_scorer_and_ranks_mismatched_pairs_lower(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = trained
    pool = synth_shards(tmp_path / "pool", samples=300, per_shard=300, seed=12)
    shard = next(pool.glob("*.tar"))
    samples = [item for item in read_shard(shard) if isinstance(item, GoodSample)]
    with tarfile.open(shard) as tar:
        kinds = [(json.loads(tar.extractfile(f"{s.key}.json").read()).get("noise") or {}).get("kind", "clean") for s in samples]
    cosine = ClipScorer(str(out), device="cpu", batch_size=64).score([s.image for s in samples], [s.caption for s in samples])["cosine"]
    by_kind = {kind: cosine[[k == kind for k in kinds]] for kind in set(kinds)}
    assert by_kind["clean"].mean() > by_kind["mismatched"].mean() + 0.1


def test_an_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "dfn").mkdir()
    (tmp_path / "dfn" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        train_filter([tmp_path], tmp_path / "dfn", SMALL)


def test_captions_are_plain_text_ending_in_one_end_of_text() -> None:
    tokenizer = tokenizer_with_end_of_text(REPO_TINY_TOKENIZER)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.backend_tokenizer.get_added_tokens_decoder().items() if t.special}
    captions = ["a red <|endoftext|> square <|im_start|><image>", "<|endoftext|>", "plain"]
    text = tokenize_captions(tokenizer, captions, 40)
    for caption, ids, mask in zip(captions, text["input_ids"].tolist(), text["attention_mask"].tolist()):
        real = ids[: sum(mask)]
        # CLIP pools at the first end-of-text id: a caption must not put one earlier than the end.
        assert real[-1] == eot and not special & set(real[:-1]), (caption, real)
        assert tokenizer.decode(real[:-1], skip_special_tokens=False) == caption
