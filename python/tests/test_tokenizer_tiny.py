"""The bundled tiny tokenizer: loads in transformers, round-trips text, and is what the training
script builds (same pipeline, deterministic bytes)."""

from __future__ import annotations

import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
TINY_DIR = REPO / "assets" / "tokenizer" / "tiny"
TINY = TINY_DIR / "tokenizer.json"
SCRIPT = REPO / "python" / "scripts" / "train_tiny_tokenizer.py"
SPECIAL_IDS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<image>": 3}


def load_script():
    spec = importlib.util.spec_from_file_location("train_tiny_tokenizer", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    return Tokenizer.from_file(str(TINY))


def test_small_with_special_tokens(tiny: Tokenizer) -> None:
    assert TINY.stat().st_size < 100_000
    assert 500 <= tiny.get_vocab_size(with_added_tokens=True) <= 2100
    for token, token_id in SPECIAL_IDS.items():
        assert tiny.token_to_id(token) == token_id
    ids = tiny.encode("<image>\nA red circle.<|im_end|>", add_special_tokens=False).ids
    assert ids[0] == 3 and ids[-1] == 2


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=100))
def test_decode_encode_round_trip(tiny: Tokenizer, text: str) -> None:
    ids = tiny.encode(text, add_special_tokens=False).ids
    # The NFC normaliser (as in Qwen2) is the only change any text undergoes.
    assert tiny.decode(ids, skip_special_tokens=False) == unicodedata.normalize("NFC", text)


def test_loads_in_transformers(tiny: Tokenizer) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    text = "<|im_start|>user\n<image>\nHow many circles are there?<|im_end|>"
    expected = tiny.encode(text, add_special_tokens=False).ids
    for hf in (AutoTokenizer.from_pretrained(str(TINY_DIR)),
               PreTrainedTokenizerFast(tokenizer_file=str(TINY))):
        assert hf(text, add_special_tokens=False)["input_ids"] == expected
    auto = AutoTokenizer.from_pretrained(str(TINY_DIR))
    assert auto.eos_token == "<|im_end|>" and auto.eos_token_id == 2
    assert auto.pad_token == "<|endoftext|>" and auto.pad_token_id == 0
    assert auto.convert_tokens_to_ids("<image>") == 3
    assert auto(text)["input_ids"] == expected, "no BOS/EOS added by default"
    chat = auto.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_committed_file_has_the_scripts_pipeline() -> None:
    script = load_script()
    committed = json.loads(TINY.read_text(encoding="utf-8"))
    fresh = json.loads(script.build_tokenizer().to_str())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert committed[key] == fresh[key], f"{key} differs from train_tiny_tokenizer.build_tokenizer()"
    assert [t["content"] for t in committed["added_tokens"]] == script.SPECIAL_TOKENS
    config = json.loads((TINY_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["eos_token"] == "<|im_end|>" and config["pad_token"] == "<|endoftext|>"


def test_training_is_deterministic(tmp_path: Path) -> None:
    script = load_script()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(script.provisional_scene_corpus(3, 400)) + "\n", encoding="utf-8")
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run / "tokenizer.json"
        assert script.main(["--corpus", str(corpus), "--out", str(out), "--vocab-size", "600"]) == 0
        outputs.append(out.read_bytes())
        assert (out.parent / "tokenizer_config.json").exists()
    assert outputs[0] == outputs[1]
    trained = Tokenizer.from_str(outputs[0].decode("utf-8"))
    assert trained.get_vocab_size(with_added_tokens=True) <= 600
    for token, token_id in SPECIAL_IDS.items():
        assert trained.token_to_id(token) == token_id
