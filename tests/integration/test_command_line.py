"""The command line as a new user meets it (issue 23 §1): the ``tripduration`` command that the package
installs, a top-level help that lists every command, ``COMMAND --help`` that exits 0 with that command's
options, and the README's commands, which run as written once the venv's bin is on PATH."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SCRIPT = Path(sys.executable).parent / "tripduration"
COMMANDS = (
    *("train", "monthly", "backfill", "monthly-run", "daily", "status", "invalidate"),
    *("serve", "models", "rollback", "export-mlflow"),
)
# the README's commands that are cheap enough to run here as written (the others are parsed only)
RUN_AS_WRITTEN = ("status", "models", "--help")


def run_main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    import pipeline

    try:
        code = pipeline.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    out, err = capsys.readouterr()
    return code, out, err


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and sub-command: ``status``, ``status train``, ``invalidate ValidatedTrips``..."""
    for name, sub in subcommands(parser).items():
        yield (*path, name)
        yield from command_paths(sub, (*path, name))


def parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    import pipeline

    parser = pipeline.build_parser()
    for name in path:
        parser = subcommands(parser)[name]
    return parser


# --------------------------------------------------------------------------- help
def test_the_top_level_help_lists_every_command(capsys):
    code, out, err = run_main(capsys, ["--help"])
    assert code == 0, err
    listed = set(re.findall(r"^ {4}([a-z][a-z-]+)", out, flags=re.M))
    assert set(COMMANDS) <= listed, f"missing from --help: {sorted(set(COMMANDS) - listed)}"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_exits_0_and_shows_that_commands_options(capsys, command):
    code, out, err = run_main(capsys, [command, "--help"])
    assert code == 0, f"exit {code}: {err[-500:]}"
    assert re.match(rf"usage: \S+ {command}\b", out), out[:300]
    options = {o for a in parser_at((command,))._actions for o in a.option_strings}
    assert "-h" in options
    assert all(o in out for o in options), sorted(o for o in options if o not in out)


def test_every_nested_command_has_its_own_help(capsys):
    """``status JOB --help`` and ``invalidate TASK_FAMILY --help``: the job's options, the task's parameters."""
    import pipeline

    paths = [p for p in command_paths(pipeline.build_parser()) if len(p) > 1]
    assert {"status train", "status backfill", "invalidate ValidatedTrips", "invalidate MonthlyRun"} <= {
        " ".join(p) for p in paths
    }
    for path in paths:
        code, out, err = run_main(capsys, [*path, "--help"])
        assert code == 0, f"{path}: exit {code}: {err[-300:]}"
        assert re.match(rf"usage: \S+ {' '.join(path)}\b", out), out[:300]
        options = {o for a in parser_at(path)._actions for o in a.option_strings}
        assert all(o in out for o in options), (path, sorted(o for o in options if o not in out))
    code, out, _err = run_main(capsys, ["invalidate", "ValidatedTrips", "--help"])
    assert "--month MONTH" in out and "month of trips, YYYY-MM" in out


def test_the_readme_documents_exactly_the_commands_of_the_parser():
    import pipeline

    table = re.search(r"^## Commands\n(.*?)^## ", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert table, "README.md has no '## Commands' section"
    documented = re.findall(r"^\| `tripduration (?:\[)?([a-z-]+)", table.group(1), flags=re.M)
    assert sorted(documented) == sorted(COMMANDS)
    assert sorted(subcommands(pipeline.build_parser())) == sorted(COMMANDS)


# --------------------------------------------------------------------------- the console script
def test_the_package_declares_the_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"] == {"tripduration": "pipeline:main"}


def test_the_installed_console_script_runs_from_any_folder(pipeline_env, tmp_path):
    assert SCRIPT.is_file(), f"{SCRIPT}: not installed; run `make setup` (it installs the project and its command)"
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file)}
    helped = subprocess.run([str(SCRIPT), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert helped.stdout.startswith("usage: tripduration ")
    listed = subprocess.run([str(SCRIPT), "models"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert f"no versions registered under {pipeline_env.registry_dir}" in listed.stdout
    refused = subprocess.run(
        [str(SCRIPT), "rollback", "v0009"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and refused.stderr.startswith("tripduration: error: rollback: argument version")


# --------------------------------------------------------------------------- the README's commands
def readme_command_lines() -> list[str]:
    """The lines of the README's ``bash`` blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_readme_quick_start_puts_the_command_on_path_and_uses_it():
    lines = readme_command_lines()
    first_use = next(i for i, line in enumerate(lines) if line.startswith("tripduration"))
    assert "source .venv/bin/activate" in lines[:first_use]
    assert "make setup" in lines[: lines.index("source .venv/bin/activate")]
    quick_start = README.read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "\ntripduration train" in quick_start


def test_every_readme_command_line_is_a_make_target_or_a_valid_tripduration_command(capsys):
    import pipeline
    from tasks.cli.parser import with_default_job

    targets = set(re.findall(r"^([a-z0-9-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
    lines = readme_command_lines()
    assert lines
    for line in lines:
        words = shlex.split(line)
        if words[0] == "make":
            assert set(words[1:]) <= targets, f"{line!r}: no such make target"
        elif words[0] == "tripduration":
            pipeline.build_parser().parse_args(with_default_job(words[1:]))  # exits 2 on a bad line
        else:
            assert line == "source .venv/bin/activate", f"{line!r}: not a command of this project"
    assert capsys.readouterr().err == ""


def test_the_readmes_cheap_commands_run_as_written_with_the_venv_activated(pipeline_env, tmp_path):
    activate = SCRIPT.parent / "activate"
    assert activate.is_file()
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file), "PATH": "/usr/bin:/bin"}
    ran = 0
    for line in readme_command_lines():
        words = shlex.split(line)
        if words[0] != "tripduration" or len(words) < 2 or words[1] not in RUN_AS_WRITTEN:
            continue
        proc = subprocess.run(
            ["bash", "-c", f"source {shlex.quote(str(activate))} && {line}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, f"{line!r}: exit {proc.returncode}: {proc.stderr[-2000:]}"
        ran += 1
    assert ran >= 1
