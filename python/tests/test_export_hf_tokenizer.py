"""AutoTokenizer folders (convert/hf_tokenizer.py): `export --format tokenizer` and the native
export's `llm/` load with stock `AutoTokenizer` as the whole tokenizer, and `apply_chat_template`
gives the ids Loom's SFT packer (src/pack/sft.ts, run under node) builds for the shared ChatML
conversations (vectors/chatml/conversations.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, GenerationConfig

from fixtures.llava_hf import ROOT, TOKENIZER, write_tiny_export
from fixtures.node import REPO, run_compiled_module
from fixtures.protocol_helpers import run_module

VECTORS = json.loads((ROOT / "vectors" / "chatml" / "conversations.json").read_text(encoding="utf-8"))
SFT_MODULE = REPO / "dist" / "src" / "pack" / "sft.js"
# Loom's SFT documents for the vectors' conversations, image runs kept as they are.
NODE_SFT = """
import { readFileSync } from 'node:fs';
const { SftDocuments } = await import(process.argv[1]);
const { resolveRunConfig } = await import(new URL('../config/resolve.js', process.argv[1]));
const { TextTokenizer } = await import(new URL('../tokenize/tokenizer.js', process.argv[1]));
const request = JSON.parse(readFileSync(0, 'utf8'));
const config = resolveRunConfig({ preset: 'tiny', stage: 'sft', name: 'hf-tokenizer', assignments: ['data.seq_len=4096'] });
const tokenizer = await TextTokenizer.load(config.tokenizer.path);
const sft = await SftDocuments.create(config, tokenizer);
const { docs } = await sft.build(request.records);
process.stdout.write(JSON.stringify({ perImage: sft.layout.imageTokensPerImage, docs: docs.map((d) => Array.from(d.ids)) }));
"""
# A chat template yields text, so a special-token string typed as data becomes the special token:
# the one difference to Loom's plain-text data (hf_tokenizer.py's docstring).
TEMPLATE_CANNOT = {"special_strings_as_data"}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_export(tmp_path_factory.mktemp("tok") / "export")


@pytest.fixture(scope="module")
def tokenizer_dir(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok-out") / "tokenizer"
    run = run_module("loom_compute", "export", "--format", "tokenizer", "--source", str(export), "--out", str(out))
    assert run.returncode == 0, run.stderr
    (done,) = run.only("done")
    assert (done["out"], done["format"]) == (str(out.resolve()), "tokenizer")
    return out


def loom_sft_ids() -> tuple[int, list[list[int]]]:
    records = [
        {"id": v["name"], "image": "/unused.jpg" if v["image"] else None,
         "turns": [{"role": "user" if t["from"] == "human" else "assistant", "value": t["value"]} for t in v["conversations"]]}
        for v in VECTORS["sft"]
    ]
    result = json.loads(run_compiled_module(SFT_MODULE, NODE_SFT, {"records": records}))
    return result["perImage"], result["docs"]


def collapse(ids: list[int], image_id: int) -> list[int]:
    """One image id per run of image ids (Loom expands one <image> to image_grid^2 ids)."""
    return [t for i, t in enumerate(ids) if t != image_id or i == 0 or ids[i - 1] != image_id]


@pytest.mark.parametrize("where", ["tokenizer", "llm"])
def test_auto_tokenizer_chat_template_gives_loom_sft_ids(export, tokenizer_dir, where):
    folder = tokenizer_dir if where == "tokenizer" else export / "llm"
    tok = AutoTokenizer.from_pretrained(folder)
    image_id = tok.convert_tokens_to_ids("<image>")
    per_image, docs = loom_sft_ids()
    assert per_image > 1
    compared = 0
    for case, loom in zip(VECTORS["sft"], docs, strict=True):
        hf = tok.apply_chat_template(case["messages"], tokenize=True, return_dict=True)["input_ids"]
        if case["name"] in TEMPLATE_CANNOT:
            assert hf != collapse(loom, image_id)  # a known difference, kept visible
            continue
        assert hf == collapse(loom, image_id), case["name"]
        compared += 1
    assert compared >= 6


def test_auto_tokenizer_is_the_whole_tokenizer_with_its_special_tokens(export, tokenizer_dir):
    raw = Tokenizer.from_file(str(TOKENIZER))
    for folder in (tokenizer_dir, export / "llm"):
        tok = AutoTokenizer.from_pretrained(folder)
        assert len(tok) == raw.get_vocab_size(with_added_tokens=True) > 1000
        assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == raw.token_to_id("<|im_end|>")
        assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == raw.token_to_id("<|endoftext|>")
        assert tok.convert_tokens_to_ids("<image>") == raw.token_to_id("<image>")
        text = "A red square,\n  two  circles: 42!"
        assert tok(text, add_special_tokens=True)["input_ids"] == raw.encode(text, add_special_tokens=False).ids
        assert tok.model_max_length == json.loads((export / "llm" / "config.json").read_text())["max_position_embeddings"]


def test_native_llm_generation_config_stops_at_eos(export):
    raw = Tokenizer.from_file(str(TOKENIZER))
    generation = GenerationConfig.from_pretrained(export / "llm")
    assert generation.eos_token_id == raw.token_to_id("<|im_end|>")
    assert generation.pad_token_id == raw.token_to_id("<|endoftext|>")
    assert generation.do_sample is False


def test_generation_prompt_and_image_parts_render_loom_chatml(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is it? "}]}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n"
                        "<|im_start|>assistant\n")
    own_system = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tokenize=False)
    assert own_system == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_a_pretrain_export_gets_a_tokenizer_without_chat_template(tmp_path):
    export = write_tiny_export(tmp_path / "export", stage="pretrain")
    config = json.loads((export / "llm" / "tokenizer_config.json").read_text())
    assert "chat_template" not in config and not (export / "llm" / "chat_template.jinja").exists()
    assert len(AutoTokenizer.from_pretrained(export / "llm")) > 1000


def test_export_verb_names_a_bad_source(tmp_path):
    run = run_module("loom_compute", "export", "--format", "tokenizer", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert run.returncode != 0
    (error,) = run.only("error")
    assert "no loom.json" in error["msg"] and str(tmp_path / "nope") in error["msg"]
