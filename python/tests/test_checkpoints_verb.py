"""The `checkpoints` verb: the complete-checkpoint rule answered for the CLI, without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fixtures.protocol_helpers import TESTS_DIR, WorkerRun, run_module, worker_env

from loom_compute.checkpoints import checkpoint_dir, latest_checkpoint, list_checkpoints

# Runs the verb as `python -m loom_compute` does and reports, on stderr after it exits, whether
# torch was imported (the protocol points stdout at stderr, so this line cannot mix into events).
HARNESS = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write("torch imported: %s\\n" % ("torch" in sys.modules)))
sys.argv = ["loom_compute", *sys.argv[1:]]
runpy.run_module("loom_compute", run_name="__main__", alter_sys=True)
"""


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "r"
    for step in (50, 100, 150):
        checkpoint_dir(run, step).mkdir(parents=True)
        (checkpoint_dir(run, step) / "trainer.json").write_text("{}")
    # Not complete: a save cut short, a directory without trainer.json, a misnamed one, a file.
    (run / "checkpoints" / "step_00000200.tmp").mkdir()
    (run / "checkpoints" / "step_00000200.tmp" / "trainer.json").write_text("{}")
    (run / "checkpoints" / "step_00000250").mkdir()
    (run / "checkpoints" / "step_300").mkdir()
    (run / "checkpoints" / "step_00000350").write_text("")
    return run


def test_the_rule_lists_complete_checkpoints_oldest_first(tmp_path):
    run = _run_dir(tmp_path)
    assert list_checkpoints(run) == [(s, checkpoint_dir(run, s)) for s in (50, 100, 150)]
    assert latest_checkpoint(run) == checkpoint_dir(run, 150)
    assert list_checkpoints(tmp_path / "nowhere") == [] and latest_checkpoint(tmp_path / "nowhere") is None


def test_the_verb_reports_them_without_importing_torch(tmp_path):
    run = _run_dir(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", HARNESS, "checkpoints", "--run-dir", str(run)],
        cwd=TESTS_DIR, env=worker_env(), capture_output=True, text=True, timeout=60,
    )
    result = WorkerRun(proc.returncode, proc.stdout, proc.stderr)
    assert result.returncode == 0, result.stderr
    (done,) = result.only("done")
    resolved = run.resolve()
    paths = [str(checkpoint_dir(resolved, s)) for s in (50, 100, 150)]
    assert {k: v for k, v in done.items() if k != "event"} == {
        "run_dir": str(resolved),
        "checkpoints": [{"step": s, "path": p} for s, p in zip((50, 100, 150), paths)],
        "latest": paths[-1],
    }
    assert "torch imported: False" in result.stderr


def test_the_harness_sees_a_verb_that_imports_torch(tmp_path):
    config = json.loads((TESTS_DIR.parents[1] / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text())["config"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-c", HARNESS, "read-packed", "--config", str(tmp_path / "config.json"), "--packed", str(tmp_path)],
        cwd=TESTS_DIR, env=worker_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1 and "no packed shards" in proc.stdout
    assert "torch imported: True" in proc.stderr


def test_a_run_without_checkpoints_has_no_latest(tmp_path):
    run = run_module("loom_compute", "checkpoints", "--run-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (done,) = run.only("done")
    assert done["checkpoints"] == [] and done["latest"] is None and done["run_dir"] == str(tmp_path.resolve())
