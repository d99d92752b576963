"""The block a job prints when it ends: what ran and how long each stage took, and what the job produced.

A user should not have to run ``pipeline.py models`` to learn what ``make run`` did. After luigi's own
summary, :func:`result_block` prints the stages (task family, how many ran, their summed running time, from
the scheduler that ran them), then per root task: for training, the registered version, algorithm, test RMSE
against the baseline, the gate's decision, the production version and the report's path; for the monthly run,
the verdict, drift, retraining and promotion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import luigi
from luigi.execution_summary import LuigiRunResult
from luigi.task import flatten

log_name = "luigi-interface"


def stage_times(result: LuigiRunResult | None, task_ids: Iterable[str] | None = None) -> list[tuple[str, int, float]]:
    """(family, tasks that ran, seconds running) for the tasks this run ran, slowest stage first.

    Read from the scheduler that ran them (local, or luigid over its API), so it also counts tasks that ran
    in forked worker processes.
    """
    if result is None or getattr(result, "worker", None) is None:
        return []
    try:
        listed = result.worker._scheduler.task_list(status="DONE", upstream_status="")
    except Exception:  # luigid gone at the end of the run: no timing, the rest of the block still prints
        return []
    wanted = set(task_ids) if task_ids is not None else None
    totals: dict[str, list[float]] = defaultdict(list)
    for task_id, info in listed.items():
        started, ended = info.get("time_running"), info.get("last_updated")
        if not started or not ended or (wanted is not None and task_id not in wanted):
            continue
        totals[str(info.get("name"))].append(max(0.0, float(ended) - float(started)))
    rows = [(family, len(times), sum(times)) for family, times in totals.items()]
    return sorted(rows, key=lambda r: -r[2])


def _read_json(target: Any) -> dict[str, Any] | None:
    try:
        return target.load()
    except (OSError, ValueError, AttributeError):
        return None


def _reuse_note(registration: dict[str, Any]) -> str:
    if registration.get("identical"):
        return " (the new model is byte-identical to this version: nothing new registered)"
    return " (already registered)" if registration.get("reused") else ""


def _training_lines(registration_task: luigi.Task) -> list[str]:
    from tasks.predictions import model_registry

    registration = _read_json(registration_task.output())
    if registration is None:
        return [f"registration: not done ({registration_task.task_id})"]
    registry = model_registry(registration_task.param_kwargs["color"])
    version = registration["version"]
    meta = registry.model_metadata(version)
    test, base = meta.test_metrics, meta.baseline_test_metrics
    gate = registration["gate"]
    test_month = meta.test_month or "?"
    try:
        pointer = registry.production()
        production = pointer["version"] if pointer else "none"
    except Exception as exc:  # a corrupt pointer is named, not fatal for the summary
        production = f"unreadable ({exc})"
    report = registry.versions_dir / version / "report" / "report.html"
    return [
        f"registered   {registry.name} {version}{_reuse_note(registration)}",
        f"algorithm    {meta.candidate}",
        f"test RMSE    {test['rmse']:.3f} min on {test_month} vs baseline {base['rmse']:.3f} "
        f"(ratio {test['rmse'] / base['rmse']:.3f})",
        f"gate         {'promoted' if gate['promote'] else 'not promoted'}: {gate['reason']}",
        f"production   {production}",
        f"report       {report}",
    ]


def _monthly_run_lines(task: luigi.Task) -> list[str]:
    record = _read_json(task.output())
    if record is None:
        return [f"monthly run: not done ({task.task_id})"]
    lines = [
        f"month        {record.get('month')} with {record.get('monitored_version')}",
        f"verdict      {record.get('verdict')}: {'; '.join(record.get('reasons', []) or [])}",
    ]
    if record.get("retrained"):
        lines.append(
            f"retrained    challenger {record.get('challenger_version')}; "
            f"{'promoted' if record.get('promoted') else 'not promoted'}: {record.get('gate_reason')}"
        )
    else:
        lines.append(f"retrained    no: {record.get('why_not_retrained', '')}")
    if record.get("monitoring_report"):
        lines.append(f"report       {record['monitoring_report']}")
    return lines


def _root_lines(task: luigi.Task) -> list[str]:
    from tasks.monthly import MonthlyRun
    from tasks.pipelines import MonthlyTraining, TrainingPipeline

    if isinstance(task, MonthlyRun):
        return _monthly_run_lines(task)
    if isinstance(task, TrainingPipeline):
        return _training_lines(task.requires())
    if isinstance(task, MonthlyTraining):
        return _training_lines(task.requires().requires())
    lines: list[str] = []
    for child in flatten(task.requires()):  # e.g. RangeMonthly: one block per month it scheduled
        lines += [f"[{child.task_id}]", *_root_lines(child)]
    return lines


def result_block(roots: list[luigi.Task], result: LuigiRunResult | None, code: int, seconds: float) -> str:
    """The text printed at the end of a job (see the module docstring)."""
    stages = stage_times(result)
    ran = sum(n for _, n, _ in stages)
    lines = ["", "===== result " + "=" * 60, f"ran          {ran} task(s) in {seconds:.1f} s"]
    lines += [f"  {family:22} {n:3} x  {total:7.1f} s" for family, n, total in stages]
    for root in roots:
        try:
            lines += _root_lines(root) if root.complete() else [f"not complete: {root.task_id}"]
        except Exception as exc:  # the summary must never hide the exit code
            lines.append(f"(no summary for {root.task_id}: {type(exc).__name__}: {exc})")
    lines += [f"exit code    {code}", "=" * 73]
    return "\n".join(lines)
