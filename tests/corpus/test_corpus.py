"""Every file of the bad-input corpus (``make_corpus.py``) through the real ``ValidatedTrips`` task.

Each case either fails with an error naming the file, the column and what to do, leaving no output behind,
or is processed with every row accounted for: ``rows_in == rows_kept + rows_rejected`` == the rows in the
file, every rejected row with a reason, and the counts the manifest expects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tasks import ValidatedTrips
from tripduration.data.rules import REASONS
from tripduration.data.schema import CANONICAL_DTYPES
from tripduration.errors import TripDataError
from tripduration.io.local import CACHE_DIR, is_temporary

from .make_corpus import CASE_NAMES, FILE_NAME, MANIFEST, PATH_PLACEHOLDER, kept_stats, make_corpus

MONTH = dt.date(2021, 1, 1)
SCRIPT = Path(__file__).with_name("make_corpus.py")

#: cases whose expected behaviour the code does not have yet (strict: the test fails once it is fixed)
KNOWN_BUGS: dict[str, str] = {}  # case -> reason, for cases that expose a bug not fixed yet

#: the cases the issue asks for, by name (the manifest may hold more)
REQUIRED_CASES = {
    "truncated_parquet",
    "csv_renamed",
    "empty_file",
    "zero_rows",
    "all_rows_rejected",
    *(f"missing_required_column_{c}" for c in ("pickup_datetime", "dropoff_datetime", "PULocationID")),
    *(f"missing_required_column_{c}" for c in ("DOLocationID", "trip_distance")),
    "strings_in_numeric",
    "timestamps_as_strings",
    "tz_aware_timestamps",
    "duplicate_column_names",
    "nan_and_inf",
    "absurd_magnitudes",
    "extra_unknown_columns",
    "v2021",
    "v2022",
    "v2023_large_string",
    "yellow",
    "dictionary_encoded",
    "uppercase_column_names",
    "lowercase_column_names",
    # issue 10 §3: the type contract
    "timestamp_strings_without_a_full_date_time",
    "out_of_range_timestamps",
    "time64_timestamps",
    "date32_timestamps",
    "boolean_location_ids",
    "duration_trip_distance",
    "unsigned_and_decimal_types",
    "id_strings_not_digits",
    "footer_claims_one_more_row",
}


def case_params() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]))
        if name in KNOWN_BUGS
        else name
        for name in CASE_NAMES
    ]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("corpus")
    return out, make_corpus(out)


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[BaseException]:
    """The exceptions luigi-interface logged at ERROR level (a failed task's record carries its exception)."""
    return [
        r.exc_info[1]
        for r in caplog.records
        if r.name == "luigi-interface" and r.levelno >= logging.ERROR and r.exc_info and r.exc_info[1]
    ]


def files_under(root: Path) -> list[Path]:
    """Task outputs under ``root`` (the content-hash cache, tripduration/io/content.py, is not an output)."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and CACHE_DIR not in p.relative_to(root).parts)


def test_manifest_covers_the_issue_and_the_script_reproduces_it_byte_for_byte(corpus, tmp_path):
    out, manifest = corpus
    assert set(manifest["cases"]) == set(CASE_NAMES)
    assert set(manifest["cases"]) >= REQUIRED_CASES
    assert json.loads((out / MANIFEST).read_text()) == manifest
    for name, spec in manifest["cases"].items():
        path = out / spec["file"]
        assert path.name == FILE_NAME and path.parent.name == name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == spec["sha256"], name
        assert spec["description"], name
        if spec["outcome"] == "error":
            assert PATH_PLACEHOLDER in spec["message_contains"] and spec["advice"] in spec["message_contains"], name
            assert spec["column"] is None or any(spec["column"] in m for m in spec["message_contains"]), name
        else:
            assert spec["outcome"] == "processed" and spec["rows_in"] > 0, name
    assert manifest["cases"]["all_rows_rejected"]["rows_kept"] == 0
    # seeded: the command line writes the very same files (same sha256 in the manifest)
    again = tmp_path / "again"
    done = subprocess.run([sys.executable, str(SCRIPT), str(again)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(CASE_NAMES)} cases" in done.stdout
    assert json.loads((again / MANIFEST).read_text()) == manifest


@pytest.mark.parametrize("name", case_params())
def test_case_through_validated_trips(name, corpus, pipeline_env, run_tasks, caplog):
    out, manifest = corpus
    spec = manifest["cases"][name]
    raw = pipeline_env.raw_dir / FILE_NAME
    shutil.copyfile(out / spec["file"], raw)
    task = ValidatedTrips(month=MONTH)
    with caplog.at_level("ERROR", logger="luigi-interface"):
        result = run_tasks([task])

    # whatever the outcome: the input file is left as it was, and no temporary file is left anywhere
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == spec["sha256"]
    leftovers = [
        p for p in files_under(pipeline_env.work_dir) + files_under(pipeline_env.raw_dir) if is_temporary(p.name)
    ]
    assert leftovers == []

    if spec["outcome"] == "error":
        assert not result.ok, f"{name}: expected a failure, got {result}"
        assert result.failed == [str(task)]
        assert not task.complete()
        assert files_under(pipeline_env.work_dir) == []  # no partial outputs (kept without rejected, ...)
        errors = logged_errors(caplog)
        assert len(errors) == 1 and isinstance(errors[0], TripDataError), errors
        message = str(errors[0])  # the message itself, not the traceback around it (which quotes source lines)
        assert str(raw) in message, message
        assert spec["advice"] in message, message
        if spec["column"]:
            assert spec["column"] in message, message
        for part in spec["message_contains"]:
            assert part.replace(PATH_PLACEHOLDER, str(raw)) in message, (part, message)
        return

    assert result.ok, f"{name}: {result}: {logged_errors(caplog)}"
    assert task.complete()
    outputs = task.output()
    summary = json.loads(Path(outputs["summary.json"].path).read_text())
    kept = pd.read_parquet(outputs["kept.parquet"].path)
    rejected = pd.read_parquet(outputs["rejected.parquet"].path)

    rows_written = pq.ParquetFile(raw).metadata.num_rows
    assert summary["rows_in"] == spec["rows_in"] == rows_written
    assert summary["rows_in"] == summary["rows_kept"] + summary["rows_rejected"]
    assert (len(kept), len(rejected)) == (summary["rows_kept"], summary["rows_rejected"])
    assert list(kept.columns) == list(CANONICAL_DTYPES)
    assert rejected["reason"].notna().all() and rejected["reason"].isin(REASONS).all()
    counts = summary["rejected_by_reason"]
    assert sum(counts.values()) == summary["rows_rejected"]
    assert rejected["reason"].value_counts().to_dict() == {r: n for r, n in counts.items() if n}

    if spec["rows_kept"] is not None:
        assert summary["rows_kept"] == spec["rows_kept"]
        assert summary["rows_rejected"] == spec["rows_rejected"]
    for reason, n in spec["rejected_reasons_at_least"].items():
        assert counts[reason] >= n, (reason, counts)
    if spec["rejected_by_reason"] is not None:
        assert {r: n for r, n in counts.items() if n} == spec["rejected_by_reason"]
    assert summary["source"]["coerced_to_null"] == spec["coerced_to_null"]
    if spec["kept_stats"] is not None:
        stats = kept_stats(kept)
        assert stats["trip_distance_sum"] == pytest.approx(spec["kept_stats"]["trip_distance_sum"], abs=1e-6)
        assert {**stats, "trip_distance_sum": None} == {**spec["kept_stats"], "trip_distance_sum": None}


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_non_regular_file_in_place_of_the_raw_month_fails_the_task_at_once(kind, pipeline_env, run_tasks, caplog):
    """Not a corpus file (a FIFO cannot be copied): a FIFO used to block ValidatedTrips forever on open."""
    import contextlib
    import os
    import threading

    raw = pipeline_env.raw_dir / FILE_NAME
    raw.unlink()
    os.mkfifo(raw) if kind == "fifo" else raw.mkdir()
    task = ValidatedTrips(month=MONTH)
    blocked = threading.Event()

    def release() -> None:  # luigi's worker must run in the main thread: a watchdog unblocks a blocked open
        blocked.set()
        with contextlib.suppress(OSError):
            os.close(os.open(raw, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Timer(20, release)
    watchdog.start()
    try:
        with caplog.at_level("ERROR", logger="luigi-interface"):
            result = run_tasks([task])
    finally:
        watchdog.cancel()
    assert not blocked.is_set(), f"ValidatedTrips blocked on the {kind} {raw} instead of failing at once"
    assert not result.ok and result.failed == [str(task)]
    assert files_under(pipeline_env.work_dir) == []
    errors = logged_errors(caplog)
    assert len(errors) == 1 and isinstance(errors[0], TripDataError), errors
    assert str(raw) in str(errors[0]) and "must be a regular file" in str(errors[0])
