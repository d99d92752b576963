"""No path hands a task a bad setting (issue 21.5): every way to start a job, and every place a value can come
from, meets the check of ``tasks/ops/config_check.py``, with one line, before anything is written.

An outside tester found ``[validation] max_distance_miles = nan`` refused by ``pipeline.py status`` but taken by
``python -m luigi --module pipeline TrainingPipeline --local-scheduler`` (which the README documents): the rule
was silently off. The paths tried here: luigi's command line (``python -m luigi`` and the ``luigi`` script), its
``--section-key`` flags, ``$LUIGI_CONFIG_PATH`` override files, ``${VAR}`` in a config file, ``bin/cron-pipeline``,
every ``pipeline.py`` command, ``luigi.build`` in a script and a task run by hand.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import MonthlyRun, TrainingPipeline, ValidatedTrips
from tasks.ops.config_check import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
NAN_LINE = "configuration: [validation] max_distance_miles = nan: must be a finite number"
LUIGI = {
    "python -m luigi": [sys.executable, "-m", "luigi"],
    "luigi script": [str(Path(sys.executable).with_name("luigi"))],
}


def environ(pipeline_env, extra: str = "", **variables: str) -> dict[str, str]:
    """The environment of a subprocess run: the test's config file with ``extra`` appended (later keys win)."""
    cfg = pipeline_env.cfg_file
    cfg.write_text(cfg.read_text() + "\n" + extra)
    return {**os.environ, "LUIGI_CONFIG_PATH": str(cfg), **variables}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def refused(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    return result.stderr.strip().splitlines()


# --------------------------------------------------------------------------- luigi's own command line
@pytest.mark.parametrize("entry", LUIGI.values(), ids=list(LUIGI))
def test_luigi_module_refuses_a_bad_value_of_an_override_file(pipeline_env, tmp_path, entry):
    env = environ(pipeline_env, "[validation]\nmax_distance_miles = nan\n")
    result = run([*entry, "--module", "pipeline", "TrainingPipeline", "--local-scheduler"], env, tmp_path)
    assert refused(result) == [f"luigi --module pipeline: error: {NAN_LINE}"]
    assert pipeline_env.files() == []


def test_luigi_module_refuses_a_bad_value_given_as_a_flag(pipeline_env, tmp_path):
    flags = ["--validation-max-distance-miles", "nan", "--monitoring-psi-drift=-inf"]
    result = run([*LUIGI["python -m luigi"], "--module", "pipeline", "TrainingPipeline", "--local-scheduler", *flags],
                 environ(pipeline_env), tmp_path)  # fmt: skip
    assert refused(result) == [
        "luigi --module pipeline: error: configuration: [monitoring] psi_drift = -inf (--monitoring-psi-drift): "
        "must be a finite number (and 1 more: [validation] max_distance_miles = nan (--validation-max-distance-miles)"
        ": must be a finite number)"
    ]
    assert pipeline_env.files() == []


def test_luigi_module_names_a_misspelt_key(pipeline_env, tmp_path):
    env = environ(pipeline_env, "[monitoring]\npsi_drfit = 0.3\n")
    result = run(
        [*LUIGI["python -m luigi"], "--module", "pipeline", "TrainingPipeline", "--local-scheduler"], env, tmp_path
    )
    (line,) = refused(result)
    assert line.startswith(
        "luigi --module pipeline: error: configuration: [monitoring] psi_drfit: unknown key, did you mean psi_drift?"
    )
    assert pipeline_env.files() == []


def test_luigi_module_still_reports_its_own_usage_errors(pipeline_env, tmp_path):
    result = run(
        [*LUIGI["python -m luigi"], "--module", "pipeline", "--local-scheduler"], environ(pipeline_env), tmp_path
    )
    assert result.returncode != 0 and "No task specified" in result.stderr


# --------------------------------------------------------------------------- pipeline.py and cron
JOBS = {
    "train": ["train"],
    "monthly": ["monthly", "--month", "2021-03"],
    "monthly-run": ["monthly-run", "--month", "2021-04"],
    "backfill": ["backfill", "--start", "2021-03", "--stop", "2021-03"],
    "status": ["status", "monthly-run", "--month", "2021-04"],
    "invalidate": ["invalidate", "ValidatedTrips", "--month", "2021-03"],
    "models": ["models"],
    "serve": ["serve", "--port", "0"],
}


@pytest.mark.parametrize("args", JOBS.values(), ids=list(JOBS))
def test_every_command_refuses_an_unknown_retrain_rule_before_anything(pipeline_env, tmp_path, args):
    # before issue 19.4 retrain_on was checked only inside MonthlyRun, after predictions and monitoring ran
    env = environ(pipeline_env, "[monitoring]\nretrain_on = degraded, drift_everything\n")
    (line,) = refused(run([sys.executable, str(ROOT / "pipeline.py"), *args], env, tmp_path))
    assert line.startswith(
        "pipeline.py: error: configuration: [monitoring] retrain_on = degraded, drift_everything: "
        "names unknown rule(s) 'drift_everything'; choose from degraded, drift_important"
    )
    assert pipeline_env.files() == []


def test_invalidate_refuses_a_bad_value_given_as_a_flag(pipeline_env, tmp_path):
    args = ["invalidate", "ValidatedTrips", "--month", "2021-03", "--validation-max-distance-miles", "nan"]
    result = run([sys.executable, str(ROOT / "pipeline.py"), *args], environ(pipeline_env), tmp_path)
    # the command line takes no luigi --section-key flags at all: refused as an unknown argument, nothing written
    assert refused(result) == [
        "pipeline.py: error: unrecognized arguments: --validation-max-distance-miles nan (see: pipeline.py --help)"
    ]
    assert pipeline_env.files() == []


def test_an_environment_variable_in_a_config_file_is_checked(pipeline_env, tmp_path):
    env = environ(pipeline_env, "[validation]\nmax_distance_miles = ${MAX_MILES}\n", MAX_MILES="inf")
    result = run([sys.executable, str(ROOT / "pipeline.py"), "train"], env, tmp_path)
    assert refused(result) == [
        "pipeline.py: error: configuration: [validation] max_distance_miles = inf: must be a finite number"
    ]
    assert pipeline_env.files() == []


def test_the_cron_entry_exits_2_with_the_line_in_its_log(pipeline_env, tmp_path):
    env = environ(pipeline_env, "[validation]\nmax_distance_miles = nan\n", PIPELINE_LOG_DIR=str(tmp_path / "log"))
    result = run([str(ROOT / "bin" / "cron-pipeline"), "monthly", "--month", "2021-03"], env, tmp_path)
    assert result.returncode == 2
    (log,) = (tmp_path / "log").iterdir()
    lines = log.read_text().splitlines()
    assert lines[1:] == [f"pipeline.py: error: {NAN_LINE}", lines[-1]] and lines[-1].endswith("end: exit code 2")
    assert pipeline_env.files() == []


# --------------------------------------------------------------------------- in a script, or by hand
def test_luigi_build_in_a_script_runs_nothing(pipeline_env, run_tasks):
    pipeline_env.config.set("validation", "max_distance_miles", "nan")
    result = run_tasks([TrainingPipeline()])
    assert not result.ok and result.ran == []
    assert pipeline_env.files() == []


def test_monthly_run_with_an_unknown_retrain_rule_is_refused_before_it_runs(pipeline_env, run_tasks):
    assert run_tasks([TrainingPipeline()]).ok  # a production model to monitor
    before = pipeline_env.files()
    pipeline_env.config.set("monitoring", "retrain_on", "degraded, drift_everything")
    # was: data, predictions and monitoring of the month ran, then MonthlyRun failed with a ValueError
    with pytest.raises(ConfigurationError, match=r"\[monitoring\] retrain_on = degraded, drift_everything: names"):
        run_tasks([MonthlyRun(month=dt.date(2021, 4, 1))])  # creating it reads the registry's section: refused
    assert pipeline_env.files() == before


def test_a_task_run_by_hand_refuses_before_writing(pipeline_env):
    pipeline_env.config.set("validation", "max_distance_miles", "nan")
    task = ValidatedTrips(month=dt.date(2021, 3, 1))
    with pytest.raises(ConfigurationError) as raised:
        task.run()
    assert str(raised.value) == NAN_LINE
    assert pipeline_env.files() == []
