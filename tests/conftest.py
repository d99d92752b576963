"""Fixtures shared by the test suite.

- every test starts with luigi's task-instance cache cleared (tasks and Config sections are cached);
- ``pipeline_env`` points ``[paths]`` at a temporary work directory and registry, with raw months sampled
  from the real embedded files (a few thousand rows each, so the real graph runs in seconds);
- ``run_tasks`` builds tasks with the local scheduler and reports which tasks actually ran.
"""

from __future__ import annotations

# ruff: noqa: E402 - prepare_process() must run before the imports that load numpy/scikit-learn
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tripduration.runtime.threads import prepare_process

prepare_process()  # before numpy/scikit-learn load: tests and their subprocesses spin only briefly in OpenMP

import luigi
import luigi.configuration
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from luigi.execution_summary import LuigiStatusCode
from luigi.task_register import Register

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
FAST_CANDIDATES = '["baseline_linreg", "ridge_a1", "hgb_lr10_l31"]'
SAMPLE_ROWS = 4000


def sample_month(src: Path, dest: Path, rows: int, seed: int) -> None:
    """Write a deterministic random sample of a real month, keeping its raw schema."""
    table = pq.read_table(src)
    idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=min(rows, table.num_rows), replace=False))
    pq.write_table(table.take(pa.array(idx)), dest)


def shift_month(src: Path, dest: Path, days: int) -> None:
    """A synthetic later month: the same trips with both timestamps moved by ``days``."""
    table = pq.read_table(src)
    for col in ("lpep_pickup_datetime", "lpep_dropoff_datetime"):
        i = table.schema.get_field_index(col)
        shifted = pc.add(table.column(col), pa.scalar(dt.timedelta(days=days), type=pa.duration("us")))
        table = table.set_column(i, col, shifted.cast(table.schema.field(col).type))
    pq.write_table(table, dest)


@pytest.fixture(scope="session")
def sample_raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    for i, month in enumerate(("2021-01", "2021-02", "2021-03")):
        sample_month(DATA / f"green_tripdata_{month}.parquet", raw / f"green_tripdata_{month}.parquet", SAMPLE_ROWS, i)
    shift_month(raw / "green_tripdata_2021-03.parquet", raw / "green_tripdata_2021-04.parquet", days=31)
    shutil.copy(DATA / "taxi_zone_lookup.csv", raw / "taxi_zone_lookup.csv")
    return raw


def reset_luigi() -> None:
    Register.clear_instance_cache()


@pytest.fixture(autouse=True)
def _fresh_luigi_instances() -> Iterator[None]:
    reset_luigi()
    yield
    reset_luigi()


class ConfigOverride:
    """Set luigi config values for one test and restore the previous ones afterwards."""

    def __init__(self) -> None:
        self.config = luigi.configuration.get_config()
        self.saved: list[tuple[str, str, str | None]] = []

    def set(self, section: str, key: str, value: str) -> None:
        if not self.config.has_section(section):
            self.config.add_section(section)
        previous = self.config.get(section, key, None) if self.config.has_option(section, key) else None
        self.saved.append((section, key, previous))
        self.config.set(section, key, value)
        reset_luigi()

    def restore(self) -> None:
        for section, key, previous in reversed(self.saved):
            if previous is None:
                self.config.remove_option(section, key)
            else:
                self.config.set(section, key, previous)
        reset_luigi()


@pytest.fixture
def config() -> Iterator[ConfigOverride]:
    override = ConfigOverride()
    yield override
    override.restore()


@dataclass
class PipelineEnv:
    raw_dir: Path
    work_dir: Path
    registry_dir: Path
    config: ConfigOverride
    cfg_file: Path = field(default=Path())

    def files(self) -> list[Path]:
        return sorted(p for base in (self.work_dir, self.registry_dir) if base.exists() for p in base.rglob("*"))


