"""Looking at a job without running it (``pipeline.py status``) and forcing part of it to run again
(``pipeline.py invalidate``).

``status`` walks the job's graph as luigi would (a complete task's dependencies are not looked at) and says,
for each task, whether it is complete and, if not, why it would run: no output yet, outputs under an older
fingerprint (an input file, a configuration value or the code changed), partial outputs, invalidated, or a
month to download.

``invalidate`` gives a task a new fingerprint (a mark in ``<work_dir>/.invalidated.json``, see
``tasks.base.invalidation_salt``). Fingerprints chain downstream, so on the next run the task and everything
that depends on it get new output folders and run again; nothing else changes and no output is deleted
(the old folders stay, as after any change of inputs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import luigi
from luigi.task import flatten
from luigi.task_register import Register

from tasks.base import PipelineTask, invalidation_salt, invalidations_file


@dataclass(frozen=True)
class TaskState:
    task_id: str
    family: str
    complete: bool
    reason: str


def _walk(roots: Iterable[luigi.Task]) -> Iterator[tuple[luigi.Task, bool]]:
    """Every task luigi would look at, with its completeness, parents first."""
    seen: set[str] = set()
    stack = list(roots)[::-1]
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        done = task.complete()
        yield task, done
        if not done:
            stack.extend(reversed(flatten(task.requires())))


def _why(task: luigi.Task) -> str:
    if invalidation_salt(task.task_id):
        return "invalidated (pipeline.py invalidate)"
    if isinstance(task, luigi.WrapperTask):
        return "waits for the tasks it wraps"
    outputs = [Path(t.path) for t in flatten(task.output()) if hasattr(t, "path")]
    present = [p for p in outputs if p.exists()]
    if present:
        return f"partial outputs ({len(present)} of {len(outputs)} present; a killed run?)"
    if task.task_family == "TripData":
        return "month to download"
    if isinstance(task, PipelineTask) and isinstance(own := task.output_dir(), Path):  # local work directory
        siblings = sorted(
            (p for p in own.parent.glob(f"{task.readable_name()}-*") if p.is_dir() and p != own),
            key=lambda p: p.stat().st_mtime,
        )
        if siblings:
            return f"changed fingerprint (inputs, configuration or code changed); earlier outputs: {siblings[-1]}"
    return "no output yet"


def job_status(roots: Iterable[luigi.Task]) -> list[TaskState]:
    return [
        TaskState(task.task_id, task.task_family, done, "complete" if done else _why(task))
        for task, done in _walk(roots)
    ]


def format_status(states: list[TaskState]) -> str:
    waiting = [s for s in states if not s.complete]
    lines = [f"{'':2}{'task':60} state"]
    for s in states:
        lines.append(f"{'✓' if s.complete else '·':2}{s.task_id[:60]:60} {s.reason}")
    verdict = (
        "nothing to run: the job is complete"
        if not waiting
        else f"{len(waiting)} task(s) would run (of {len(states)} looked at)"
    )
    return "\n".join([*lines, verdict])


def invalidate(task: luigi.Task, now: dt.datetime | None = None) -> str:
    """Mark ``task`` so that it and everything downstream of it run again; return the mark."""
    path = invalidations_file()
    if not isinstance(path, Path):
        raise RuntimeError(
            f"{path}: invalidate works on a local work directory only; with an s3:// work_dir, delete the "
            "task's output objects instead (its folder under work_dir) and run the job again"
        )
    marks: dict[str, str] = {}
    if path.exists():
        marks = json.loads(path.read_text())
    mark = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
    marks[task.task_id] = mark
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(marks, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
    Register.clear_instance_cache()  # task instances cache their fingerprints: later ones see the mark
    return mark
