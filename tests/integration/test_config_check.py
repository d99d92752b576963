"""Every luigi.cfg value the pipeline reads is checked when a job starts: exit 2, one line naming section,
key, value and the allowed range, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.ops.config_check import ConfigurationError, check_configuration, problems

ROOT = Path(__file__).resolve().parents[2]

BAD_VALUES = [
    ("validation", "max_distance_miles", "nan", "must be a finite number"),
    ("validation", "max_distance_miles", "inf", "must be a finite number"),
    ("validation", "min_duration_min", "-1", "must be >= 0"),
    ("validation", "max_duration_min", "0.5", "must be greater than min_duration_min"),
    ("validation", "max_duration_min", "abc", "cannot be read as FloatParameter"),
    ("model_search", "candidates", "[]", "must name at least one candidate"),
    ("model_search", "candidates", '["nope"]', "unknown candidates ['nope']"),
    ("model_search", "candidates", '["ridge_a1", "ridge_a1"]', "repeats a candidate"),
    ("training", "max_rows", "-1", "must be >= 0"),
    ("evaluation", "importance_rows", "0", "must be >= 1"),
    ("evaluation", "importance_repeats", "0", "must be >= 1"),
    ("download", "url_template", "ftp://example.org/{month}.parquet", "scheme 'ftp'"),
    ("download", "url_template", "https://example.org/{year}.parquet", "placeholders"),
    ("download", "timeout_seconds", "0", "must be > 0"),
    ("download", "deadline_seconds", "0", "must be > 0"),
    ("download", "deadline_seconds", "inf", "must be a finite number"),
    ("download", "min_bytes_per_second", "-1", "must be >= 0"),
    ("download", "min_rate_window_seconds", "0.5", "must be >= 1"),
    ("download", "retries", "-2", "must be >= 0"),
    ("registry", "model_name", "../{color}", "may hold only letters"),
    ("monitoring", "psi_drift", "nan", "must be a finite number"),
    ("monitoring", "rmse_degraded_ratio", "0.9", "must be > 1"),
    ("monthly", "train_window", "0", "must be >= 1"),
    ("parallelism", "threads_per_task", "-1", "must be >= 0"),
    ("resources", "cores", "0", "must be a whole number >= 1"),
]


def test_the_shipped_configuration_is_valid():
    assert problems() == []
    check_configuration()


IDS = [f"{s}.{k}={v}" for s, k, v, _ in BAD_VALUES]


@pytest.mark.parametrize(("section", "key", "value", "why"), BAD_VALUES, ids=IDS)
def test_a_bad_value_is_named_with_its_range(config, section, key, value, why):
    config.set(section, key, value)
    with pytest.raises(ConfigurationError) as raised:
        check_configuration()
    message = str(raised.value)
    assert f"[{section}] {key} = " in message and why in message
    assert "\n" not in message


def test_every_problem_is_listed_at_once(config):
    config.set("training", "max_rows", "-1")
    config.set("evaluation", "importance_rows", "0")
    assert len(problems()) == 2


def test_pipeline_exits_2_before_writing_anything(pipeline_env, tmp_path):
    cfg = pipeline_env.cfg_file
    cfg.write_text(cfg.read_text() + "\n[validation]\nmax_distance_miles = nan\n")
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "train"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "pipeline.py: error: configuration: [validation] max_distance_miles = nan: must be a finite number"
    ]
    assert not pipeline_env.work_dir.exists() and not pipeline_env.registry_dir.exists()
