"""The commands that train and run the monthly loop, as real processes, on a local folder and a moto S3 bucket.

One deployment per backend (module scope), driven through a month of its life in order, each step a test:
``train`` -> ``daily`` (2021-04 arrived) -> ``monthly-run`` 2021-05, then ``daily`` finds both done ->
``monthly`` -> ``backfill`` -> ``invalidate`` and the rerun it causes -> ``export-mlflow`` -> ``status`` after a
raw file was replaced. The sampled real months 2021-01..04 of tests/conftest.py and a 2021-05 made from 2021-04
are in ``raw_dir``; ``[download] offline`` (nothing from the network). Each step checks its exit code and its
effects through the storage port: objects in the bucket (none in a local work folder), the registry's
versions, pointer and event log, the month records, and the Prometheus text file written locally.

Slow (about 75 s locally and 110 s on S3, on 2 shared cores): ``make test-slow``. The commands that need no training are
in test_cli_matrix.py, in the fast suite.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import shift_month
from tests.events import loop_events
from tests.storage.cli_matrix import KINDS, Backend, explain, make_backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw_source(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sampled months 2021-01..04, the zone lookup, and 2021-05 (2021-04's trips moved by 30 days)."""
    raw = tmp_path_factory.mktemp("matrix-raw")
    shutil.copytree(sample_raw_dir, raw, dirs_exist_ok=True)
    shift_month(raw / "green_tripdata_2021-04.parquet", raw / "green_tripdata_2021-05.parquet", days=30)
    return raw


