"""Two "hosts" that share no disk: one luigid, the moto S3 server, two project copies with their own config
and local scratch (TMPDIR, cache), all data in the bucket.

Both run ``pipeline.py train`` against luigid at once: both exit 0, luigid's history shows each task ran
once, the registry in the bucket has exactly one version, and its test metrics equal a one-host local run.
Then ``backfill`` over two months split across the two workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tasks import TrainingPipeline
from tests.conftest import ROOT, start_luigid, stop_luigid
from tripduration.registry.store import ModelRegistry

pytestmark = pytest.mark.slow

MONTHS = ("2021-01", "2021-02", "2021-03", "2021-04")


def project_copy(dest: Path) -> Path:
    """What a worker host holds: the code, luigi.cfg and the zone lookup; no data, no work directory."""
    dest.mkdir(parents=True)
    for folder in ("tasks", "tripduration", "bin"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pipeline.py", "luigi.cfg"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "data").mkdir()
    shutil.copy(ROOT / "data" / "taxi_zone_lookup.csv", dest / "data" / "taxi_zone_lookup.csv")
    return dest


def host_config(pipeline_env: Any, s3: Any, home: Path) -> Path:
    """The test settings of pipeline_env, with [paths] in the bucket and this host's own zone lookup."""
    lines = pipeline_env.cfg_file.read_text().splitlines()
    kept = [
        line
        for line in lines
        if line.split("=")[0].strip() not in ("raw_dir", "work_dir", "registry_dir", "zone_lookup")
    ]
    text = "\n".join(kept).replace(
        "[paths]",
        "[paths]\n"
        f"raw_dir = {s3.url('raw')}\nwork_dir = {s3.url('work')}\nregistry_dir = {s3.url('registry')}\n"
        f"zone_lookup = {home / 'data' / 'taxi_zone_lookup.csv'}",
    )
    text += (
        f"\n[s3]\nendpoint_url = {s3.endpoint_url}\naws_access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {os.environ['AWS_SECRET_ACCESS_KEY']}\nregion_name = us-east-1\n"
    )
    cfg = home / "host.cfg"
    cfg.write_text(text + "\n")
    return cfg


def start_host(home: Path, cfg: Path, args: list[str]) -> subprocess.Popen:
    scratch = home / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "LUIGI_CONFIG_PATH": str(cfg),
        "TMPDIR": str(scratch),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PYTHONPATH": str(home),
    }
    return subprocess.Popen(
        [sys.executable, str(home / "pipeline.py"), *args],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_both(homes: list[Path], cfgs: list[Path], args: list[str]) -> list[str]:
    procs = [start_host(h, c, args) for h, c in zip(homes, cfgs, strict=True)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-4000:]
    return outputs


def runs_per_task(luigid: Any) -> dict[str, int]:
    rows = luigid.history(
        "select t.name, t.id, count(*) from tasks t join task_events e on e.task_id = t.id "
        "where e.event_name = 'RUNNING' group by t.id"
    )
    return {f"{name}#{task_id}": count for name, task_id, count in rows}


def test_two_hosts_share_no_disk_and_run_each_task_once(pipeline_env, run_tasks, s3_env, tmp_path):
    # one-host local reference run (same settings, local folders)
    assert run_tasks([TrainingPipeline()]).ok
    reference = ModelRegistry(pipeline_env.registry_dir, "green-trip-duration")
    local_metrics = reference.metadata("v0001")["metrics"]["test"]

    client = s3_env.client()
    for month in MONTHS:
        name = f"green_tripdata_{month}.parquet"
        client.upload_file(str(pipeline_env.raw_dir / name), s3_env.bucket, f"raw/{name}")
    homes = [project_copy(tmp_path / f"host-{h}") for h in ("a", "b")]
    cfgs = [host_config(pipeline_env, s3_env, home) for home in homes]
    luigid = start_luigid(tmp_path / "scheduler")
    try:
        outputs = run_both(homes, cfgs, ["train", "--scheduler-port", str(luigid.port), "--workers", "1"])
        assert all("ran successfully" in out for out in outputs), "each host ran part of the graph"
        counts = runs_per_task(luigid)
        assert counts and all(n == 1 for n in counts.values()), counts
        registry = ModelRegistry(s3_env.url("registry"), "green-trip-duration")
        assert registry.versions() == ["v0001"]
        assert registry.metadata("v0001")["metrics"]["test"] == local_metrics

        # backfill of two months (tests 2021-03 and 2021-04), split across the two workers
        run_both(
            homes,
            cfgs,
            ["backfill", "--start", "2021-03", "--stop", "2021-04", "--scheduler-port", str(luigid.port)],
        )
        counts = runs_per_task(luigid)
        assert all(n == 1 for n in counts.values()), counts
        assert any(name.startswith("MonthlyTraining") for name in counts), counts
    finally:
        stop_luigid(luigid)
    for home in homes:  # nothing was written in a project copy: the work directory is the bucket
        assert not (home / "var").exists()
