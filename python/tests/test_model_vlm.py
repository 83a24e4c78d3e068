"""The VLM on the tiny preset (CPU, fp32): packed rows with document isolation give exactly what each
document gives alone, the switch back to the original's shared attention changes the result, the
image-token count is checked, one set of weights serves both image grids and round-trips through
save_pretrained directories, and the loss counts only labelled positions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from loom_compute.config import parse_run_config
from loom_compute.data.packed import IGNORE_INDEX, collate_packed
from loom_compute.model import ImageTokenMismatchError, VisionLanguageModel, document_causal_bool_mask
from loom_compute.model.builder import HF_ATTENTION, build_model
from loom_compute.train.optim import apply_freeze

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = Tokenizer.from_file(str(ROOT / "assets" / "tokenizer" / "tiny" / "tokenizer.json"))
IMAGE_ID = TOKENIZER.token_to_id("<image>")
EOS_ID = TOKENIZER.token_to_id("<|im_end|>")
PAD_ID = TOKENIZER.token_to_id("<|endoftext|>")
CAPTIONS = ["a red square", "two small blue circles on grey", "noise", "a green triangle above a yellow star near the edge"]


def _config(stage: str) -> dict:
    config = json.loads((ROOT / "vectors" / "config" / "valid" / f"tiny-{stage}.json").read_text())["config"]
    config["tokenizer"]["path"] = str(ROOT / config["tokenizer"]["path"])
    return config


def _model(stage: str = "pretrain", seed: int = 0, attention: str = "sdpa") -> VisionLanguageModel:
    torch.manual_seed(seed)
    config = _config(stage)
    config["train"]["attention"] = attention
    return build_model(parse_run_config(config)).eval()


def _document(caption: str, grid: int, rng: np.random.Generator, size: int = 64) -> dict:
    """One pre-training document as the packer writes it: <image>*g*g, "\n", caption, <|im_end|>."""
    text = TOKENIZER.encode("\n" + caption).ids + [EOS_ID]
    tokens = np.array([IMAGE_ID] * grid * grid + text, dtype=np.int32)
    loss = np.array([0] * grid * grid + [0] + [1] * (len(text) - 1), dtype=np.uint8)
    image = rng.integers(0, 256, size=(1, size, size, 3), dtype=np.uint8)
    return {"tokens": tokens, "loss": loss, "images": image}


def _sequence(docs: list[dict]) -> dict:
    return {
        "tokens": np.concatenate([d["tokens"] for d in docs]),
        "loss": np.concatenate([d["loss"] for d in docs]),
        "doclens": np.array([len(d["tokens"]) for d in docs], dtype=np.int32),
        "images": np.concatenate([d["images"] for d in docs]),
    }


def _collate(sequences: list[dict], seq_len: int) -> dict:
    return collate_packed(sequences, seq_len=seq_len, pad_id=PAD_ID, image_mean=[0.5] * 3, image_std=[0.5] * 3)


@pytest.fixture(scope="module")
def model() -> VisionLanguageModel:
    return _model()


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    rng = np.random.default_rng(7)
    return [_document(c, 4, rng) for c in CAPTIONS]


def test_document_mask_is_causal_within_documents_only():
    document_ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2], [3, 3, 3, 3, 3, 4, 4, 4]])
    mask = document_causal_bool_mask(document_ids)
    assert mask.shape == (2, 1, 8, 8)
    for b in range(2):
        for q in range(8):
            for k in range(8):
                assert bool(mask[b, 0, q, k]) == (k <= q and bool(document_ids[b, q] == document_ids[b, k]))


@pytest.mark.parametrize("attention", ["sdpa", "eager", "flex"])
@torch.no_grad()
def test_packed_row_with_isolation_equals_each_document_alone(docs, attention):
    # flex runs forward-only on a CPU (FlexAttention has no CPU backward); it checks the block mask.
    model = _model(attention=attention)
    assert model.llm.config._attn_implementation == HF_ATTENTION[attention]
    total = sum(len(d["tokens"]) for d in docs)
    packed = _collate([_sequence(docs)], seq_len=total + 5)  # padding segment at the end too
    packed_logits = model.full_logits(packed, isolate_documents=True)[0]
    packed_loss, packed_valid = model(packed, isolate_documents=True)

    at, loss_sum, n_valid = 0, torch.tensor(0.0), 0
    for d in docs:
        alone = _collate([_sequence([d])], seq_len=len(d["tokens"]))
        alone_logits = model.full_logits(alone)[0]
        n = len(d["tokens"])
        torch.testing.assert_close(packed_logits[at : at + n], alone_logits, atol=1e-4, rtol=1e-4)
        loss, valid = model(alone)
        loss_sum, n_valid = loss_sum + loss, n_valid + int(valid)
        at += n
    assert int(packed_valid) == n_valid > 0
    torch.testing.assert_close(packed_loss, loss_sum, atol=1e-4, rtol=1e-5)


def test_without_isolation_later_documents_see_earlier_ones(model, docs):
    packed = _collate([_sequence(docs)], seq_len=sum(len(d["tokens"]) for d in docs))
    isolated = model.full_logits(packed, isolate_documents=True)[0]
    shared = model.full_logits(packed, isolate_documents=False)[0]
    first = len(docs[0]["tokens"])
    # The first document has nothing before it: identical either way; the rest differ.
    torch.testing.assert_close(isolated[:first], shared[:first], atol=1e-4, rtol=1e-4)
    assert (isolated[first:] - shared[first:]).abs().max() > 1e-3
    assert not torch.isclose(model(packed, isolate_documents=True)[0], model(packed, isolate_documents=False)[0], atol=1e-4)


def test_image_count_mismatch_names_expected_and_found(model, docs):
    batch = _collate([_sequence(docs[:2])], seq_len=64)
    short = dict(batch, pixel_values=batch["pixel_values"][:1])
    with pytest.raises(ImageTokenMismatchError, match=r"expected 16 <image> tokens .* found 32"):
        model(short)
    with pytest.raises(ImageTokenMismatchError, match=r"expected 128 <image> tokens .* found 32"):
        model(batch, image_grid=8)  # tokens laid out for 4x4, asked for 8x8


def test_same_weights_serve_both_grids_and_grid_8_is_unpooled(model):
    rng = np.random.default_rng(3)
    for grid in (4, 8):
        doc = _document("a red square", grid, rng)
        batch = _collate([_sequence([doc, _document("noise", grid, rng)])], seq_len=2 * grid * grid + 16)
        loss, valid = model(batch, image_grid=grid)
        assert torch.isfinite(loss) and int(valid) > 0
    # 64 px / 8 px patches = an 8x8 grid: pooling to 8x8 must be the identity.
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        raw = model.vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        p = model.projector
        expected = p.fc2(p.act(p.fc1(raw)))
        torch.testing.assert_close(model.image_features(pixels, image_grid=8), expected)
        assert model.image_features(pixels, image_grid=4).shape == (2, 16, model.llm.config.hidden_size)


def test_pretrained_directories_round_trip_for_both_stages(model, docs, tmp_path):
    model.vision.save_pretrained(tmp_path / "vision")
    model.llm.save_pretrained(tmp_path / "llm")
    batch = _collate([_sequence(docs[:3])], seq_len=96)
    before = model.full_logits(batch)
    for stage, grid in (("pretrain", 4), ("sft", 8)):
        config = _config(stage)
        config["model"]["vision"]["source"] = {"pretrained": str(tmp_path / "vision"), "config": None}
        config["model"]["llm"]["source"] = {"pretrained": str(tmp_path / "llm"), "config": None}
        loaded = build_model(parse_run_config(config)).eval()
        assert loaded.image_grid == grid
        apply_freeze(loaded, parse_run_config(config))
        assert not any(p.requires_grad for p in loaded.vision.parameters())
        loaded.projector.load_state_dict(model.projector.state_dict())
        torch.testing.assert_close(loaded.full_logits(batch, image_grid=4), before)


def test_missing_pretrained_directory_is_a_clear_error(tmp_path):
    config = _config("pretrain")
    config["model"]["llm"]["source"] = {"pretrained": str(tmp_path / "nowhere"), "config": None}
    with pytest.raises(Exception, match=r"model\.llm\.source\.pretrained"):
        build_model(parse_run_config(config))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_counts_only_labelled_next_tokens(model, docs, seed):
    batch = _collate([_sequence(docs[:2]), _sequence(docs[2:])], seq_len=80)
    gen = torch.Generator().manual_seed(seed)
    labels = batch["labels"].clone()
    drop = torch.rand(labels.shape, generator=gen) < 0.4
    labels[drop] = IGNORE_INDEX
    batch = dict(batch, labels=labels)
    loss, valid = model(batch)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    assert int(valid) == int(keep.sum())
    # Cross-check against the full vocabulary projection over every position.
    logits = model.full_logits(batch)[:, :-1]
    expected = F.cross_entropy(logits[keep], targets[keep], reduction="sum")
    torch.testing.assert_close(loss.detach(), expected, atol=1e-4, rtol=1e-5)


def test_loss_backpropagates_into_llm_and_projector_not_frozen_vision(docs):
    model = _model().train()
    apply_freeze(model, parse_run_config(_config("pretrain")))  # the trainer's one freezing step
    batch = _collate([_sequence(docs[:2])], seq_len=64)
    loss, valid = model(batch)
    (loss / valid).backward()
    assert model.projector.fc1.weight.grad is not None and model.projector.fc1.weight.grad.abs().sum() > 0
    assert model.llm.get_input_embeddings().weight.grad is not None
    assert all(p.grad is None for p in model.vision.parameters())
