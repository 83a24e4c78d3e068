"""convert/hf_config.both_versions: the keys transformers 4.4x reads written beside 5.x's, so a
config 5.x saves is not read by 4.4x with its defaults (rope_theta 10000 for Qwen2.5's 1e6)."""

from __future__ import annotations

from transformers import Qwen2Config

from loom_compute.convert.hf_config import both_versions, rope_theta_of


def test_rope_theta_is_written_beside_rope_parameters():
    saved = Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, rope_theta=1_000_000.0).to_dict()
    out = both_versions(saved)
    assert out["rope_theta"] == 1_000_000.0 == rope_theta_of(saved)
    assert out["rope_scaling"] is None and out["rope_parameters"] == saved["rope_parameters"]
    # 5.x reads its own spelling back unchanged.
    assert Qwen2Config(**{k: v for k, v in out.items() if k != "model_type"}).rope_parameters["rope_theta"] == 1_000_000.0


def test_scaled_rope_keeps_its_scaling_for_4x():
    config = {"rope_parameters": {"rope_theta": 1e6, "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
    out = both_versions(config)
    assert out["rope_theta"] == 1e6
    assert out["rope_scaling"] == {"rope_type": "yarn", "type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


def test_dtype_has_both_spellings():
    assert both_versions({"dtype": "bfloat16"})["torch_dtype"] == "bfloat16"
    assert both_versions({"torch_dtype": "float32"})["dtype"] == "float32"
