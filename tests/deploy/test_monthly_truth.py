"""The monthly loop records what happened (issue 11.1, 11.2): a run pinned to the version in production when it
started, drift/degradation -> challenger -> promotion on record, reruns adding nothing, and a deliberate
"retrain deferred" when the challenger's months are not local. Real sampled months + synthetic later ones."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks import MonthlyRun, TrainingPipeline
from tests.events import loop_events
from tripduration.registry.store import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
JULY = dt.date(2021, 7, 1)


def slow_month(src: Path, dest: Path, days: int, factor: float) -> None:
    """A synthetic later month where the city got slower: pickups moved by ``days``, durations x ``factor``."""
    table = pq.read_table(src)
    frame = table.to_pandas()
    pickup, dropoff = frame["lpep_pickup_datetime"], frame["lpep_dropoff_datetime"]
    frame["lpep_pickup_datetime"] = pickup + pd.Timedelta(days=days)
    frame["lpep_dropoff_datetime"] = frame["lpep_pickup_datetime"] + (dropoff - pickup) * factor
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), dest)


def registry(env) -> ModelRegistry:
    return ModelRegistry(env.registry_dir, "green-trip-duration")


def folders(env, family: str) -> list[str]:
    return sorted(p.name for p in (env.work_dir / family).iterdir()) if (env.work_dir / family).exists() else []


def test_degradation_retrain_and_promotion_are_recorded_exactly_with_two_workers(pipeline_env, run_tasks):
    # the city got slower from 2021-05 on: v0001 degrades on 2021-07, a challenger trained on 2021-05 and
    # validated on 2021-06 (both slower) beats it there
    raw = pipeline_env.raw_dir
    for source, month, days in (("2021-01", "2021-05", 120), ("2021-02", "2021-06", 120), ("2021-03", "2021-07", 122)):
        slow_month(raw / f"green_tripdata_{source}.parquet", raw / f"green_tripdata_{month}.parquet", days, factor=1.6)
    assert run_tasks([TrainingPipeline()]).ok  # v0001: train 2021-01, validate 2021-02, test 2021-03
    first = MonthlyRun(month=JULY)
    assert first.model_version == "v0001"  # resolved when the task was created, before the graph is built
    result = run_tasks([first], workers=2)  # forked task processes, re-entered run() after the challenger
    assert result.ok, result

    run = json.loads(Path(first.output().path).read_text())
    assert run["monitored_version"] == "v0001" and run["verdict"] == "degraded"
    assert run["retrain_rule"] == "degraded" and run["why_retrained"].startswith("rule degraded fired: RMSE is")
    assert run["retrained"] is True and run["challenger_version"] == "v0002"
    assert run["challenger_months"] == {"train": ["2021-05"], "validation": ["2021-06"], "test": ["2021-07"]}
    assert run["gate_rule"] == "same_month" and run["promoted"] is True
    assert run["production_after"] == "v0002" and run["decision"] == "degraded; retrained v0002: promoted"
    assert registry(pipeline_env).production()["version"] == "v0002"
    # the log: v0001's promotion, July monitored with v0001, the challenger's promotion (v0001 -> v0002), then
    # the retrain itself
    log = [e for e in registry(pipeline_env).events()[0] if e["event"] != "not monitored"]
    assert [(e["event"], e["production_before"], e["production_after"]) for e in log] == [
        ("promoted", None, "v0001"),
        ("monitored", "v0001", "v0001"),
        ("promoted", "v0001", "v0002"),
        ("retrained", "v0002", "v0002"),
    ]
    assert log[1]["month"] == "2021-07" and log[1]["verdict"] == "degraded" and log[3]["challenger"] == "v0002"
    # v0001 was monitored, once; v0002 never predicted or monitored its own test month
    assert [f[-5:] for f in folders(pipeline_env, "MonitoringReport")] == ["v0001"]
    assert [f[-5:] for f in folders(pipeline_env, "BatchPredictions")] == ["v0001"]
    # the registered evaluation report says which version, which months, the ranking and the gate decision
    page = (registry(pipeline_env).versions_dir / "v0002" / "report" / "report.html").read_text()
    assert "v0002" in page and "Candidate ranking" in page and "2021-05" in page and "promoted: RMSE" in page
    assert "None" not in page

    # a rerun finds the month done, still names the version it was monitored with (not production v0002),
    # and adds nothing
    again = MonthlyRun(month=JULY)
    assert again.model_version == "v0001" and again.output().path == first.output().path
    rerun = run_tasks([again])
    assert rerun.ok and rerun.ran == []
    assert len(loop_events(registry(pipeline_env), "2021-07")) == 2
    # luigi re-creating the first task from its string parameters keeps the pinned version
    assert MonthlyRun.from_str_params(first.to_str_params()).model_version == "v0001"


def test_retrain_is_deferred_when_the_challengers_months_are_not_local(pipeline_env, run_tasks):
    # 2021-07 exists (slower trips); its challenger would train on 2021-05 and validate on 2021-06: absent
    march = pipeline_env.raw_dir / "green_tripdata_2021-03.parquet"
    slow_month(march, pipeline_env.raw_dir / "green_tripdata_2021-07.parquet", days=122, factor=1.6)
    assert run_tasks([TrainingPipeline()]).ok
    started = time.monotonic()
    result = run_tasks([MonthlyRun(month=JULY)])
    assert result.ok, result
    assert time.monotonic() - started < 60
    assert not [t for t in result.ran + result.failed if t.startswith("TripData")]  # no download tried
    run = json.loads(Path(MonthlyRun(month=JULY).output().path).read_text())
    assert run["verdict"] == "degraded" and run["retrain_rule"] == "degraded"
    assert run["decision"] == "degraded; retrain deferred: 2021-05, 2021-06 missing"
    assert run["retrain_deferred"] is True and run["missing_months"] == ["2021-05", "2021-06"]
    assert run["retrained"] is False
    assert registry(pipeline_env).versions() == ["v0001"]
    deferred = loop_events(registry(pipeline_env))[-1]
    assert deferred["event"] == "deferred" and deferred["missing_months"] == ["2021-05", "2021-06"]


def cli(env, *args: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "LUIGI_CONFIG_PATH": str(env.cfg_file)}
    return subprocess.run([sys.executable, *args], env=environ, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_cli_paths_pin_the_version_and_record_a_deferral_with_exit_0(pipeline_env, run_tasks):
    march = pipeline_env.raw_dir / "green_tripdata_2021-03.parquet"
    slow_month(march, pipeline_env.raw_dir / "green_tripdata_2021-07.parquet", days=122, factor=1.6)
    assert run_tasks([TrainingPipeline()]).ok
    deferred = cli(pipeline_env, str(ROOT / "pipeline.py"), "monthly-run", "--month", "2021-07")
    assert deferred.returncode == 0, deferred.stderr[-3000:]
    assert loop_events(registry(pipeline_env))[-1]["event"] == "deferred"
    # the bare luigi command line: 'production' is resolved when luigi creates the task from its arguments
    bare = cli(
        pipeline_env, "-m", "luigi", "--module", "pipeline", "MonthlyRun", "--month", "2021-04", "--local-scheduler"
    )
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert "v0001" in bare.stderr  # the scheduled task id carries the concrete version
    april = loop_events(registry(pipeline_env))[-1]
    assert april["month"] == "2021-04" and april["monitored_version"] == "v0001"
