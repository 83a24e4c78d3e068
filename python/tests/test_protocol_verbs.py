"""The real verbs of `python -m loom_compute`: doctor and validate-config."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path

import numpy
import pytest
import torch

from loom_compute.__main__ import VERBS
from fixtures.protocol_helpers import run_module, worker_env


def test_help_lists_every_verb() -> None:
    run = run_module("loom_compute", "--help")
    assert run.returncode == 0
    for name, verb in VERBS.items():
        assert name in run.stdout and verb.help in run.stdout


def test_unknown_verb_names_the_real_verbs() -> None:
    run = run_module("loom_compute", "trian")
    assert run.returncode == 2
    assert run.events[0]["msg"] == f"unknown verb 'trian'; verbs: {', '.join(VERBS)}"


@pytest.fixture(scope="module")
def doctor_report() -> dict:
    run = run_module("loom_compute", "doctor")
    assert run.returncode == 0, run.stderr
    progress = run.only("progress")
    assert progress and progress[-1]["done"] == progress[-1]["total"]
    assert run.events[-1]["event"] == "done"
    return run.events[-1]


def test_doctor_reports_what_this_environment_has(doctor_report: dict) -> None:
    report = doctor_report
    assert report["ok"] is True and report["problems"] == []
    assert report["python"]["version"] == platform.python_version()
    assert report["cpu"]["count"] == os.cpu_count()
    t = report["torch"]
    assert t["version"] == torch.__version__
    assert t["cuda_available"] == torch.cuda.is_available()
    assert t["device_count"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert len(t["devices"]) == t["device_count"]
    assert t["distributed"]["gloo"] == torch.distributed.is_gloo_available()
    assert t["distributed"]["nccl"] == torch.distributed.is_nccl_available()
    assert isinstance(t["bf16"]["cpu"], bool)
    libraries = report["libraries"]
    assert libraries["numpy"]["version"] == numpy.__version__
    assert "webdataset" not in libraries  # a test-only dependency (the `test` extra)
    for name in ("transformers", "tokenizers", "safetensors", "pyarrow", "jsonschema"):
        assert libraries[name] == {"ok": True, "version": importlib.metadata.version(name)}
    assert report["loom_compute"]["version"] == importlib.metadata.version("loom-compute")


def test_doctor_lists_a_broken_library_as_a_problem(tmp_path: Path) -> None:
    # A module that shadows pyarrow and fails to import, as a broken install would.
    (tmp_path / "pyarrow").mkdir()
    (tmp_path / "pyarrow" / "__init__.py").write_text("raise ImportError('libarrow.so.2600: cannot open shared object file')\n")
    env = worker_env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    run = run_module("loom_compute", "doctor", env=env)
    assert run.returncode == 0, run.stderr
    report = run.events[-1]
    assert report["ok"] is False
    assert report["libraries"]["pyarrow"] == {
        "ok": False,
        "version": None,
        "error": "ImportError: libarrow.so.2600: cannot open shared object file",
    }
    assert report["problems"] == ["pyarrow cannot be imported (ImportError: libarrow.so.2600: cannot open shared object file)"]


def test_validate_config_requires_a_config() -> None:
    run = run_module("loom_compute", "validate-config")
    assert run.returncode == 2
    assert "--config" in run.events[0]["msg"]


def test_validate_config_reports_an_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    run = run_module("loom_compute", "validate-config", "--config", str(missing))
    assert run.returncode == 1
    [event] = run.events
    assert event["event"] == "error" and str(missing) in event["msg"]
    assert "Traceback" not in run.stderr


def test_validate_config_names_the_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"version": 1, "name": "x", "preset": "huge", "stage": "pretrain"}))
    run = run_module("loom_compute", "validate-config", "--config", str(path))
    assert run.returncode == 1
    [event] = run.events
    assert str(path) in event["msg"] and "preset" in event["msg"]
