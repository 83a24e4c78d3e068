"""Batched KV-cache generation (loom_compute/infer/generate.py) on the tiny SFT model, CPU fp32.

The model gets an untied random LM head: with the tied, freshly initialised one every position
predicts its own input token, so greedy output would repeat one id and hide a wrong position or a
leaked padding key. With it, answers differ per prompt, per image and per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from loom_compute.config import parse_run_config
from loom_compute.infer.generate import GenerationRequest, Generator, SamplingParams, filter_logits, held_back
from loom_compute.infer.prompts import Message, PromptSettings, make_renderer
from loom_compute.model.builder import build_model

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_PATH = ROOT / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
TOKENIZER = Tokenizer.from_file(str(TOKENIZER_PATH))
QUESTIONS = ["What is it?", "Describe the picture in many words, please, with every detail.", "hi", "Count the two circles, then name their colours."]


def tiny_config():
    config = json.loads((ROOT / "vectors" / "config" / "valid" / "tiny-sft.json").read_text())["config"]
    config["tokenizer"]["path"] = str(TOKENIZER_PATH)
    config["train"]["attention"] = "sdpa"
    return parse_run_config(config)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(tiny_config()).eval()
    with torch.no_grad():
        for layer in m.llm.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.k_proj.weight.mul_(6.0)
        m.llm.lm_head.weight = torch.nn.Parameter(torch.randn_like(m.llm.lm_head.weight) * 2)
    return m


@pytest.fixture(scope="module")
def renderer():
    return make_renderer("chatml", TOKENIZER, PromptSettings.from_config(tiny_config()))


@pytest.fixture(scope="module")
def generator(model, renderer):
    return Generator(model, TOKENIZER, renderer.stop_ids, pad_id=TOKENIZER.token_to_id("<|endoftext|>"))


@pytest.fixture(scope="module")
def requests(renderer):
    gen = torch.Generator().manual_seed(3)
    out = []
    for i, q in enumerate(QUESTIONS):
        has_image = i != 2  # one text-only row among image rows
        ids = renderer.render([Message("user", q)], has_image=has_image)
        out.append(GenerationRequest(ids, torch.randn(3, 64, 64, generator=gen) if has_image else None))
    return out


GREEDY = SamplingParams(max_new_tokens=12)


def test_batch_equals_batch_of_one(generator, requests):
    together = generator.generate(requests, GREEDY)
    assert len({len(r.ids) for r in requests}) == len(requests), "prompts of different lengths: left padding is exercised"
    assert len({tuple(r.tokens) for r in together}) == len(requests), "answers differ per row"
    for request, result in zip(requests, together):
        alone = generator.generate([request], GREEDY)[0]
        assert alone.tokens == result.tokens
        assert alone.text == result.text and alone.finish_reason == result.finish_reason


def test_greedy_equals_a_naive_loop_without_cache(model, generator, requests):
    for request, result in zip(requests, generator.generate(requests, GREEDY)):
        ids = list(request.ids)
        pixels = None if request.pixel_values is None else request.pixel_values[None]
        naive = []
        for _ in range(GREEDY.max_new_tokens):
            logits = model.full_logits({"input_ids": torch.tensor([ids]), "pixel_values": pixels}, isolate_documents=False)
            token = int(logits[0, -1].argmax())
            naive.append(token)
            ids.append(token)
            if token in generator.stop_ids:
                break
        assert naive == result.tokens


def test_greedy_equals_transformers_generate_with_left_padding(model, generator, requests):
    pad = generator.pad_id
    width = max(len(r.ids) for r in requests)
    ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in requests])
    mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in requests])
    pixels = torch.stack([r.pixel_values for r in requests if r.pixel_values is not None])
    with torch.no_grad():
        embeds = model.embed(ids, pixels)
        reference = model.llm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=GREEDY.max_new_tokens, do_sample=False,
            eos_token_id=list(generator.stop_ids), pad_token_id=pad,
        )
    for row, result in zip(reference.tolist(), generator.generate(requests, GREEDY)):
        assert row[: len(result.tokens)] == result.tokens
        assert all(t == pad for t in row[len(result.tokens) :])


def test_sampling_is_seeded_and_top_k_1_is_greedy(generator, requests):
    hot = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    first = [r.tokens for r in generator.generate(requests, hot)]
    again = [r.tokens for r in generator.generate(requests, hot)]
    other = [r.tokens for r in generator.generate(requests, SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=8))]
    greedy = [r.tokens for r in generator.generate(requests, SamplingParams(max_new_tokens=10))]
    assert first == again
    assert first != other and first != greedy
    top1 = [r.tokens for r in generator.generate(requests, SamplingParams(max_new_tokens=10, temperature=0.7, top_k=1, seed=5))]
    assert top1 == greedy


def test_stop_id_ends_a_row_without_being_part_of_the_answer(model, requests):
    reference = Generator(model, TOKENIZER, stop_ids=[]).generate(requests, GREEDY)
    target = reference[1].tokens[4]
    stopped = Generator(model, TOKENIZER, stop_ids=[target]).generate(requests, GREEDY)
    for ref, got in zip(reference, stopped):
        cut = ref.tokens.index(target) + 1 if target in ref.tokens else len(ref.tokens)
        assert got.tokens == ref.tokens[:cut]
        assert got.finish_reason == ("stop" if target in ref.tokens else "length")
        answer = got.tokens[:-1] if got.finish_reason == "stop" else got.tokens
        assert got.text == TOKENIZER.decode(answer, skip_special_tokens=False)
    assert stopped[1].new_tokens == reference[1].tokens.index(target) + 1


def test_stop_string_cuts_the_answer_and_is_never_streamed(model, requests):
    base = Generator(model, TOKENIZER, stop_ids=[])
    full = base.generate(requests[:1], GREEDY)[0].text
    assert len(full) > 6
    stop = full[3:6]
    streamed: dict[int, list[str]] = {}
    params = SamplingParams(max_new_tokens=GREEDY.max_new_tokens, stop_strings=(stop, "never-appears"))
    result = base.generate(requests[:1], params, on_token=lambda i, text: streamed.setdefault(i, []).append(text))[0]
    assert result.finish_reason == "stop"
    assert result.text == full[: full.index(stop)]
    assert "".join(streamed.get(0, [])) == result.text
    assert all(stop not in piece for piece in streamed.get(0, []))


def test_streamed_pieces_add_up_to_each_answer(generator, requests):
    streamed: dict[int, str] = {}

    def collect(i: int, text: str) -> None:
        streamed[i] = streamed.get(i, "") + text

    results = generator.generate(requests, GREEDY, on_token=collect)
    for i, result in enumerate(results):
        assert streamed.get(i, "") == result.text


def test_a_row_budget_below_max_new_tokens_ends_it_with_length(generator, requests):
    short = GenerationRequest(requests[0].ids, requests[0].pixel_values, max_new_tokens=3)
    results = generator.generate([short, requests[1]], GREEDY)
    assert results[0].new_tokens == 3 and results[0].finish_reason == "length"
    assert results[1].new_tokens == GREEDY.max_new_tokens or results[1].finish_reason == "stop"


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=30),
    top_k=st.integers(0, 40),
    top_p=st.floats(0.05, 1.0),
)
def test_top_k_and_top_p_keep_the_smallest_most_probable_set(values, top_k, top_p):
    logits = torch.tensor([values], dtype=torch.float64)
    kept = torch.isfinite(filter_logits(logits, 1.0, top_k, top_p))[0]
    assert kept[logits[0].argmax()], "the most probable token always stays"
    candidates = logits[0].clone()
    if 0 < top_k < len(values):
        kth = torch.topk(candidates, top_k).values[-1]
        assert not kept[candidates < kth].any()
        candidates = candidates.masked_fill(candidates < kth, float("-inf"))
    probs = torch.softmax(candidates, dim=-1)
    # Every kept token is more probable than every dropped one, and the kept mass reaches top_p
    # while the kept set minus its least probable member would not.
    if (~kept).any():
        assert probs[kept].min() >= probs[~kept].max() - 1e-12
    if top_p < 1.0:
        mass = probs[kept].sum()
        assert mass >= min(top_p, float(probs[torch.isfinite(candidates)].sum())) - 1e-9
        assert mass - probs[kept].min() < top_p + 1e-9


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=30), stop=st.text(min_size=1, max_size=4))
def test_streaming_never_shows_a_stop_string_or_half_a_character(text, stop):
    """Simulates the stream over the byte-level tokens of ``text``: what is shown is always a
    prefix of the final (cut) answer and never holds the stop string or a U+FFFD it did not have."""
    ids = TOKENIZER.encode(text, add_special_tokens=False).ids
    shown = ""
    final = TOKENIZER.decode(ids, skip_special_tokens=False)
    cut = final.find(stop)
    answer = final if cut < 0 else final[:cut]
    for n in range(1, len(ids) + 1):
        partial = TOKENIZER.decode(ids[:n], skip_special_tokens=False)
        at = partial.find(stop)
        if at >= 0:
            visible = partial[:at]
        else:
            visible = partial[: len(partial) - held_back(partial, [stop])]
        if len(visible) > len(shown) and visible.startswith(shown):
            shown = visible
        assert stop not in shown
        assert answer.startswith(shown) or "\ufffd" in answer
        if at >= 0:
            break
