"""Smoke test of ``make bench-service`` (benchmarks/service_bench.py) at tiny settings, on a small registry.

The real run (a few minutes, the production model of ``make run``) is not part of the test suite; this one
(under a minute) checks that the script starts both services on a registry given by LUIGI_CONFIG_PATH,
checks that they agree, measures every phase in both conditions, writes the expected keys, stops every
process it started, and refuses a registry without a production model with exit 2 and one line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
from conftest import DATA, ROOT

from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.registry.store import ModelRegistry
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy

pytestmark = pytest.mark.slow
BENCH = ROOT / "benchmarks" / "service_bench.py"


def _config(tmp_path: Path, registry_dir: Path) -> dict[str, str]:
    cfg = tmp_path / "luigi.cfg"
    cfg.write_text(f"[paths]\nregistry_dir = {registry_dir}\nwork_dir = {tmp_path / 'work'}\n")
    return {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}


def test_service_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    kept, _, _ = validate_trip_file(DATA / "green_tripdata_2021-01.parquet", dt.date(2021, 1, 1), Rules())
    X, y = split_xy(model_table(kept).sample(n=5000, random_state=0))
    model = build_pipeline(CANDIDATES["hgb_lr10_l31"]).set_params(model__max_iter=20).fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    registry = ModelRegistry(tmp_path / "models", "green-trip-duration")
    version = registry.register(tmp_path / "m.joblib", {"metrics": {}, "data": [], "algorithm": {"candidate": "hgb"}})
    with registry.lock():
        registry.set_production(version, "smoke")
    out = tmp_path / "results.json"
    args = ["--reps", "1", "--seconds", "1", "--batches", "3", "--output", str(out)]
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=ROOT,
        env=_config(tmp_path, registry.root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert {"meta", "model", "settings", "runs", "medians", "targets", "table"} <= set(results)
    assert results["model"]["version"] == version
    for condition in ("idle", "busy"):
        for kind in ("ours", "naive"):
            (run,) = results["runs"][condition][kind]
            assert run["requests"] >= 8 and run["rps"] > 0 and run["batch_p50_ms"] > 0, run
    assert [t["key"] for t in results["targets"]] == [
        "single_rps_ratio",
        "single_p99_ms",
        "batch_p50_ratio",
        "busy_rps_ratio",
    ]
    assert "| target |" in proc.stdout


def test_service_benchmark_without_a_production_model_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--output", str(tmp_path / "r.json")],
        cwd=ROOT,
        env=_config(tmp_path, tmp_path / "empty-models"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "service_bench: the registry has no production model: run `make run` first"
    ]
    assert not (tmp_path / "r.json").exists()
