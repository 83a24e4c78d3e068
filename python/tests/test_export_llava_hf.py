"""`export --format llava-hf`: a tiny SFT export (image grid = patch grid, projector width = LLM
width) written as a llava-hf folder is loaded by stock transformers in a process where Loom cannot
be imported (fixtures/llava_hf_stock.py: AutoProcessor + LlavaForConditionalGeneration.generate),
and gives Loom's prompt ids, pixels, logits (fp32, atol 1e-5) and greedy tokens, the greedy tokens
of Loom's own generation (infer/) included. What stock LLaVA
cannot represent is refused with the export and the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer

from fixtures.llava_hf import ROOT, write_tiny_export
from loom_compute.convert.llava_hf import LlavaHfError, export_llava_hf
from loom_compute.data_text import encode_data_text, plain_text_tokenizer
from loom_compute.infer.generate import SamplingParams
from loom_compute.infer.loading import InferenceModel
from loom_compute.infer.prompts import Message
from loom_compute.model.export_dir import load_export

STOCK = ROOT / "python" / "tests" / "fixtures" / "llava_hf_stock.py"
QUESTION = "What is in the picture?"
MAX_NEW = 6


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("llava-hf")
    export = write_tiny_export(root / "export", seed=3, noise=0.3)
    return export, export_llava_hf(export, root / "hf")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Not the vision size, so the processor's resize is exercised.
    pixels = np.random.default_rng(7).integers(0, 256, size=(80, 96, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("image") / "image.png"
    Image.fromarray(pixels).save(path)
    return path


def loom_prompt_ids(tokenizer: Tokenizer, image_tokens: int, question: str) -> list[int]:
    """The generation prompt as Loom's SFT packer lays a first turn out (src/pack/sft.ts): pieces
    tokenized on their own, the user value as plain data text, the image first on its own line."""
    image_id, im_end = tokenizer.token_to_id("<image>"), tokenizer.token_to_id("<|im_end|>")

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    (value,) = encode_data_text(plain_text_tokenizer(tokenizer), [question.strip()])
    return (enc("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") + enc("<|im_start|>user\n")
            + [image_id] * image_tokens + enc("\n") + value + [im_end] + enc("\n") + enc("<|im_start|>assistant\n"))


def loom_pixels(path: Path, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Loom's image pipeline (data.resize squash): PIL bicubic to size x size, /255, mean/std."""
    array = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def run_stock(hf_dir: Path, image: Path, out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-I", str(STOCK), str(hf_dir), str(image), QUESTION, str(MAX_NEW), str(out)],
                          cwd=out, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "result.json").read_text()), load_file(str(out / "logits.safetensors"))


