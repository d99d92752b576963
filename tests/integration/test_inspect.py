"""``status`` says what would run and why, without running; ``invalidate`` forces a task and everything
downstream of it to run again, and nothing else."""

from __future__ import annotations

import datetime as dt

import pytest

from tasks import CandidateScore, ModelSelection, RegisteredModel, TrainingPipeline, ValidatedTrips
from tasks.ops.inspect import format_status, invalidate, job_status
from tripduration.registry.store import ModelRegistry


def reasons(states) -> dict[str, str]:
    return {s.task_id: s.reason for s in states}


def test_status_before_and_after_a_run_and_after_a_config_change(pipeline_env, run_tasks):
    before = job_status([TrainingPipeline()])
    assert not any(s.complete for s in before if s.family != "TripData" and s.family != "ZoneLookup")
    assert {s.reason for s in before if s.family == "CandidateScore"} == {"no output yet"}
    assert pipeline_env.work_dir.exists() is False or not any(pipeline_env.work_dir.glob("[!.]*"))  # wrote nothing
    assert run_tasks([TrainingPipeline()]).ok

    after = job_status([TrainingPipeline()])
    assert [s.complete for s in after] == [True]  # a complete root: luigi looks no further
    assert "nothing to run" in format_status(after)

    pipeline_env.config.set("validation", "max_distance_miles", "50")
    changed = job_status([TrainingPipeline()])
    validated = [s for s in changed if s.family == "ValidatedTrips"]
    assert len(validated) == 3
    assert all(s.reason.startswith("changed fingerprint") for s in validated)
    assert "would run" in format_status(changed)


def test_invalidate_reruns_the_task_and_its_downstream_only(pipeline_env, run_tasks):
    assert run_tasks([TrainingPipeline()]).ok
    score = CandidateScore(train_months=(dt.date(2021, 1, 1),), val_month=dt.date(2021, 2, 1), candidate="ridge_a1")
    assert score.complete()
    invalidate(score)
    assert any(s.reason.startswith("invalidated") for s in job_status([TrainingPipeline()]))

    rerun = run_tasks([TrainingPipeline()])
    assert rerun.ok
    ran = {r.split("(")[0] for r in rerun.ran}
    # the candidate and everything downstream of it ran again ...
    assert ran == {
        "CandidateScore",
        "ModelSelection",
        "FinalModel",
        "EvaluationReport",
        "RegisteredModel",
        "TrainingPipeline",
    }
    assert [r for r in rerun.ran if r.startswith("CandidateScore")] == [str(score)]
    assert sum(r.startswith("FinalModel") for r in rerun.ran) == 1  # the best model's refit, not the baseline
    # ... and nothing upstream or beside it
    assert not {"ValidatedTrips", "ModelInputTable"} & ran
    assert ModelSelection(train_months=(dt.date(2021, 1, 1),), val_month=dt.date(2021, 2, 1)).complete()
    # the same data gives the byte-identical model: nothing new is registered, and the registration says so
    assert ModelRegistry(pipeline_env.registry_dir, "green-trip-duration").versions() == ["v0001"]
    registration = RegisteredModel().output().load()
    assert registration["identical"] and registration["version"] == "v0001"
    assert run_tasks([TrainingPipeline()]).ran == []  # the mark is kept: no further reruns


@pytest.mark.slow
def test_invalidating_a_month_reaches_only_what_reads_it(pipeline_env, run_tasks):
    march = ValidatedTrips(month=dt.date(2021, 3, 1))
    assert run_tasks([TrainingPipeline()]).ok
    invalidate(march)
    rerun = run_tasks([TrainingPipeline()])
    assert {r.split("(")[0] for r in rerun.ran} == {
        "ValidatedTrips",
        "ModelInputTable",
        "EvaluationReport",
        "RegisteredModel",
        "TrainingPipeline",
    }
    assert all("2021-03" in r for r in rerun.ran if r.startswith(("ValidatedTrips", "ModelInputTable")))
