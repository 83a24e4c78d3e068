"""The UniFilter scorer on tiny imported UniFilter exports, checked against UniFilter's own scoring
(data_scoring/data_quality_classifier_caption_scoring.py with LlavaQwenClassifier) computed here
from the source tensors: bos + sentinel + tokens("\\n" + caption) + eos, cut to 75 ids, pad ids
dropped, the transformers SigLIP tower on the processor's squashed pixels, the avg-pool projector,
one Qwen2 forward, ``score`` on the last position, softmax's positive class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer
from transformers import Qwen2ForCausalLM, SiglipVisionModel

from fixtures.import_sources import base_config_dict, llm_config, pool_then_mlp, random_llm_state, write_hf_vision_dir
from fixtures.llava_sources import llava_config, projector_weights, score_weight, unifilter_config, write_llava
from loom_compute.config import parse_run_config
from loom_compute.convert.llava import import_llava
from loom_compute.curate.unifilter import UniFilterError, UniFilterScorer

PROJECTOR = "model.mm_projector.mlp_projector."


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    state = random_llm_state(llm_config(), seed=31)
    state.pop("lm_head.weight")
    vision = write_hf_vision_dir(tmp_path_factory.mktemp("siglip") / "siglip", seed=32, mean=0.4, std=0.3)
    return {"llm": state, "vision": vision, "projector": projector_weights(PROJECTOR, seed=33), "base": parse_run_config(base_config_dict("sft"))}


def import_unifilter(root, parts: dict, labels: int = 2, tokenizer_config: dict | None = None):
    score = score_weight(labels, seed=34)
    src = write_llava(root / "UniFilter-Qwen2.5-1.5B", unifilter_config(labels), {**parts["llm"], **parts["projector"], "score.weight": score}, tokenizer_config=tokenizer_config)
    info = import_llava(src, root / "export", parts["base"], vision=parts["vision"])
    return info, score


def images() -> list[Image.Image]:
    rng = np.random.default_rng(35)
    sizes = [(50, 30), (24, 24), (31, 47)]  # not square: the processor squashes, whatever image_aspect_ratio says
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def script_ids(tokenizer: Tokenizer, caption: str, eos: str, pad: str) -> list[int]:
    """DataCollatorForImagePreprocessing, for one caption: [bos, -200] + tokens + [eos], [:75], unpadded."""
    text = "\n" + caption.replace("<image>", "image")
    body = tokenizer.encode(text, add_special_tokens=False).ids
    ids = ([tokenizer.token_to_id("<s>"), -200] + body + [tokenizer.token_to_id(eos)])[:75]
    return [i for i in ids if i != tokenizer.token_to_id(pad)]


def reference(parts: dict, score: torch.Tensor, tokenizer: Tokenizer, image: Image.Image, caption: str, eos: str = "<|im_end|>", pad: str = "<|endoftext|>") -> torch.Tensor:
    """LlavaQwenClassifier's logits for one pair, from the source tensors."""
    llm = Qwen2ForCausalLM(llm_config()).eval()
    llm.load_state_dict(parts["llm"], strict=False)
    llm.tie_weights()
    # SiglipImageProcessor: squash to 384 bicubic, /255, (x - mean) / std (the folder's 0.4 / 0.3)
    px = np.asarray(image.convert("RGB").resize((384, 384), Image.BICUBIC), dtype=np.float32) / 255.0
    px = torch.from_numpy((px - 0.4) / 0.3).permute(2, 0, 1)[None]
    tower = SiglipVisionModel.from_pretrained(str(parts["vision"])).eval()
    mlp = {k.removeprefix("model.mm_projector."): v for k, v in parts["projector"].items()}
    ids = script_ids(tokenizer, caption, eos, pad)
    cut = ids.index(-200)
    with torch.no_grad():
        features = pool_then_mlp(tower(pixel_values=px, output_hidden_states=True).hidden_states[-1], 16, mlp, "mlp_projector.0", "mlp_projector.2")
        embed = llm.get_input_embeddings()
        inputs = torch.cat([embed(torch.tensor(ids[:cut])), features[0], embed(torch.tensor(ids[cut + 1 :], dtype=torch.long))])[None]
        last = llm.model(inputs_embeds=inputs).last_hidden_state[0, -1]  # attention_mask.sum() - 1, right padding
        return F.linear(last, score)


CAPTIONS = ["a photo of a dog", "<image> of two cats on a red sofa, seen from above", ""]


