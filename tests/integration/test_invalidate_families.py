"""``invalidate`` works for every task family: after it, the task (or, for a source file, what reads it) runs again.

It used to be a silent no-op for MonthlyRun, whose output path ignored the mark: ``invalidate`` said the task
would run again and the next run ran nothing. The families are taken from the code (every PipelineTask
subclass the graph is made of), so a new family is covered without editing this test.
"""

from __future__ import annotations

import datetime as dt

import luigi
from luigi.task import flatten
from luigi.task_register import Register

import tasks
from tasks import MonthlyRun, TrainingPipeline
from tasks.base import PipelineTask
from tasks.ops.inspect import invalidate

APRIL = dt.date(2021, 4, 1)
#: downstream first: invalidating a task changes only it and what depends on it, so each is complete before
ORDER = (
    "MonthlyRun",
    "MonitoringReport",
    "BatchPredictions",
    "RegisteredModel",
    "EvaluationReport",
    "FinalModel",
    "ModelSelection",
    "CandidateScore",
    "ModelInputTable",
    "ValidatedTrips",
    "TripData",
)


def graph(roots: list[luigi.Task]) -> dict[str, luigi.Task]:
    """One task of each family of the graph under ``roots`` (the first one met, parents first)."""
    found: dict[str, luigi.Task] = {}
    stack = list(roots)
    while stack:
        task = stack.pop(0)
        found.setdefault(task.task_family, task)
        stack.extend(flatten(task.requires()))
    return found


def families_in_code() -> set[str]:
    return {
        obj.__name__
        for obj in vars(tasks).values()
        if isinstance(obj, type) and issubclass(obj, PipelineTask) and obj is not PipelineTask
    }


def recreate(task: luigi.Task) -> luigi.Task:
    Register.clear_instance_cache()
    return type(task).from_str_params(task.to_str_params())


def test_invalidating_any_family_makes_it_or_its_readers_run_again(pipeline_env, run_tasks) -> None:
    assert run_tasks([TrainingPipeline()]).ok
    assert run_tasks([MonthlyRun(month=APRIL)]).ok
    tasks_by_family = {k: v for k, v in graph([TrainingPipeline(), MonthlyRun(month=APRIL)]).items()}
    pipeline_families = {f for f, t in tasks_by_family.items() if isinstance(t, PipelineTask)}
    assert pipeline_families == families_in_code() == set(ORDER)

    for family in ORDER:
        task = recreate(tasks_by_family[family])
        assert task.complete(), family
        invalidate(task)
        again = recreate(task)
        if family == "TripData":  # a source file: its content is what it is; what reads it runs again
            readers = [t for t in graph([TrainingPipeline()]).values() if t.task_family == "ValidatedTrips"]
            assert readers and not all(recreate(r).complete() for r in readers)
        else:
            assert not again.complete(), f"invalidate {family} changed nothing: the next run would not redo it"

    rerun = run_tasks([TrainingPipeline(), MonthlyRun(month=APRIL)])
    assert rerun.ok
    assert set(ORDER) - {"TripData"} <= rerun.families()
