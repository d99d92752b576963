"""Train on 2021 months, then predict, monitor and evaluate on later-year months whose files use the types
TLC switched to later, with no manual step in between.

The later months are synthesised from the sampled 2021-03 file: the same trips with timestamps moved a year
(2022-03) or two (2023-03) later, written with the later layouts:

- green 2022-03: int32 VendorID/PULocationID/DOLocationID, nullable int64 passenger_count/RatecodeID/
  payment_type/trip_type (with their nulls), large_string store_and_fwd_flag, double ehail_fee, and an extra
  cbd_congestion_fee column;
- 2023-03 in the yellow layout: tpep_ timestamp names, Airport_fee, no trip_type nor ehail_fee, yellow
  column order (read through the same colour-independent contract).

Each is compared with a copy of the same shifted trips written with the 2021 types (int64 IDs, double
counts, null-typed ehail_fee; for the yellow one trip_type null-typed, since yellow files have none): the
validated trips, the predictions and the monitoring report must be the same, i.e. the type changes alone
change nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tasks import BatchPredictions, MonitoringReport, TrainingPipeline, ValidatedTrips
from tests.corpus.make_corpus import YELLOW_ORDER
from tripduration.registry.store import ModelRegistry

GREEN_2022 = dt.date(2022, 3, 1)  # 2021-03-01 + 365 days
YELLOW_2023 = dt.date(2023, 3, 1)  # 2021-03-01 + 730 days
SHIFT_DAYS = {GREEN_2022: 365, YELLOW_2023: 730}

#: the types of the later TLC files (2021: int64 IDs, double codes and counts, string flag, null ehail_fee)
LATER_TYPES = {
    "VendorID": pa.int32(),
    "PULocationID": pa.int32(),
    "DOLocationID": pa.int32(),
    "RatecodeID": pa.int64(),
    "passenger_count": pa.int64(),
    "payment_type": pa.int64(),
    "trip_type": pa.int64(),
    "store_and_fwd_flag": pa.large_string(),
    "ehail_fee": pa.float64(),
}


def file_name(month: dt.date) -> str:
    return f"green_tripdata_{month:%Y-%m}.parquet"


def shifted(table: pa.Table, days: int) -> pa.Table:
    """The same trips with both timestamps moved by ``days`` (types unchanged)."""
    for col in ("lpep_pickup_datetime", "lpep_dropoff_datetime"):
        i = table.schema.get_field_index(col)
        moved = pc.add(table.column(col), pa.scalar(dt.timedelta(days=days), type=pa.duration("us")))
        table = table.set_column(i, col, moved.cast(table.schema.field(col).type))
    return table


def with_types(table: pa.Table, types: dict[str, pa.DataType]) -> pa.Table:
    return table.cast(pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in table.schema]))


def green_later_layout(table: pa.Table) -> pa.Table:
    later = with_types(table, LATER_TYPES)
    fee = np.where(np.arange(later.num_rows) % 4 == 0, 0.75, 0.0)
    return later.append_column("cbd_congestion_fee", pa.array(fee))


def yellow_layout(table: pa.Table) -> pa.Table:
    later = with_types(table, LATER_TYPES)
    later = later.rename_columns([n.replace("lpep_", "tpep_") for n in later.column_names])
    airport = np.where(np.arange(later.num_rows) % 10 == 0, 1.25, 0.0)
    return later.append_column("Airport_fee", pa.array(airport)).select(YELLOW_ORDER)


def without_trip_type(table: pa.Table) -> pa.Table:
    """The 2021 layout with trip_type null-typed (all missing), like a yellow file's absent trip_type."""
    i = table.schema.get_field_index("trip_type")
    return table.set_column(i, "trip_type", pa.nulls(table.num_rows))


def read_outputs(month: dt.date, model_version: str) -> dict[str, object]:
    """What the tasks of ``month`` wrote under the current [paths] (``production`` resolves to its version now)."""
    validated = ValidatedTrips(month=month).output()
    report = MonitoringReport(month=month, model_version=model_version).output().path
    monitoring = Path(report) / "monitoring.json"
    return {
        "summary": json.loads(Path(validated["summary.json"].path).read_text()),
        "kept": pd.read_parquet(validated["kept.parquet"].path),
        "predictions": pd.read_parquet(BatchPredictions(month=month, model_version=model_version).output().path),
        "monitoring": json.loads(monitoring.read_text()),
    }


