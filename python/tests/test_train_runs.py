"""The `train` verb end to end on real packed synthetic data: resume, checkpoints, export, stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures.training import done_event, losses, run_train, tiny_config, write_run


@pytest.fixture(scope="module")
def runs(tiny_packs, tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted 6-step run, and the same run stopped after 3 steps then resumed."""
    root = tmp_path_factory.mktemp("runs")
    whole = write_run(root, tiny_config("pretrain", "whole", tiny_packs["pretrain"]))
    whole_done = done_event(run_train(whole))

    split = write_run(root, tiny_config("pretrain", "split", tiny_packs["pretrain"]))
    first = done_event(run_train(split, "--stop-after-steps", "3"))
    # A save that was killed half-way: resume must ignore it and the next save must clear it.
    stale = split.parent / "checkpoints" / "step_00000004.tmp"
    stale.mkdir()
    (stale / "junk.distcp").write_bytes(b"partial")
    second = done_event(run_train(split, "--resume"))
    return {"whole": whole.parent, "split": split.parent, "whole_done": whole_done, "first": first, "second": second}


def test_uninterrupted_run_finishes_and_reports(runs):
    done = runs["whole_done"]
    assert done["finished"] and done["steps"] == done["total_steps"] == 6
    assert done["seen"]["sequences"] == 6 * 4
    assert Path(done["loss_curve"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((runs["whole"] / "train.json").read_text())["final_loss"] == done["final_loss"]


def test_resumed_run_has_the_losses_of_the_uninterrupted_one(runs):
    first, second = runs["first"], runs["second"]
    assert not first["finished"] and first["steps"] == 3 and first["export"] is None
    assert second["resumed_from_step"] == 3 and second["steps_this_run"] == 3 and second["finished"]
    whole, split = losses(runs["whole"]), losses(runs["split"])
    assert sorted(whole) == sorted(split) == [1, 2, 3, 4, 5, 6]
    for step in whole:
        assert split[step] == pytest.approx(whole[step], rel=1e-6, abs=1e-7), step
    assert second["seen"] == runs["whole_done"]["seen"]


def test_resumed_export_equals_uninterrupted_export(runs):
    for part in ("vision/model.safetensors", "llm/model.safetensors", "projector.safetensors"):
        a, b = load_file(runs["whole"] / "export" / part), load_file(runs["split"] / "export" / part)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{part}: {key}")


def test_checkpoints_are_complete_pruned_and_free_of_pickle(runs):
    root = runs["split"] / "checkpoints"
    names = sorted(p.name for p in root.iterdir())
    assert names == ["step_00000004", "step_00000006"], names  # keep_checkpoints 2; the stale .tmp is gone
    checkpoint = root / "step_00000006"
    assert (checkpoint / ".metadata.json").is_file() and not (checkpoint / ".metadata").exists()
    index = json.loads((checkpoint / ".metadata.json").read_text())
    assert any(k.startswith("model.llm.") for k in index["state_dict"])
    assert any(k.startswith("optim_state.") for k in index["state_dict"])
    assert all(entry["kind"] == "tensor" for entry in index["state_dict"].values()), "non-tensor state belongs in JSON"
    trainer = json.loads((checkpoint / "trainer.json").read_text())
    assert trainer["step"] == 6 and trainer["world_size"] == 1 and trainer["scheduler"]["last_epoch"] == 6
    rank = json.loads((checkpoint / "rank_00000.json").read_text())
    assert set(rank) == {"rank", "loader", "rng"} and rank["loader"]["split"]["world_size"] == 1


def test_dcp_reader_refuses_a_checkpoint_without_its_json_index(runs, tmp_path):
    from loom_compute.errors import LoomComputeError
    from loom_compute.train.dcp_json import JsonMetadataReader

    copy = tmp_path / "ckpt"
    shutil.copytree(runs["split"] / "checkpoints" / "step_00000006", copy)
    # A non-tensor entry would be read by DCP with torch.load(weights_only=False): refused up front.
    index = json.loads((copy / ".metadata.json").read_text())
    index["state_dict"][next(iter(index["state_dict"]))]["kind"] = "bytes"
    (copy / ".metadata.json").write_text(json.dumps(index))
    with pytest.raises(LoomComputeError, match="holds tensors only"):
        JsonMetadataReader(str(copy)).read_metadata()
    (copy / ".metadata.json").write_text("{not json")
    with pytest.raises(LoomComputeError, match=r"\.metadata\.json: not valid JSON"):
        JsonMetadataReader(str(copy)).read_metadata()
    (copy / ".metadata.json").unlink()
    with pytest.raises(LoomComputeError, match="not a complete Loom checkpoint"):
        JsonMetadataReader(str(copy)).read_metadata()


def test_fresh_run_refuses_to_overwrite_checkpoints(runs):
    done = run_train(runs["whole"] / "config.json")
    assert done.returncode == 2
    assert "--resume" in done.stderr
    assert sorted(p.name for p in (runs["whole"] / "checkpoints").iterdir()) == ["step_00000004", "step_00000006"]


def test_export_parts_load_with_stock_transformers_classes(runs):
    from transformers import Qwen2ForCausalLM, SiglipVisionModel

    export = runs["whole"] / "export"
    llm, info = Qwen2ForCausalLM.from_pretrained(export / "llm", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert llm.lm_head.weight.data_ptr() == llm.model.embed_tokens.weight.data_ptr()  # tied again on load
    vision, info = SiglipVisionModel.from_pretrained(export / "vision", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    meta = json.loads((export / "loom.json").read_text())
    assert meta["format"] == "loom-export" and meta["stage"] == "pretrain" and meta["step"] == 6 and meta["image_grid"] == 4
    assert (export / "tokenizer.json").is_file()


def test_pretrain_export_starts_sft_at_the_larger_grid(runs, tiny_packs, tmp_path):
    from loom_compute.config import parse_run_config
    from loom_compute.model.builder import build_model

    export = runs["whole"] / "export"
    sft = tiny_config("sft", "sft", tiny_packs["sft"], max_steps=2, checkpoint_every=10)
    sft["model"]["init_from"] = str(export)
    model = build_model(parse_run_config(sft))
    assert model.image_grid == 8
    projector = load_file(export / "projector.safetensors")
    for key, value in model.projector.state_dict().items():
        torch.testing.assert_close(value, projector[key], rtol=0, atol=0)
    llm = load_file(export / "llm" / "model.safetensors")
    torch.testing.assert_close(model.llm.model.embed_tokens.weight, llm["model.embed_tokens.weight"], rtol=0, atol=0)

    started = done_event(run_train(write_run(tmp_path, sft)))
    scratch = tiny_config("sft", "scratch", tiny_packs["sft"], max_steps=2, checkpoint_every=10)
    fresh = done_event(run_train(write_run(tmp_path, scratch)))
    assert started["finished"] and fresh["finished"]
    # Pre-trained weights already know the caption language: SFT starts well below a random model.
    assert losses(tmp_path / "sft")[1] < losses(tmp_path / "scratch")[1] - 0.5


def test_init_from_a_directory_that_is_no_export_is_a_clear_error(tmp_path, tiny_packs):
    from loom_compute.config import parse_run_config
    from loom_compute.errors import LoomComputeError
    from loom_compute.model.builder import build_model

    config = tiny_config("sft", "bad", tiny_packs["sft"])
    config["model"]["init_from"] = str(tmp_path)
    with pytest.raises(LoomComputeError, match="model.init_from .* is it a Loom export"):
        build_model(parse_run_config(config))


# Resuming is the verb's (the `runs` fixture: stopped after 3 steps, resumed, same losses and export)
# and the CLI's --resume rules and command are test/ts/cli/train.test.ts's (dry runs); a real CLI run
# to the end is `loom demo`'s (test/ts/demo). Here: the CLI hands --stop-after-steps to a real worker
# and reports the stopped run from the worker's own done event.
def test_loom_train_cli_runs_the_worker_and_reports_a_stopped_run(tiny_packs, tmp_path):
    from fixtures.node import LOOM, run_node

    common = ["--preset", "tiny", "--name", "cli", "--runs-dir", str(tmp_path), "--packed", str(tiny_packs["pretrain"]),
              "--set", "data.seq_len=256", "--set", "train.global_batch=4", "--set", "train.micro_batch=2", "--quiet", "--json"]
    first = json.loads(run_node(str(LOOM), "train", *common, "--set", "train.max_steps=3", "--stop-after-steps", "2", timeout=300))
    assert first["steps"] == 2 and not first["finished"] and "loom_compute train --config" in first["command"]
    assert first["resumed_from_step"] is None and first["export"] is None
    assert (tmp_path / "cli" / "checkpoints" / "step_00000002" / "trainer.json").is_file()
