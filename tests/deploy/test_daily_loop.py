"""The daily line left to cron over a year of months that arrive late, one very late, with injected dates.

Months 2021-04 .. 2022-03 are built from the sampled embedded months (timestamps moved to the month, trips 1.6x
slower from 2021-07 on: the city got slower, the model degrades) and appear in ``raw_dir`` at chosen dates:
2021-06 comes after 2021-07 (so 2021-07's retrain is deferred, then resumed), 2021-09 stays missing for more
than ``[monthly] max_lateness_days`` (exit 20 naming it) and arrives in January. The daily line runs at dates
in between; after each run the test checks the exit code, the lines printed, the Prometheus text file and the
registry's event log (every month monitored exactly once after its data appeared, the deferral resumed, reruns
adding nothing, the log replaying to the registry's history and pointer, a rollback included).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pipeline
from tests.events import loop_events
from tripduration.registry.events import replay
from tripduration.registry.store import ModelRegistry

pytestmark = pytest.mark.slow

SLOW_FROM = "2021-07"
ARRIVALS = {
    "2021-04": "2021-05-18",
    "2021-05": "2021-06-17",
    "2021-06": "2021-08-24",  # after 2021-07: 2021-07's retrain waits for it
    "2021-07": "2021-08-12",
    "2021-08": "2021-09-16",
    "2021-09": "2022-01-10",  # overdue from 2021-11-30 on (60 days after the month ended)
    "2021-10": "2021-11-15",
    "2021-11": "2021-12-14",
    "2021-12": "2022-01-13",
    "2022-01": "2022-02-15",
    "2022-02": "2022-03-15",
    "2022-03": "2022-04-14",
}


def build_month(src: Path, dest: Path, month: str, factor: float) -> None:
    """A month made of a sampled real month: pickups moved to ``month`` (same day and time), durations x factor."""
    table = pq.read_table(src)
    frame = table.to_pandas()
    pickup, dropoff = frame["lpep_pickup_datetime"], frame["lpep_dropoff_datetime"]
    start = pd.Timestamp(f"{month}-01")
    offset = (start.year - pickup.dt.year) * 12 + (start.month - pickup.dt.month)
    moved = pd.Series(
        [p + pd.DateOffset(months=int(o)) for p, o in zip(pickup, offset, strict=True)], index=frame.index
    )
    frame["lpep_pickup_datetime"] = moved.astype(pickup.dtype)
    frame["lpep_dropoff_datetime"] = frame["lpep_pickup_datetime"] + (dropoff - pickup) * factor
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), dest)


def metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text file (parsed by prometheus_client's own parser)."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


class Calendar:
    def __init__(self, env, capsys) -> None:
        self.env, self.capsys = env, capsys
        self.arrivals = env.raw_dir.parent / "arrivals"
        self.arrivals.mkdir()
        sources = sorted(env.raw_dir.glob("green_tripdata_2021-0[123].parquet"))
        for i, month in enumerate(ARRIVALS):
            name = f"green_tripdata_{month}.parquet"
            (env.raw_dir / name).unlink(missing_ok=True)  # the sampled raw dir ships a 2021-04: it arrives later
            build_month(sources[i % 3], self.arrivals / name, month, 1.6 if month >= SLOW_FROM else 1.0)
        self.registry = ModelRegistry(env.registry_dir, "green-trip-duration")
        self.textfile = Path(env.config.config.get("metrics", "textfile"))

    def daily(self, day: str) -> tuple[int, str]:
        """Files that arrived by ``day`` appear in raw_dir, then the daily line runs at 08:00 that day."""
        for month, arrival in ARRIVALS.items():
            name = f"green_tripdata_{month}.parquet"
            if arrival <= day and not (self.env.raw_dir / name).exists():
                shutil.copy(self.arrivals / name, self.env.raw_dir / name)
        self.capsys.readouterr()
        code = pipeline.main(["daily", "--now", f"{day}T08:00"])
        return code, self.capsys.readouterr().out

    def monitored(self) -> dict[str, int]:
        """How many times each month was monitored (or found to be the model's own month)."""
        counts: dict[str, int] = {}
        for event in loop_events(self.registry):
            if event["event"] in ("monitored", "not monitored"):
                counts[event["month"]] = counts.get(event["month"], 0) + 1
        return counts

    def check_log(self) -> None:
        """The log replays to the registry: its pointer changes are the history, ending on the pointer, and
        every loop event saw the pointer where the replay had it then."""
        events, problems = self.registry.events()
        assert not problems
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        changes, final = replay(events)
        history, _ = self.registry.history()
        assert changes == [(h["previous_version"], h["version"]) for h in history]
        assert final == self.registry.production()["version"]
        pointer = None
        for event in events:
            assert event["production_before"] == pointer, event
            pointer = event["production_after"]


@pytest.fixture
def calendar(pipeline_env, capsys, config) -> Calendar:
    config.set("download", "offline", "true")  # nothing comes from the network: files appear in raw_dir
    config.set("monitoring", "retrain_on", "degraded")
    cal = Calendar(pipeline_env, capsys)
    assert pipeline.main(["train"]) == 0  # v0001: train 2021-01, validate 2021-02, test 2021-03
    return cal


def test_a_year_of_late_months_is_monitored_once_each_with_the_deferral_resumed(calendar: Calendar) -> None:
    # nothing published yet: not a failure, one line, the month awaited in the metrics
    code, out = calendar.daily("2021-05-10")
    assert code == 0 and "2021-04: not published yet, checked 2021-05-10 08:00" in out
    found = metrics(calendar.textfile)
    assert value(found, "tripduration_months_awaited") == 1
    assert value(found, "tripduration_month_lateness_days", month="2021-04", state="awaited") == 9
    assert value(found, "tripduration_last_run_exit_code", command="daily") == 0
    assert value(found, "tripduration_production_version") == 1
    assert value(found, "tripduration_last_monitored_month_age_days") is None

    code, out = calendar.daily("2021-05-19")  # April arrived on the 18th
    assert code == 0 and "ran: 2021-04" in out
    found = metrics(calendar.textfile)
    assert value(found, "tripduration_last_monitored_month_age_days") == 18
    assert value(found, "tripduration_months_awaited") == 0
    assert calendar.monitored() == {"2021-04": 1}
    before = calendar.registry.events()[0]
    code, out = calendar.daily("2021-05-19")  # a second run the same day adds nothing
    assert code == 0 and "nothing to run" in out and calendar.registry.events()[0] == before

    assert calendar.daily("2021-06-18")[0] == 0
    code, out = calendar.daily("2021-07-20")
    assert code == 0 and "2021-06: not published yet" in out

    # July arrived before June and is degraded: its retrain needs June (validation month), so it waits
    code, out = calendar.daily("2021-08-13")
    assert code == 0 and "ran: 2021-07" in out
    assert "2021-07: retrain deferred, waiting for 2021-06" in out and "2021-06: not published yet" in out
    july = loop_events(calendar.registry, "2021-07")
    assert [e["event"] for e in july] == ["monitored", "deferred"] and july[0]["verdict"] == "degraded"
    found = metrics(calendar.textfile)
    assert value(found, "tripduration_deferred_retrains_pending") == 1
    assert value(found, "tripduration_deferred_retrain_age_days", month="2021-07") == 0
    assert value(found, "tripduration_month_verdict", month="2021-07", verdict="degraded") == 1

    # June arrives: the next daily run monitors it, then resumes July's retrain and its gate
    code, out = calendar.daily("2021-08-25")
    assert code == 0 and "ran: 2021-06, 2021-07" in out
    july = loop_events(calendar.registry, "2021-07")
    assert [e["event"] for e in july] == ["monitored", "deferred", "resumed", "retrained"]
    assert july[2]["waited_for"] == ["2021-06"]
    assert value(metrics(calendar.textfile), "tripduration_deferred_retrains_pending") == 0
    calendar.check_log()

    assert calendar.daily("2021-09-17")[0] == 0  # August, with the challenger July's data may have promoted
    assert calendar.daily("2021-10-20")[0] == 0
    code, out = calendar.daily("2021-11-16")
    assert code == 0 and "2021-09: not published yet" in out and "ran: 2021-10" in out

    # September is still missing 62 days after it ended: exit 20 naming it, the other months still run
    code, out = calendar.daily("2021-12-02")
    assert code == 20 and "2021-09: still not published 62 days after the month ended" in out
    found = metrics(calendar.textfile)
    assert value(found, "tripduration_last_run_exit_code", command="daily") == 20
    assert value(found, "tripduration_month_lateness_days", month="2021-09", state="overdue") == 62
    code, out = calendar.daily("2021-12-15")
    assert code == 20 and "ran: 2021-11" in out

    # an operator rolls back to the first model; the loop goes on with it
    assert pipeline.main(["rollback", "v0001", "--reason", "drill"]) == 0
    calendar.check_log()

    code, out = calendar.daily("2022-01-11")  # September arrived on the 10th
    assert code == 0 and "ran: 2021-09" in out
    for day in ("2022-01-14", "2022-02-16", "2022-03-16", "2022-04-15"):
        assert calendar.daily(day)[0] == 0

    assert calendar.monitored() == dict.fromkeys(ARRIVALS, 1)  # every month exactly once, after it appeared
    for month, arrival in ARRIVALS.items():
        first = next(e for e in loop_events(calendar.registry, month))
        assert first["at"][:10] > arrival, (month, first["at"], arrival)
    calendar.check_log()
    found = metrics(calendar.textfile)
    production = calendar.registry.production()["version"]
    assert value(found, "tripduration_production_version") == int(production[1:])
    assert value(found, "tripduration_production_info", version=production) == 1
    assert (
        value(found, "tripduration_last_monitored_month_age_days") == (dt.date(2022, 4, 15) - dt.date(2022, 4, 1)).days
    )
    before = calendar.registry.events()[0]
    code, out = calendar.daily("2022-04-15")
    assert code == 0 and "nothing to run" in out
    assert calendar.registry.events()[0] == before  # the rerun adds nothing
