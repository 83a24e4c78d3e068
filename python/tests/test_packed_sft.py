"""SFT packed shards (``loom pack --stage sft``) read by the Python loader.

Synthetic conversations are packed by the real CLI; the shards are read with read_packed_shard
and batched with collate_packed. The trained positions are recomputed here from the tokens alone
(ChatML role headers decoded with Python's ``tokenizers``): labels must be set exactly on the
assistant turns' content and closing <|im_end|>, and the trained text must be the answers of
llava.json, conversation by conversation.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from fixtures.node import BUILT_CLI, LOOM, require_built, run_node
from loom_compute.config import parse_run_config
from loom_compute.data import IGNORE_INDEX, collate_packed, expectations, read_packed_shard




@pytest.fixture(scope="module", autouse=True)
def built():
    require_built(BUILT_CLI)  # fails, never skips, without node or dist/ (`make test-py` builds first)



@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    run_node(str(LOOM), "synth", "--out", str(root / "synth"), "--samples", "0", "--sft", "30", "--bench", "0", "--quiet")
    llava = root / "synth" / "sft" / "llava.json"
    out = root / "out"
    summary = json.loads(
        run_node(str(LOOM), "pack", "--preset", "tiny", "--stage", "sft", "--sft-json", str(llava), "--out", str(out), "--window", "12", "--json", "--quiet")
    )
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    return out, summary, config, json.loads(llava.read_text(encoding="utf-8"))


def expected_mask(tokens, tok: Tokenizer, im_start: int, im_end: int) -> np.ndarray:
    """1 on assistant content and its <|im_end|>, from the ChatML structure of the tokens."""
    mask = np.zeros(len(tokens), dtype=bool)
    i = 0
    while i < len(tokens):
        if tokens[i] != im_start:
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and not tok.decode(tokens[i + 1 : j], skip_special_tokens=False).endswith("\n"):
            j += 1
        role = tok.decode(tokens[i + 1 : j], skip_special_tokens=False).strip()
        k = j
        while k < len(tokens) and tokens[k] != im_end:
            k += 1
        if role == "assistant":
            mask[j : k + 1] = True
        i = k + 1
    return mask


def test_sft_shards_read_and_collate_with_labels_on_answers_only(packed):
    out, summary, config, conversations = packed
    assert summary["complete"] and summary["total"]["documents"]["kept"] == len(conversations)
    tok_path = Path(config["tokenizer"]["path"])
    tok = Tokenizer.from_file(str(tok_path))
    sha = hashlib.sha256(tok_path.read_bytes()).hexdigest()
    expect = expectations(parse_run_config(config), sha)
    assert expect["stage"] == "sft" and expect["image_tokens_per_image"] == 64
    im_start, im_end, image_id = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>"), tok.token_to_id("<image>")
    by_uid = {hashlib.md5(c["id"].encode()).hexdigest(): c for c in conversations}

    sequences = [s for shard in summary["total"]["shards"] for s in read_packed_shard(out / shard, expect)]
    seen = []
    seq_len = int(config["data"]["seq_len"])
    vision = config["model"]["vision"]
    for seq in sequences:
        batch = collate_packed([seq], seq_len, tok.token_to_id("<|endoftext|>"), vision["image_mean"], vision["image_std"])
        labels = batch["labels"][0].numpy()
        tokens = seq["tokens"].tolist()
        assert int((np.asarray(tokens) == image_id).sum()) == 64 * len(seq["images"])
        at = 0
        for uid, length in zip(seq["uids"], seq["doclens"].tolist()):
            doc = tokens[at : at + length]
            mask = expected_mask(doc, tok, im_start, im_end)
            trained = labels[at : at + length] != IGNORE_INDEX
            assert (trained == mask).all(), f"labels of {by_uid[uid]['id']} are not exactly its assistant turns"
            assert not any(doc[p] == image_id for p in np.flatnonzero(trained))
            answers = "".join(t["value"] + "<|im_end|>" for t in by_uid[uid]["conversations"] if t["from"] == "gpt")
            assert tok.decode([doc[p] for p in np.flatnonzero(mask)], skip_special_tokens=False) == answers
            seen.append(uid)
            at += length
        assert at == len(tokens)
    assert sorted(seen) == sorted(by_uid)
