"""The daily loop's calendar, its Prometheus export and the shipped alert rules (pure functions, tiny inputs)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tripduration.monitoring.calendar import classify, ended_months, lateness_days
from tripduration.monitoring.loop_metrics import MONTHS_EXPORTED, LoopFacts, collect, previous_runs, write

ROOT = Path(__file__).resolve().parents[2]
M = dt.date


def test_ended_months_never_include_the_current_one() -> None:
    assert ended_months(M(2021, 4, 1), M(2021, 5, 10)) == [M(2021, 4, 1)]
    assert ended_months(M(2021, 4, 1), M(2021, 4, 30)) == []
    assert ended_months(M(2021, 11, 1), M(2022, 1, 1)) == [M(2021, 11, 1), M(2021, 12, 1)]
    assert lateness_days(M(2021, 4, 1), M(2021, 5, 1)) == 0 and lateness_days(M(2021, 12, 1), M(2022, 3, 1)) == 59


def test_each_month_gets_the_state_its_facts_say() -> None:
    months = [M(2021, m, 1) for m in range(4, 10)]
    records = {
        M(2021, 4, 1): {"verdict": "ok"},
        M(2021, 5, 1): {"retrain_deferred": True, "missing_months": ["2021-03"]},  # arrived: resume
        M(2021, 6, 1): {"retrain_deferred": True, "missing_months": ["2021-02", "2021-03"]},  # 2021-02 still missing
    }
    local = {M(2021, 3, 1), M(2021, 7, 1)}
    published = {M(2021, 8, 1)}
    states = classify(months, M(2021, 11, 15), records, local, published, max_lateness_days=60)
    assert [(s.label, s.state) for s in states] == [
        ("2021-04", "done"),
        ("2021-05", "resume"),
        ("2021-06", "deferred"),
        ("2021-07", "ready"),
        ("2021-08", "ready"),
        ("2021-09", "awaited"),  # ended 2021-10-01: 45 days late, within 60
    ]
    late = {s.label: s for s in states}
    assert late["2021-06"].waiting_for == ("2021-02",)
    assert late["2021-09"].lateness_days == 45 and late["2021-09"].state == "awaited"
    assert classify([M(2021, 9, 1)], M(2021, 12, 1), {}, set(), set(), 60)[0].state == "overdue"  # 61 days


def test_awaited_and_overdue_lines_name_the_month_and_the_check_time() -> None:
    [awaited] = classify([M(2026, 11, 1)], M(2026, 12, 6), {}, set(), set(), 60)
    assert awaited.line(dt.datetime(2026, 12, 6, 8, 0)) == (
        "2026-11: not published yet, checked 2026-12-06 08:00 (5 days after the month ended)"
    )
    [overdue] = classify([M(2026, 8, 1)], M(2026, 12, 6), {}, set(), set(), 60)
    assert overdue.line(dt.datetime(2026, 12, 6, 8, 0)).startswith("2026-08: still not published 96 days")


def facts(**changes) -> LoopFacts:
    months = [M(2021, m, 1) for m in range(1, 13)] + [M(2022, m, 1) for m in range(1, 13)] + [M(2023, 1, 1)]
    records = {m: {"verdict": "ok", "rmse_ratio_to_test": 1.01, "monitored_version": "v0002"} for m in months}
    records[M(2023, 1, 1)] = {
        "verdict": "degraded",
        "rmse_ratio_to_test": 1.9,
        "monitored_version": "v0002",
        "at": "2023-02-10T08:00:00+00:00",
        "retrain_deferred": True,
        "deferred_at": "2023-02-10T08:00:00+00:00",
    }
    states = classify([M(2023, 2, 1)], M(2023, 3, 20), {}, set(), set(), 60)
    values = {
        "command": "daily",
        "exit_code": 0,
        "ended_at": dt.datetime(2023, 3, 20, 8, 0, tzinfo=dt.UTC),
        "production": "v0002",
        "records": records,
        "months": states,
    }
    return LoopFacts(**{**values, **changes})


def samples(registry) -> dict:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_export_says_what_the_loop_knows() -> None:
    found = samples(collect(facts()))
    assert found[("tripduration_production_version", ())] == 2
    assert found[("tripduration_production_info", (("version", "v0002"),))] == 1
    assert found[("tripduration_last_monitored_month_age_days", ())] == (M(2023, 3, 20) - M(2023, 2, 1)).days
    assert found[("tripduration_degraded_not_replaced_days", ())] == 38.0
    assert found[("tripduration_deferred_retrains_pending", ())] == 1
    assert found[("tripduration_deferred_retrain_age_days", (("month", "2023-01"),))] == 38.0
    assert found[("tripduration_months_awaited", ())] == 1
    assert found[("tripduration_month_lateness_days", (("month", "2023-02"), ("state", "awaited")))] == 19
    assert found[("tripduration_month_verdict", (("month", "2023-01"), ("verdict", "degraded")))] == 1
    # bounded label sets: 25 monitored months, only the newest MONTHS_EXPORTED exported
    verdict_months = {dict(labels)["month"] for (name, labels) in found if name == "tripduration_month_verdict"}
    assert len(verdict_months) == MONTHS_EXPORTED and "2021-01" not in verdict_months
    # a model replaced since the degraded month: no "not replaced" alert
    assert ("tripduration_degraded_not_replaced_days", ()) not in samples(collect(facts(production="v0003")))


def test_the_text_file_is_written_whole_and_keeps_the_other_commands_runs(tmp_path: Path) -> None:
    target = tmp_path / "metrics" / "tripduration.prom"
    write(facts(command="train", exit_code=30), target)
    write(facts(other_runs=previous_runs(target)), target)
    runs = previous_runs(target)
    assert runs["train"][0] == 30 and runs["daily"][0] == 0
    assert [p.name for p in target.parent.iterdir()] == ["tripduration.prom"]  # no temporary file left


def test_the_shipped_alert_rules_use_only_exported_metrics() -> None:
    rules = yaml.safe_load((ROOT / "docs" / "alerts" / "tripduration-rules.yml").read_text())
    exported = {name for name, _ in samples(collect(facts()))}
    exported |= {"tripduration_degraded_not_replaced_days"}
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "TripDurationMonthOverdue",
        "TripDurationDegradedNotReplaced",
        "TripDurationDeferralPending",
        "TripDurationRunFailing",
    }
    for alert in alerts:
        used = set(re.findall(r"tripduration_[a-z_]+", alert["expr"]))
        assert used and used <= exported, (alert["alert"], used - exported)
        assert alert["annotations"]["summary"] and alert["labels"]["severity"] in ("warning", "critical")


@pytest.mark.parametrize("state", ["awaited", "overdue"])
def test_lateness_series_carry_the_state(state: str) -> None:
    today = M(2023, 3, 20) if state == "awaited" else M(2023, 6, 20)
    found = samples(collect(facts(months=classify([M(2023, 2, 1)], today, {}, set(), set(), 60))))
    assert any(name == "tripduration_month_lateness_days" and dict(labels)["state"] == state for name, labels in found)


def test_a_command_that_does_not_look_at_the_source_keeps_what_the_daily_run_saw(tmp_path: Path) -> None:
    """`train` or `monthly-run` rewrite the file too, but only the daily line asks the source about months
    not published yet: the others keep its awaited months instead of dropping them (or probing the network)."""
    target = tmp_path / "tripduration.prom"
    write(facts(), target)  # daily: 2023-02 awaited, 19 days late
    write(facts(command="train", months=None, other_runs=previous_runs(target)), target)
    found = samples_of(target)
    assert found[("tripduration_month_lateness_days", (("month", "2023-02"), ("state", "awaited")))] == 19
    assert found[("tripduration_months_awaited", ())] == 1
    assert found[("tripduration_last_run_exit_code", (("command", "train"),))] == 0


def samples_of(path: Path) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
