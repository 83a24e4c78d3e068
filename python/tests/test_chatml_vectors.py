"""The shared ChatML vectors (vectors/chatml/conversations.json) are what transformers'
apply_chat_template renders now, from the messages and the chat template they record, and their
messages are the LLaVA conversations as LLaVA preprocesses them. Both Loom renderings are checked
against them: TS SFT packing (test/ts/pack/sft/chatml.test.ts) and the Python MLM-Filter prompt
(test_curate_mlm_filter.py::test_prompt_is_the_shared_chatml_rendering)."""

from __future__ import annotations

import json
import sys

import pytest

from fixtures.node import REPO
from loom_compute.curate.mlm_filter import METRICS

sys.path.insert(0, str(REPO / "python" / "scripts"))
import make_chatml_vectors as generator  # noqa: E402

VECTORS = json.loads((REPO / "vectors" / "chatml" / "conversations.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(generator.TOKENIZER))


def test_the_template_is_the_generators():
    assert VECTORS["chat_template"] == generator.CHAT_TEMPLATE


@pytest.mark.parametrize("kind,generation_prompt", [("sft", False), ("mlm_filter", True)])
def test_vectors_are_what_transformers_renders_now(tokenizer, kind, generation_prompt):
    cases = VECTORS[kind]
    assert len(cases) >= 5
    for case in cases:
        rendered = tokenizer.apply_chat_template(case["messages"], chat_template=VECTORS["chat_template"], tokenize=False,
                                                 add_generation_prompt=generation_prompt)
        assert rendered == case["rendered"], f"{kind} {case['name']}: stale, rerun python/scripts/make_chatml_vectors.py"


def test_sft_messages_are_the_llava_conversations():
    for case in VECTORS["sft"]:
        turns = [(t["from"], t["value"]) for t in case["conversations"]]
        assert case["messages"] == generator.llava_messages(case["image"], turns), case["name"]
        assert sum(m["content"].count("<image>") for m in case["messages"]) == int(case["image"])


def test_vectors_cover_what_the_renderings_must_agree_on():
    sft = VECTORS["sft"]
    assert any(c["image"] for c in sft) and any(not c["image"] for c in sft)
    assert any(len(c["conversations"]) > 2 for c in sft), "a multi-turn conversation"
    assert any("<|im_end|>" in t["value"] for c in sft for t in c["conversations"]), "a special string as data"
    assert {c["metric"] for c in VECTORS["mlm_filter"]} == set(METRICS)
