"""Importing prismatic-vlms run folders (the released Open-Qwen2VL models).

Tiny run folders are written in prismatic's own layout (``{"model": {"projector", "llm_backbone",
["vision_backbone"]}}`` with timm / ``llm.`` / ``mlp_projector`` names, saved by ``torch.save``);
the imported Loom model's logits on an image + prompt are compared with prismatic's formulas,
computed here from the source tensors: a timm ViT forward to the second-to-last block (exact
GELU), AvgPoolProjector (pool, then MLP), the features spliced where the ``<image>`` sentinel was.
"""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import Qwen2ForCausalLM, SiglipVisionModel

from fixtures.import_sources import (
    GRID, HEADS, LAYERS, MLP, PATCH, WIDTH, base_config_dict, llm_config, loom_logits, pixels, pool_then_mlp,
    random_llm_state, spliced_logits, split_on_image, write_base_config, write_hf_vision_dir, write_llm_dir,
)
from fixtures.protocol_helpers import run_module
from loom_compute.config import parse_run_config
from loom_compute.convert import CheckpointError
from loom_compute.convert.prismatic import import_prismatic
from loom_compute.model.builder import build_model
from loom_compute.model.export_dir import load_export

SFT_PROMPT = "<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\nWhat is here?<|im_end|>assistant\n"
CAPTION_PROMPT = "<s><image>\na red square above"