@pytest.fixture(scope="module", params=KINDS)
def flow(request: pytest.FixtureRequest, raw_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    endpoint = request.getfixturevalue("moto_server").endpoint_url if request.param == "s3" else None
    return make_backend(request.param, tmp_path_factory.mktemp(f"matrix-{request.param}"), raw_source, endpoint)


def families(backend: Backend) -> set[str]:
    return {key.split("/", 1)[0] for key in backend.work().list() if "/" in key}


def metric(backend: Backend, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(backend.textfile.read_text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def months_tested(backend: Backend) -> set[str]:
    """The test month of every registered version."""
    registry = backend.registry()
    return {str(registry.model_metadata(v).test_month) for v in registry.versions()}


def nothing_local(backend: Backend) -> None:
    """On S3 no command leaves a local work folder, registry or download scratch behind."""
    if backend.kind == "s3":
        assert not (backend.home / "work").exists() and not (backend.home / "models").exists()
        assert not [p.name for p in (backend.home / "scratch").iterdir() if p.name.startswith("s3-")]


# --------------------------------------------------------------------------- the steps, in order
def test_train_registers_v0001_in_production_and_a_rerun_runs_nothing(flow: Backend) -> None:
    done = flow.cli("train")
    assert done.returncode == 0, explain(done)
    registry = flow.registry()
    assert registry.versions() == ["v0001"]
    assert registry.current_version() == "v0001"
    assert [e["event"] for e in registry.events()[0]] == ["promoted"]
    assert {"ValidatedTrips", "ModelInputTable", "FinalModel", "EvaluationReport", "RegisteredModel"} <= families(flow)
    assert metric(flow, "tripduration_last_run_exit_code", command="train") == 0
    nothing_local(flow)

    written = flow.work().list()
    again = flow.cli("train")
    assert again.returncode == 0 and "Did not run any tasks" in again.stderr, explain(again)
    assert flow.work().list() == written


def test_daily_runs_the_month_that_arrived_then_nothing(flow: Backend) -> None:
    done = flow.cli("daily", "--now", "2021-05-20T08:00")
    assert done.returncode == 0, explain(done)
    assert "ran: 2021-04" in done.stdout, explain(done)
    april = loop_events(flow.registry(), "2021-04")
    assert april and april[0]["event"] == "monitored" and april[0]["monitored_version"] == "v0001"
    assert any(k.startswith("MonthlyRun/") and k.endswith("/run.json") for k in flow.work().list())
    assert metric(flow, "tripduration_last_run_exit_code", command="daily") == 0

    events = flow.registry().events()[0]
    again = flow.cli("daily", "--now", "2021-05-20T09:00")
    assert again.returncode == 0 and "nothing to run: 1 month(s) done" in again.stdout, explain(again)
    assert flow.registry().events()[0] == events
    nothing_local(flow)


def test_monthly_run_records_its_month_and_daily_sees_it_done(flow: Backend) -> None:
    done = flow.cli("monthly-run", "--month", "2021-05")
    assert done.returncode == 0, explain(done)
    may = loop_events(flow.registry(), "2021-05")
    assert may and may[0]["event"] in ("monitored", "not monitored"), may
    daily = flow.cli("daily", "--now", "2021-06-20T08:00")
    assert daily.returncode == 0 and "nothing to run: 2 month(s) done" in daily.stdout, explain(daily)
    nothing_local(flow)


def test_monthly_trains_the_months_window(flow: Backend) -> None:
    done = flow.cli("monthly", "--month", "2021-04")
    assert done.returncode == 0, explain(done)
    assert "2021-04" in months_tested(flow)
    nothing_local(flow)


def test_backfill_trains_every_month_of_the_span(flow: Backend) -> None:
    done = flow.cli("backfill", "--start", "2021-03", "--stop", "2021-05")
    assert done.returncode == 0, explain(done)
    assert {"2021-03", "2021-04", "2021-05"} <= months_tested(flow)
    again = flow.cli("backfill", "--start", "2021-03", "--stop", "2021-05")
    assert again.returncode == 0 and "Did not run any tasks" in again.stderr, explain(again)
    nothing_local(flow)


def validated_folders(flow: Backend, month: str) -> list[str]:
    return [n for n in flow.work().children("ValidatedTrips") if n.startswith(f"green_{month}-")]


def test_invalidate_makes_the_task_and_its_downstream_run_again(flow: Backend) -> None:
    before = validated_folders(flow, "2021-03")
    done = flow.cli("invalidate", "ValidatedTrips", "--month", "2021-03")
    assert done.returncode == 0, explain(done)
    status = flow.cli("status")
    assert status.returncode == 0 and "invalidated (pipeline.py invalidate)" in status.stdout, explain(status)
    rerun = flow.cli("train")
    assert rerun.returncode == 0, explain(rerun)
    after = validated_folders(flow, "2021-03")
    assert len(after) == len(before) + 1 and set(before) < set(after)
    assert "nothing to run: the job is complete" in flow.cli("status").stdout


def test_export_mlflow_mirrors_every_version(flow: Backend) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{flow.home / 'mlflow' / 'mlflow.db'}"
    done = flow.cli("export-mlflow", "--tracking-uri", uri, "--json")
    assert done.returncode == 0, explain(done)
    result = json.loads(done.stdout)
    versions = flow.registry().versions()
    assert result["errors"] == [] and [r["version"] for r in result["versions"]] == versions
    assert result["created"]["model_versions"] == len(versions)
    again = json.loads(flow.cli("export-mlflow", "--tracking-uri", uri, "--json").stdout)
    assert again["created"] == {"runs": 0, "model_versions": 0}  # found, not duplicated


def test_status_sees_a_replaced_raw_file(flow: Backend) -> None:
    """The content identity of a raw file (sha256 locally, ETag on S3) changes when its bytes do."""
    name = "green_tripdata_2021-02.parquet"  # not the month invalidated above
    smaller = flow.home / name
    with flow.raw_storage().local_copy(name) as current:
        pq.write_table(pq.read_table(current).slice(0, 3000), smaller)
    flow.raw_storage().write_bytes(name, smaller.read_bytes())
    status = flow.cli("status")
    assert status.returncode == 0, explain(status)
    line = next(line for line in status.stdout.splitlines() if "ValidatedTrips_green_2021_02" in line)
    assert "changed fingerprint" in line and flow.work().url_for("ValidatedTrips/green_2021-02-") in line, line