def test_stock_transformers_gives_loom_ids_logits_and_greedy_tokens(exported, image_path, tmp_path):
    export, hf_dir = exported
    stock, tensors = run_stock(hf_dir, image_path, tmp_path / "stock")

    model, info = load_export(export)
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    grid = info.image_grid
    vision = info.config.model.vision
    ids = loom_prompt_ids(tokenizer, grid * grid, QUESTION)
    assert stock["input_ids"] == ids, "the chat template + processor give other prompt ids than Loom's SFT layout"
    pixels = loom_pixels(image_path, vision.image_size, vision.image_mean, vision.image_std)
    # PIL's bicubic, as Loom's (5.x picks it without torchvision; see llava_hf.py with it).
    torch.testing.assert_close(tensors["pixel_values"], pixels, atol=1e-6, rtol=0, msg=lambda m: f"{stock['image_processor']}: {m}")

    # Loom's own forward on Loom's inputs.
    batch = {"input_ids": torch.tensor([ids]), "pixel_values": pixels}
    loom_logits = model.full_logits(batch, isolate_documents=False)[0]
    torch.testing.assert_close(tensors["prompt_logits"], loom_logits, atol=1e-5, rtol=0)

    # A naive greedy loop over Loom's full forward: recompute everything, take the argmax, stop at eos.
    eos = tokenizer.token_to_id("<|im_end|>")
    assert stock["eos_token_id"] in (eos, [eos])
    sequence, new, step_logits = list(ids), [], []
    for _ in range(MAX_NEW):
        last = model.full_logits({"input_ids": torch.tensor([sequence]), "pixel_values": pixels}, isolate_documents=False)[0, -1]
        step_logits.append(last)
        token = int(last.argmax())
        new.append(token)
        sequence.append(token)
        if token == eos:
            break
    assert stock["new_ids"] == new
    assert len(set(new)) > 2, f"greedy tokens {new} repeat: a weak check, perturb the weights more"
    # The logits over prompt + answer, one forward each side, to 1e-5. generate's cached steps and
    # the loop's growing forwards sum in other orders: float noise on these large logits only.
    whole = model.full_logits({"input_ids": torch.tensor([sequence]), "pixel_values": pixels}, isolate_documents=False)[0]
    torch.testing.assert_close(tensors["sequence_logits"], whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(tensors["step_logits"], torch.stack(step_logits), atol=1e-4, rtol=1e-5)

    # Loom's own generation (what `loom chat` and `loom generate` run): the same prompt ids, pixels
    # and greedy tokens as stock transformers.
    loaded = InferenceModel.load(export, device="cpu", dtype="float32")
    request = loaded.request([Message("user", QUESTION)], image_path)
    assert request.ids == stock["input_ids"]
    torch.testing.assert_close(request.pixel_values[None], tensors["pixel_values"], atol=1e-6, rtol=0)
    (result,) = loaded.generator.generate([request], SamplingParams(max_new_tokens=MAX_NEW))
    assert result.tokens == stock["new_ids"]


def test_the_folder_carries_what_stock_loaders_read(exported):
    export, hf_dir = exported
    config = json.loads((hf_dir / "config.json").read_text())
    info_raw = json.loads((export / "loom.json").read_text())
    llm = json.loads((export / "llm" / "config.json").read_text())
    assert config["vision_feature_layer"] == info_raw["feature_layer"]
    assert config["vision_feature_select_strategy"] == "full"
    assert config["image_seq_length"] == info_raw["image_grid"] ** 2
    assert config["image_token_index"] == info_raw["image_token_id"]
    # transformers 4.4x reads rope_theta, 5.x rope_parameters: both, equal.
    assert config["text_config"]["rope_theta"] == config["text_config"]["rope_parameters"]["rope_theta"] == llm["rope_parameters"]["rope_theta"]
    assert llm["rope_theta"] == llm["rope_parameters"]["rope_theta"]
    processor = json.loads((hf_dir / "processor_config.json").read_text())
    # Placeholders counted as patches + 1 - 1 (transformers 4.46 always adds the 1).
    assert (processor["num_additional_image_tokens"], processor["vision_feature_select_strategy"]) == (1, "default")
    assert processor["patch_size"] == json.loads((export / "vision" / "config.json").read_text())["patch_size"]
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["do_sample"] is False
    template = (hf_dir / "chat_template.jinja").read_text()
    assert json.loads((hf_dir / "tokenizer_config.json").read_text())["chat_template"] == template
    assert json.loads((hf_dir / "chat_template.json").read_text())["chat_template"] == template


def _pooled(config: dict) -> None:
    config["image_grid"] = 4


def _narrow_projector(config: dict) -> None:
    config["model"]["projector"]["hidden_size"] = 96


def _padded(config: dict) -> None:
    config["data"]["resize"] = "pad"


@pytest.mark.parametrize(
    "edit,prompt_format,reason",
    [
        (_pooled, None, "image_grid 4 pools the 8x8 patch grid"),
        (_narrow_projector, None, "projector is 96 wide but the LLM is 128"),
        (_padded, None, "data.resize = 'pad'"),
        (None, "prismatic-qwen2", "prompt_format 'prismatic-qwen2' has no chat template"),
    ],
    ids=["pooled-grid", "projector-width", "pad-resize", "prompt-format"],
)
def test_what_stock_llava_cannot_represent_is_refused(tmp_path, edit, prompt_format, reason):
    export = write_tiny_export(tmp_path / "export", edit=edit, prompt_format=prompt_format)
    with pytest.raises(Exception) as caught:
        export_llava_hf(export, tmp_path / "hf")
    message = str(caught.value)
    assert reason in message and str(export) in message, message
    assert isinstance(caught.value, LlavaHfError) or "chat template" in message
    assert not (tmp_path / "hf").exists() and not (tmp_path / "hf.tmp").exists()


def test_a_pretrain_stage_export_is_refused_by_its_pooled_grid(tmp_path):
    export = write_tiny_export(tmp_path / "export", stage="pretrain")
    with pytest.raises(LlavaHfError, match="pre-training stage export"):
        export_llava_hf(export, tmp_path / "hf")


def test_the_export_verb_writes_the_folder_and_reports_refusals(exported, tmp_path):
    from fixtures.protocol_helpers import run_module

    export, _ = exported
    out = tmp_path / "verb-hf"
    run = run_module("loom_compute", "export", "--format", "llava-hf", "--source", str(export), "--out", str(out))
    assert run.returncode == 0, run.stderr
    (done,) = run.only("done")
    assert (done["out"], done["format"]) == (str(out.resolve()), "llava-hf")
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()

    pretrain = write_tiny_export(tmp_path / "pretrain", stage="pretrain")
    run = run_module("loom_compute", "export", "--format", "llava-hf", "--source", str(pretrain), "--out", str(tmp_path / "no"))
    assert run.returncode == 1 and not run.only("done")
    (error,) = run.only("error")
    assert "pre-training stage export" in error["msg"] and str(pretrain) in error["msg"]


def test_native_vision_weights_carry_the_prefix_4x_loads(exported):
    """transformers 4.4x's SiglipVisionModel loads only vision_model.* names; 5.x's strips them."""
    from transformers import SiglipVisionModel

    export, _ = exported
    assert all(k.startswith("vision_model.") for k in load_file(str(export / "vision" / "model.safetensors")))
    _, info = SiglipVisionModel.from_pretrained(export / "vision", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
