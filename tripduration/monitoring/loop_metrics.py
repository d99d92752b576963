"""The monthly loop's state in the Prometheus text format, for an operator's alerts.

Batch jobs that Prometheus cannot scrape write their state for node_exporter's textfile collector (a ``*.prom``
file written to a temporary name and renamed) or push it to a Pushgateway; :func:`write` does either. What is
exported (gauges; every label has a bounded value set: ``month`` covers at most :data:`MONTHS_EXPORTED` months):

- ``tripduration_last_run_exit_code{command}``, ``tripduration_last_run_end_timestamp_seconds{command}``;
- ``tripduration_production_version`` (the number of vNNNN; 0: none) and ``tripduration_production_info{version}``;
- ``tripduration_last_monitored_month_timestamp_seconds`` and ``tripduration_last_monitored_month_age_days``;
- ``tripduration_month_verdict{month,verdict}`` (1) and ``tripduration_month_rmse_ratio{month}`` per monitored month;
- ``tripduration_months_awaited`` and ``tripduration_month_lateness_days{month,state}`` (awaited, overdue);
- ``tripduration_deferred_retrains_pending`` and ``tripduration_deferred_retrain_age_days{month}``;
- ``tripduration_degraded_not_replaced_days``: days since the newest month found the production model degraded,
  while that model still serves (absent otherwise).

The alerting rules that use them are in docs/alerts/tripduration-rules.yml.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from tripduration.data.months import format_month, parse_month
from tripduration.monitoring.calendar import MonthState, month_end

#: monitored months exported per run (the newest ones): keeps the ``month`` label's value set bounded
MONTHS_EXPORTED = 24
#: commands whose last run is kept (the CLI's job commands: a bounded set)
COMMANDS_EXPORTED = 16
VERDICTS = ("ok", "drift", "degraded", "not monitored")


@dataclass
class LoopFacts:
    """What a run knows when it ends."""

    command: str
    exit_code: int
    ended_at: dt.datetime
    production: str | None
    #: the MonthlyRun record of each month done (verdict, rmse_ratio_to_test, monitored_version, deferral)
    records: Mapping[dt.date, Mapping[str, Any]] = field(default_factory=dict)
    #: the months as the daily loop classified them (the calendar); None: a command that does not look at the
    #: source (train, monthly-run...) keeps what the last daily run saw (``previous_waiting``)
    months: Sequence[MonthState] | None = ()
    #: the last run of each other command: (exit code, end time), kept from the previous file
    other_runs: Mapping[str, tuple[float, float]] = field(default_factory=dict)


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _age_days(since: str | None, now: dt.datetime) -> float | None:
    if not since:
        return None
    try:
        then = dt.datetime.fromisoformat(since)
    except ValueError:
        return None
    return (now - (then if then.tzinfo else then.replace(tzinfo=dt.UTC))).total_seconds() / 86400


def collect(facts: LoopFacts) -> CollectorRegistry:
    """The gauges of the module docstring, in a fresh registry."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=registry)

    today = facts.ended_at.date()
    code = gauge("tripduration_last_run_exit_code", "exit code of the last run", ["command"])
    ended = gauge("tripduration_last_run_end_timestamp_seconds", "when the last run ended", ["command"])
    runs = {**facts.other_runs, facts.command: (facts.exit_code, facts.ended_at.timestamp())}
    for command in sorted(runs)[:COMMANDS_EXPORTED]:
        code.labels(command).set(runs[command][0])
        ended.labels(command).set(runs[command][1])
    number = int(facts.production[1:]) if facts.production else 0
    gauge("tripduration_production_version", "number of the production version (0: none)").set(number)
    if facts.production:
        gauge("tripduration_production_info", "the production version", ["version"]).labels(facts.production).set(1)
    _monitored(facts, gauge, today)
    _waiting(facts, gauge, today)
    return registry


