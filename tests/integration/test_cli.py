"""The command-line entry points, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(env_cfg: Path, *args: str, cwd: Path, module: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(env_cfg)}
    if module:
        env["PYTHONPATH"] = str(ROOT)
        cmd = [sys.executable, "-m", "luigi", "--module", "pipeline", *args]
    else:
        cmd = [sys.executable, str(ROOT / "pipeline.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_pipeline_py_from_another_directory_then_nothing_to_do(pipeline_env, tmp_path):
    first = cli(pipeline_env.cfg_file, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (pipeline_env.registry_dir / "green-trip-duration" / "versions" / "v0001").is_dir()
    second = cli(pipeline_env.cfg_file, cwd=tmp_path)
    assert second.returncode == 0
    assert "Did not run any tasks" in second.stderr


def test_luigi_module_entry_point(pipeline_env, tmp_path):
    result = cli(
        pipeline_env.cfg_file, "ValidatedTrips", "--month", "2021-02", "--local-scheduler", cwd=tmp_path, module=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = list((pipeline_env.work_dir / "ValidatedTrips").glob("*/summary.json"))
    assert len(summaries) == 1
    assert json.loads(summaries[0].read_text())["month"] == "2021-02"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--test-month", "2021-13"], "2021-13"),
        (["--color", "../../etc"], "../../etc"),
        (["--train-months", "2021-02", "--val-month", "2021-02"], "validation month 2021-02"),
    ],
)
def test_bad_parameters_fail_before_touching_files(pipeline_env, tmp_path, args, needle):
    result = cli(pipeline_env.cfg_file, *args, cwd=tmp_path)
    assert result.returncode != 0
    assert needle in result.stderr
    assert not pipeline_env.work_dir.exists()


def test_a_month_that_is_not_published_exits_with_the_missing_data_code(pipeline_env, tmp_path):
    # 2020-06 is neither in the raw directory nor at the (file://) URL template: nothing runs, exit 20
    result = cli(pipeline_env.cfg_file, "--train-months", "2020-06", cwd=tmp_path)
    assert result.returncode == 20, result.stderr[-2000:]
    assert "missing input data" in result.stderr and "green 2020-06" in result.stderr
    # no task output; the content-hash cache (.cache/, see tripduration/io/local.py) is not an output
    assert not list(pipeline_env.work_dir.glob("[!.]*/*"))


def test_a_failed_task_exits_with_the_task_failed_code(pipeline_env, tmp_path):
    (pipeline_env.raw_dir / "green_tripdata_2021-02.parquet").write_text("not,parquet\n1,2\n")
    result = cli(pipeline_env.cfg_file, cwd=tmp_path)
    assert result.returncode == 30, result.stderr[-2000:]
    assert "green_tripdata_2021-02.parquet: not a readable parquet file" in result.stderr
    assert "ValidatedTrips(color=green, month=2021-02)" in result.stderr.split("Execution Summary")[1]


@pytest.mark.slow
def test_full_real_months_meet_the_targets(tmp_path, config):
    """The README's run on the full embedded months: targets of issue #2 (slow: about a minute)."""
    cfg = tmp_path / "real.cfg"
    cfg.write_text(f"[paths]\nwork_dir = {tmp_path / 'work'}\nregistry_dir = {tmp_path / 'models'}\n")
    # speed is the benchmark's business (make bench: ratios measured side by side), not a timed test's
    first = cli(cfg, "--workers", "2", cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    production = json.loads((tmp_path / "models" / "green-trip-duration" / "production.json").read_text())
    meta = json.loads(
        (tmp_path / "models" / "green-trip-duration" / "versions" / production["version"] / "metadata.json").read_text()
    )
    test_rmse, baseline_rmse = meta["metrics"]["test"]["rmse"], meta["metrics"]["baseline_test"]["rmse"]
    assert test_rmse <= 5.5
    assert test_rmse <= 0.78 * baseline_rmse
    again = cli(cfg, cwd=tmp_path)
    assert again.returncode == 0 and "Did not run any tasks" in again.stderr
