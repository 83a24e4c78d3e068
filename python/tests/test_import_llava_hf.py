"""`import --format llava-hf` (convert/llava_hf.import_llava_hf): export -> import gives a native
export with identical logits, the chatml prompt format and the source recorded; a folder written by
transformers itself (5.x key names) imports the same; what Loom cannot represent is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.llava_hf import ROOT, tiny_config, write_tiny_export
from loom_compute.config import parse_run_config
from loom_compute.convert.llava_hf import LlavaHfError, export_llava_hf, import_llava_hf
from loom_compute.model.export_dir import load_export


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("import")
    export = write_tiny_export(root / "export", seed=5)
    return export, export_llava_hf(export, root / "hf")


def base_config():
    """The base run config the CLI would pass (a preset's SFT config), deliberately of other shapes."""

    def other(config: dict) -> None:
        config["model"]["vision"]["feature_layer"] = -1
        config["model"]["projector"]["hidden_size"] = 32
        config["image_grid"] = 2
        config["name"] = "imported"

    return parse_run_config(tiny_config("sft", other))


def logits_of(export: Path) -> torch.Tensor:
    model, info = load_export(export)
    g = info.image_grid
    torch.manual_seed(0)
    ids = torch.tensor([[1, 5, 7] + [info.image_token_id] * g * g + [9, 11, 13, 2]])
    pixels = torch.randn(1, 3, info.config.model.vision.image_size, info.config.model.vision.image_size)
    return model.full_logits({"input_ids": ids, "pixel_values": pixels}, isolate_documents=False)


def test_export_then_import_gives_identical_logits(folders, tmp_path):
    export, hf_dir = folders
    info = import_llava_hf(hf_dir, tmp_path / "imported", base_config())
    assert info.prompt_format == "chatml" and info.stage == "sft"
    assert info.source == {"format": "llava-hf", "path": str(hf_dir.resolve())}
    original = json.loads((export / "loom.json").read_text())
    assert (info.image_grid, info.feature_layer, info.image_token_id, info.projector_hidden_size) == (
        original["image_grid"], original["feature_layer"], original["image_token_id"], original["projector_hidden_size"])
    assert info.config.model.vision.image_mean == tuple(original["config"]["model"]["vision"]["image_mean"])
    assert info.config.name == "imported"  # the rest comes from the base config
    torch.testing.assert_close(logits_of(info.path), logits_of(export), atol=0, rtol=0)


def test_a_folder_saved_by_transformers_imports_the_same(folders, tmp_path):
    """Configs as 5.x's save_pretrained writes them, and weights under 5.x's module names
    (model.language_model.*, lm_head), which other tools write."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    export, hf_dir = folders
    resaved = tmp_path / "resaved"
    model = LlavaForConditionalGeneration.from_pretrained(hf_dir)
    model.save_pretrained(resaved)
    AutoProcessor.from_pretrained(hf_dir).save_pretrained(resaved)
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(resaved / "model.safetensors"))
    assert any(k.startswith("model.language_model.") for k in load_file(str(resaved / "model.safetensors")))
    info = import_llava_hf(resaved, tmp_path / "imported", base_config())
    torch.testing.assert_close(logits_of(info.path), logits_of(export), atol=0, rtol=0)


def _copy(hf_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "edited"
    shutil.copytree(hf_dir, out)
    return out


def _edit_json(path: Path, **changes) -> None:
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))


def test_qwen2_instruct_chat_template_is_chatml(folders, tmp_path):
    """The template Loom's ChatML vectors come from (vectors/chatml) renders the same text."""
    src = _copy(folders[1], tmp_path)
    qwen = json.loads((ROOT / "vectors" / "chatml" / "conversations.json").read_text())["chat_template"]
    (src / "chat_template.jinja").write_text(qwen)
    assert import_llava_hf(src, tmp_path / "out", base_config()).prompt_format == "chatml"


def test_another_chat_template_is_refused(folders, tmp_path):
    src = _copy(folders[1], tmp_path)
    vicuna = "{% for m in messages %}{{ m['role'].upper() + ': ' + m['content'] + '\\n' }}{% endfor %}"
    (src / "chat_template.jinja").write_text(vicuna)
    with pytest.raises(LlavaHfError, match="does not render Loom's ChatML"):
        import_llava_hf(src, tmp_path / "out", base_config())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "file,changes,reason",
    [
        ("config.json", {"vision_feature_select_strategy": "default"}, "vision_feature_select_strategy 'default'"),
        ("config.json", {"projector_hidden_act": "relu"}, "projector_hidden_act 'relu'"),
        ("config.json", {"model_type": "llava_next"}, "model_type 'llava_next'"),
        ("preprocessor_config.json", {"do_center_crop": True}, "it crops or pads"),
        ("preprocessor_config.json", {"resample": 2}, "resample 2 is not bicubic"),
    ],
)
def test_what_loom_cannot_represent_is_refused(folders, tmp_path, file, changes, reason):
    src = _copy(folders[1], tmp_path)
    _edit_json(src / file, **changes)
    with pytest.raises(LlavaHfError) as caught:
        import_llava_hf(src, tmp_path / "out", base_config())
    assert reason in str(caught.value) and str(src) in str(caught.value)


def test_pickle_weights_are_refused(folders, tmp_path):
    src = _copy(folders[1], tmp_path)
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(LlavaHfError, match="safetensors only"):
        import_llava_hf(src, tmp_path / "out", base_config())


def test_an_unknown_weight_is_refused(folders, tmp_path):
    src = _copy(folders[1], tmp_path)
    weights = load_file(str(src / "model.safetensors"))
    weights["image_newline"] = torch.zeros(4)
    save_file(weights, str(src / "model.safetensors"))
    with pytest.raises(LlavaHfError, match="'image_newline' belongs to no part"):
        import_llava_hf(src, tmp_path / "out", base_config())
