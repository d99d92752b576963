"""MLflow follows every training run: luigi event handlers that log what a task wrote (``[mlflow] tracking_uri``).

No task's ``run()`` knows MLflow. When ``[mlflow] tracking_uri`` is set:

- a :class:`RegisteredModel` being scheduled (luigi's ``DEPENDENCY_DISCOVERED``) notes its training job in this
  process (task processes forked later inherit it): which candidates and which evaluation belong to it. Nothing
  is imported or logged then;
- a :class:`CandidateScore` that succeeded is logged as a nested run of each job it belongs to, with its
  params, validation metrics and fit time (its ``score.json``);
- an :class:`EvaluationReport` that succeeded puts its report, plots and metrics on the job's parent run;
- a :class:`RegisteredModel` that succeeded logs whatever of its job MLflow does not hold yet (tasks that
  completed earlier or elsewhere), then the version: its params, metrics, tags, the model with its signature and
  input example, one MLflow model version, the aliases moved to follow the registry.

What is logged: :mod:`tripduration.registry.mlflow.tracking`. Tracking never fails a task (its outputs are
written already): a failure is one warning line, and ``tripduration export-mlflow`` mirrors the registered
versions later. The handlers of one host take turns (a lock in the work directory), so two candidates finishing
together cannot make two parent runs. With ``tracking_uri`` empty the handlers return at once and nothing
imports mlflow.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import luigi

from tasks.evaluation import EvaluationReport
from tasks.registration import RegisteredModel
from tasks.settings import MlflowConfig
from tasks.targets import PROJECT_ROOT, open_registry, work_storage
from tasks.training import CandidateScore
from tripduration.data.months import format_month
from tripduration.registry.mlflow.mapping import TrainingJob, sqlite_uri_relative_to
from tripduration.registry.store import ModelRegistry

log = logging.getLogger("luigi-interface")

#: the lock the tracking of one host holds, in the work directory
LOCK = "mlflow-tracking"
#: task id of a candidate or an evaluation -> the training jobs it belongs to, by key (see note_job)
_JOBS: dict[str, dict[str, TrainingJob]] = {}


def tracking_uri() -> str | None:
    """``[mlflow] tracking_uri`` (a relative sqlite path made relative to this project), None when empty."""
    configured = MlflowConfig().tracking_uri.strip()
    return sqlite_uri_relative_to(configured, PROJECT_ROOT) if configured else None


def registration_key(task: RegisteredModel) -> str:
    """The key :meth:`RegisteredModel.run` registers its version under (the registry records it in the version's
    metadata as ``registration_key``; a test keeps the two equal)."""
    return f"{task.task_family}-{task.fingerprint()}"


def candidate_tasks(task: RegisteredModel) -> list[CandidateScore]:
    return list(task.requires()["report"].requires()["selection"].requires())


def training_job(task: RegisteredModel) -> TrainingJob:
    return TrainingJob(
        key=registration_key(task),
        model_name=task.model_registry().name,
        task_id=task.task_id,
        color=task.color,
        train_months=tuple(sorted(format_month(m) for m in task.train_months)),
        validation_month=format_month(task.val_month),
        test_month=format_month(task.test_month),
        candidates=tuple(c.candidate for c in candidate_tasks(task)),
    )


def note_job(task: RegisteredModel, _dependency: luigi.Task) -> None:
    """DEPENDENCY_DISCOVERED of a registration: remember which candidates and evaluation belong to its job."""
    if tracking_uri() is None:
        return

    def note() -> None:
        job = training_job(task)
        for member in (*candidate_tasks(task), task.requires()["report"]):
            _JOBS.setdefault(member.task_id, {})[job.key] = job

    _logged(task, note, lock=False)


def jobs_of(task: luigi.Task) -> list[TrainingJob]:
    return list(_JOBS.get(task.task_id, {}).values())


def on_candidate(task: CandidateScore) -> None:
    uri, jobs = tracking_uri(), jobs_of(task)
    if uri is None or not jobs:
        return
    from tripduration.registry.mlflow.tracking import log_candidate

    def log_score() -> None:
        score = task.output().load()
        for job in jobs:
            log_candidate(uri, _registry(job), job, task.task_id, score)

    _logged(task, log_score)


def on_evaluation(task: EvaluationReport) -> None:
    uri, jobs = tracking_uri(), jobs_of(task)
    if uri is None or not jobs:
        return
    from tripduration.registry.mlflow.tracking import log_evaluation

    def log_report() -> None:
        with task.output().local_copy() as folder:
            for job in jobs:
                log_evaluation(uri, _registry(job), job, task.task_id, folder)

    _logged(task, log_report)


def on_registration(task: RegisteredModel) -> None:
    uri = tracking_uri()
    if uri is None:
        return
    from tripduration.registry.mlflow.tracking import log_job

    def log_registration() -> None:
        scores = [(c.task_id, c.output().load()) for c in candidate_tasks(task) if c.complete()]
        evaluation = task.requires()["report"]
        with evaluation.output().local_copy() as folder:
            registration = task.output().load()
            log_job(uri, task.model_registry(), training_job(task), registration, scores, (evaluation.task_id, folder))

    _logged(task, log_registration)


def follow_registry(registry: ModelRegistry) -> list[str]:
    """After production changed outside a training job (``rollback``): move the MLflow aliases; lines to print
    (none when tracking is off). A failure is one line: the registry changed all the same."""
    uri = tracking_uri()
    if uri is None:
        return []
    from tripduration.registry.mlflow.export import format_aliases
    from tripduration.registry.mlflow.tracking import follow_registry as move_aliases

    try:
        return [f"MLflow aliases at {uri}:", *format_aliases(move_aliases(uri, registry))]
    except Exception as exc:
        return [f"MLflow aliases not moved ({_one_line(exc)}); `tripduration export-mlflow` moves them"]


def _one_line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}"


def _registry(job: TrainingJob) -> ModelRegistry:
    return open_registry(job.model_name)


def _logged(task: luigi.Task, action: Callable[[], object], lock: bool = True) -> None:
    """Run ``action`` (under the host's tracking lock); a failure is one warning line, never the task's."""
    try:
        with work_storage().lock(LOCK) if lock else contextlib.nullcontext():
            action()
    except Exception as exc:
        log.warning(
            "MLflow tracking of %s failed (%s); the task's outputs are kept, and `tripduration export-mlflow` "
            "mirrors the registered versions later",
            task.task_id,
            _one_line(exc),
        )


RegisteredModel.event_handler(luigi.Event.DEPENDENCY_DISCOVERED)(note_job)
CandidateScore.event_handler(luigi.Event.SUCCESS)(on_candidate)
EvaluationReport.event_handler(luigi.Event.SUCCESS)(on_evaluation)
RegisteredModel.event_handler(luigi.Event.SUCCESS)(on_registration)
