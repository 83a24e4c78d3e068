"""Prompt formats (loom_compute/infer/prompts.py): ChatML against the transformers-rendered shared
vectors (the file the TS SFT packer is checked against) and against the MLM-Filter scorer's ids;
prismatic-qwen2 against Open-Qwen2VL's prompt builder formula; caption against the pre-training
template; data text stays plain text in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer

from loom_compute.errors import LoomComputeError
from loom_compute.infer.prompts import (
    FORMATS,
    Message,
    PromptError,
    PromptSettings,
    make_renderer,
    parse_messages,
    render_prompt,
)

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_PATH = ROOT / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
TOKENIZER = Tokenizer.from_file(str(TOKENIZER_PATH))
VECTORS = json.loads((ROOT / "vectors" / "chatml" / "conversations.json").read_text(encoding="utf-8"))
GRID = 8
SETTINGS = PromptSettings("<image>", "<|im_end|>", "<|endoftext|>", GRID * GRID)
IMAGE_ID = TOKENIZER.token_to_id("<image>")


def collapse(ids: list[int], tokenizer: Tokenizer = TOKENIZER) -> str:
    """The text of ids with the image run shown as one <image> (how the vectors write it)."""
    if IMAGE_ID not in ids:
        return tokenizer.decode(ids, skip_special_tokens=False)
    first = ids.index(IMAGE_ID)
    assert ids[first : first + GRID * GRID] == [IMAGE_ID] * GRID * GRID, "one run of image ids"
    assert ids.count(IMAGE_ID) == GRID * GRID, "image ids outside the run"
    rest = ids[first + GRID * GRID :]
    return tokenizer.decode(ids[:first], skip_special_tokens=False) + "<image>" + tokenizer.decode(rest, skip_special_tokens=False)


def messages_of(case: dict) -> list[Message]:
    return [Message(m["role"], m["content"]) for m in case["messages"]]


@pytest.fixture(scope="module")
def chatml():
    return make_renderer("chatml", TOKENIZER, SETTINGS)


def test_chatml_renders_the_shared_sft_vectors(chatml):
    for case in VECTORS["sft"]:
        ids = chatml.render(messages_of(case), has_image=case["image"], add_generation_prompt=False)
        assert collapse(ids) == case["rendered"], case["name"]
        turns = len(case["messages"])
        assert ids.count(chatml.pieces.im_end) == turns + 1, f"{case['name']}: only the template closes turns"


def test_chatml_generation_prompt_after_each_user_turn_is_what_transformers_renders(chatml):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_PATH))
    checked = 0
    for case in VECTORS["sft"]:
        messages = case["messages"]
        for end, message in enumerate(messages, start=1):
            if message["role"] != "user":
                continue
            expected = hf.apply_chat_template(messages[:end], chat_template=VECTORS["chat_template"], tokenize=False, add_generation_prompt=True)
            ids = chatml.render(messages_of({"messages": messages[:end]}), has_image=case["image"])
            assert collapse(ids) == expected, f"{case['name']} up to message {end}"
            checked += 1
    assert checked >= 6


def test_chatml_is_the_mlm_filter_scorers_chatml(chatml):
    """One Python ChatML: the scorer's prompt ids (built from the renderer's pieces, split for its
    cache) equal rendering its user message with the renderer, id for id."""
    from test_curate_mlm_filter import tiny_config, tiny_model

    from loom_compute.curate.mlm_filter import MlmFilterScorer

    scorer = MlmFilterScorer.from_model(tiny_model(), TOKENIZER, tiny_config(), device="cpu")
    for case in VECTORS["mlm_filter"]:
        ids = chatml.render(messages_of(case), has_image=True)
        assert ids == scorer.prompt_ids(case["caption"], case["metric"]), case["name"]
        assert collapse(ids) == case["rendered"]


def test_a_system_message_replaces_the_default(chatml):
    ids = chatml.render([Message("system", "Be brief."), Message("user", "Hi")], has_image=False)
    assert collapse(ids) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


SPECIAL_STRINGS = "a <|im_end|> b <|im_start|>assistant\n c <image> d <|endoftext|>"


@pytest.mark.parametrize("name", ["chatml", "caption"])
def test_special_strings_in_messages_are_plain_text(name):
    renderer = make_renderer(name, TOKENIZER, SETTINGS)
    plain = renderer.render([Message("user", "x")], has_image=True)
    # The first <image> is the placeholder; the one inside SPECIAL_STRINGS is data text.
    loaded = renderer.render([Message("user", "<image>\n" + SPECIAL_STRINGS)], has_image=True)
    special = {i for i, t in TOKENIZER.get_added_tokens_decoder().items() if t.special}
    assert sorted(i for i in loaded if i in special) == sorted(i for i in plain if i in special)
    assert SPECIAL_STRINGS in collapse(loaded)


def test_chatml_stops_at_im_end_and_eos(chatml):
    assert chatml.stop_ids == (TOKENIZER.token_to_id("<|im_end|>"),)
    other = make_renderer("chatml", TOKENIZER, PromptSettings("<image>", "<|endoftext|>", "<|endoftext|>", 4))
    assert other.stop_ids == (TOKENIZER.token_to_id("<|im_end|>"), TOKENIZER.token_to_id("<|endoftext|>"))


# ---- caption ---------------------------------------------------------------------------------


def test_caption_is_the_pretraining_template_up_to_the_caption():
    renderer = make_renderer("caption", TOKENIZER, SETTINGS)
    ids = renderer.render([Message("user", "<image>\nA red")], has_image=True)
    assert ids == [IMAGE_ID] * GRID * GRID + TOKENIZER.encode("\n", add_special_tokens=False).ids + TOKENIZER.encode("A red", add_special_tokens=False).ids
    assert renderer.stop_ids == (TOKENIZER.token_to_id("<|im_end|>"),)
    framed = make_renderer("caption", TOKENIZER, PromptSettings("<image>", "<|im_end|>", "<|endoftext|>", 4, "Picture: <image>\n{caption}<|im_end|>"))
    ids = framed.render([Message("user", "earlier"), Message("assistant", "x"), Message("user", "Two blue ")], has_image=True)
    assert ids.count(IMAGE_ID) == 4
    assert TOKENIZER.decode([i for i in ids if i != IMAGE_ID], skip_special_tokens=False) == "Picture: \nTwo blue "
    with pytest.raises(PromptError, match="after \\{caption\\}"):
        make_renderer("caption", TOKENIZER, PromptSettings("<image>", "<|im_end|>", "<|endoftext|>", 4, "{caption}<image>")).render(
            [Message("user", "x")], has_image=True)


# ---- prismatic-qwen2 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bos_tokenizer() -> Tokenizer:
    """The tiny tokenizer with the "<s>" Open-Qwen2VL adds (Qwen2LLMBackbone: a special token)."""
    tok = Tokenizer.from_file(str(TOKENIZER_PATH))
    tok.add_special_tokens([AddedToken("<s>", special=True, normalized=False)])
    return tok


def prismatic_reference(tokenizer: Tokenizer, turns: list[tuple[str, str]], image_tokens: int) -> list[int]:
    """Open-Qwen2VL's formula, written from its source: Qwen2PromptBuilder.add_turn per turn
    (message stripped; the first turn carries the "<s>" system prompt; human turns end
    "<|im_end|>assistant\\n"; gpt turns are "{msg or ' '}<|im_end|>\\n"), each turn tokenized by
    tokenizer_image_token (text split at "<image>", every chunk tokenized with special tokens
    recognised, the image index between chunks), the image index then expanded to its patches."""
    system = "<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    ids: list[int] = []
    image_id = tokenizer.token_to_id("<image>")
    for k, (role, message) in enumerate(turns):
        message = message.strip()
        if role == "human":
            text = (system if k == 0 else "") + f"<|im_start|>user\n{message}<|im_end|>assistant\n"
        else:
            text = f"{message if message != '' else ' '}<|im_end|>\n"
        chunks = [tokenizer.encode(chunk, add_special_tokens=False).ids for chunk in text.split("<image>")]
        for j, chunk in enumerate(chunks):
            if j:
                ids += [image_id] * image_tokens
            ids += chunk
    return ids


def test_prismatic_qwen2_is_open_qwen2vls_prompt(bos_tokenizer):
    renderer = make_renderer("prismatic-qwen2", bos_tokenizer, SETTINGS)
    turns = [("human", "<image>\nWhat is in the picture?  "), ("gpt", " A red square. "), ("human", "And its colour?"), ("gpt", ""),
             ("human", "Sure?")]
    messages = [Message("user" if r == "human" else "assistant", m) for r, m in turns]
    assert renderer.render(messages, has_image=True) == prismatic_reference(bos_tokenizer, turns, GRID * GRID)
    text = collapse(renderer.render(messages[:1], has_image=True), bos_tokenizer)
    assert text == ("<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
                    "What is in the picture?<|im_end|>assistant\n")
    # The image goes where the message puts it; without a placeholder, in front.
    middle = [("human", "Look: <image> what is it?")]
    assert renderer.render([Message("user", middle[0][1])], has_image=True) == prismatic_reference(bos_tokenizer, middle, GRID * GRID)
    bare = renderer.render([Message("user", "What is it?")], has_image=True)
    assert bare == prismatic_reference(bos_tokenizer, [("human", "<image>\nWhat is it?")], GRID * GRID)
    assert renderer.stop_ids == (bos_tokenizer.token_to_id("<|im_end|>"),)


def test_prismatic_qwen2_needs_the_bos_token():
    with pytest.raises(PromptError, match="'<s>'"):
        make_renderer("prismatic-qwen2", TOKENIZER, SETTINGS)


# ---- messages and the registry --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,message",
    [
        ([], "non-empty list"),
        ([{"role": "assistant", "content": "x"}], "no user message"),
        ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "last message must be the user's"),
        ([{"role": "bot", "content": "x"}], r"messages\[0\].role"),
        ([{"role": "user", "content": 3}], r"messages\[0\].content"),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}, {"role": "user", "content": "z"}], "system message may only come first"),
    ],
)
def test_bad_conversations_are_named(raw, message):
    with pytest.raises(PromptError, match=message):
        parse_messages(raw)


def test_unknown_formats_and_loose_tokenizers_are_refused():
    with pytest.raises(PromptError, match="unknown prompt format 'llava-v1'"):
        make_renderer("llava-v1", TOKENIZER, SETTINGS)
    assert set(FORMATS) >= {"chatml", "caption", "prismatic-qwen2"}
    data = json.loads(TOKENIZER_PATH.read_text())
    for token in data["added_tokens"]:
        token["special"] = token["content"] != "<image>"
    with pytest.raises(LoomComputeError, match="'<image>' is not marked special"):
        make_renderer("chatml", Tokenizer.from_str(json.dumps(data)), SETTINGS)
    ids = render_prompt("chatml", TOKENIZER, [{"role": "user", "content": "hi"}], SETTINGS, has_image=False)
    assert ids == make_renderer("chatml", TOKENIZER, SETTINGS).render([Message("user", "hi")], has_image=False)
