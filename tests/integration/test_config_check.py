"""Every luigi.cfg value the pipeline reads is checked when a job starts: exit 2, one line naming section,
key, value and the allowed range, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser

from tasks.ops.config_check import (
    ConfigurationError,
    Real,
    Setting,
    Whole,
    check_configuration,
    problems,
    sections,
    unchecked_keys,
)
from tasks.settings import DownloadConfig, MonitoringConfig, ValidationConfig

ROOT = Path(__file__).resolve().parents[2]

BAD_VALUES = [
    ("validation", "max_distance_miles", "nan", "must be a finite number"),
    ("validation", "max_distance_miles", "inf", "must be a finite number"),
    ("validation", "min_duration_min", "-1", "must be >= 0"),
    ("validation", "max_duration_min", "0.5", "must be greater than min_duration_min"),
    ("validation", "max_duration_min", "abc", "cannot be read as a number"),
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
    # the five keys without a check before issue 19.4
    ("download", "offline", "maybe", "cannot be read as true or false"),
    ("download", "offline", "1", "cannot be read as true or false"),
    ("download", "probe_timeout_seconds", "0", "must be > 0"),
    ("download", "probe_timeout_seconds", "-5", "must be > 0"),
    ("monitoring", "missing_share_change", "-0.1", "must be >= 0"),
    ("monitoring", "missing_share_change", "1.5", "must be <= 1"),
    ("monitoring", "retrain_on", "degraded, drift_everything", "unknown rule(s) 'drift_everything'; choose from"),
    ("monitoring", "retrain_on", "degraded degraded", "unknown rule(s) 'degraded degraded'"),
    ("monitoring", "retrain_on", "degraded, degraded", "repeats a rule"),
    ("monitoring", "importance_min_share", "-0.01", "must be >= 0"),
    ("monitoring", "importance_min_share", "1.01", "must be <= 1"),
    ("s3", "endpoint_url", "127.0.0.1:9000", "must be an http:// or https:// URL"),
    ("training", "max_rows", "1.5", "cannot be read as a whole number"),
    ("mlflow", "tracking_uri", "var/mlflow/mlflow.db", "is not an MLflow tracking URI"),
    ("mlflow", "tracking_uri", "sqlite://mlflow.db", "names no database file or folder"),
    ("mlflow", "tracking_uri", "http://", "names no server"),
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


# --------------------------------------------------------------------------- unknown keys (issue 19.4)
MISSPELT = [
    ("paths", "work_dri", "work_dir"),
    ("paths", "registry", "registry_dir"),
    ("monitoring", "psi_drfit", "psi_drift"),
    ("monitoring", "retrain_when", "retrain_on"),
    ("download", "time_out_seconds", "timeout_seconds"),
    ("download", "off_line", "offline"),
    ("validation", "max_distance_mile", "max_distance_miles"),
    ("model_search", "candidate", "candidates"),
    ("training", "maxrows", "max_rows"),
    ("evaluation", "importance_row", "importance_rows"),
    ("registry", "name", "model_name"),
    ("parallelism", "threads", "threads_per_task"),
    ("monthly", "training_window", "train_window"),
    ("s3", "endpoint", "endpoint_url"),
    ("mlflow", "tracking_url", "tracking_uri"),
]


@pytest.mark.parametrize(("section", "key", "closest"), MISSPELT, ids=[f"{s}.{k}" for s, k, _ in MISSPELT])
def test_an_unknown_key_is_named_with_the_closest_known_key(config, section, key, closest):
    config.set(section, key, "1")
    with pytest.raises(ConfigurationError) as raised:
        check_configuration()
    message = str(raised.value)
    assert message.startswith(f"configuration: [{section}] {key}: unknown key, did you mean {closest}? ")
    assert "\n" not in message


def test_every_section_of_the_project_refuses_unknown_keys(config):
    for cls in sections():
        config.set(cls.get_task_family(), "no_such_key", "1")
    named = {line.split("]")[0].lstrip("[") for line in problems() if "no_such_key: unknown key" in line}
    assert named == {cls.get_task_family() for cls in sections()}


def test_a_known_key_in_luigi_s_dash_style_and_a_default_key_are_no_unknown_key(config):
    config.set("paths", "zone-lookup", "data/taxi_zone_lookup.csv")  # luigi reads it as zone_lookup
    parser = luigi.configuration.get_config()
    parser.defaults()["shared"] = "x"  # configparser shows [DEFAULT] keys in every section
    try:
        assert problems() == []
    finally:
        del parser.defaults()["shared"]


# --------------------------------------------------------------------------- every key has its check
def test_every_key_of_every_section_is_declared_with_its_check():
    for cls in sections():
        for key, param in cls.get_params():
            assert isinstance(param, Setting), f"[{cls.get_task_family()}] {key} has no check"
            assert param.check.allowed, f"[{cls.get_task_family()}] {key}: the check does not say what it allows"


def test_a_key_declared_without_its_check_is_refused_when_the_class_is_defined():
    class PlainConfigOfTheCheckTest(luigi.Config):  # a plain luigi.Config: defining it is fine
        lateness = luigi.FloatParameter(default=1.0)

    assert "declare lateness with its check" in (unchecked_keys(PlainConfigOfTheCheckTest) or "")
    code = "import luigi\nfrom tasks.ops.config_check import Section\nclass X(Section):\n    y = luigi.IntParameter()\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "TypeError: X: declare y with its check" in result.stderr


# --------------------------------------------------------------------------- NaN and infinities (issue 21.5)
NUMERIC = [
    (cls.get_task_family(), key, isinstance(param, Whole))
    for cls in sections()
    for key, param in cls.get_params()
    if isinstance(param, Real | Whole)
]
NOT_A_NUMBER = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"]


def test_the_numeric_keys_are_all_found():
    assert len(NUMERIC) >= 20 and ("validation", "max_distance_miles", False) in NUMERIC


def why_not(whole: bool) -> str:
    return "cannot be read as a whole number" if whole else "must be a finite number"


@pytest.mark.parametrize("value", NOT_A_NUMBER)
@pytest.mark.parametrize(("section", "key", "whole"), NUMERIC, ids=[f"{s}.{k}" for s, k, _ in NUMERIC])
def test_no_numeric_key_takes_nan_or_an_infinity_from_the_config(config, section, key, whole, value):
    config.set(section, key, value)
    with pytest.raises(ConfigurationError) as raised:
        check_configuration()
    assert str(raised.value) == f"configuration: [{section}] {key} = {value}: {why_not(whole)}" or (
        whole and str(raised.value).startswith(f"configuration: [{section}] {key} = {value}: {why_not(whole)} (")
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("section", "key", "whole"), NUMERIC, ids=[f"{s}.{k}" for s, k, _ in NUMERIC])
def test_no_numeric_key_takes_nan_or_an_infinity_from_a_command_line_flag(section, key, whole, value):
    flag = f"--{section}-{key}".replace("_", "-")
    with (
        CmdlineParser.global_instance(["TrainingPipeline", f"{flag}={value}"]),
        pytest.raises(ConfigurationError) as raised,
    ):
        check_configuration()
    assert str(raised.value).startswith(f"configuration: [{section}] {key} = {value} ({flag}): {why_not(whole)}")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("section", "key", "whole"), NUMERIC, ids=[f"{s}.{k}" for s, k, _ in NUMERIC])
def test_no_numeric_key_takes_nan_or_an_infinity_as_an_argument(section, key, whole, value):
    (cls,) = [c for c in sections() if c.get_task_family() == section]
    with pytest.raises(ConfigurationError, match=r"must be a finite number") as raised:
        cls(**{key: value})
    assert str(raised.value).startswith(f"configuration: {cls.__name__}({key} = {value!r}: ")


# --------------------------------------------------------------------------- a section checks when instantiated
def test_a_section_instantiated_anywhere_refuses_a_bad_configuration(config):
    config.set("validation", "max_distance_miles", "nan")
    for cls in (ValidationConfig, DownloadConfig):  # any section: the whole configuration is checked
        with pytest.raises(ConfigurationError, match=r"^configuration: \[validation\] max_distance_miles = nan: "):
            cls()


def test_explicit_arguments_are_checked_too():
    with pytest.raises(ConfigurationError, match=r"max_duration_min = 0.5: must be greater than min_duration_min"):
        ValidationConfig(max_duration_min=0.5)
    with pytest.raises(ConfigurationError, match=r"offline = None: must be true or false"):
        DownloadConfig(offline="maybe")  # luigi's BoolParameter would read it as None, i.e. online
    with pytest.raises(ConfigurationError, match=r"retrain_on = 'drift_everything': names unknown rule"):
        MonitoringConfig(retrain_on="drift_everything")


def test_a_change_after_a_section_passed_is_still_caught(config, monkeypatch):
    ValidationConfig()  # passes: the check remembers this configuration
    config.set("validation", "max_distance_miles", "inf")
    with pytest.raises(ConfigurationError, match=r"max_distance_miles = inf: must be a finite number"):
        ValidationConfig()
    config.set("validation", "max_distance_miles", "${MAX_MILES}")  # an environment variable: read every time
    monkeypatch.setenv("MAX_MILES", "50")
    assert ValidationConfig().max_distance_miles == 50
    monkeypatch.setenv("MAX_MILES", "nan")
    with pytest.raises(ConfigurationError, match=r"max_distance_miles = nan: must be a finite number"):
        ValidationConfig()
