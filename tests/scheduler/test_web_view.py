"""luigid's web view, as a browser renders it, after the pipeline has run against a real luigid.

The visualiser page is static HTML that fills its task list from luigid's JSON API once loaded, so the page
is rendered by headless Chromium (/usr/bin/chromium, installed with apt in CI) and the DOM it ends up with is
checked. The test is skipped only when Chromium is not installed.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import struct
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

# real luigid / cron / browser / S3-server processes: part of `make test-slow` (CI runs it), not `make test`
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FAMILIES = {
    "TrainingPipeline",
    "RegisteredModel",
    "EvaluationReport",
    "FinalModel",
    "ModelSelection",
    "CandidateScore",
    "ModelInputTable",
    "ValidatedTrips",
    "TripData",
    "ZoneLookup",
}


def _load_screenshot_script():
    path = ROOT / "scripts" / "screenshot_web_view.py"
    spec = importlib.util.spec_from_file_location("screenshot_web_view", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


web_view = _load_screenshot_script()


class TaskTableRows(HTMLParser):
    """The text of each cell of each row of the task list's table (``<table id="taskTable">``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._table_depth = 0  # > 0 inside the task table (counts nested tables)
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and (self._table_depth or ("id", "taskTable") in attrs):
            self._table_depth += 1
        elif self._table_depth == 1 and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td" and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._table_depth:
            self._table_depth -= 1
        elif tag == "tbody" and self._table_depth == 1:
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def task_rows(html: str) -> list[list[str]]:
    parser = TaskTableRows()
    parser.feed(html)
    parser.close()
    return parser.rows


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == web_view.PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian/Ubuntu: apt-get install chromium)")
    return CHROMIUM


def test_web_view_shows_the_pipeline_tasks_done(chromium, luigid, pipeline_env, tmp_path):
    # luigid's / redirects to the visualiser, whose HTML (before its scripts run) names no task at all:
    # whatever the rendered page shows below came from luigid
    with urllib.request.urlopen(f"{luigid.url}/", timeout=10) as response:
        assert response.url == f"{luigid.url}/static/visualiser/index.html"
        static = response.read().decode()
    assert "CandidateScore" not in static and "TrainingPipeline" not in static
    assert task_rows(static) == []

    # one OpenMP thread per task: with the default (all cores) the gradient-boosting fits slow down tenfold
    # when anything else competes for the cores, e.g. other tests running at the same time
    settings = configparser.RawConfigParser()
    settings.read(pipeline_env.cfg_file)
    settings.read_dict({"parallelism": {"threads_per_task": "1"}})
    cfg = tmp_path / "web-view-luigi.cfg"
    with cfg.open("w") as fh:
        settings.write(fh)
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "--scheduler-port", str(luigid.port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    done = luigid.api("task_list", status="DONE", upstream_status="")
    assert {task["name"] for task in done.values()} == FAMILIES

    rendered = web_view.rendered_html(luigid.url, chromium=chromium, timeout=60)
    rows = task_rows(rendered)
    assert rows, f"no task rows in the rendered page:\n{rendered[:2000]}"
    assert len(rows) == len(done)  # the page shows 25 rows, there are fewer tasks
    assert {row[0] for row in rows} == {"DONE"}
    assert {row[1] for row in rows} == FAMILIES
    # the details cell ends with the cores the task holds of luigid's 'cores' resource (bin/scheduler
    # defines it): one each here, as threads_per_task = 1
    held = [row[2] for row in rows if row[1] in ("CandidateScore", "FinalModel", "EvaluationReport")]
    assert len(held) == 6 and all(d.endswith('{"cores":1}') for d in held), held
    details = [row[2].removesuffix('{"cores":1}') for row in rows if row[1] == "CandidateScore"]
    candidates = sorted(d.rsplit("candidate=", 1)[-1] for d in details)
    assert candidates == ["baseline_linreg", "hgb_lr10_l31", "ridge_a1"]

    png = web_view.screenshot(luigid.url, tmp_path / "web-view.png", chromium=chromium, timeout=60)
    data = png.read_bytes()
    assert png_size(data) == web_view.WINDOW_SIZE
    assert len(data) > 20_000  # a blank 1400x1000 page compresses to a few kB
