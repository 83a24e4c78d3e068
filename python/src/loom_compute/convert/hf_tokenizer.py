"""A tokenizer folder that stock ``AutoTokenizer.from_pretrained`` loads as the tokenizer Loom trained with.

A bare ``tokenizer.json`` beside a model config is not enough: without ``tokenizer_config.json``
transformers guesses the class from the config (Qwen2 -> a slow tokenizer wanting vocab.json) or
returns a tokenizer of length 1. This module writes, from the export's own ``tokenizer.json``:

- ``tokenizer.json``: the bytes unchanged, so ids are Loom's ids;
- ``tokenizer_config.json``: ``tokenizer_class`` ``PreTrainedTokenizerFast`` (loads tokenizer.json
  as it is in transformers 4.4x and 5.x; ``Qwen2TokenizerFast`` in 5.x may rebuild the pipeline
  from vocab and merges), eos/pad/image token, ``added_tokens_decoder``, ``model_max_length`` and
  the chat template;
- ``special_tokens_map.json`` (what 4.4x reads eos/pad from) and ``chat_template.jinja`` (what 5.x
  reads first; 4.4x reads ``chat_template`` in tokenizer_config.json).

The chat template renders exactly Loom's SFT ChatML (src/pack/sft.ts): a system block (the
conversation's own system message, else "You are a helpful assistant."), then per message
``<|im_start|>{role}\\n{content}<|im_end|>\\n``; a message whose content is a list of parts
(``{"type": "image"}``, ``{"type": "text", "text": ...}``, as ``AutoProcessor.apply_chat_template``
passes them) renders as ``<image>\\n`` + its text trimmed, as LLaVA's preprocessing puts the image
first on its own line; ``add_generation_prompt`` appends ``<|im_start|>assistant\\n``.

One difference no chat template can remove: a template yields text, and the tokenizer then reads
``<|im_end|>`` typed by a user as the special token, where Loom encodes data text as plain text
(DESIGN.md, "Data text is plain text"). Everything else gives Loom's ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loom_compute.errors import LoomComputeError

SYSTEM_PROMPT = "You are a helpful assistant."
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# The prompt formats a chat template is written for; others are refused by the callers.
TEMPLATE_FORMATS = ("chatml",)


class TokenizerExportError(LoomComputeError):
    """A tokenizer that cannot be written as an AutoTokenizer folder."""


def _lit(text: str) -> str:
    """A Jinja string literal (JSON escaping is valid Jinja)."""
    return json.dumps(text)


def chatml_template(image_token: str) -> str:
    """Jinja rendering Loom's SFT ChatML; ``image_token`` is the placeholder a processor expands."""
    return (
        "{%- set ns = namespace(system=" + _lit(SYSTEM_PROMPT) + ", first=0) -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}"
        "{%- else -%}{%- set ns.system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
        " | map(attribute='text') | join('') -%}{%- endif -%}"
        "{%- set ns.first = 1 -%}"
        "{%- endif -%}"
        "{{- " + _lit(IM_START + "system\n") + " + ns.system + " + _lit(IM_END + "\n") + " -}}"
        "{%- for message in messages[ns.first:] -%}"
        "{{- " + _lit(IM_START) + " + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}"
        "{%- set images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
        "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
        "{%- if images > 0 -%}{{- " + _lit(image_token + "\n") + " * images + (text | trim) -}}"
        "{%- else -%}{{- text -}}{%- endif -%}"
        "{%- endif -%}"
        "{{- " + _lit(IM_END + "\n") + " -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- " + _lit(IM_START + "assistant\n") + " -}}{%- endif -%}"
    )


def chat_template_for(prompt_format: str, image_token: str, where: str) -> str:
    """The chat template of a prompt format, or a clear error for one Loom has no template of."""
    if prompt_format == "chatml":
        return chatml_template(image_token)
    raise TokenizerExportError(
        f"{where}: prompt_format {prompt_format!r} has no chat template in Loom (only {', '.join(TEMPLATE_FORMATS)}); "
        "a stock loader would render prompts the model was not trained on",
        key="prompt_format",
    )


