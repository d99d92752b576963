"""The daily line: the whole monthly loop from cron, catching up with late data (``pipeline.py daily``).

Like ``luigi.tools.range.RangeMonthly`` over :class:`~tasks.monthly.MonthlyRun`, with the months checked for
availability first (as Airflow sensors with catch-up): every month from ``[monthly] first_month`` to the last
one that has ended is classified (:mod:`tripduration.monitoring.calendar`), and the months whose data has
appeared and that are not done run one at a time, in month order, each pinned to the version in production when
it starts (a month's promotion serves the next). A month whose deferred retrain can run now (the months it waited
for arrived) is resumed the same way. A month not published yet is not a failure: one line says so. One still
missing ``[monthly] max_lateness_days`` after it ended makes the run exit 20, naming it, after the others ran.

The loop's state is written for Prometheus at the end of every run (:mod:`tasks.ops.loop_state`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import luigi
import luigi.retcodes
from luigi.task_register import Register

from tasks.data import TripData
from tasks.monthly import MonthlyRun, month_record
from tasks.ops.lock import AlreadyRunningError
from tasks.ops.runner import already_running, locked, run
from tasks.predictions import model_registry
from tasks.settings import DownloadConfig, MonthlyConfig
from tripduration.data.fetch import probe_all
from tripduration.data.months import add_months, format_month, parse_month
from tripduration.monitoring.calendar import MonthState, classify, ended_months
from tripduration.registry.events import pointer_changes

log = logging.getLogger("luigi-interface")


@dataclass
class LoopRun:
    """What one run of the daily line saw and did (for its printed lines and the metrics)."""

    states: list[MonthState] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: str | None = None
    code: int = 0


def first_month(color: str) -> dt.date | None:
    """``[monthly] first_month``, else the month after the test month of the first model that went into
    production (None: nothing was ever in production, so there is nothing to monitor)."""
    configured = str(MonthlyConfig().first_month).strip()
    if configured:
        return parse_month(configured)
    registry = model_registry(color)
    changes = pointer_changes(registry.events()[0])
    version = changes[0].get("version") if changes else registry.current_version()
    if not version:
        return None
    test_month = registry.model_metadata(str(version)).test_month
    return add_months(parse_month(test_month), 1) if test_month else None


def month_states(color: str, today: dt.date, probed: dict[dt.date, bool]) -> list[MonthState]:
    """Every month of the loop, classified; ``probed`` caches what the source said during this run."""
    first = first_month(color)
    if first is None:
        return []
    months = ended_months(first, today)
    records = {m: r for m in months if (r := month_record(color, m)) is not None}
    waited = {
        parse_month(w) for r in records.values() if r.get("retrain_deferred") for w in r.get("missing_months", [])
    }
    local = {m for m in {*months, *waited} if TripData(color=color, month=m).complete()}
    unknown = [m for m in months if m not in records and m not in local and m not in probed]
    probed.update(_published(color, unknown))
    published = {m for m, here in probed.items() if here}
    return classify(months, today, records, local, published, MonthlyConfig().max_lateness_days)


def _published(color: str, months: list[dt.date]) -> dict[dt.date, bool]:
    """Ask the source for months not on disk (one HEAD each, all at once); offline: none is."""
    cfg = DownloadConfig()
    if not months or cfg.offline:
        return dict.fromkeys(months, False)
    urls = {m: cfg.url_template.format(color=color, month=format_month(m)) for m in months}
    found = probe_all(urls.values(), timeout=cfg.probe_timeout_seconds)
    return {m: found[url].available for m, url in urls.items()}


def run_loop(color: str, now: dt.datetime, build: Callable[[MonthlyRun], int]) -> LoopRun:
    """Run every month that is ready (or whose deferral can resume), oldest first, until none is left or one
    fails. The months are classified again after each one: a late month that ran may let a deferral resume."""
    outcome = LoopRun()
    probed: dict[dt.date, bool] = {}
    attempted: set[dt.date] = set()
    while True:
        outcome.states = month_states(color, now.date(), probed)
        todo = [s for s in outcome.states if s.state in ("ready", "resume") and s.month not in attempted]
        if not todo:
            return outcome
        state = todo[0]
        attempted.add(state.month)
        Register.clear_instance_cache()  # pin the version in production now, not the one of the last month
        log.info(
            "daily: %s %s", "resuming the deferred retrain of" if state.state == "resume" else "running", state.label
        )
        code = build(MonthlyRun(color=color, month=state.month))
        outcome.ran.append(state.label)
        if code:
            outcome.failed, outcome.code = state.label, code
            outcome.states = month_states(color, now.date(), probed)
            return outcome


def daily(
    color: str, now: dt.datetime, workers: int | None = None, scheduler: tuple[str | None, int | None] = (None, None)
) -> tuple[int, LoopRun]:
    """The daily line: the loop under the work-directory lock; returns the exit code and what happened."""
    host, port = scheduler

    def build(task: MonthlyRun) -> int:
        return run([task], workers=workers, scheduler_host=host, scheduler_port=port, hold_lock=False)

    try:
        with locked():
            outcome = run_loop(color, now, build)
    except AlreadyRunningError as exc:
        return already_running(exc), LoopRun(code=luigi.retcodes.retcode().already_running)
    if outcome.code:
        return outcome.code, outcome
    if any(s.state == "overdue" for s in outcome.states):
        outcome.code = luigi.retcodes.retcode().missing_data or 1
    return outcome.code, outcome


def report_lines(outcome: LoopRun, now: dt.datetime) -> list[str]:
    """What a run of the daily line prints: one line per month that did not run, and what ran."""
    lines = [s.line(now) for s in outcome.states if s.state in ("awaited", "overdue", "deferred")]
    if outcome.ran:
        lines.append(f"ran: {', '.join(outcome.ran)}" + (f" (failed: {outcome.failed})" if outcome.failed else ""))
    done = sum(s.state == "done" for s in outcome.states)
    if not outcome.states:
        lines.append("nothing to monitor yet: no model has been in production (run `train` first)")
    elif not outcome.ran:
        lines.append(f"nothing to run: {done} month(s) done")
    return lines
