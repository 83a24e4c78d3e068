"""run_verb and the dispatch, through real worker processes (fixtures/fake_worker.py):
exit codes, error mapping, rank-0-only events, a clean stdout."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from fixtures.protocol_helpers import TESTS_DIR, run_fixture, strict_json, worker_env


def test_success_streams_events_and_ends_with_done() -> None:
    run = run_fixture("progress", "--steps", "4")
    assert run.returncode == 0, run.stderr
    assert [e["done"] for e in run.only("progress")] == [1, 2, 3, 4]
    assert all(e["total"] == 4 for e in run.only("progress"))
    assert [e["step"] for e in run.only("metric")] == [1, 2, 3, 4]
    assert run.only("log") == [{"event": "log", "level": "info", "msg": "finished the steps"}]
    assert run.events[-1] == {"event": "done", "steps": 4}
    assert "a human log line" in run.stderr  # logging goes to stderr, not to the event stream


def test_a_known_error_becomes_an_error_event_without_traceback() -> None:
    run = run_fixture("fail", "--message", "shard 00000003.tar: member x.json is not JSON")
    assert run.returncode == 1
    assert run.events == [
        {"event": "error", "msg": "shard 00000003.tar: member x.json is not JSON", "file": "data/x.tar", "key": "sample-7"}
    ]
    assert "Traceback" not in run.stderr


def test_an_unexpected_exception_carries_its_type_and_traceback() -> None:
    run = run_fixture("bug")
    assert run.returncode == 1
    [event] = run.events
    assert event["event"] == "error"
    assert event["msg"] == "ValueError: boom"
    assert event["type"] == "ValueError"
    assert 'raise ValueError("boom")' in event["traceback"]
    assert "Traceback (most recent call last)" in run.stderr and "ValueError: boom" in run.stderr


def test_sys_exit_inside_a_verb_keeps_its_status() -> None:
    run = run_fixture("exit-status", "--code", "5")
    assert run.returncode == 5
    assert run.events == [{"event": "error", "msg": "exited with status 5", "exit_code": 5}]


def test_unknown_verb_lists_the_verbs_and_exits_2() -> None:
    run = run_fixture("no-such-verb")
    assert run.returncode == 2
    [event] = run.events
    assert event["event"] == "error"
    assert "no-such-verb" in event["msg"] and "progress" in event["msg"] and "sleep" in event["msg"]
    assert "progress" in event["verbs"]


def test_bad_verb_arguments_exit_2_with_usage() -> None:
    run = run_fixture("progress", "--steps", "many")
    assert run.returncode == 2
    [event] = run.events
    assert "--steps" in event["msg"] and "invalid int value" in event["msg"]
    assert event["usage"].startswith("usage:")


def test_no_verb_prints_usage_and_exits_2() -> None:
    run = run_fixture()
    assert run.returncode == 2
    assert "no verb given" in run.events[0]["msg"]
    assert "verbs:" in run.stderr


def test_help_lists_the_verbs_and_emits_nothing() -> None:
    run = run_fixture("--help")
    assert run.returncode == 0
    assert "verbs:" in run.stdout and "crash" in run.stdout and "\"event\"" not in run.stdout


@pytest.mark.parametrize("rank", ["1", "5"])
def test_other_ranks_emit_nothing_but_keep_exit_codes(rank: str) -> None:
    ok = run_fixture("progress", env=worker_env(RANK=rank, WORLD_SIZE="8"))
    assert ok.returncode == 0 and ok.stdout == ""
    assert f"[rank {rank}/8] INFO fixture: a human log line" in ok.stderr
    assert "finished the steps" in ok.stderr  # log() falls back to stderr off rank 0
    failed = run_fixture("bug", env=worker_env(RANK=rank, WORLD_SIZE="8"))
    assert failed.returncode == 1 and failed.stdout == ""
    assert f"[rank {rank}/8] loom_compute: failed: ValueError: boom" in failed.stderr  # the CLI looks for this line


def test_a_malformed_rank_is_a_clear_error() -> None:
    run = run_fixture("progress", env=worker_env(RANK="zero"))
    assert run.returncode == 2
    assert run.events == [{"event": "error", "msg": "environment variable RANK must be a non-negative integer, got 'zero'"}]


def test_log_level_filters_log_events() -> None:
    run = run_fixture("progress", env=worker_env(LOOM_LOG_LEVEL="warning"))
    assert run.returncode == 0
    assert run.only("log") == [] and "a human log line" not in run.stderr
    bad = run_fixture("progress", env=worker_env(LOOM_LOG_LEVEL="chatty"))
    assert bad.returncode == 2 and "LOOM_LOG_LEVEL" in bad.events[0]["msg"]


def test_stdout_holds_only_events_when_libraries_print() -> None:
    run = run_fixture("noise")
    assert run.returncode == 0, run.stderr
    assert run.events == [{"event": "done", "noisy": True}]
    for noise in (
        "a stray print from a library",
        "a write to the original sys.__stdout__",
        "a raw write to file descriptor 1",
        "a C library writing to stdout",
    ):
        assert noise in run.stderr and noise not in run.stdout


def test_non_finite_metrics_stay_valid_json() -> None:
    run = run_fixture("nan-metric")
    assert run.returncode == 0
    assert run.events == [{"event": "metric", "loss": "NaN", "grad_norm": "Infinity"}, {"event": "done", "finished": True}]


def _start_sleeper() -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fixtures.fake_worker", "sleep", "--seconds", "60"],
        cwd=TESTS_DIR,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN:
        # give the worker the default disposition a terminal would, however pytest was started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    first = strict_json(proc.stdout.readline())  # the verb is running once it reports
    assert first == {"event": "progress", "done": 0, "total": 1, "phase": "sleeping"}
    return proc


@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupts_report_and_exit_with_the_shell_convention(sig: signal.Signals, code: int, name: str) -> None:
    proc = _start_sleeper()
    started = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 20
    assert proc.returncode == code, stderr
    assert [strict_json(line) for line in stdout.splitlines()] == [{"event": "error", "msg": "interrupted", "signal": name}]


def test_a_second_interrupt_does_not_break_the_report() -> None:
    proc = _start_sleeper()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert strict_json(stdout.splitlines()[-1])["msg"] == "interrupted"
