"""Fail a task, rerun, and prove that only the failed part ran again; interrupted writes leave nothing."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tasks.data
import tasks.evaluation
import tasks.training
import tripduration.io.parquet
import tripduration.training.steps
from tasks import TrainingPipeline, ValidatedTrips
from tripduration.io.local import is_temporary
from tripduration.registry.store import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
DOWNSTREAM_OF_SEARCH = {"ModelSelection", "FinalModel", "EvaluationReport", "RegisteredModel", "TrainingPipeline"}


def leftovers(env) -> list[Path]:
    return [p for p in env.files() if is_temporary(p.name)]


def test_failed_candidate_is_the_only_training_rerun(pipeline_env, run_tasks, monkeypatch):
    real = tripduration.training.steps.score_candidate  # called by the node CandidateScore runs

    def flaky(spec, train, validation, *args):
        if spec.name == "ridge_a1":
            raise RuntimeError("simulated crash while training ridge_a1")
        return real(spec, train, validation, *args)

    monkeypatch.setattr(tripduration.training.steps, "score_candidate", flaky)
    first = run_tasks([TrainingPipeline()])
    assert not first.ok
    assert [f for f in first.failed] == [
        "CandidateScore(color=green, train_months=2021-01, val_month=2021-02, candidate=ridge_a1)"
    ]
    assert not any(r.startswith(("ModelSelection", "EvaluationReport", "RegisteredModel")) for r in first.ran)
    assert leftovers(pipeline_env) == []

    monkeypatch.setattr(tripduration.training.steps, "score_candidate", real)
    second = run_tasks([TrainingPipeline()])
    assert second.ok, second
    candidates = [r for r in second.ran if r.startswith("CandidateScore")]
    assert candidates == ["CandidateScore(color=green, train_months=2021-01, val_month=2021-02, candidate=ridge_a1)"]
    assert not second.families() & {"ValidatedTrips", "ModelInputTable"}
    # the baseline refit does not wait for the search, so it already ran during the first run
    assert "FinalModel(color=green, train_months=2021-01, val_month=2021-02, role=baseline)" in first.ran
    assert second.families() == {"CandidateScore"} | DOWNSTREAM_OF_SEARCH
    assert "FinalModel(color=green, train_months=2021-01, val_month=2021-02, role=baseline)" not in second.ran


@pytest.mark.slow
def test_failed_evaluation_reruns_only_evaluation_and_registration(pipeline_env, run_tasks, monkeypatch):
    real = tasks.evaluation.evaluate_models

    def broken(*args, **kwargs):
        raise MemoryError("simulated out-of-memory while plotting")

    monkeypatch.setattr(tasks.evaluation, "evaluate_models", broken)
    first = run_tasks([TrainingPipeline()])
    assert not first.ok and first.failed[0].startswith("EvaluationReport")
    assert leftovers(pipeline_env) == []
    monkeypatch.setattr(tasks.evaluation, "evaluate_models", real)
    second = run_tasks([TrainingPipeline()])
    assert second.ok
    assert second.families() == {"EvaluationReport", "RegisteredModel", "TrainingPipeline"}


def test_write_interrupted_midway_leaves_no_output(pipeline_env, run_tasks, monkeypatch):
    original = tripduration.io.parquet.write_parquet  # what every parquet output is written with (targets.dump)

    def half_written(frame, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 partial bytes, then the process dies")
        raise KeyboardInterrupt("simulated kill in the middle of a write")

    task = ValidatedTrips(month=dt.date(2021, 1, 1))
    monkeypatch.setattr(tripduration.io.parquet, "write_parquet", half_written)
    with pytest.raises(KeyboardInterrupt):
        task.run()
    assert not task.complete()
    assert not any(Path(t.path).exists() for t in task.output().values())
    assert leftovers(pipeline_env) == []

    monkeypatch.setattr(tripduration.io.parquet, "write_parquet", original)
    assert run_tasks([ValidatedTrips(month=dt.date(2021, 1, 1))]).ok


def test_partial_multi_file_output_is_not_complete_and_is_rewritten(pipeline_env, run_tasks):
    task = ValidatedTrips(month=dt.date(2021, 2, 1))
    assert run_tasks([task]).ok
    summary = Path(task.output()["summary.json"].path)
    summary.unlink()  # as if the run died after writing kept/rejected but before the summary
    assert not task.complete()
    again = run_tasks([ValidatedTrips(month=dt.date(2021, 2, 1))])
    assert again.ok and again.families() == {"ValidatedTrips"}
    assert summary.exists()


def test_crash_between_registration_and_promotion_is_completed_by_rerun(pipeline_env, run_tasks, monkeypatch):
    calls = {"n": 0}
    real = ModelRegistry.set_production

    def crash(self, version, reason, action="promote", **_):
        calls["n"] += 1
        raise OSError("simulated crash before production.json was written")

    monkeypatch.setattr(ModelRegistry, "set_production", crash)
    first = run_tasks([TrainingPipeline()])
    registry = ModelRegistry(pipeline_env.registry_dir, "green-trip-duration")
    # deterministic: fixed samples and seeds, no production model yet, so the gate promotes (never skipped)
    assert calls["n"] == 1, "the first registration must reach the promotion to interrupt"
    assert not first.ok and registry.versions() == ["v0001"] and registry.production() is None
    monkeypatch.setattr(ModelRegistry, "set_production", real)
    second = run_tasks([TrainingPipeline()])
    assert second.ok
    assert registry.versions() == ["v0001"], "the rerun must reuse the version, not register a duplicate"
    assert registry.production()["version"] == "v0001"


def test_sigkill_mid_run_then_rerun_keeps_finished_work(pipeline_env):
    """Kill the real CLI with SIGKILL once some candidates are scored; the rerun keeps their outputs."""
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "pipeline.py")]
    proc = subprocess.Popen(
        cmd,
        cwd=pipeline_env.work_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    scores_dir = pipeline_env.work_dir / "CandidateScore"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(scores_dir.glob("*/score.json"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in scores_dir.glob("*/score.json")}
    assert done_before, "the pipeline was killed before any candidate finished"
    assert not (pipeline_env.registry_dir / "green-trip-duration" / "production.json").exists()

    rerun = subprocess.run(cmd, cwd=pipeline_env.work_dir.parent, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in done_before} == done_before
    assert len(list(scores_dir.glob("*/score.json"))) == 3
    assert (pipeline_env.registry_dir / "green-trip-duration" / "versions" / "v0001" / "model.joblib").exists()
