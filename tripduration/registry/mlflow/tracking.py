"""A training job in MLflow as it runs: one parent run, a nested run per candidate, the evaluation report and the
registered model on the parent, the aliases following the registry.

The luigi side (``tasks/tracking.py``) calls these when a task has written its outputs. Everything is found again
before it is made, so a call made twice, or a rerun that runs a task again, adds nothing:

- the parent run by the job's registration key (tag ``tripduration.job``, :class:`~.mapping.TrainingJob`);
- a candidate's nested run by its parent and its task id (tag ``tripduration.task``); one left unfinished by a
  crash is made again;
- the evaluation by a tag on the parent naming the evaluation task;
- the registered version by :func:`~.client.mirror_version`, the code the export uses: the model is logged on
  the parent run (signature, input example), which becomes the version's run (``registry_version``), and one
  MLflow model version is made from it; ``export-mlflow`` later finds it instead of making another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tripduration.registry.mlflow import mapping as m
from tripduration.registry.mlflow.client import (
    MlflowExportError,
    Session,
    log_batch,
    mirror_version,
    search_runs,
    session,
    sync_aliases,
)
from tripduration.registry.store import ModelRegistry


def log_candidate(uri: str, registry: ModelRegistry, job: m.TrainingJob, task_id: str, score: Mapping[str, Any]) -> str:
    """A candidate's nested run under the job's parent run (``score``: its ``score.json``); its run id."""
    with session(uri, registry) as s:
        return _candidate(s, _parent(s, job), task_id, score)


def log_evaluation(uri: str, registry: ModelRegistry, job: m.TrainingJob, task_id: str, report_dir: Path) -> None:
    """The evaluation report (plots, ``report.html``, ``metrics.json``) and its metrics on the parent run."""
    with session(uri, registry) as s:
        _evaluation(s, _parent(s, job), task_id, report_dir)


def log_job(
    uri: str,
    registry: ModelRegistry,
    job: m.TrainingJob,
    registration: Mapping[str, Any],
    candidates: Sequence[tuple[str, Mapping[str, Any]]] = (),
    evaluation: tuple[str, Path] | None = None,
) -> dict[str, Any]:
    """The job's registration (its ``registration.json``): the version's params, metrics, tags, artifacts and
    model on the parent run, its MLflow model version, the aliases; first whatever of the job MLflow does not
    hold yet (``candidates``: (task id, score) of each, ``evaluation``: (task id, report folder)), e.g. tasks
    that completed before tracking was switched on. Returns what it did."""
    with session(uri, registry) as s:
        parent = _parent(s, job)
        for task_id, score in candidates:
            _candidate(s, parent, task_id, score)
        if evaluation is not None:
            _evaluation(s, parent, *evaluation)
        version = str(registration["version"])
        done: dict[str, Any] = {"parent_run": parent.info.run_id, "version": version, "model_version": None}
        if registration.get("identical"):  # nothing registered: the same model and data as an existing version
            s.client.set_tag(parent.info.run_id, m.TAG_IDENTICAL, version)
        else:
            mirrored = mirror_version(s, registry, version, into_run=parent.info.run_id)
            if mirrored.error is not None:
                raise MlflowExportError(f"{version}: {mirrored.error}")
            done.update(version_run=mirrored.run_id, model_version=mirrored.model_version)
        if s.client.get_run(parent.info.run_id).info.status != "FINISHED":
            s.client.set_terminated(parent.info.run_id, status="FINISHED")
        done["aliases"] = sync_aliases(s, registry)
        return done


def follow_registry(uri: str, registry: ModelRegistry) -> dict[str, dict[str, Any]]:
    """Move the aliases to the registry's production and challenger (after a rollback); what each did."""
    with session(uri, registry) as s:
        return sync_aliases(s, registry)


def _parent(s: Session, job: m.TrainingJob) -> Any:
    """The job's parent run, found by its registration key or made (running)."""
    found = search_runs(s, **{m.TAG_JOB: job.key})
    if found:
        return found[0]
    run = s.client.create_run(s.experiment_id, tags=job.tags(), run_name=job.run_name())
    log_batch(s, run.info.run_id, job.params(), {}, {})
    return run


def _candidate(s: Session, parent: Any, task_id: str, score: Mapping[str, Any]) -> str:
    runs = search_runs(s, **{m.TAG_PARENT: parent.info.run_id, m.TAG_TASK: task_id})
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if finished:
        return str(finished[0].info.run_id)
    for run in runs:  # made by a call that crashed half-way: make it again
        s.client.delete_run(run.info.run_id)
    tags = {m.TAG_PARENT: parent.info.run_id, m.TAG_TASK: task_id}
    run_id = s.client.create_run(s.experiment_id, tags=tags, run_name=str(score["candidate"])).info.run_id
    log_batch(s, run_id, m.candidate_params(score), {}, m.candidate_metrics(score))
    s.client.set_terminated(run_id, status="FINISHED")
    return str(run_id)


def _evaluation(s: Session, parent: Any, task_id: str, report_dir: Path) -> None:
    run_id = parent.info.run_id
    if s.client.get_run(run_id).data.tags.get(m.TAG_EVALUATION) == task_id:
        return
    report = json.loads((report_dir / "metrics.json").read_text())
    log_batch(s, run_id, {}, {}, m.evaluation_metrics(report))
    s.client.log_artifacts(run_id, str(report_dir), "report")
    s.client.set_tag(run_id, m.TAG_EVALUATION, task_id)
