"""Smoke test of the benchmark harness (``benchmarks/run.py --quick``): tiny sizes, its own output folder.

The real benchmark (``make bench``, about 40 minutes on 2 cores) is not part of the test run; this (about
30 s) checks that every part of it runs end to end and writes the expected keys, and that it leaves the
committed results (``benchmarks/results.json``, ``docs/benchmarks.md``) alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = (ROOT / "benchmarks" / "results.json", ROOT / "docs" / "benchmarks.md")


def _stamp(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


@pytest.mark.slow
def test_quick_benchmark_writes_results(tmp_path: Path) -> None:
    before = [_stamp(p) for p in COMMITTED]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out), "--tmp", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert [_stamp(p) for p in COMMITTED] == before, "the smoke test must not touch the committed results"

    results = json.loads((out / "results.json").read_text())
    assert {"meta", "orchestration", "rerun", "batch_prediction", "scale", "targets"} <= set(results)
    assert results["meta"]["quick"] is True
    assert {"cpu_model", "logical_cpus", "ram_gib", "python", "libraries"} <= set(results["meta"]["machine"])

    full = results["orchestration"]["full_runs"]
    assert full["ratio_1w"]["median"] > 0 and full["ratio_2w"]["median"] > 0
    assert full["same_results_every_rep"], full["runs"]
    resume = results["orchestration"]["resume"]
    assert resume["ran_only_final_stage_every_rep"], full["runs"]
    assert 0 < resume["final_stage_share"]["median"] < 1
    assert results["rerun"]["ran_nothing_every_rep"]
    assert results["rerun"]["ratio"]["median"] > 0
    assert results["batch_prediction"]["normal_size"]["ratio_process_to_bare_predict"]["median"] > 0

    contention = results["contention"]
    assert contention["busy_processes"] >= 1 and len(contention["pairs"]) == 1
    assert contention["ratio"]["median"] > 0

    scale = results["scale"]
    assert [e["rows"] for e in scale["sizes"]] == results["meta"]["sizes"]
    for entry in scale["sizes"]:
        for stage in ("validation", "features", "training", "prediction"):
            data = entry["stages"][stage]
            assert data["measured"], (stage, data)
            assert {"seconds", "rows_per_second", "peak_rss_mb", "frame_mb", "peak_to_frame"} <= set(data)
    assert all(len(scale["growth"][stage]) == 1 for stage in ("validation", "features", "training", "prediction"))

    ids = {t["id"] for t in results["targets"]}
    assert {"pipeline_1w", "pipeline_2w", "rerun", "resume", "batch_normal", "largest_completes", "contention"} <= ids
    assert all({"what", "value", "target", "met"} <= set(t) for t in results["targets"])
    markdown = (out / "benchmarks.md").read_text()
    assert "| benchmark | measured (median) | target | met |" in markdown
    assert "## CPU contention" in markdown