def _monitored(facts: LoopFacts, gauge: Any, today: dt.date) -> None:
    monitored = sorted(m for m, r in facts.records.items() if r.get("verdict") != "not monitored")
    if monitored:
        last = monitored[-1]
        gauge("tripduration_last_monitored_month_timestamp_seconds", "start of the newest monitored month").set(
            _epoch(last)
        )
        gauge("tripduration_last_monitored_month_age_days", "days since the newest monitored month ended").set(
            (today - month_end(last)).days
        )
        newest = facts.records[last]
        if newest.get("verdict") == "degraded" and newest.get("monitored_version") == facts.production:
            age = _age_days(str(newest.get("at")), facts.ended_at)
            gauge(
                "tripduration_degraded_not_replaced_days",
                "days since the newest month found the serving model degraded, while it still serves",
            ).set(age if age is not None else 0)
    verdict = gauge("tripduration_month_verdict", "verdict of a monitored month (1)", ["month", "verdict"])
    ratio = gauge("tripduration_month_rmse_ratio", "a month's RMSE over the model's test RMSE", ["month"])
    for month in sorted(facts.records)[-MONTHS_EXPORTED:]:
        record = facts.records[month]
        label = str(record.get("verdict"))
        verdict.labels(format_month(month), label if label in VERDICTS else "other").set(1)
        value = record.get("rmse_ratio_to_test")
        if isinstance(value, int | float):
            ratio.labels(format_month(month)).set(value)


def _waiting(facts: LoopFacts, gauge: Any, today: dt.date) -> None:
    late = [m for m in facts.months or () if m.state in ("awaited", "overdue")][-MONTHS_EXPORTED:]
    gauge("tripduration_months_awaited", "ended months whose file has not appeared yet").set(len(late))
    lateness = gauge("tripduration_month_lateness_days", "days since an awaited month ended", ["month", "state"])
    for state in late:
        lateness.labels(state.label, state.state).set(state.lateness_days)
    pending = {m: r for m, r in facts.records.items() if r.get("retrain_deferred")}
    gauge("tripduration_deferred_retrains_pending", "months whose deferred retrain has not run yet").set(len(pending))
    age = gauge("tripduration_deferred_retrain_age_days", "days since a retrain was deferred", ["month"])
    for month in sorted(pending)[-MONTHS_EXPORTED:]:
        days = _age_days(str(pending[month].get("deferred_at") or pending[month].get("at")), facts.ended_at)
        age.labels(format_month(month)).set(days if days is not None else 0)


def write(facts: LoopFacts, textfile: Path | None, pushgateway: str | None = None, job: str = "tripduration") -> None:
    """Write the metrics to ``textfile`` (atomically: a temporary name, then a rename) and/or push them."""
    if facts.months is None:  # keep the months the last daily run saw
        facts = dataclasses.replace(facts, months=previous_waiting(textfile))
    registry = collect(facts)
    if textfile is not None:
        textfile.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(textfile), registry)
    if pushgateway:
        push_to_gateway(pushgateway, job=job, registry=registry)


def _previous_samples(textfile: Path | None, names: tuple[str, ...]) -> list[Any]:
    """The samples named ``names`` in the previous file (none when there is no file or it is damaged)."""
    from prometheus_client.parser import text_string_to_metric_families

    if textfile is None or not textfile.is_file():
        return []
    try:
        families = list(text_string_to_metric_families(textfile.read_text()))
    except ValueError:  # a damaged file: start afresh
        return []
    return [sample for family in families for sample in family.samples if sample.name in names]


def previous_waiting(textfile: Path | None) -> list[MonthState]:
    """The months the last daily run found awaited or overdue, as its file recorded them (lateness as of then)."""
    try:
        found = [
            MonthState(parse_month(s.labels["month"]), s.labels["state"], int(s.value))
            for s in _previous_samples(textfile, ("tripduration_month_lateness_days",))
        ]
    except (ValueError, KeyError):  # a damaged line: start afresh
        return []
    return sorted(found, key=lambda s: s.month)


def previous_runs(textfile: Path | None) -> dict[str, tuple[float, float]]:
    """The last run of each command as the previous file recorded it (empty when there is none)."""
    names = ("tripduration_last_run_exit_code", "tripduration_last_run_end_timestamp_seconds")
    found: dict[str, dict[str, float]] = {}
    for sample in _previous_samples(textfile, names):
        found.setdefault(sample.labels.get("command", "?"), {})[sample.name] = sample.value
    return {
        command: (v["tripduration_last_run_exit_code"], v["tripduration_last_run_end_timestamp_seconds"])
        for command, v in found.items()
        if len(v) == 2
    }
