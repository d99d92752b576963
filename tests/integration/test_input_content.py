"""Inputs are identified by content: a file replaced under the same name makes new outputs downstream, the
lineage a model records comes from the same read as its metrics, and a no-op rerun hashes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import DATA, sample_month

import tripduration.io.content as content
from tasks import TrainingPipeline, ValidatedTrips
from tripduration.registry.store import ModelRegistry

MARCH = "green_tripdata_2021-03.parquet"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lineage(registry: ModelRegistry, version: str, role: str) -> dict:
    return next(d for d in registry.metadata(version)["data"] if d["role"] == role)


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the content cache had to read (a cache hit reads nothing)."""
    calls: list[str] = []
    real = content.sha256_stream

    def counting(fh):
        calls.append(getattr(fh, "name", "?"))
        return real(fh)

    monkeypatch.setattr(content, "sha256_stream", counting)
    return calls


def test_replaced_month_makes_new_outputs_and_true_lineage(pipeline_env, run_tasks, hash_calls):
    registry = ModelRegistry(pipeline_env.registry_dir, "green-trip-duration")
    assert run_tasks([TrainingPipeline()]).ok
    first_test = lineage(registry, "v0001", "test")
    first_metrics = registry.metadata("v0001")["metrics"]["test"]
    march = pipeline_env.raw_dir / MARCH
    assert first_test["sha256"] == sha256(march)

    # no-op rerun: nothing runs and no input file is read to be hashed (size + mtime_ns + inode cached)
    hash_calls.clear()
    noop = run_tasks([TrainingPipeline()])
    assert noop.ok and noop.ran == []
    assert hash_calls == []

    # replace the test month in place: another sample of the real month, same name
    sample_month(DATA / MARCH, march, 3000, seed=99)
    new_sha = sha256(march)
    assert new_sha != first_test["sha256"]
    rerun = run_tasks([TrainingPipeline()])
    assert rerun.ok
    # the March data, the evaluation and the registration ran again; no model was retrained (March is only
    # the test month)
    assert {"ValidatedTrips", "ModelInputTable", "EvaluationReport", "RegisteredModel"} <= rerun.families()
    assert not {"CandidateScore", "FinalModel"} & rerun.families()
    assert [r for r in rerun.ran if r.startswith("ValidatedTrips")] == [
        r for r in rerun.ran if r.startswith("ValidatedTrips") and "2021-03" in r
    ]

    summary = json.loads(Path(ValidatedTrips(month=dt.date(2021, 3, 1)).output()["summary.json"].path).read_text())
    assert summary["source"]["sha256"] == new_sha
    assert summary["rows_in"] == 3000

    assert registry.versions() == ["v0001", "v0002"]
    second_test = lineage(registry, "v0002", "test")
    assert second_test["sha256"] == new_sha
    assert second_test["rows_in"] == 3000 == second_test["rows_kept"] + second_test["rows_rejected"]
    second_metrics = registry.metadata("v0002")["metrics"]["test"]
    assert second_metrics["rows"] == second_test["rows_kept"]
    assert second_metrics["rmse"] != first_metrics["rmse"]
    # the first version's record still describes the file it was made from
    assert lineage(registry, "v0001", "test") == first_test


def test_replaced_zone_lookup_revalidates_every_month(pipeline_env, run_tasks):
    task = ValidatedTrips(month=dt.date(2021, 1, 1))
    assert run_tasks([task]).ok
    first_dir = Path(task.output()["summary.json"].path).parent
    zones = pipeline_env.raw_dir / "taxi_zone_lookup.csv"
    lines = zones.read_text().splitlines()
    zones.write_text("\n".join(line for line in lines if not line.startswith("74,")) + "\n")  # drop zone 74
    again = ValidatedTrips(month=dt.date(2021, 1, 1))
    result = run_tasks([again])
    assert result.ok and [r.split("(")[0] for r in result.ran] == ["ValidatedTrips"]
    second_dir = Path(again.output()["summary.json"].path).parent
    assert second_dir != first_dir and first_dir.exists()
    first = json.loads((first_dir / "summary.json").read_text())
    second = json.loads((second_dir / "summary.json").read_text())
    assert second["zone_lookup"]["sha256"] == sha256(zones) != first["zone_lookup"]["sha256"]
    assert second["rejected_by_reason"]["unknown_location"] > first["rejected_by_reason"]["unknown_location"]


def test_file_changed_after_the_graph_was_built_is_refused(pipeline_env):
    task = ValidatedTrips(month=dt.date(2021, 2, 1))
    task.output()  # the graph is built: the path holds the digest of the file as it is now
    march = pipeline_env.raw_dir / "green_tripdata_2021-02.parquet"
    shutil.copy(pipeline_env.raw_dir / "green_tripdata_2021-01.parquet", march)
    with pytest.raises(RuntimeError, match=r"green_tripdata_2021-02.parquet changed while the pipeline was running"):
        task.run()
    assert not any(Path(t.path).exists() for t in task.output().values())


def test_cache_rehashes_only_when_the_stat_key_changes(tmp_path, hash_calls):
    data = tmp_path / "f.bin"
    data.write_bytes(b"one")
    cache = tmp_path / "cache"
    first = content.content_sha256(data, cache)
    assert first == hashlib.sha256(b"one").hexdigest() and len(hash_calls) == 1
    assert content.content_sha256(data, cache) == first and len(hash_calls) == 1
    # same size, new content (a new inode and mtime): hashed again
    replacement = tmp_path / "g.bin"
    replacement.write_bytes(b"two")
    replacement.replace(data)
    assert content.content_sha256(data, cache) == hashlib.sha256(b"two").hexdigest() and len(hash_calls) == 2
    # a corrupt cache entry costs a rehash, never a wrong digest
    for entry in cache.iterdir():
        entry.write_text("{not json")
    assert content.content_sha256(data, cache) == hashlib.sha256(b"two").hexdigest() and len(hash_calls) == 3
