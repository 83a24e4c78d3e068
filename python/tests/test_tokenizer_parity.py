"""Python `tokenizers` against the TS TextTokenizer (compiled dist code run by node): identical ids
for the shared vectors and for hypothesis-generated text, on the bundled tiny tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from fixtures.node import REPO, run_compiled_module

TINY = REPO / "assets" / "tokenizer" / "tiny" / "tokenizer.json"
TOKENIZER_MODULE = REPO / "dist" / "src" / "tokenize" / "tokenizer.js"
VECTORS = REPO / "vectors" / "tokenizer" / "texts.json"

NODE_ENCODER = """
import { readFileSync } from 'node:fs';
const { TextTokenizer } = await import(process.argv[1]);
const request = JSON.parse(readFileSync(0, 'utf8'));
const tokenizer = await TextTokenizer.load(request.path);
const ids = await tokenizer.encodeBatch(request.texts);
process.stdout.write(JSON.stringify({ ids, sha256: tokenizer.sha256, vocabSize: tokenizer.vocabSize }));
"""


def encode_in_ts(path: Path, texts: list[str]) -> dict:
    return json.loads(run_compiled_module(TOKENIZER_MODULE, NODE_ENCODER, {"path": str(path), "texts": texts}))


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    return Tokenizer.from_file(str(TINY))


def python_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer.encode(text, add_special_tokens=False).ids for text in texts]


def test_shared_vectors_match(tiny: Tokenizer) -> None:
    named = json.loads(VECTORS.read_text(encoding="utf-8"))["texts"]
    texts = [entry["text"] for entry in named]
    ts = encode_in_ts(TINY, texts)
    for entry, ours, theirs in zip(named, python_ids(tiny, texts), ts["ids"]):
        assert ours == theirs, f"{entry['name']}: Python {ours} != TS {theirs}"
    assert ts["vocabSize"] == tiny.get_vocab_size(with_added_tokens=True)


def test_ts_hash_is_sha256_of_file() -> None:
    import hashlib

    ts = encode_in_ts(TINY, [])
    assert ts["sha256"] == hashlib.sha256(TINY.read_bytes()).hexdigest()


# Code points a real text may hold; surrogates cannot be encoded to UTF-8 on either side.
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=4, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=40))
def test_generated_text_matches(tiny: Tokenizer, texts: list[str]) -> None:
    ts = encode_in_ts(TINY, texts)
    assert python_ids(tiny, texts) == ts["ids"]
