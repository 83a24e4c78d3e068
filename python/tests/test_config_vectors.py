"""The Python side of the shared config vectors: same verdicts as the TypeScript schema."""

import json
import subprocess
from pathlib import Path

import pytest

from fixtures.node import BUILT_CLI, require_built
from loom_compute.config import ConfigError, config_error_paths, load_run_config, validate_run_config

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "vectors" / "config"


def _vectors(kind):
    files = sorted((VECTORS / kind).glob("*.json"))
    assert files, f"no {kind} config vectors in {VECTORS}"
    return [pytest.param(json.loads(f.read_text()), id=f.stem) for f in files]


@pytest.mark.parametrize("vector", _vectors("valid"))
def test_valid_vectors_validate(vector):
    assert config_error_paths(vector["config"]) == []
    assert validate_run_config(vector["config"]) is vector["config"]


@pytest.mark.parametrize("vector", _vectors("invalid"))
def test_invalid_vectors_are_rejected_at_the_named_key(vector):
    key = vector["error_at"]
    paths = config_error_paths(vector["config"])
    # A missing key is reported at its parent by JSON Schema and at the key itself by zod: both count.
    assert any(key == "" or p == key or p.startswith(key + ".") for p in paths), paths
    with pytest.raises(ConfigError, match="invalid run config"):
        validate_run_config(vector["config"], "vector")


def test_load_run_config_names_the_file_on_bad_json_and_missing_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json is not valid JSON"):
        load_run_config(broken)
    with pytest.raises(ConfigError, match="cannot read run config .*missing.json"):
        load_run_config(tmp_path / "missing.json")


@pytest.mark.parametrize("preset", ["tiny", "open-qwen2vl-2b"])
@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_configs_resolved_by_the_cli_validate_in_python(tmp_path, preset, stage):
    require_built(BUILT_CLI)
    out = tmp_path / "config.json"
    subprocess.run(
        ["node", str(ROOT / "bin" / "loom.js"), "config", "init", "--preset", preset, "--stage", stage, "--name", "py", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    config = load_run_config(out)
    assert (config.preset, config.stage) == (preset, stage)
