"""Writes vectors/chatml/conversations.json: conversations and the exact ChatML text that
transformers' ``apply_chat_template`` renders for them with Qwen2-Instruct's chat template, the
one reference both of Loom's ChatML renderings are tested against:

- "sft": LLaVA conversations -> the whole document, as TS packing builds it (src/pack/sft.ts;
  test/ts/pack/sft/chatml.test.ts);
- "mlm_filter": a caption and a metric -> the scoring prompt up to ``<|im_start|>assistant\\n``, as
  the Python MLM-Filter scorer builds it (loom_compute.curate.mlm_filter;
  python/tests/test_curate_mlm_filter.py).

An image is one ``<image>`` in the rendered text (Loom expands it to image_grid^2 image tokens;
the tests collapse that run back to one). python/tests/test_chatml_vectors.py fails when the
committed file is not what transformers renders now.

    .venv/bin/python python/scripts/make_chatml_vectors.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "vectors" / "chatml" / "conversations.json"
TOKENIZER = REPO / "assets" / "tokenizer" / "tiny" / "tokenizer.json"

# chat_template of Qwen/Qwen2-1.5B-Instruct (tokenizer_config.json): ChatML with the default system
# prompt "You are a helpful assistant." when the conversation brings none.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
IMAGE = "<image>"

# (name, has image, LLaVA turns). With an image, the first human value starts with the placeholder.
SFT = [
    ("one_pair_image", True, [("human", "<image>\nWhat shape is shown?"), ("gpt", "A red circle.")]),
    ("two_pairs_image", True, [("human", "<image>\nHow many circles?"), ("gpt", "Two."),
                               ("human", "What colour are they?"), ("gpt", "Both are blue.")]),
    ("text_only", False, [("human", "Say hi."), ("gpt", "Hi!")]),
    ("multiline_values", True, [("human", "<image>\nDescribe it.\nBe brief."), ("gpt", "A square.\n\nIt is green.")]),
    ("spaces_kept_in_answers", False, [("human", "Indent this."), ("gpt", "  indented answer "),
                                       ("human", "And a tab?"), ("gpt", "\ttab")]),
    ("special_strings_as_data", False, [("human", "Print <|im_end|> please"), ("gpt", "Here: <|im_start|>user")]),
    ("empty_user_value", False, [("human", ""), ("gpt", "Nothing was asked.")]),
    ("digits_and_punctuation", True, [("human", "<image>\nScore 0-100?"), ("gpt", "100")]),
]

MLM_CAPTIONS = [
    ("plain", "a red square"),
    ("special_strings", "two circles <|im_end|> on grey"),
    ("multiline", "line one\nline two"),
]


def llava_messages(has_image: bool, turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    """LLaVA turns as chat messages: the first human turn's placeholder removed, the value trimmed,
    and the image put first on its own line (LLaVA's preprocessing)."""
    messages = []
    for i, (who, value) in enumerate(turns):
        if i == 0 and has_image:
            value = IMAGE + "\n" + value.replace(IMAGE, "", 1).strip()
        messages.append({"role": "user" if who == "human" else "assistant", "content": value})
    return messages


def build() -> dict[str, Any]:
    import transformers
    from transformers import PreTrainedTokenizerFast

    from loom_compute.curate.mlm_filter import METRICS, user_value_parts

    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))

    def render(messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return tok.apply_chat_template(messages, chat_template=CHAT_TEMPLATE, tokenize=False, add_generation_prompt=generation_prompt)

    sft = []
    for name, has_image, turns in SFT:
        messages = llava_messages(has_image, turns)
        sft.append({"name": name, "image": has_image, "conversations": [{"from": w, "value": v} for w, v in turns],
                    "messages": messages, "rendered": render(messages, False)})
    mlm = []
    for name, caption in MLM_CAPTIONS:
        for metric in METRICS:
            messages = [{"role": "user", "content": IMAGE + "\n" + "".join(user_value_parts(caption, metric))}]
            mlm.append({"name": f"{name}/{metric}", "caption": caption, "metric": metric, "messages": messages,
                        "rendered": render(messages, True)})
    return {
        "description": "ChatML text rendered by transformers apply_chat_template(messages, chat_template, tokenize=False) with "
        "Qwen2-Instruct's chat template; 'sft' without, 'mlm_filter' with add_generation_prompt. One <image> stands for the "
        "image's tokens. Written by python/scripts/make_chatml_vectors.py; do not edit by hand.",
        "transformers": transformers.__version__,
        "chat_template": CHAT_TEMPLATE,
        "sft": sft,
        "mlm_filter": mlm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    vectors = build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(vectors, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    print(json.dumps({"out": str(args.out), "sft": len(vectors["sft"]), "mlm_filter": len(vectors["mlm_filter"])}))


if __name__ == "__main__":
    main()
