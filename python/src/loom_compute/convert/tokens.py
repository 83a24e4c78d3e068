"""Special tokens a source adds to its base tokenizer, and the ``<image>`` token Loom needs.

Prismatic (Open-Qwen2VL) adds ``<|endofchunk|>`` and ``<s>`` to the Qwen2.5 tokenizer at run time
(``Qwen2LLMBackbone.__init__``) and LLaVA-Unified adds ``<s>`` when it trains; neither writes the
result into the run folder it publishes, so the importer repeats those additions, through the same
``tokenizers`` call transformers' ``add_special_tokens`` makes (so ids land where the original put
them: the next free id). Loom marks images with a placeholder token in the vocabulary where the
originals splice at a sentinel id (-200); ``<image>`` is added last, as a special token, with the
next free id. Those ids stay below the embedding table's row count in the published models (Qwen2.5
has 151936 rows for 151665 tokens), so no weight changes; a table too small is an error.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer

from loom_compute.config import RunConfig
from loom_compute.convert.files import CheckpointError, read_json


def read_tokenizer_json(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file (the tokenizer.json to import with)", file=str(path)) from None
    except Exception as exc:  # tokenizers raises its own Exception type for bad JSON
        raise CheckpointError(f"{path}: cannot read it as a tokenizer.json ({exc})", file=str(path)) from None


def special_tokens(tokenizer: Tokenizer) -> dict[str, int]:
    """content -> id of the tokenizer's added tokens that are special."""
    added = json.loads(tokenizer.to_str()).get("added_tokens") or []
    return {t["content"]: int(t["id"]) for t in added if t.get("special")}


def add_special(tokenizer: Tokenizer, contents: list[str], where: str) -> dict[str, int]:
    """Adds each content as a special token unless it is one already; returns content -> id.

    A content that the tokenizer knows but not as a special token would be split or matched
    inside data text, so it is refused rather than silently changed in meaning.
    """
    ids: dict[str, int] = {}
    for content in contents:
        special = special_tokens(tokenizer)
        if content not in special:
            if tokenizer.token_to_id(content) is not None:
                raise CheckpointError(
                    f"{where}: the tokenizer has {content!r} as an ordinary token; it must be a special token"
                )
            tokenizer.add_special_tokens([AddedToken(content, special=True, normalized=False)])
        token_id = tokenizer.token_to_id(content)
        assert token_id is not None
        ids[content] = int(token_id)
    return ids


def require_tokens(tokenizer: Tokenizer, contents: list[str], where: str) -> None:
    missing = [c for c in contents if tokenizer.token_to_id(c) is None]
    if missing:
        raise CheckpointError(f"{where}: the tokenizer has no token {', '.join(repr(m) for m in missing)}")


def check_fits(tokenizer: Tokenizer, embedding_rows: int, where: str) -> None:
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values())
    if largest >= embedding_rows:
        raise CheckpointError(
            f"{where}: the tokenizer (with the tokens the source adds and <image>) has ids up to {largest} "
            f"({size} tokens) but the LLM's embedding table has {embedding_rows} rows"
        )


def eos_pad(tokenizer_config: Path, base_config: RunConfig) -> tuple[str, str]:
    """The tokenizer's own eos/pad (its tokenizer_config.json), else the base config's."""
    eos, pad = base_config.tokenizer.eos_token, base_config.tokenizer.pad_token
    if tokenizer_config.is_file():
        fields = read_json(tokenizer_config)
        eos = _token_text(fields.get("eos_token")) or eos
        pad = _token_text(fields.get("pad_token")) or pad
    return eos, pad


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):  # {"content": ..., "special": ...} in older tokenizer_config files
        value = value.get("content")
    return value if isinstance(value, str) and value else None