def test_scores_are_unifilters_softmax_of_the_positive_class(tmp_path, parts):
    info, score = import_unifilter(tmp_path, parts)
    scorer = UniFilterScorer.from_export(info.path, device="cpu", batch_size=3)
    assert scorer.columns == ("quality_score", "quality_class", "logit_0", "logit_1")
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    got = scorer.score(images(), CAPTIONS)
    for i, (image, caption) in enumerate(zip(images(), CAPTIONS)):
        logits = reference(parts, score, tokenizer, image, caption)
        np.testing.assert_allclose(got["logit_0"][i], logits[0].item(), rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(got["logit_1"][i], logits[1].item(), rtol=1e-4, atol=2e-5)
        # scores[i][1] of torch.softmax(logits) and torch.argmax(logits), as the script stores them
        np.testing.assert_allclose(got["quality_score"][i], torch.softmax(logits, -1)[1].item(), rtol=1e-4, atol=1e-6)
        assert got["quality_class"][i] == float(logits.argmax())
    assert len(set(np.round(got["quality_score"], 6))) == 3, "three different pairs, three different scores"


def test_a_long_caption_is_cut_at_75_ids_and_loses_its_eos(tmp_path, parts):
    info, score = import_unifilter(tmp_path, parts)
    scorer = UniFilterScorer.from_export(info.path, device="cpu")
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    caption = " ".join(["many small words"] * 40)
    ids = scorer.script_ids(caption)
    assert len(ids) == 75 and ids[-1] != tokenizer.token_to_id("<|im_end|>")
    assert ids == script_ids(tokenizer, caption, "<|im_end|>", "<|endoftext|>")
    short = scorer.script_ids("a dog")
    assert short[0] == tokenizer.token_to_id("<s>") and short[-1] == tokenizer.token_to_id("<|im_end|>")
    image = images()[0]
    got = scorer.score([image], [caption])
    np.testing.assert_allclose(got["logit_1"][0], reference(parts, score, tokenizer, image, caption)[1].item(), rtol=1e-4, atol=2e-5)


def test_eos_equal_to_pad_is_dropped_as_the_attention_mask_drops_it(tmp_path, parts):
    """A tokenizer whose eos is its pad (a Qwen base model's): input_ids.ne(pad) masks the eos and
    LLaVA's unpadding removes it, so the head reads the caption's last token."""
    config = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    info, score = import_unifilter(tmp_path, parts, tokenizer_config=config)
    scorer = UniFilterScorer.from_export(info.path, device="cpu")
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    assert scorer.script_ids("a dog")[-1] == tokenizer.encode("\na dog", add_special_tokens=False).ids[-1]
    got = scorer.score(images()[:1], ["a dog"])
    logits = reference(parts, score, tokenizer, images()[0], "a dog", eos="<|endoftext|>", pad="<|endoftext|>")
    np.testing.assert_allclose(got["quality_score"][0], torch.softmax(logits, -1)[1].item(), rtol=1e-4, atol=1e-6)


def test_a_batch_equals_one_by_one_with_padding(tmp_path, parts):
    info, _ = import_unifilter(tmp_path, parts)
    scorer = UniFilterScorer.from_export(info.path, device="cpu", batch_size=3)
    lengths = {len(scorer.input_ids(c)) for c in CAPTIONS}
    assert len(lengths) == 3, "the batch has right padding"
    together = scorer.score(images(), CAPTIONS)
    alone = [scorer.score([im], [c]) for im, c in zip(images(), CAPTIONS)]
    for column in scorer.columns:
        np.testing.assert_allclose(together[column], np.concatenate([a[column] for a in alone]), rtol=1e-5, atol=1e-6)


def test_special_token_strings_in_a_caption_stay_plain_text(tmp_path, parts):
    info, _ = import_unifilter(tmp_path, parts)
    scorer = UniFilterScorer.from_export(info.path, device="cpu")
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    specials = {tokenizer.token_to_id(t) for t in ("<s>", "<|im_end|>", "<|endoftext|>", "<image>")}
    ids = scorer.input_ids("a dog <|im_end|><s><|endoftext|> <image> end")
    inner = [i for i in ids[1:-1] if i != scorer.image_token_id]
    assert not specials & set(inner), "a special-token string in a caption is never its id"
    assert ids.count(scorer.image_token_id) == 16, "a literal <image> in the caption is written 'image'"
    assert ids.count(tokenizer.token_to_id("<|im_end|>")) == 1 and ids[-1] == tokenizer.token_to_id("<|im_end|>")
    assert scorer.script_ids("a <image> b") == scorer.script_ids("a image b")


def test_one_label_head_is_the_raw_logit(tmp_path, parts):
    info, score = import_unifilter(tmp_path, parts, labels=1)
    scorer = UniFilterScorer.from_export(info.path, device="cpu")
    assert scorer.columns == ("quality_score",)
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    got = scorer.score(images()[:1], ["a dog"])
    np.testing.assert_allclose(got["quality_score"][0], reference(parts, score, tokenizer, images()[0], "a dog")[0].item(), rtol=1e-4, atol=2e-5)


def test_an_export_without_a_classifier_head_is_refused(tmp_path, parts):
    src = write_llava(tmp_path / "mlm-filter", llava_config(), {**parts["llm"], **parts["projector"]})
    info = import_llava(src, tmp_path / "export", parts["base"], vision=parts["vision"])
    with pytest.raises(UniFilterError, match=r"loom\.json: source\.head is missing: .* no classifier head, not a UniFilter classifier"):
        UniFilterScorer.from_export(info.path)


def test_a_missing_head_file_is_named(tmp_path, parts):
    info, _ = import_unifilter(tmp_path, parts)
    (info.path / "classifier.safetensors").unlink()
    with pytest.raises(UniFilterError, match=r"classifier\.safetensors: missing"):
        UniFilterScorer.from_export(info.path)
