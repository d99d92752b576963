"""luigid's Prometheus collector, as enabled in the project's scheduler.cfg: a run moves its counters."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import ROOT, start_luigid, stop_luigid


def scrape(url: str) -> dict[str, float]:
    """Samples of luigid's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_a_run_moves_luigids_task_counters(pipeline_env, tmp_path):
    shipped = configparser.ConfigParser()
    shipped.read(ROOT / "scheduler.cfg")
    collector = shipped.get("scheduler", "metrics_collector")
    assert collector == "prometheus"
    daemon = start_luigid(tmp_path / "scheduler", extra_config=f"metrics_collector = {collector}")
    try:
        before = scrape(daemon.url)
        assert not any(k.startswith("luigi_task_done_total") for k in before)
        env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file)}
        run = subprocess.run(
            [sys.executable, str(ROOT / "pipeline.py"), "--scheduler-port", str(daemon.port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        after = scrape(daemon.url)
    finally:
        stop_luigid(daemon)
    assert after['luigi_task_started_total{family="CandidateScore"}'] == 3
    assert after['luigi_task_done_total{family="CandidateScore"}'] == 3
    assert after['luigi_task_done_total{family="RegisteredModel"}'] == 1
    assert after['luigi_task_execution_time_seconds{family="RegisteredModel"}'] > 0
    assert not any(k.startswith("luigi_task_failed_total") and v for k, v in after.items())
    assert Path(daemon.history_db).exists()