def timm_siglip_state(seed: int) -> dict[str, torch.Tensor]:
    """timm's vit_so400m_patch14_siglip_* state dict names (class_token=False, global_pool='map')."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state = {"pos_embed": r(1, GRID * GRID, WIDTH), "patch_embed.proj.weight": r(WIDTH, 3, PATCH, PATCH, scale=0.02), "patch_embed.proj.bias": r(WIDTH)}
    for i in range(LAYERS):
        p = f"blocks.{i}."
        state |= {
            p + "norm1.weight": 1 + r(WIDTH), p + "norm1.bias": r(WIDTH),
            p + "attn.qkv.weight": r(3 * WIDTH, WIDTH, scale=0.3), p + "attn.qkv.bias": r(3 * WIDTH),
            p + "attn.proj.weight": r(WIDTH, WIDTH), p + "attn.proj.bias": r(WIDTH),
            p + "norm2.weight": 1 + r(WIDTH), p + "norm2.bias": r(WIDTH),
            p + "mlp.fc1.weight": r(MLP, WIDTH, scale=0.3), p + "mlp.fc1.bias": r(MLP),
            p + "mlp.fc2.weight": r(WIDTH, MLP), p + "mlp.fc2.bias": r(WIDTH),
        }
    state |= {
        "norm.weight": 1 + r(WIDTH), "norm.bias": r(WIDTH),
        "attn_pool.latent": r(1, 1, WIDTH), "attn_pool.q.weight": r(WIDTH, WIDTH), "attn_pool.q.bias": r(WIDTH),
        "attn_pool.kv.weight": r(2 * WIDTH, WIDTH), "attn_pool.kv.bias": r(2 * WIDTH),
        "attn_pool.proj.weight": r(WIDTH, WIDTH), "attn_pool.proj.bias": r(WIDTH),
        "attn_pool.norm.weight": 1 + r(WIDTH), "attn_pool.norm.bias": r(WIDTH),
        "attn_pool.mlp.fc1.weight": r(MLP, WIDTH), "attn_pool.mlp.fc1.bias": r(MLP),
        "attn_pool.mlp.fc2.weight": r(WIDTH, MLP), "attn_pool.mlp.fc2.bias": r(WIDTH),
    }
    return state


def timm_second_to_last_block(state: dict[str, torch.Tensor], pixel_values: torch.Tensor) -> torch.Tensor:
    """timm VisionTransformer.get_intermediate_layers(n={depth - 2}): patch embed + pos_embed, then
    pre-norm blocks (fused qkv, exact nn.GELU, LayerNorm eps 1e-6) up to and including block depth-2."""
    x = F.conv2d(pixel_values, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + state["pos_embed"]
    b, n, c = x.shape
    head_dim = c // HEADS
    for i in range(LAYERS - 1):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (c,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"]).reshape(b, n, 3, HEADS, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * head_dim**-0.5).softmax(dim=-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
        h = F.layer_norm(x, (c,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        x = x + F.linear(F.gelu(F.linear(h, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])), state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
    return x


def projector_state(names: tuple[str, str], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    llm = llm_config().hidden_size
    fc1, fc2 = names
    return {
        f"{fc1}.weight": torch.randn(llm, WIDTH, generator=g) * 0.2, f"{fc1}.bias": torch.randn(llm, generator=g) * 0.1,
        f"{fc2}.weight": torch.randn(llm, llm, generator=g) * 0.1, f"{fc2}.bias": torch.randn(llm, generator=g) * 0.1,
    }


def write_run(
    run: Path, *, arch: str, stage: str, llm_state: dict, projector: dict, vision: dict | None = None,
    resize: str = "resize-naive", extra: dict | None = None,
) -> Path:
    """A prismatic run folder: config.json (draccus dump) + checkpoints/latest-checkpoint.pt."""
    (run / "checkpoints").mkdir(parents=True)
    config = {
        "model": {
            "type": "one-stage+7b", "model_id": "qwen2.5-1.5b-instruct-continue-training-test", "arch_specifier": arch,
            "vision_backbone_id": "siglip-vit-so400m-384px", "llm_backbone_id": "qwen2.5-1.5b-instruct",
            "image_resize_strategy": resize, "llm_max_length": 4096,
        },
        "stage": stage,
        "mount_path": "Qwen",
    }
    (run / "config.json").write_text(json.dumps(config, indent=2))
    model = {"projector": OrderedDict(projector), "llm_backbone": OrderedDict(("llm." + k, v) for k, v in llm_state.items())}
    if vision is not None:
        model["vision_backbone"] = OrderedDict(("featurizer." + k, v) for k, v in vision.items())
    torch.save({"model": model, **(extra or {})}, run / "checkpoints" / "latest-checkpoint.pt")
    return run


@pytest.fixture(scope="module")
def llm_state() -> dict[str, torch.Tensor]:
    return random_llm_state(llm_config(), seed=3)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llm_dir(tmp_path_factory.mktemp("qwen") / "Qwen2.5-1.5B-Instruct", llm_config())


@pytest.fixture(scope="module")
def base():
    return parse_run_config(base_config_dict("sft"))


def reference_llm(llm_state: dict) -> Qwen2ForCausalLM:
    llm = Qwen2ForCausalLM(llm_config()).eval()
    llm.load_state_dict(llm_state)
    return llm


def test_pretrained_checkpoint_with_timm_vision_gives_prismatic_logits(tmp_path, llm_state, llm_dir, base):
    vision = timm_siglip_state(seed=1)
    names = ("mlp_projector.0", "mlp_projector.2")
    projector = projector_state(names, seed=2)
    run = write_run(tmp_path / "Open-Qwen2VL-Base", arch="no-align+16-avgpool", stage="pretrain", llm_state=llm_state, projector=projector, vision=vision)

    info = import_prismatic(run, tmp_path / "export", base, llm=llm_dir)
    assert (info.stage, info.prompt_format, info.image_grid, info.feature_layer) == ("pretrain", "prismatic-qwen2-caption", 4, -2)
    assert info.config.stage == "pretrain" and info.config.image_grid == 4 and info.config.data.resize == "squash"
    assert info.config.model.vision.image_size == 384 and info.config.model.vision.image_mean == (0.5, 0.5, 0.5)
    assert info.source["format"] == "prismatic" and info.source["vision_weights"] == "checkpoint"
    assert json.loads((info.path / "vision" / "config.json").read_text())["hidden_act"] == "gelu"

    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    # prismatic's additions, then Loom's <image>, each at the next free id
    assert [tokenizer.token_to_id(t) for t in ("<|endofchunk|>", "<s>", "<image>")] == [1048, 1049, 1050]
    assert info.image_token_id == 1050 and tokenizer.encode("<s>").ids == [1049]

    model, _ = load_export(info.path)
    px = pixels(seed=5)
    before, after = split_on_image(tokenizer, CAPTION_PROMPT)
    ours = loom_logits(model, before + [info.image_token_id] * 16 + after, px)

    features = pool_then_mlp(timm_second_to_last_block(vision, px), 16, projector, *names)
    theirs = spliced_logits(reference_llm(llm_state), before, features, after)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("arch", "names", "tokens"),
    [("full-align+64-avgpool", ("mlp_projector.0", "mlp_projector.2"), 64), ("gelu-mlp", ("projector.0", "projector.2"), None)],
)
def test_instruct_checkpoint_without_vision_takes_vision_dir(tmp_path, llm_state, llm_dir, base, arch, names, tokens):
    vision_dir = write_hf_vision_dir(tmp_path / "siglip", seed=7)
    projector = projector_state(names, seed=8)
    run = write_run(tmp_path / "Open-Qwen2VL", arch=arch, stage="large-finetune", llm_state=llm_state, projector=projector, resize="letterbox")

    info = import_prismatic(run, tmp_path / "export", base, vision=vision_dir, llm=llm_dir)
    assert (info.stage, info.prompt_format, info.image_grid) == ("sft", "prismatic-qwen2", GRID)
    assert info.config.data.resize == "pad" and info.source["vision_weights"] == str(vision_dir)

    model, _ = load_export(info.path)
    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    px = pixels(seed=9)
    before, after = split_on_image(tokenizer, SFT_PROMPT)
    ours = loom_logits(model, before + [info.image_token_id] * GRID * GRID + after, px)

    # prismatic runs these weights through timm's ViT: exact GELU, second-to-last block
    tower = SiglipVisionModel.from_pretrained(str(vision_dir), hidden_act="gelu").eval()
    with torch.no_grad():
        patches = tower(pixel_values=px, output_hidden_states=True).hidden_states[-2]
    if tokens is None:
        features = F.linear(F.gelu(F.linear(patches, projector["projector.0.weight"], projector["projector.0.bias"])), projector["projector.2.weight"], projector["projector.2.bias"])
    else:
        features = pool_then_mlp(patches, tokens, projector, *names)
    theirs = spliced_logits(reference_llm(llm_state), before, features, after)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path, llm_state, llm_dir, base):
    names = ("mlp_projector.0", "mlp_projector.2")
    run = write_run(
        tmp_path / "run", arch="no-align+avgpool", stage="pretrain", llm_state=llm_state, projector=projector_state(names, 1),
        extra={"args": argparse.Namespace(lr=5e-5)},
    )
    with pytest.raises(CheckpointError, match=r"refused: it holds a pickled Python object \(argparse\.Namespace\)") as caught:
        import_prismatic(run, tmp_path / "export", base, llm=llm_dir, vision=write_hf_vision_dir(tmp_path / "v", 1))
    assert str(run / "checkpoints" / "latest-checkpoint.pt") in str(caught.value)
    assert not (tmp_path / "export").exists()

    # through the verb: one error event naming the file, exit 1, nothing written
    result = run_module(
        "loom_compute", "import", "--format", "prismatic", "--source", str(run), "--out", str(tmp_path / "export"),
        "--llm", str(llm_dir), "--vision", str(tmp_path / "v"), "--config", str(write_base_config(tmp_path / "base.json")),
    )
    assert result.returncode == 1
    (error,) = result.only("error")
    assert "latest-checkpoint.pt: refused: it holds a pickled Python object (argparse.Namespace)" in error["msg"]
    assert "traceback" not in error and not (tmp_path / "export").exists()


def _truncate(run: Path) -> None:
    path = run / "checkpoints" / "latest-checkpoint.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", r"latest-checkpoint\.pt: cannot read it as a torch checkpoint \(truncated"),
        ("no-vision", r"holds no vision weights .* pass --vision DIR"),
        ("no-llm", r"pass --llm DIR"),
        ("linear", r"arch_specifier 'linear' has no Loom form"),
        ("fused", r"three-layer projector"),
        ("crop", r"resize-crop"),
        ("llm-shape", r"model\.llm_backbone: the weights do not match the model's config: missing model\.layers\.3"),
        ("projector-shape", r"model\.projector .*mlp_projector\.0\.weight has shape"),
    ],
)
def test_bad_sources_get_clear_errors(tmp_path, llm_state, llm_dir, base, case, message):
    names = ("mlp_projector.0", "mlp_projector.2")
    projector = projector_state(names, 1)
    kwargs = {"arch": "no-align+avgpool", "stage": "pretrain", "llm_state": llm_state, "projector": projector}
    vision = write_hf_vision_dir(tmp_path / "v", 1)
    llm = llm_dir
    if case == "linear":
        kwargs["arch"] = "linear"
    if case == "fused":
        kwargs["arch"] = "no-align+fused-gelu-mlp"
    if case == "crop":
        kwargs["resize"] = "resize-crop"
    if case == "llm-shape":
        kwargs["llm_state"] = {k: v for k, v in llm_state.items() if ".layers.3." not in k}
    if case == "projector-shape":
        kwargs["projector"] = {**projector, "mlp_projector.0.weight": projector["mlp_projector.0.weight"][:, :10]}
    run = write_run(tmp_path / "run", **kwargs)
    if case == "truncated":
        _truncate(run)
    with pytest.raises(CheckpointError, match=message):
        import_prismatic(
            run, tmp_path / "export", base,
            vision=None if case == "no-vision" else vision, llm=None if case == "no-llm" else llm,
        )


def test_import_verb_writes_an_export_that_starts_sft(tmp_path, llm_state, llm_dir):
    names = ("mlp_projector.0", "mlp_projector.2")
    projector = projector_state(names, seed=4)
    run = write_run(tmp_path / "Open-Qwen2VL-Base", arch="no-align+16-avgpool", stage="pretrain", llm_state=llm_state, projector=projector, vision=timm_siglip_state(2))
    base_path = write_base_config(tmp_path / "base.json", "sft")
    out = tmp_path / "imported"
    result = run_module(
        "loom_compute", "import", "--format", "prismatic", "--source", str(run), "--out", str(out),
        "--llm", str(llm_dir), "--config", str(base_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = result.only("done")[0]
    assert done == {"event": "done", "out": str(out), "format": "prismatic", "prompt_format": "prismatic-qwen2-caption", "stage": "pretrain"}

    # SFT from the imported pre-trained model: model.init_from = the export
    sft = base_config_dict("sft")
    sft["model"]["init_from"] = str(out)
    sft["tokenizer"]["path"] = str(out / "tokenizer.json")
    model = build_model(parse_run_config(sft))
    assert model.image_grid == 8 and model.image_token_id == 1050
    torch.testing.assert_close(model.projector.fc1.weight, projector["mlp_projector.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.llm.get_input_embeddings().weight, llm_state["model.embed_tokens.weight"], rtol=0, atol=0)
    assert model.vision.config.hidden_act == "gelu"


@pytest.mark.parametrize("stage", ["pretrain", "large-finetune"])
def test_imported_open_qwen2vl_answers_in_its_own_prompt_format(tmp_path, llm_state, llm_dir, base, stage):
    """chat and generate render an imported model's prompt as prismatic-vlms did in training."""
    from loom_compute.infer.generate import SamplingParams
    from loom_compute.infer.loading import InferenceModel
    from loom_compute.infer.prompts import Message

    names = ("mlp_projector.0", "mlp_projector.2")
    run = write_run(tmp_path / "run", arch="no-align+16-avgpool", stage=stage, llm_state=llm_state, projector=projector_state(names, seed=3), vision=timm_siglip_state(seed=4))
    info = import_prismatic(run, tmp_path / "export", base, llm=llm_dir)
    loaded = InferenceModel.load(info.path, device="cpu", dtype="float32")
    tokenizer = loaded.tokenizer
    if stage == "pretrain":
        messages, prompt = [Message("user", "a red square above")], CAPTION_PROMPT
    else:
        messages, prompt = [Message("user", "What is here?")], SFT_PROMPT
    before, after = split_on_image(tokenizer, prompt)
    request = loaded.request(messages, _image())
    assert request.ids == before + [info.image_token_id] * 16 + after
    assert tokenizer.token_to_id("<|im_end|>") in loaded.renderer.stop_ids

    (result,) = loaded.generator.generate([request], SamplingParams(max_new_tokens=3))
    assert result.new_tokens >= 1
    # greedy: each new token is the argmax of the model's own logits over the prompt so far
    ids = list(request.ids)
    for token in result.tokens:
        logits = loom_logits(loaded.model, ids, request.pixel_values[None])
        assert int(logits[-1].argmax()) == token
        ids.append(token)


def _image():
    from PIL import Image

    return Image.new("RGB", (30, 20), (10, 200, 40))