@pytest.fixture
def pipeline_env(tmp_path: Path, sample_raw_dir: Path, config: ConfigOverride) -> PipelineEnv:
    raw = tmp_path / "raw"
    shutil.copytree(sample_raw_dir, raw)
    env = PipelineEnv(raw_dir=raw, work_dir=tmp_path / "work", registry_dir=tmp_path / "models", config=config)
    values = {
        ("paths", "raw_dir"): str(raw),
        ("paths", "work_dir"): str(env.work_dir),
        ("paths", "registry_dir"): str(env.registry_dir),
        ("paths", "zone_lookup"): str(raw / "taxi_zone_lookup.csv"),
        ("model_search", "candidates"): FAST_CANDIDATES,
        ("download", "url_template"): f"file://{tmp_path}/remote/{{color}}_tripdata_{{month}}.parquet",
        ("download", "retries"): "1",
        ("download", "backoff_seconds"): "0.01",
        # fail fast: one failure disables a task (tests of retries set their own counts)
        ("scheduler", "retry_count"): "1",
        ("scheduler", "retry_delay"): "0.1",
        ("worker", "wait_interval"): "0.1",
        ("worker", "wait_jitter"): "0",
        # one OpenMP thread per task: test processes run side by side, and spinning OpenMP threads of
        # several processes on 2 cores slow each other down many times over
        ("parallelism", "threads_per_task"): "1",
        # the report's permutation importance on fewer trips: it dominated each sampled pipeline run
        ("evaluation", "importance_rows"): "500",
        # the loop's Prometheus file of every run, in the test's folder (not the project's var/metrics)
        ("metrics", "textfile"): str(tmp_path / "metrics" / "tripduration.prom"),
    }
    for (section, key), value in values.items():
        config.set(section, key, value)
    # the same settings as a file, for subprocess runs (LUIGI_CONFIG_PATH)
    lines: list[str] = []
    for section in sorted({s for s, _ in values}):
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for (s, k), v in values.items() if s == section]
    env.cfg_file = tmp_path / "test-luigi.cfg"
    env.cfg_file.write_text("\n".join(lines) + "\n")
    return env


@dataclass
class RunResult:
    ok: bool
    ran: list[str]
    failed: list[str]
    status: str

    def families(self) -> set[str]:
        return {task_id.split("(")[0] for task_id in self.ran}


@pytest.fixture
def run_tasks() -> Iterator:
    """``run_tasks(tasks)`` builds them in-process (local scheduler, one worker) and records what ran."""
    ran: list[str] = []
    failed: list[str] = []

    def on_success(task: luigi.Task) -> None:
        ran.append(str(task))

    def on_failure(task: luigi.Task, _exc: BaseException) -> None:
        failed.append(str(task))

    luigi.Task.event_handler(luigi.Event.SUCCESS)(on_success)
    luigi.Task.event_handler(luigi.Event.FAILURE)(on_failure)

    def run(tasks: list[luigi.Task], workers: int = 1) -> RunResult:
        ran.clear()
        failed.clear()
        reset_luigi()
        result = luigi.build(tasks, local_scheduler=True, workers=workers, detailed_summary=True, log_level="WARNING")
        ok = result.status in (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)
        return RunResult(ok, list(ran), list(failed), result.status.name)

    yield run
    luigi.Task.remove_event_handler(luigi.Event.SUCCESS, on_success)
    luigi.Task.remove_event_handler(luigi.Event.FAILURE, on_failure)


# --------------------------------------------------------------------------- central scheduler
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Luigid:
    port: int
    home: Path
    history_db: Path
    process: object

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, **data: object) -> dict:
        import json
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode({"data": json.dumps(data)})
        with urllib.request.urlopen(f"{self.url}/api/{method}?{query}", timeout=10) as response:
            return json.loads(response.read())["response"]

    def history(self, sql: str) -> list[tuple]:
        import sqlite3

        with sqlite3.connect(self.history_db) as db:
            return db.execute(sql).fetchall()


def start_luigid(home: Path, extra_config: str = "") -> Luigid:
    """A real luigid on a free 127.0.0.1 port with SQLite task history, started through bin/scheduler."""
    import subprocess
    import time

    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "scheduler.cfg"
    cfg.write_text(
        "[scheduler]\n"
        f"state_path = {home}/state.pickle\nrecord_task_history = true\nprune_on_get_work = true\n"
        "retry_delay = 1\nretry_count = 3\n"
        f"{extra_config}\n"
    )
    env = {**os.environ, "SCHEDULER_PORT": str(port), "SCHEDULER_DIR": str(home), "SCHEDULER_CONFIG": str(cfg)}
    started = subprocess.run([str(ROOT / "bin" / "scheduler"), "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    daemon = Luigid(port=port, home=home, history_db=home / "history.db", process=env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            daemon.api("task_list")
            return daemon
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("luigid did not answer")


def stop_luigid(daemon: Luigid) -> None:
    import subprocess

    subprocess.run([str(ROOT / "bin" / "scheduler"), "stop"], env=daemon.process, capture_output=True, timeout=30)


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[Luigid]:
    daemon = start_luigid(tmp_path / "scheduler")
    yield daemon
    stop_luigid(daemon)
