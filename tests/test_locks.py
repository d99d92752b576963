"""The dependency locks (issue 23 §2): ``requirements.lock`` holds what running needs and nothing else; the
optional extras (``s3``, ``mlflow``) and the test and lint tools (``dev``) are separate hashed locks, all from
one resolution (``make lock``, scripts/lock.sh); ``make run`` installs the runtime, ``make test`` the rest."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {  # group -> (direct requirements, lock)
    "runtime": ("requirements.txt", "requirements.lock"),
    "build": ("requirements-build.txt", "requirements-build.lock"),
    "s3": ("requirements-s3.txt", "requirements-s3.lock"),
    "mlflow": ("requirements-mlflow.txt", "requirements-mlflow.lock"),
    "dev": ("requirements-dev.txt", "requirements-dev.lock"),
}
RUNTIME = (
    *("luigi", "pandas", "numpy", "scikit-learn", "scipy", "joblib", "pyarrow", "matplotlib", "sqlalchemy"),
    *("threadpoolctl", "fastapi", "starlette", "pydantic", "uvicorn", "h11", "prometheus-client"),
)
# what a plain training run must not install: the extras, the test and lint tools and what they pull in
NOT_RUNTIME = (
    *("mlflow", "mlflow-skinny", "boto3", "botocore", "s3transfer", "moto", "mypy", "pytest", "ruff"),
    *("import-linter", "flask", "docker", "gunicorn", "alembic", "cfn-lint", "setuptools"),
)
ENTRY = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+)")


def lock_entries(name: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """package -> (version, sha256 hashes) of a lock; every requirement line must be an exact pin."""
    entries: dict[str, tuple[str, tuple[str, ...]]] = {}
    current = None
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(" "):
            assert current, f"{name}: {line!r} belongs to no requirement"
            found = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
            assert found, f"{name}: {line!r} is not a sha256 hash line"
            version, hashes = entries[current]
            entries[current] = (version, (*hashes, *found))
            continue
        match = ENTRY.match(line)
        assert match, f"{name}: {line!r} is not an exact pin (name==version)"
        current = match.group(1)
        assert current not in entries, f"{name}: {current} twice"
        entries[current] = (match.group(2), ())
    return entries


def direct_pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[a-z,]+\])?==(\S+)", line)
            assert match, f"{name}: {line!r} is not an exact pin"
            pins[match.group(1).lower().replace("_", "-")] = match.group(3)
    return pins


def test_the_runtime_lock_holds_what_running_needs_and_no_extra_or_tool():
    runtime = lock_entries("requirements.lock")
    assert set(RUNTIME) <= set(runtime), sorted(set(RUNTIME) - set(runtime))
    assert not set(NOT_RUNTIME) & set(runtime), sorted(set(NOT_RUNTIME) & set(runtime))
    assert not set(direct_pins("requirements.txt")) & {"mlflow", "boto3", "pytest", "moto", "mypy", "ruff"}


@pytest.mark.parametrize("group", GROUPS)
def test_every_lock_is_exact_pins_with_sha256_and_pins_its_group_as_written(group):
    source, lock = GROUPS[group]
    entries = lock_entries(lock)
    assert entries, f"{lock} is empty"
    unhashed = sorted(name for name, (_, hashes) in entries.items() if not hashes)
    assert not unhashed, f"{lock}: no sha256 for {unhashed}"
    installed_with = {**lock_entries("requirements.lock"), **entries}
    for name, version in direct_pins(source).items():
        assert name in installed_with, f"{source} names {name}, which {lock} does not hold"
        assert installed_with[name][0] == version, f"{name}: {version} in {source}, {installed_with[name][0]} locked"


def test_the_groups_add_to_the_runtime_and_agree_with_each_other():
    """One resolution: a package in two locks has one version and the same hashes; the extras' and the dev
    tools' locks hold only what the runtime lock does not."""
    runtime = lock_entries("requirements.lock")
    seen: dict[str, tuple[str, tuple[str, ...]]] = dict(runtime)
    for group, (_, lock) in GROUPS.items():
        if group == "runtime":
            continue
        entries = lock_entries(lock)
        repeated = sorted(set(entries) & set(runtime))
        assert not repeated, f"{lock} repeats runtime packages: {repeated}"
        for name, pin in entries.items():
            assert seen.setdefault(name, pin) == pin, f"{name}: two different pins across the locks"
    assert {"boto3"} <= set(lock_entries("requirements-s3.lock"))
    assert {"mlflow"} <= set(lock_entries("requirements-mlflow.lock"))
    assert {"pytest", "moto", "mypy", "ruff", "import-linter"} <= set(lock_entries("requirements-dev.lock"))
    assert direct_pins("requirements-dev.txt")["import-linter"] == "2.16"


def test_pyproject_declares_the_extras_and_the_dev_group_from_the_same_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert set(project["project"]["dynamic"]) == {"dependencies", "optional-dependencies"}
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert dynamic["optional-dependencies"] == {
        "s3": {"file": ["requirements-s3.txt"]},
        "mlflow": {"file": ["requirements-mlflow.txt"]},
        "dev": {"file": ["requirements-dev.txt"]},
    }


def makefile_rule(target: str) -> tuple[str, str]:
    """(prerequisites, recipe) of a Makefile target."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", text, flags=re.M)
    assert match, f"Makefile has no rule for {target}"
    return match.group(1).split("##")[0], match.group(2)


def test_make_run_installs_the_runtime_only_and_make_test_everything():
    assert makefile_rule("run")[0].split() == ["$(STAMP)"]
    runtime_install = makefile_rule("$(STAMP)")[1]
    assert re.findall(r"-r (\S+)", runtime_install) == ["requirements.lock", "requirements-build.lock"]
    assert "--require-hashes" in runtime_install or "$(PIP_HASHED)" in runtime_install
    for target in ("test", "test-slow", "lint"):
        assert makefile_rule(target)[0].split() == ["$(DEV_STAMP)"], target
    dev_install = makefile_rule("$(DEV_STAMP)")[1]
    assert set(re.findall(r"-r (\S+)", dev_install)) == {
        *("requirements.lock", "requirements-s3.lock", "requirements-mlflow.lock", "requirements-dev.lock"),
    }
    assert "make setup-dev" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="not a git checkout")
def test_the_mlflow_example_store_is_ignored_by_git():
    """``export-mlflow --tracking-uri sqlite:///mlflow.db`` (docs/serving.md) writes these in the project."""
    paths = ["mlflow.db", "mlartifacts/1/run/artifacts/model.pkl"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == paths, proc.stdout + proc.stderr
