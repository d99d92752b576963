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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import luigi
from luigi.task import flatten
from luigi.task_register import Register

from tasks.base import INVALIDATIONS, PipelineTask, invalidation_salt
from tasks.targets import Output, work_storage
from tripduration.io.formats import json_bytes


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
    if isinstance(task, PipelineTask) and invalidation_salt(task.invalidation_key()):
        return "invalidated (pipeline.py invalidate)"
    if isinstance(task, luigi.WrapperTask):
        return "waits for the tasks it wraps"
    outputs = [t for t in flatten(task.output()) if isinstance(t, Output)]
    present = [t for t in outputs if t.exists()]
    if present:
        return f"partial outputs ({len(present)} of {len(outputs)} present; a killed run?)"
    if task.task_family == "TripData":
        return "month to download"
    if isinstance(task, PipelineTask):
        family, own = task.output_dir().split("/", 1)
        storage = work_storage()
        siblings = [n for n in storage.children(family) if n.startswith(f"{task.readable_name()}-") and n != own]
        if siblings:
            earlier = storage.url_for(f"{family}/{siblings[-1]}")
            return f"changed fingerprint (inputs, configuration or code changed); earlier outputs: {earlier}"
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


def invalidate(task: PipelineTask, now: dt.datetime | None = None) -> str:
    """Mark ``task`` so that it and everything downstream of it run again; return the mark.

    The marks live in the work storage (``.invalidated.json``) and are updated by compare-and-swap, so two
    operators invalidating at once lose neither mark, on local disk and on object storage alike.
    """
    mark = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
    storage = work_storage()
    for _ in range(100):
        try:
            data, token = storage.read_with_token(INVALIDATIONS)
            marks = json.loads(data)
        except FileNotFoundError:
            marks, token = {}, None
        except ValueError as exc:
            raise RuntimeError(
                f"{storage.url_for(INVALIDATIONS)}: unreadable ({exc}); delete it to forget past invalidations"
            ) from exc
        marks = {**(marks if isinstance(marks, dict) else {}), task.invalidation_key(): mark}
        if storage.replace_if(INVALIDATIONS, json_bytes(marks), token):
            break
    else:
        raise RuntimeError(f"{storage.url_for(INVALIDATIONS)}: still changing after 100 attempts")
    Register.clear_instance_cache()  # task instances cache their fingerprints: later ones see the mark
    return mark
