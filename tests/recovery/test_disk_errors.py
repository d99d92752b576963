"""A full disk or an unwritable work directory: a clear error, and earlier outputs left intact."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tripduration.io.parquet
from tasks import TrainingPipeline, ValidatedTrips
from tripduration.io.local import is_temporary
from tripduration.registry.store import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A size-limited (or read-only) tmpfs mounted for the test; skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".pipeline.lock"}


def test_disk_full_midway_fails_clearly_and_keeps_earlier_outputs(pipeline_env, run_tasks, config, monkeypatch, caplog):
    assert run_tasks([TrainingPipeline()]).ok
    before_work, before_models = snapshot(pipeline_env.work_dir), snapshot(pipeline_env.registry_dir)

    def full(frame, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 first bytes")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    config.set("validation", "max_distance_miles", "50")  # new outputs are needed: they cannot be written
    monkeypatch.setattr(tripduration.io.parquet, "write_parquet", full)  # what targets.dump writes parquet with
    with caplog.at_level("ERROR", logger="luigi-interface"):
        result = run_tasks([TrainingPipeline()])
    assert not result.ok
    assert "the disk is full" in caplog.text and "run again" in caplog.text
    assert snapshot(pipeline_env.work_dir) == before_work, "earlier outputs changed or temporary files were left"
    assert snapshot(pipeline_env.registry_dir) == before_models
    assert ModelRegistry(pipeline_env.registry_dir, "green-trip-duration").production()["version"] == "v0001"


def test_a_really_full_file_system(pipeline_env, run_tasks, config, tmp_path, caplog):
    with tmpfs(tmp_path / "tiny", "size=64k") as tiny:
        config.set("paths", "work_dir", str(tiny / "work"))
        task = ValidatedTrips(month=dt.date(2021, 1, 1))
        with caplog.at_level("ERROR", logger="luigi-interface"):
            result = run_tasks([task])
        assert not result.ok
        assert "the disk is full" in caplog.text
        assert not task.complete()
        assert [p for p in tiny.rglob("*") if is_temporary(p.name)] == []


def test_read_only_work_directory_fails_before_running_anything(pipeline_env, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as read_only:
        cfg = tmp_path / "ro.cfg"
        cfg.write_text(pipeline_env.cfg_file.read_text().replace(str(pipeline_env.work_dir), str(read_only / "work")))
        env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
        result = subprocess.run(
            [sys.executable, str(ROOT / "pipeline.py")], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 40
    assert "read-only" in result.stderr and str(read_only / "work") in result.stderr
