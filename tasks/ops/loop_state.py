"""The monthly loop's state for Prometheus, written at the end of every job run (``[metrics]``)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

from tasks.monthly import month_record
from tasks.ops.daily import first_month
from tasks.predictions import model_registry
from tasks.settings import MetricsConfig
from tasks.targets import PROJECT_ROOT
from tripduration.monitoring import loop_metrics
from tripduration.monitoring.calendar import MonthState, ended_months

log = logging.getLogger("luigi-interface")


def textfile() -> Path | None:
    """``[metrics] textfile`` (relative to the project's folder), or None when it is empty."""
    value = str(MetricsConfig().textfile).strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def export(
    color: str, command: str, code: int, now: dt.datetime, states: Sequence[MonthState] | None = None
) -> Path | None:
    """Write the loop's state (and push it, with ``[metrics] pushgateway_url``); returns the file written.

    ``states``: the months as the daily loop just classified them; other commands classify them here.
    Never raises: the metrics must not change a run's exit code (a failure is logged)."""
    try:
        target = textfile()
        first = first_month(color)
        months = ended_months(first, now.date()) if first else []
        records = {m: r for m in months if (r := month_record(color, m)) is not None}
        facts = loop_metrics.LoopFacts(
            command=command,
            exit_code=code,
            ended_at=now,
            production=model_registry(color).current_version(),
            records=records,
            # only the daily line asks the source about unpublished months; the others keep what it saw
            months=list(states) if states is not None else None,
            other_runs={k: v for k, v in loop_metrics.previous_runs(target).items() if k != command},
        )
        loop_metrics.write(facts, target, str(MetricsConfig().pushgateway_url).strip() or None)
        return target
    except Exception as exc:  # the run's own outcome stands; say why its metrics are stale
        log.warning("could not write the loop's metrics ([metrics] textfile): %s: %s", type(exc).__name__, exc)
        return None