@pytest.mark.slow
def test_model_trained_on_2021_types_predicts_later_year_types_unchanged(pipeline_env, run_tasks, tmp_path):
    march_2021 = pq.read_table(pipeline_env.raw_dir / "green_tripdata_2021-03.parquet")
    assert march_2021.schema.field("PULocationID").type == pa.int64()  # the sample has the 2021 types
    reference_raw = tmp_path / "raw-2021-types"
    reference_raw.mkdir()
    later_layouts = {GREEN_2022: green_later_layout, YELLOW_2023: yellow_layout}
    for month, layout in later_layouts.items():
        trips = shifted(march_2021, SHIFT_DAYS[month])
        pq.write_table(layout(trips), pipeline_env.raw_dir / file_name(month))
        reference = without_trip_type(trips) if month == YELLOW_2023 else trips
        pq.write_table(reference, reference_raw / file_name(month))
    shutil.copy(pipeline_env.raw_dir / "taxi_zone_lookup.csv", reference_raw / "taxi_zone_lookup.csv")

    # 1. train on 2021 (train 2021-01, validate 2021-02, test 2021-03): v0001 becomes production
    trained = run_tasks([TrainingPipeline()])
    assert trained.ok, trained
    registry = ModelRegistry(pipeline_env.registry_dir, "green-trip-duration")
    assert registry.versions() == ["v0001"]
    assert registry.production()["version"] == "v0001"

    # 2. predict and monitor the later-year months with it, from their later-year files as they are
    months = list(later_layouts)
    deployed = run_tasks([task for m in months for task in (BatchPredictions(month=m), MonitoringReport(month=m))])
    assert deployed.ok, deployed
    later = {m: read_outputs(m, "production") for m in months}
    source_types = {m: later[m]["summary"]["source"]["source_types"] for m in months}
    assert source_types[GREEN_2022]["PULocationID"] == "int32"
    assert source_types[GREEN_2022]["passenger_count"] == "int64"
    assert source_types[GREEN_2022]["trip_type"] == "int64"
    assert later[GREEN_2022]["summary"]["source"]["source_columns"]["pickup_datetime"] == "lpep_pickup_datetime"
    assert "cbd_congestion_fee" in later[GREEN_2022]["summary"]["source"]["ignored_columns"]
    assert later[YELLOW_2023]["summary"]["source"]["source_columns"]["pickup_datetime"] == "tpep_pickup_datetime"
    assert later[YELLOW_2023]["summary"]["source"]["source_columns"]["trip_type"] is None
    for m in months:
        summary, predictions = later[m]["summary"], later[m]["predictions"]
        assert summary["source"]["coerced_to_null"] == {}
        assert summary["rows_in"] == march_2021.num_rows
        assert summary["rows_kept"] > 0.8 * summary["rows_in"]  # the shift keeps the trips inside the month
        # every kept trip is scored, and so are trips rejected only for their outcome (issue 11.3)
        assert (predictions["source"] == "kept").sum() == summary["rows_kept"]
        assert len(predictions) >= summary["rows_kept"]
        assert predictions["predicted_duration_min"].notna().all()
        assert set(predictions["model_version"]) == {"v0001"}
        assert later[m]["monitoring"]["month"] == f"{m:%Y-%m}"
        assert later[m]["monitoring"]["verdict"] in {"ok", "drift", "degraded"}

    # 3. evaluate and register on a later-year test month: reuses the trained models, trains nothing
    retested = run_tasks([TrainingPipeline(test_month=GREEN_2022)])
    assert retested.ok, retested
    assert retested.families() <= {"EvaluationReport", "RegisteredModel", "TrainingPipeline"}, retested.ran
    assert registry.versions() == ["v0001", "v0002"]
    lineage = {d["role"]: d for d in registry.metadata("v0002")["data"]}
    assert lineage["test"]["month"] == "2022-03"
    assert lineage["test"]["rows_kept"] == later[GREEN_2022]["summary"]["rows_kept"]

    # 4. the same shifted trips written with the 2021 types, through the same tasks with the same model
    pipeline_env.config.set("paths", "raw_dir", str(reference_raw))
    pipeline_env.config.set("paths", "work_dir", str(tmp_path / "work-2021-types"))
    pipeline_env.config.set("paths", "zone_lookup", str(reference_raw / "taxi_zone_lookup.csv"))
    reference_run = run_tasks(
        [
            task
            for m in months
            for task in (
                BatchPredictions(month=m, model_version="v0001"),
                MonitoringReport(month=m, model_version="v0001"),
            )
        ]
    )
    assert reference_run.ok, reference_run
    reference = {m: read_outputs(m, "v0001") for m in months}
    assert reference[GREEN_2022]["summary"]["source"]["source_types"]["PULocationID"] == "int64"

    for m in months:
        ours, theirs = later[m], reference[m]
        for key in ("rows_in", "rows_kept", "rows_rejected", "rejected_by_reason"):
            assert ours["summary"][key] == theirs["summary"][key], (m, key)
        pd.testing.assert_frame_equal(ours["kept"], theirs["kept"])
        keys = ["trip_row", "pickup_datetime", "dropoff_datetime", "PULocationID", "DOLocationID", "trip_distance"]
        pd.testing.assert_frame_equal(ours["predictions"][keys], theirs["predictions"][keys])
        np.testing.assert_allclose(
            ours["predictions"]["predicted_duration_min"], theirs["predictions"]["predicted_duration_min"], rtol=1e-12
        )
        assert ours["monitoring"] == theirs["monitoring"], m
