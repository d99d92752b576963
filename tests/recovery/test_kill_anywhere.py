"""SIGKILL the training pipeline at many moments, rerun it, and compare with an uninterrupted run.

`make test` samples KILL_POINTS=3 moments; `make test-kill` runs the full 20 (or set KILL_POINTS).
Half of the points run with --workers 2, where luigi forks one process per task: those children must die
with the killed worker (PR_SET_PDEATHSIG), or they would finish their task behind the rerun's back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tripduration.io.local import TEMPORARY
from tripduration.registry.store import ModelRegistry
from tripduration.training.features import MODEL_INPUT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
POINTS = int(os.environ.get("KILL_POINTS", "3"))
LEFTOVER = TEMPORARY


def config_for(base_cfg: Path, home: Path) -> Path:
    text = base_cfg.read_text()
    text = re.sub(r"^work_dir = .*$", f"work_dir = {home / 'work'}", text, flags=re.M)
    text = re.sub(r"^registry_dir = .*$", f"registry_dir = {home / 'models'}", text, flags=re.M)
    cfg = home / "luigi.cfg"
    home.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text)
    return cfg


def start(cfg: Path, workers: int) -> subprocess.Popen:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "pipeline.py"), "--workers", str(workers)],
        env=env,
        cwd=cfg.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def processes_using(cfg: Path) -> list[int]:
    """Pids whose environment names this run's config file (the worker and any forked task process)."""
    marker = f"LUIGI_CONFIG_PATH={cfg}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def outcome(home: Path, test_table: pd.DataFrame) -> tuple[dict, np.ndarray]:
    registry = ModelRegistry(home / "models", "green-trip-duration")
    model, meta = registry.load_model()
    return meta["metrics"], model.predict(test_table[list(MODEL_INPUT_COLUMNS)])


def leftovers(home: Path) -> list[Path]:
    return [
        p
        for base in (home / "work", home / "models")
        if base.exists()
        for p in base.rglob("*")
        if LEFTOVER.search(p.name)
    ]


@pytest.mark.slow
def test_sigkill_at_many_moments_then_rerun_gives_the_uninterrupted_result(pipeline_env, tmp_path):
    from tripduration.data.months import parse_month
    from tripduration.data.rules import Rules
    from tripduration.data.validation import validate_trip_file
    from tripduration.training.steps import modelling_table

    kept, _, _ = validate_trip_file(
        pipeline_env.raw_dir / "green_tripdata_2021-03.parquet", parse_month("2021-03"), Rules()
    )
    test_table = modelling_table(kept)

    reference_home = tmp_path / "reference"
    began = time.monotonic()
    clean = start(config_for(pipeline_env.cfg_file, reference_home), workers=1)
    assert clean.wait(timeout=300) == 0, clean.stderr.read()[-3000:]
    duration = time.monotonic() - began
    expected_metrics, expected_predictions = outcome(reference_home, test_table)

    survived = 0
    for i in range(POINTS):
        home = tmp_path / f"kill-{i:02d}"
        cfg = config_for(pipeline_env.cfg_file, home)
        workers = 1 + i % 2
        at = duration * (i + 0.5) / POINTS
        proc = start(cfg, workers)
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)  # the worker only: forked task processes must follow it
        proc.wait()
        # forked task processes get SIGKILL from the kernel when their worker dies: give it a moment only
        # (an orphan would instead live on until its task is done, seconds later)
        deadline = time.monotonic() + 0.5
        while processes_using(cfg) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_using(cfg) == [], f"point {i}: task processes outlived the killed worker"

        rerun = start(cfg, workers)
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, f"point {i} (killed at {at:.1f}s, workers={workers}): {err[-3000:]}"
        assert leftovers(home) == [], f"point {i}: temporary files left behind"
        metrics, predictions = outcome(home, test_table)
        assert metrics == expected_metrics, f"point {i}: metrics differ from the uninterrupted run"
        np.testing.assert_array_equal(predictions, expected_predictions)
        assert ModelRegistry(home / "models", "green-trip-duration").versions() == ["v0001"]
        survived += 1
    assert survived == POINTS
    print(f"kill points tried: {POINTS}, survived: {survived}, run time {duration:.1f}s")
