"""Every command answers a bad argument with exit 2 and one line naming it, and writes nothing (issue 21 §2).

One table of bad values per family of value (``BAD_VALUES``) is fed to every argument of every command,
found by walking the parser itself: top-level commands, ``status JOB``, ``invalidate TASK_FAMILY`` (whose
options are the task's luigi parameters). A command or an option added later is fed the table too, and an
argument whose type has no family here fails the test, naming it. ``CASES`` adds what a single value
cannot show: missing arguments, values that clash together, a version that is not registered, a job that
has no production model to monitor. Run in-process (``pipeline.main``) so that hundreds of cases take
seconds; a few of the issue's examples also run as real processes, whose whole stderr must be one line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from tasks.cli.values import Value
from tripduration.registry.store import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
NAME = "green-trip-duration"

BAD_VALUES: dict[str, list[str]] = {
    "month": ["2021-13", "../../etc", "", "2021-1", "21-03", "2021-03-01"],
    "moment": ["2021-13-01", "../../etc", "", "yesterday", "2021-02-30T08:00", "1999-05-01", "2021-05-01T25:00"],
    "month-or-last": ["2021-13", "../../etc", "", "Last", "2021-00"],
    "months": ["2021-13", "../x", "", "2021-03..2021-01", "2021-01.."],
    "color": ["purple", "../x", "", "GREEN"],
    "choice": ["purple", "../x", ""],
    "candidate": ["nope", "../x", ""],
    "version": ["../x", "v1", "v0001/../v0002", "", "V0001"],
    "integer": ["x", "", "1.5", "-1", "99999999"],
    "number": ["x", "", "nan", "inf", "-1", "1e9"],
    "host": ["", "a b", "999.1.1.1", "../x", "bad_host!"],
    "text": ["", "   ", "two\nlines"],
    "tracking-uri": ["", "nope", "ftp://x", "sqlite://", "http://", "../mlflow.db"],
    "flag": ["x"],  # --json=x
    "command": ["nope", "../x", "", "TrainingPipeline", "RangeMonthly"],
}

GOOD_VALUES = {"month": "2021-03", "candidate": "ridge_a1", "version": "v0001"}

# (argv, what the one line must name)
CASES: list[tuple[list[str], str]] = [
    (["nope"], "nope"),
    (["--nope"], "--nope"),
    (["backfill"], "--last"),
    (["backfill", "--start", "2021-03"], "--stop"),
    (["backfill", "--start", "2021-03", "--stop", "2021-01"], "--start"),
    (["backfill", "--last", "2", "--stop", "2021-01"], "--stop"),
    (["backfill", "--last", "2", "--start", "2021-01"], "--start"),
    (["train", "--train-months", "2021-02", "--val-month", "2021-02"], "validation month 2021-02"),
    (["train", "--test-month", "2021-01"], "test month 2021-01"),
    (["status", "train", "--train-months", "2021-02", "--val-month", "2021-02"], "validation month 2021-02"),
    (["status", "--month", "2021-03"], "--month"),
    (["monthly-run", "--month", "2021-03", "--color", "yellow"], "no production model for yellow"),
    (["status", "monthly-run", "--month", "2021-03", "--color", "yellow"], "no production model for yellow"),
    (["rollback"], "version"),
    (["rollback", "v0009"], "v0009"),
    (["rollback", "v0003"], "v0003"),  # an incomplete folder is not a version
    (["rollback", "v0001", "--color", "yellow"], "v0001"),
    (["invalidate"], "TASK_FAMILY"),
    (["invalidate", "ValidatedTrips"], "--month"),
    (["invalidate", "CandidateScore"], "--candidate"),
    (
        ["invalidate", "CandidateScore", "--candidate=ridge_a1", "--train-months=2021-02", "--val-month=2021-02"],
        "validation month 2021-02",
    ),
    (["invalidate", "MonthlyRun", "--month", "2021-03", "--color", "yellow"], "no production model for yellow"),
    (["export-mlflow"], "--tracking-uri"),
]


@pytest.fixture
def world(pipeline_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A registry (v0001 in production, v0002 rejected, an incomplete v0003), a work directory with an
    invalidation mark, an empty working directory; the folders whose content must not change."""
    model = tmp_path / "model.joblib"
    joblib.dump(DummyRegressor(strategy="constant", constant=12.5).fit(np.zeros((2, 1)), [1.0, 2.0]), model)
    registry = ModelRegistry(pipeline_env.registry_dir, NAME)
    metrics = {"test": {"rmse": 5.4}, "baseline_test": {"rmse": 6.4}}
    registry.register(model, {"metrics": metrics, "gate": {"promote": True, "reason": "no production model yet"}})
    registry.register(model, {"metrics": metrics, "gate": {"promote": False, "reason": "worse"}})
    with registry.lock():
        registry.set_production("v0001", "no production model yet")
    (registry.versions_dir / "v0003").mkdir()
    pipeline_env.work_dir.mkdir(parents=True)
    (pipeline_env.work_dir / ".invalidated.json").write_text("{}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return [pipeline_env.work_dir, pipeline_env.registry_dir, cwd]


def snapshot(folders: list[Path]) -> dict[str, str]:
    """Every file and folder under ``folders`` with its content's sha256 (folders: 'dir')."""
    found = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            found[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    import pipeline

    try:
        code = pipeline.main(list(argv))
    except SystemExit as exc:  # argparse's refusal
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    out, err = capsys.readouterr()
    return code, out, err


def refusal_problem(code: int, out: str, err: str, needle: str) -> str | None:
    """None when the answer is exit 2, nothing on stdout and one stderr line naming ``needle``."""
    if code != 2:
        return f"exit {code}, stderr {err[-300:]!r}"
    if out or err.count("\n") != 1 or not err.endswith("\n"):
        return f"not one line: stdout {out[-200:]!r}, stderr {err[-400:]!r}"
    if needle not in err:
        return f"does not name {needle!r}: {err!r}"
    return None


# --------------------------------------------------------------------------- walking the parser
def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command that takes arguments (``status train``, ``invalidate ValidatedTrips``...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                yield from leaf_commands(sub, (*path, name)) if nested else [(*path, name)]


def parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    import pipeline

    parser = pipeline.build_parser()
    for name in path:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return parser


def kind_of(action: argparse.Action) -> str | None:
    if isinstance(action, argparse._SubParsersAction):
        return "command"
    if action.nargs == 0:
        return "flag"
    if isinstance(action.type, Value):
        return action.type.kind
    if action.choices is not None:
        return "choice"
    return None


def bad_argvs(path: tuple[str, ...]) -> Iterator[tuple[list[str], str]]:
    """Each argument of the command ``path`` with each bad value of its family, and the name it must show."""
    parser = parser_of(path)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        kind = kind_of(action)
        name = action.option_strings[0] if action.option_strings else str(action.metavar or action.dest)
        assert kind in BAD_VALUES, f"{' '.join(path)} {name}: its type has no family of bad values here"
        for bad in BAD_VALUES[kind]:
            if action.option_strings:
                yield [*path, f"{name}={bad}"], name
            else:
                yield [*path, bad], name
    required = required_args(path, parser)
    subcommands = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    # `invalidate --nope`: the one line names the missing TASK_FAMILY, which comes first
    yield [*path, *required, "--nope"], str(subcommands.metavar) if subcommands and subcommands.required else "--nope"
    yield [*path, *required, "stray"], "stray"


def required_args(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """Good values for the arguments ``path`` requires, so that only the stray one is wrong."""
    if path[-1:] == ("backfill",):
        return ["--last=1"]
    given = []
    for action in parser._actions:
        if action.required and not isinstance(action, argparse._SubParsersAction):
            value = GOOD_VALUES[kind_of(action) or ""]
            given.append(f"{action.option_strings[0]}={value}" if action.option_strings else value)
    return given


def command_paths() -> list[tuple[str, ...]]:
    import pipeline

    return [(), ("status",), ("invalidate",), *leaf_commands(pipeline.build_parser())]


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "top-level")
def test_every_argument_of_every_command_refuses_the_table_of_bad_values(world, capsys, path):
    before = snapshot(world)
    failures = []
    cases = list(bad_argvs(path))
    for argv, needle in cases:
        problem = refusal_problem(*run_main(capsys, argv), needle)
        if problem:
            failures.append(f"{argv}: {problem}")
        if snapshot(world) != before:
            failures.append(f"{argv}: wrote into the work directory, the registry or the working directory")
            before = snapshot(world)
    assert len(cases) > 3
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("argv", "needle"), CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_missing_and_clashing_arguments_are_one_line_and_exit_2(world, capsys, argv, needle):
    before = snapshot(world)
    problem = refusal_problem(*run_main(capsys, argv), needle)
    assert problem is None, problem
    assert snapshot(world) == before


def test_the_walk_reaches_every_command_and_every_task_family():
    from tasks.cli.invalidate import invalidatable_tasks

    paths = command_paths()
    tops = {p[0] for p in paths if p}
    assert tops == {
        *("train", "monthly", "backfill", "monthly-run", "daily", "status", "invalidate"),
        *("serve", "models", "rollback", "export-mlflow"),
    }
    assert {p[1] for p in paths if p[:1] == ("invalidate",) and len(p) == 2} == set(invalidatable_tasks())
    assert {"ValidatedTrips", "CandidateScore", "BatchPredictions", "MonthlyRun"} <= set(invalidatable_tasks())


# --------------------------------------------------------------------------- as real processes
ISSUE_EXAMPLES = [
    (["invalidate", "NoSuchTask"], "TASK_FAMILY"),
    (["invalidate", "ValidatedTrips"], "--month"),
    (["invalidate", "ValidatedTrips", "--month", "2021-13"], "--month"),
    (["invalidate", "ValidatedTrips", "--month", "../../etc"], "--month"),
    (["invalidate", "ValidatedTrips", "--month", "2021-03", "--color", "purple"], "--color"),
    (["invalidate", "BatchPredictions", "--month", "2021-03", "--model-version", "../x"], "--model-version"),
    (["rollback", "v0009"], "v0009"),
]


@pytest.mark.parametrize(("argv", "needle"), ISSUE_EXAMPLES, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_the_issues_examples_as_real_processes(world, pipeline_env, argv, needle):
    before = snapshot(world)
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), *argv], env=env, capture_output=True, text=True, timeout=120
    )
    problem = refusal_problem(proc.returncode, proc.stdout, proc.stderr, needle)
    assert problem is None, problem
    assert snapshot(world) == before


def test_a_missing_optional_extra_is_one_line_naming_it(world, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if `pip install '.[mlflow]'` had not been done
    before = snapshot(world)
    code, out, err = run_main(capsys, ["export-mlflow", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    problem = refusal_problem(code, out, err, "'mlflow' extra")
    assert problem is None, problem
    assert "requirements-mlflow.lock" in err and "pip install '.[mlflow]'" in err
    assert snapshot(world) == before and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("argv", [["status"], ["models"], ["invalidate", "ValidatedTrips", "--month=2021-03"]], ids=str)
def test_an_extras_module_missing_deep_in_a_command_is_one_line_naming_the_extra(world, capsys, monkeypatch, argv):
    """boto3 imported anywhere under a command (an s3:// path without the s3 extra): one line, exit 2."""
    import tasks.cli.main

    def needs_boto3(*_args: object, **_kwargs: object) -> int:
        raise ModuleNotFoundError("No module named 'boto3'", name="boto3")

    for name in ("status_command", "registry_command", "invalidate_command"):
        monkeypatch.setattr(tasks.cli.main, name, needs_boto3)
    code, out, err = run_main(capsys, argv)
    problem = refusal_problem(code, out, err, "'s3' extra")
    assert problem is None, problem
    assert "make setup-s3" in err and "requirements-s3.lock" in err
