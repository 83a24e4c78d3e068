"""Importing LLaVA-style checkpoint folders on Qwen2 (the MLM-Filter and UniFilter scorers).

Tiny folders are written in the layout LLaVA-Unified / UniFilter's LLaVA save (``LlavaQwenConfig``
keys, ``model.*`` LLM names, ``model.mm_projector.*``, ``score.weight`` for the classifier) as
safetensors or sharded ``.bin``; the imported model is checked against LLaVA's formulas computed
here from the source tensors: the transformers SigLIP tower's ``hidden_states[select_layer]``, the
avg-pool projector (pool, then MLP), the features spliced where the ``<image>`` sentinel was, and
for the classifier the score head on the last token's hidden state.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import Qwen2ForCausalLM, SiglipVisionModel

from fixtures.llava_sources import llava_config, projector_weights, write_llava
from fixtures.import_sources import (
    GRID, base_config_dict, llm_config, loom_logits, pixels, pool_then_mlp,
    random_llm_state, spliced_logits, split_on_image, write_hf_vision_dir,
)
from loom_compute.config import parse_run_config
from loom_compute.convert import CheckpointError
from loom_compute.convert.llava import import_llava
from loom_compute.model.export_dir import load_export

# conv_qwen_instruct (LLaVA-Unified llava/conversation.py), MPT style, with the <s> train.py prepends
PROMPT = "<s><|im_start|>system\nYou are a helpful assistant<|im_end|><|im_start|>user\n<image>\nText Caption: a red square<|im_end|><|im_start|>assistant\n"


@pytest.fixture(scope="module")
def llm_state() -> dict[str, torch.Tensor]:
    state = random_llm_state(llm_config(), seed=11)
    state.pop("lm_head.weight")  # tied: save_pretrained writes the embedding once
    return state


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hf_vision_dir(tmp_path_factory.mktemp("siglip") / "siglip-so400m-patch14-384", seed=12)


@pytest.fixture(scope="module")
def base():
    return parse_run_config(base_config_dict("sft"))


def reference_llm(llm_state: dict) -> Qwen2ForCausalLM:
    llm = Qwen2ForCausalLM(llm_config()).eval()
    llm.load_state_dict(llm_state, strict=False)  # lm_head is tied to the embedding
    llm.tie_weights()
    return llm


def tower_features(vision_dir: Path, px: torch.Tensor, layer: int) -> torch.Tensor:
    """SiglipVisionTower.feature_select('patch'): hidden_states[mm_vision_select_layer], all patches."""
    tower = SiglipVisionModel.from_pretrained(str(vision_dir)).eval()
    with torch.no_grad():
        return tower(pixel_values=px, output_hidden_states=True).hidden_states[layer]


@pytest.mark.parametrize("layout", ["safetensors", "bin-shards"])
def test_mlm_filter_layout_gives_llava_logits(tmp_path, llm_state, vision_dir, base, layout):
    projector = projector_weights("model.mm_projector.mlp_projector.", seed=13)
    src = write_llava(tmp_path / "mlm-filter-qwen2.5-1.5b-gpt4o", llava_config(), {**llm_state, **projector}, layout)

    info = import_llava(src, tmp_path / "export", base, vision=vision_dir)
    assert (info.stage, info.prompt_format, info.image_grid, info.feature_layer) == ("sft", "llava-qwen2", 4, -1)
    assert info.config.data.resize == "pad" and info.config.model.vision.feature_layer == -1
    assert info.source["format"] == "llava" and info.source["conv_template"] == "qwen_instruct" and info.source["head"] is None
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    assert tokenizer.token_to_id("<s>") == 1048 and info.image_token_id == tokenizer.token_to_id("<image>") == 1049

    model, _ = load_export(info.path)
    px = pixels(seed=14)
    before, after = split_on_image(tokenizer, PROMPT)
    ours = loom_logits(model, before + [info.image_token_id] * 16 + after, px)

    mlp = {k.removeprefix("model.mm_projector."): v for k, v in projector.items()}
    features = pool_then_mlp(tower_features(vision_dir, px, -1), 16, mlp, "mlp_projector.0", "mlp_projector.2")
    theirs = spliced_logits(reference_llm(llm_state), before, features, after)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


def test_mlp2x_gelu_projector_and_second_to_last_layer(tmp_path, llm_state, vision_dir, base):
    projector = projector_weights("model.mm_projector.", seed=15)
    config = llava_config(mm_projector_type="mlp2x_gelu", mm_vision_select_layer=-2, image_aspect_ratio="square")
    src = write_llava(tmp_path / "llava", config, {**llm_state, **projector})
    info = import_llava(src, tmp_path / "export", base, vision=vision_dir)
    assert (info.image_grid, info.feature_layer, info.config.data.resize) == (GRID, -2, "squash")

    model, _ = load_export(info.path)
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    px = pixels(seed=16)
    before, after = split_on_image(tokenizer, PROMPT)
    ours = loom_logits(model, before + [info.image_token_id] * GRID * GRID + after, px)
    patches = tower_features(vision_dir, px, -2)
    w = {k.removeprefix("model.mm_projector."): v for k, v in projector.items()}
    features = F.linear(F.gelu(F.linear(patches, w["0.weight"], w["0.bias"])), w["2.weight"], w["2.bias"])
    theirs = spliced_logits(reference_llm(llm_state), before, features, after)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


def test_unifilter_classifier_keeps_its_score_head(tmp_path, llm_state, vision_dir, base):
    g = torch.Generator().manual_seed(17)
    score = torch.randn(2, llm_config().hidden_size, generator=g) * 0.1
    projector = projector_weights("model.mm_projector.mlp_projector.", seed=18)
    config = llava_config(architectures=["LlavaQwenClassifier"], num_labels=2, id2label={"0": "LABEL_0", "1": "LABEL_1"}, pad_token_id=0)
    src = write_llava(tmp_path / "UniFilter-Qwen2.5-1.5B", config, {**llm_state, **projector, "score.weight": score})

    info = import_llava(src, tmp_path / "export", base, vision=vision_dir)
    assert info.prompt_format == "unifilter-qwen2"
    assert info.source["head"] == {"kind": "sequence-classifier", "file": "classifier.safetensors", "num_labels": 2, "position": "last-token", "bias": False}
    head = load_file(str(info.path / "classifier.safetensors"))["weight"]
    torch.testing.assert_close(head, score, rtol=0, atol=0)

    model, _ = load_export(info.path)
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    px = pixels(seed=19)
    # data_quality_classifier_caption_scoring.py: bos + "<image>\n" + caption + eos, read at the last token
    before, after = split_on_image(tokenizer, "<image>\na photo of a dog")
    before = [tokenizer.token_to_id("<s>")] + before
    after = after + [tokenizer.token_to_id("<|im_end|>")]
    ids = torch.tensor([before + [info.image_token_id] * 16 + after])
    with torch.no_grad():
        hidden = model.hidden_states({"input_ids": ids, "pixel_values": px}, isolate_documents=False)[0, -1]
    ours = F.linear(hidden, head)

    llm = reference_llm(llm_state)
    mlp = {k.removeprefix("model.mm_projector."): v for k, v in projector.items()}
    features = pool_then_mlp(tower_features(vision_dir, px, -1), 16, mlp, "mlp_projector.0", "mlp_projector.2")
    embed = llm.get_input_embeddings()
    inputs = torch.cat([embed(torch.tensor(before)), features[0], embed(torch.tensor(after))])[None]
    with torch.no_grad():
        last = llm.model(inputs_embeds=inputs).last_hidden_state[0, -1]
    theirs = F.linear(last, score)  # LlavaQwenClassifier.score on the last non-pad position
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cls_patch", r"mm_vision_select_feature 'cls_patch' has no Loom form"),
        ("linear", r"mm_projector_type 'linear' has no Loom form"),
        ("clip", r"mm_vision_tower 'openai/clip-vit-large-patch14-336' is not a SigLIP tower"),
        ("anyres", r"image_aspect_ratio 'anyres'"),
        ("hub-tower", r"not a local folder; pass --vision DIR"),
        ("pickled", r"pytorch_model-00001-of-00002\.bin: refused: it holds a pickled Python object \(argparse\.Namespace\)"),
        ("truncated", r"model\.safetensors: cannot read it as safetensors"),
        ("missing-layer", r"LLM: the weights do not match the model's config: missing model\.layers\.1\."),
        ("projector-shape", r"model\.mm_projector\.\* \(aapool_mlp\): mlp_projector\.2\.weight has shape"),
    ],
)
def test_bad_sources_get_clear_errors(tmp_path, llm_state, vision_dir, base, case, message):
    projector = projector_weights("model.mm_projector.mlp_projector.", seed=20)
    weights = {**llm_state, **projector}
    config = llava_config()
    layout = "safetensors"
    if case == "cls_patch":
        config["mm_vision_select_feature"] = "cls_patch"
    if case == "linear":
        config["mm_projector_type"] = "linear"
    if case == "clip":
        config["mm_vision_tower"] = "openai/clip-vit-large-patch14-336"
    if case == "anyres":
        config["image_aspect_ratio"] = "anyres"
    if case == "missing-layer":
        weights = {k: v for k, v in weights.items() if ".layers.1." not in k}
    if case == "projector-shape":
        weights["model.mm_projector.mlp_projector.2.weight"] = weights["model.mm_projector.mlp_projector.2.weight"][:5]
    if case == "pickled":
        layout = "bin-shards"
    src = write_llava(tmp_path / "src", config, weights, layout)
    if case == "pickled":
        shard = src / "pytorch_model-00001-of-00002.bin"
        torch.save({**torch.load(shard, weights_only=True), "training_args": argparse.Namespace(lr=2e-5)}, shard)
    if case == "truncated":
        path = src / "model.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=message):
        import_llava(src, tmp_path / "export", base, vision=None if case == "hub-tower" else vision_dir)
    assert not (tmp_path / "export").exists()


def test_a_saved_tower_must_match_the_vision_folder(tmp_path, llm_state, vision_dir, base):
    """LLaVA ignores a frozen tower's saved copy and loads mm_vision_tower; a --vision folder that
    differs from that copy is the wrong one."""
    tower = {f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in load_file(str(vision_dir / "model.safetensors")).items()}
    projector = projector_weights("model.mm_projector.mlp_projector.", seed=21)
    same = write_llava(tmp_path / "same", llava_config(), {**llm_state, **projector, **tower})
    assert import_llava(same, tmp_path / "export", base, vision=vision_dir).image_grid == 4

    key = "model.vision_tower.vision_tower.vision_model.post_layernorm.weight"
    other = write_llava(tmp_path / "other", llava_config(), {**llm_state, **projector, **tower, key: tower[key] + 1})
    with pytest.raises(CheckpointError, match=r"post_layernorm\.weight differs from the vision tower saved in the checkpoint"):
        import_llava(other, tmp_path / "export2", base, vision=vision_dir)


def test_imported_mlm_filter_scores_in_its_own_prompt_format(tmp_path, llm_state, vision_dir, base):
    """The MLM-Filter scorer asks an imported scorer in the format it was fine-tuned on (llava-qwen2)."""
    from PIL import Image

    from loom_compute.curate.mlm_filter import METRICS, MlmFilterScorer, user_value_parts

    projector = projector_weights("model.mm_projector.mlp_projector.", seed=16)
    src = write_llava(tmp_path / "mlm-filter", llava_config(), {**llm_state, **projector})
    info = import_llava(src, tmp_path / "export", base, vision=vision_dir)
    scorer = MlmFilterScorer.from_export(info.path, device="cpu", batch_size=2)
    assert scorer.prompt_format == "llava-qwen2" and scorer.resize == "pad"

    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    caption = "a red square"
    for metric in METRICS:
        value = "".join(user_value_parts(caption, metric))
        prompt = (
            "<s><|im_start|>system\nYou are a helpful assistant<|im_end|><|im_start|>user\n<image>\n"
            f"{value}<|im_end|><|im_start|>assistant\n"
        )
        before, after = split_on_image(tokenizer, prompt)
        assert scorer.prompt_ids(caption, metric) == before + [info.image_token_id] * 16 + after, metric

    wide = Image.new("RGB", (40, 20), (200, 30, 30))  # not square: the pad path
    scores = scorer.score([wide, wide], [caption, "a blue circle"])
    for metric in METRICS:
        assert scores[metric].shape == (2,) and ((scores[metric] >= 0) & (scores[metric] <= 100)).all()


def test_llava_qwen2_renders_conv_qwen_instruct_for_several_turns(tmp_path, llm_state, vision_dir, base):
    from loom_compute.infer.prompts import Message, PromptSettings, make_renderer

    projector = projector_weights("model.mm_projector.mlp_projector.", seed=17)
    info = import_llava(write_llava(tmp_path / "src", llava_config(), {**llm_state, **projector}), tmp_path / "export", base, vision=vision_dir)
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    renderer = make_renderer(info.prompt_format, tokenizer, PromptSettings.from_config(info.config, info.image_grid))
    turns = [Message("user", "<image>\nWhat is it?"), Message("assistant", "A square."), Message("user", "Colour? <|im_end|>")]
    ids = renderer.render(turns, has_image=True)
    head = "<s><|im_start|>system\nYou are a helpful assistant<|im_end|><|im_start|>user\n"
    before, _ = split_on_image(tokenizer, head + "<image>")
    tail = "\nWhat is it?<|im_end|><|im_start|>assistant\nA square.<|im_end|><|im_start|>user\n"
    plain = renderer.data("Colour? <|im_end|>")  # typed by the user: data text, not the turn closer
    assert tokenizer.token_to_id("<|im_end|>") not in plain
    expected_tail = tokenizer.encode(tail, add_special_tokens=False).ids + plain + tokenizer.encode("<|im_end|><|im_start|>assistant\n", add_special_tokens=False).ids
    assert ids == before + [info.image_token_id] * 16 + expected_tail
    assert tokenizer.token_to_id("<|im_end|>") in renderer.stop_ids