def token_ids(tokenizer_json: bytes, where: str, **tokens: str) -> dict[str, int]:
    """{name: id} of each named token; an error names the token and the file when one is missing."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    ids = {}
    for name, token in tokens.items():
        found = tok.token_to_id(token)
        if found is None:
            raise TokenizerExportError(f"{where}: the tokenizer has no {name} {token!r}", key=f"tokenizer.{name}")
        ids[name] = int(found)
    return ids


def tokenizer_files(
    tokenizer_json: bytes,
    *,
    image_token: str,
    eos_token: str,
    pad_token: str,
    model_max_length: int,
    chat_template: str | None,
    where: str,
    require_special: bool = True,
) -> dict[str, bytes]:
    """{file name: bytes} of an AutoTokenizer folder for ``tokenizer_json``.

    ``require_special`` refuses an image/eos/pad token not marked special (the export verbs); the
    native export's ``llm/`` copy only needs them to exist, so no export fails on it."""
    try:
        parsed = json.loads(tokenizer_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerExportError(f"{where}: not a tokenizers JSON file ({exc})") from None
    token_ids(tokenizer_json, where, image_token=image_token, eos_token=eos_token, pad_token=pad_token)
    added = parsed.get("added_tokens") or []
    special = {t["content"] for t in added if t.get("special")}
    for name, token in (("image_token", image_token), ("eos_token", eos_token), ("pad_token", pad_token)):
        # A non-special structural token would be matched inside user text and not skipped on decode.
        if require_special and token not in special:
            raise TokenizerExportError(f"{where}: tokenizer.{name} {token!r} is not marked special in tokenizer.json", key=f"tokenizer.{name}")
    decoder = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special") if k in t}
        for t in added
    }
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": decoder,
        "bos_token": None,
        "eos_token": eos_token,
        "pad_token": pad_token,
        "unk_token": None,
        # 5.x (and 4.47+) expose it as tokenizer.image_token, which LlavaProcessor reads.
        "extra_special_tokens": {"image_token": image_token},
        "model_max_length": int(model_max_length),
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "padding_side": "left",
        # 4.4x's PreTrainedTokenizerFast also returns token_type_ids, which generate() refuses.
        "model_input_names": ["input_ids", "attention_mask"],
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    files = {
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": _json_bytes(config),
        "special_tokens_map.json": _json_bytes({"eos_token": eos_token, "pad_token": pad_token, "additional_special_tokens": [image_token]}),
    }
    if chat_template is not None:
        files["chat_template.jinja"] = chat_template.encode("utf-8")
    return files


def generation_config(eos_id: int, pad_id: int) -> dict[str, Any]:
    """Greedy decoding that stops at the model's eos, as Loom's generation does by default."""
    return {"eos_token_id": eos_id, "pad_token_id": pad_id, "bos_token_id": None, "do_sample": False}


def export_tokenizer_files(info: Any) -> dict[str, bytes]:
    """The AutoTokenizer files for a Loom export (``ExportInfo``), its chat template included when its prompt format has one."""
    path = info.tokenizer_path
    if not path.is_file():
        raise TokenizerExportError(f"{info.path}: tokenizer.json is missing; the export has no tokenizer to write")
    tok = info.config.tokenizer
    template = chat_template_for(info.prompt_format, tok.image_token, str(info.path)) if info.prompt_format in TEMPLATE_FORMATS else None
    return tokenizer_files(
        path.read_bytes(),
        image_token=tok.image_token,
        eos_token=tok.eos_token,
        pad_token=tok.pad_token,
        model_max_length=max_length_of(info),
        chat_template=template,
        where=str(path),
    )


def max_length_of(info: Any) -> int:
    """The longest input the LLM takes: its position table (the config's, else the run's seq_len)."""
    llm = json.loads((Path(info.path) / "llm" / "config.json").read_text(encoding="utf-8"))
    return int(llm.get("max_position_embeddings") or info.config.data.seq_len)


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
