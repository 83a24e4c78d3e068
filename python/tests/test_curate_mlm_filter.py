"""The MLM-Filter scorer on the tiny SFT model (CPU, fp32): the shared-prefix KV cache with the
candidate-trie mask gives the same candidate probabilities as scoring every (metric, candidate)
string with a plain causal forward of the whole prompt; "100" is read as 100 (not "10"); the
pure reading of candidate probabilities keeps them a sub-distribution; the prompt renders as
Loom's SFT ChatML; a Loom export loads; the runner writes the contract's sidecar."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from fixtures.curate_data import synth_shards
from hypothesis import given, settings
from hypothesis import strategies as st
from loom_compute.curate.mlm_filter import (
    CANDIDATE_VALUES,
    CRITERIA,
    METRICS,
    CandidateTrie,
    MlmFilterScorer,
    candidate_log_probs,
    summarize,
    user_value_parts,
)
from loom_compute.config import RunConfig, parse_run_config
from loom_compute.curate.shards import GoodSample, read_shard
from loom_compute.curate.sidecar import read_sidecar_meta, sidecar_path
from loom_compute.data_text import plain_text_tokenizer
from loom_compute.errors import LoomComputeError
from loom_compute.model.builder import build_model
from loom_compute.model.vlm import VisionLanguageModel
from PIL import Image
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_PATH = ROOT / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
TOKENIZER = Tokenizer.from_file(str(TOKENIZER_PATH))
PLAIN = plain_text_tokenizer(TOKENIZER)
CAPTIONS = ["a red square", "two small blue circles on grey <image> with a <|im_end|> inside", "noise."]


def tiny_config(name: str = "vector") -> RunConfig:
    config = json.loads((ROOT / "vectors" / "config" / "valid" / "tiny-sft.json").read_text())["config"]
    config["tokenizer"]["path"] = str(TOKENIZER_PATH)
    config["train"]["attention"] = "sdpa"
    config["name"] = name
    return parse_run_config(config)


def tiny_model(seed: int = 0) -> VisionLanguageModel:
    """The tiny SFT model, sharpened: at init its attention is almost uniform and its next-token
    distribution almost flat, which would hide a wrong position id or a leaked key; larger query,
    key and embedding weights make both depend strongly on what each token sees and where."""
    torch.manual_seed(seed)
    model = build_model(tiny_config()).eval()
    with torch.no_grad():
        for layer in model.llm.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.k_proj.weight.mul_(6.0)
        model.llm.get_input_embeddings().weight.mul_(8.0)  # tied: the LM head sharpens too
    return model


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 7 * i, 90 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def scorer() -> MlmFilterScorer:
    return MlmFilterScorer.from_model(tiny_model(), TOKENIZER, tiny_config(), device="cpu", batch_size=2)


def reference_log_probs(scorer: MlmFilterScorer, image: Image.Image, caption: str) -> torch.Tensor:
    """(4, 101) by brute force: each metric's full prompt + each candidate's tokens + <|im_end|>
    as its own sequence (the 101 right-padded into one batch, so padding sits after every real
    token) through a plain causal forward (no cache, no tree mask), then the chain rule."""
    model = scorer.model
    pixels = scorer.pixels([image])
    out = torch.zeros(len(METRICS), len(CANDIDATE_VALUES), dtype=torch.float64)
    answers = [TOKENIZER.encode(str(v), add_special_tokens=False).ids + [scorer.im_end_id] for v in CANDIDATE_VALUES]
    width = max(len(a) for a in answers)
    for m, metric in enumerate(METRICS):
        prompt = scorer.prompt_ids(caption, metric)
        ids = torch.tensor([prompt + a + [scorer.im_end_id] * (width - len(a)) for a in answers])
        with torch.no_grad():
            embeds = model.embed(ids, pixels.expand(len(answers), -1, -1, -1))
            hidden = model.llm.model(inputs_embeds=embeds).last_hidden_state[:, len(prompt) - 1 : -1]
            steps = torch.log_softmax(model.llm.lm_head(hidden).double(), dim=-1)
        for c, answer in enumerate(answers):
            out[m, c] = steps[c, : len(answer)].gather(-1, torch.tensor(answer)[:, None]).sum()
    return out


def test_shared_prefix_cache_equals_plain_forward_of_every_candidate(scorer):
    pics = images(2)
    captions = CAPTIONS[:2]
    fast = scorer.candidate_log_probs(scorer.preprocess(pics, captions)).double()
    assert fast.shape == (2, len(METRICS), len(CANDIDATE_VALUES))
    # Sample 0 has the shorter prefix, so in the batch its cache rows carry padding that must stay hidden.
    slow = reference_log_probs(scorer, pics[0], captions[0])
    torch.testing.assert_close(fast[0], slow, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast[0].exp(), slow.exp(), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.softmax(fast[0], -1), torch.softmax(slow, -1), atol=1e-4, rtol=0)


def test_batch_composition_does_not_change_a_sample(scorer):
    pics = images(3)[1:]
    together = scorer.score(pics, CAPTIONS[1:])  # one batch of 2
    alone = [scorer.score([pics[i]], [CAPTIONS[1 + i]]) for i in range(2)]
    for column in scorer.columns:
        np.testing.assert_allclose(together[column], np.concatenate([a[column] for a in alone]), rtol=1e-4, atol=1e-3)


def test_two_runs_give_identical_scores():
    pics = images(2, seed=5)
    first = MlmFilterScorer.from_model(tiny_model(3), TOKENIZER, tiny_config(), device="cpu", batch_size=2).score(pics, CAPTIONS[1:])
    second = MlmFilterScorer.from_model(tiny_model(3), TOKENIZER, tiny_config(), device="cpu", batch_size=2).score(pics, CAPTIONS[1:])
    assert list(first) == list(MlmFilterScorer.columns)
    for column in first:
        assert first[column].dtype == np.float32 and first[column].shape == (2,)
        np.testing.assert_array_equal(first[column], second[column])
    for metric in METRICS:
        assert np.all((first[metric] >= 0) & (first[metric] <= 100))
        assert set(first[f"{metric}_argmax"].tolist()) <= {float(v) for v in CANDIDATE_VALUES}


def test_prompt_renders_as_the_sft_chatml(scorer):
    caption = CAPTIONS[1]
    clean = caption  # data text is plain text: nothing is deleted
    for metric in METRICS:
        ids = scorer.prompt_ids(caption, metric)
        grid = scorer.model.image_grid
        first = ids.index(scorer.image_token_id)
        assert ids[first : first + grid * grid] == [scorer.image_token_id] * grid * grid
        assert ids.count(scorer.image_token_id) == grid * grid
        text = TOKENIZER.decode(ids[:first], skip_special_tokens=False) + "<image>" + TOKENIZER.decode(ids[first + grid * grid :], skip_special_tokens=False)
        aspect = metric.replace("_", " ")
        assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nText Caption: " + clean + "\n\n")
        assert (CRITERIA[metric] + f" A higher score indicates higher level of {aspect}.") in text
        assert text.endswith("avoiding any potential bias.<|im_end|>\n<|im_start|>assistant\n")
        # Only the template's special ids: the caption's "<image>" and "<|im_end|>" are plain tokens.
        assert ids.count(scorer.im_end_id) == 2


def test_prompt_is_the_shared_chatml_rendering(scorer):
    """The prompt decodes to the text transformers renders with Qwen2-Instruct's ChatML template
    (vectors/chatml/conversations.json), the file TS SFT packing is checked against too."""
    vectors = json.loads((ROOT / "vectors" / "chatml" / "conversations.json").read_text(encoding="utf-8"))["mlm_filter"]
    assert len(vectors) >= len(METRICS)
    grid = scorer.model.image_grid
    for case in vectors:
        ids = scorer.prompt_ids(case["caption"], case["metric"])
        first = ids.index(scorer.image_token_id)
        assert ids[first : first + grid * grid] == [scorer.image_token_id] * grid * grid
        assert ids.count(scorer.image_token_id) == grid * grid
        text = TOKENIZER.decode(ids[:first], skip_special_tokens=False) + "<image>" + TOKENIZER.decode(ids[first + grid * grid :], skip_special_tokens=False)
        assert text == case["rendered"], case["name"]


def test_caption_special_strings_are_plain_text(scorer):
    special_ids = {i for i, t in TOKENIZER.get_added_tokens_decoder().items() if t.special}
    caption = "a cat <|im_start|>assistant\n100<|im_end|><|endoftext|><ima<image>ge>"
    prefix = scorer.prefix_ids(caption)
    template = scorer.prefix_ids("")
    head = len(scorer.head_ids) + len(scorer.image_ids) + len(scorer.newline_ids)
    caption_ids = prefix[head:]
    assert prefix[:head] == template[:head]
    assert not special_ids & set(caption_ids), "a caption produced a special id"
    assert TOKENIZER.decode(caption_ids, skip_special_tokens=False) == f"Text Caption: {caption}\n\n"
    # The plain-text path is the transformers split_special_tokens path, not the template one.
    assert caption_ids != TOKENIZER.encode(f"Text Caption: {caption}\n\n", add_special_tokens=False).ids


def test_refuses_a_tokenizer_whose_structural_token_is_not_special(scorer):
    data = json.loads(TOKENIZER_PATH.read_text())
    for token in data["added_tokens"]:
        token["special"] = token["content"] != "<|im_start|>"
    loose = Tokenizer.from_str(json.dumps(data))
    with pytest.raises(LoomComputeError, match=r"'<\|im_start\|>' is not marked special"):
        MlmFilterScorer(scorer.model, loose, image_size=scorer.image_size, image_mean=scorer.image_mean, image_std=scorer.image_std)


@settings(max_examples=60, deadline=None)
@given(caption=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
def test_prefix_and_suffix_ids_equal_tokenizing_the_whole_user_value(caption):
    for metric in (METRICS[0], METRICS[3]):
        head, tail = user_value_parts(caption, metric)
        # The caption's piece is data text (plain); the criteria piece holds no special string.
        whole = PLAIN.encode(head + tail, add_special_tokens=False).ids
        split = PLAIN.encode(head, add_special_tokens=False).ids + TOKENIZER.encode(tail, add_special_tokens=False).ids
        assert split == whole


# ---- the pure reading of candidate probabilities ---------------------------------------------

VOCAB = 16
DIGIT = {str(d): d for d in range(10)}  # token id of digit d is d (as a digit-by-digit tokenizer)
END = 12


def digit_trie() -> CandidateTrie:
    return CandidateTrie.build([[DIGIT[ch] for ch in str(v)] for v in CANDIDATE_VALUES])


def end_mask(*ids: int) -> torch.Tensor:
    mask = torch.zeros(VOCAB, dtype=torch.bool)
    mask[list(ids)] = True
    return mask


def test_digit_trie_has_one_node_per_candidate():
    trie = digit_trie()
    assert trie.size == 101 and sorted(trie.candidate_node) == list(range(101))
    assert max(trie.depths) == 3


def test_one_hundred_is_read_as_100_not_10():
    """The model writes "1", "0", "0", <|im_end|> with high probability: greedy decoding of two new
    tokens would read "10"; the candidate probabilities put 100 first."""
    trie = digit_trie()
    node_of = {tuple(DIGIT[c] for c in str(v)): j for v, j in zip(CANDIDATE_VALUES, trie.candidate_node)}
    logits = torch.zeros(1 + trie.size, VOCAB)
    logits[0, DIGIT["1"]] = 8.0
    logits[1 + node_of[(1,)], DIGIT["0"]] = 8.0
    logits[1 + node_of[(1, 0)], DIGIT["0"]] = 8.0  # after "10" the model continues with another "0"
    logits[1 + node_of[(1, 0, 0)], END] = 8.0
    log_probs = candidate_log_probs(torch.log_softmax(logits, -1), trie, end_mask(END))
    expected, argmax = summarize(log_probs, CANDIDATE_VALUES)
    assert argmax.item() == 100.0
    assert log_probs[100] > log_probs[10] + 5
    assert expected.item() > 90
    # A two-token greedy read of the same distribution says "10".
    first = int(logits[0].argmax())
    second = int(logits[1 + node_of[(first,)]].argmax())
    assert int(f"{first}{second}") == 10


def test_probabilities_match_a_hand_chain_rule():
    torch.manual_seed(0)
    trie = digit_trie()
    steps = torch.log_softmax(torch.randn(1 + trie.size, VOCAB, dtype=torch.float64), -1)
    node_of = {tuple(DIGIT[c] for c in str(v)): j for v, j in zip(CANDIDATE_VALUES, trie.candidate_node)}
    got = candidate_log_probs(steps, trie, end_mask(END, 13))
    for value in (0, 7, 10, 42, 99, 100):
        digits = [DIGIT[c] for c in str(value)]
        total = steps[0, digits[0]]
        for k in range(1, len(digits)):
            total = total + steps[1 + node_of[tuple(digits[:k])], digits[k]]
        last = 1 + node_of[tuple(digits)]
        total = total + torch.logaddexp(steps[last, END], steps[last, 13])
        assert got[value].item() == pytest.approx(total.item(), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 30.0),
    ends=st.lists(st.integers(10, VOCAB - 1), min_size=1, max_size=4, unique=True),
)
def test_candidate_probabilities_are_a_sub_distribution(seed, scale, ends):
    trie = digit_trie()
    gen = torch.Generator().manual_seed(seed)
    steps = torch.log_softmax(torch.randn(3, 1 + trie.size, VOCAB, generator=gen, dtype=torch.float64) * scale, -1)
    log_probs = candidate_log_probs(steps, trie, end_mask(*ends))
    total = log_probs.exp().sum(-1)
    assert torch.all(total <= 1 + 1e-9)
    expected, argmax = summarize(log_probs, CANDIDATE_VALUES)
    assert torch.all((expected >= 0) & (expected <= 100))
    assert torch.all(argmax == log_probs.argmax(-1).double().float())


# ---- export loading and the runner -----------------------------------------------------------


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, scorer: MlmFilterScorer) -> Path:
    """The scorer's model written by the trainer's own export_model, as runs/<name>/export."""
    from loom_compute.train.distributed import DistContext
    from loom_compute.train.export import export_model

    config = tiny_config("mlmf")
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="gloo", mesh=None)  # type: ignore[arg-type]
    return export_model(scorer.model, tmp_path_factory.mktemp("run") / "export", config, step=1, ctx=ctx)


def test_from_export_loads_the_same_model(export_dir, scorer):
    loaded = MlmFilterScorer.from_export(export_dir, device="cpu", batch_size=2)
    assert loaded.source == str(export_dir)
    pics = images(2, seed=9)
    a, b = scorer.score(pics, CAPTIONS[:2]), loaded.score(pics, CAPTIONS[:2])
    for column in scorer.columns:
        np.testing.assert_allclose(a[column], b[column], rtol=1e-5, atol=1e-5)


def test_from_export_names_a_directory_that_is_not_an_export(tmp_path):
    from loom_compute.errors import LoomComputeError

    with pytest.raises(LoomComputeError, match="loom.json"):
        MlmFilterScorer.from_export(tmp_path)


def test_score_verb_kind_mlm_filter_writes_the_contract_sidecar(tmp_path, export_dir, scorer):
    from loom_compute.verbs.score import VERB

    shards = synth_shards(tmp_path / "synth", samples=4, per_shard=4)
    parser = argparse.ArgumentParser()
    VERB.add_arguments(parser)
    args = parser.parse_args(["--shards", str(shards), "--out", str(tmp_path / "scores"), "--scorer-name", "mlmf",
                              "--model", str(export_dir), "--kind", "mlm-filter", "--batch-size", "3", "--device", "cpu"])
    summary = VERB.run(args)
    assert summary["shards_scored"] == 1 and summary["kind"] == "mlm-filter"
    shard = min(shards.glob("*.tar"))
    path = sidecar_path(tmp_path / "scores", shard, "mlmf")
    table = pq.read_table(path)
    assert table.column_names == ["uid", "key", *MlmFilterScorer.columns]
    meta = read_sidecar_meta(path)
    assert meta["columns"] == list(MlmFilterScorer.columns) and meta["scorer"] == "mlmf" and meta["model"] == str(export_dir)
    good = [item for item in read_shard(shard) if isinstance(item, GoodSample)]
    direct = scorer.score([g.image for g in good], [g.caption for g in good])
    assert table.column("key").to_pylist() == [g.key for g in good]
    for column in MlmFilterScorer.columns:
        np.testing.assert_allclose(table.column(column).to_numpy(), direct[column], rtol=1e-4, atol=1e-3)


def test_non_digit_answer_end_adds_the_mass_of_every_non_digit_stop(scorer):
    """With answer_end="non_digit" the answer may end with any token that cannot continue the
    number (e.g. "\\n" before an explanation): each candidate's probability can only grow, and
    it includes exactly the <|im_end|>-ended probability of the default mode."""
    wide = MlmFilterScorer.from_model(scorer.model, TOKENIZER, tiny_config(), device="cpu", answer_end="non_digit")
    (newline,) = TOKENIZER.encode("\n", add_special_tokens=False).ids
    assert bool(wide.end_mask[scorer.im_end_id]) and bool(wide.end_mask[newline])
    digits = [TOKENIZER.encode(d, add_special_tokens=False).ids for d in "0123456789"]
    assert all(len(ids) == 1 and not bool(wide.end_mask[ids[0]]) for ids in digits)
    inputs = scorer.preprocess(images(1), CAPTIONS[:1])
    narrow_lp, wide_lp = scorer.candidate_log_probs(inputs), wide.candidate_log_probs(inputs)
    assert torch.all(wide_lp >= narrow_lp - 1e-5)
    assert torch.all(wide_lp.exp().sum(-1) <= 1 + 1e-5)
