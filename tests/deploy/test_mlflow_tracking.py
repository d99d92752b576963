"""MLflow follows every training run (issue 23 section 3): ``[mlflow] tracking_uri`` set, the real training graph on
sampled months logs one parent run per job, a nested run per candidate, the evaluation report and the registered
model (signature, input example) on the parent, aliases following the registry; a rerun adds nothing.

Against a sqlite store (each test its own copy of an empty one), and (slow) a real ``mlflow server`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, PipelineEnv, free_port
from mlflow_store import client_for, make_empty_store, mlflow_server, store_copy

import pipeline  # before the fixtures: importing it reloads luigi.cfg, which would drop their settings
import tasks.tracking
from tasks.settings import MonitoringConfig
from tripduration.monitoring.policy import Thresholds
from tripduration.registry.mlflow.mapping import TAG_JOB, TAG_PARENT, TAG_TASK, TAG_VERSION
from tripduration.registry.store import ModelRegistry

mlflow = pytest.importorskip("mlflow")

MODEL_NAME = "green-trip-duration"
CANDIDATES = ["baseline_linreg", "hgb_lr10_l31", "ridge_a1"]  # conftest.FAST_CANDIDATES, sorted
REQUIRED = {"pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"}
OPTIONAL = {"VendorID", "RatecodeID", "trip_type", "passenger_count"}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_empty_store(tmp_path_factory.mktemp("mlflow-empty"))


@pytest.fixture
def tracked(pipeline_env: PipelineEnv, empty_store: Path, tmp_path: Path) -> str:
    """The pipeline environment with ``[mlflow] tracking_uri`` set to a fresh sqlite store; its URI."""
    uri = store_copy(empty_store, tmp_path / "mlflow")
    pipeline_env.config.set("mlflow", "tracking_uri", uri)
    return uri


@dataclass
class Job:
    """What MLflow holds of one training job: the parent run, its nested runs by candidate, model versions."""

    parent: Any
    nested: dict[str, Any]
    versions: list[Any]


def jobs(uri: str) -> list[Job]:
    client = client_for(uri)
    experiment = client.get_experiment_by_name(MODEL_NAME)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    found = []
    for parent in (r for r in runs if TAG_JOB in r.data.tags):
        children = [r for r in runs if r.data.tags.get(TAG_PARENT) == parent.info.run_id]
        nested = {r.info.run_name: r for r in children}
        assert len(nested) == len(children), (
            f"two nested runs of one candidate: {sorted(r.info.run_name for r in children)}"
        )
        versions = client.search_model_versions(f"name = '{MODEL_NAME}' and run_id = '{parent.info.run_id}'")
        found.append(Job(parent, nested, list(versions)))
    return found


def everything(uri: str) -> tuple[int, int]:
    """(runs, model versions) in the store: a rerun must add neither."""
    client = client_for(uri)
    experiment = client.get_experiment_by_name(MODEL_NAME)
    return len(client.search_runs([experiment.experiment_id])), len(
        client.search_model_versions(f"name = '{MODEL_NAME}'")
    )


def aliases(uri: str) -> dict[str, str]:
    """alias -> the registry version its MLflow model version mirrors."""
    client = client_for(uri)
    model = client.get_registered_model(MODEL_NAME)
    return {alias: client.get_model_version(MODEL_NAME, n).tags[TAG_VERSION] for alias, n in model.aliases.items()}


def train(*args: str) -> int:
    return pipeline.main(["train", *args] if not args or args[0].startswith("-") else list(args))


# --------------------------------------------------------------------------- against a sqlite store
def test_a_training_job_is_logged_as_it_runs_and_a_rerun_adds_nothing(
    pipeline_env: PipelineEnv, tracked: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the evaluation fails: the candidates are in MLflow already, nested under a running parent
    import tasks.evaluation

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("evaluation broken for the test")

    monkeypatch.setattr(tasks.evaluation, "evaluate_models", broken)
    assert train() == 30
    [job] = jobs(tracked)
    assert job.parent.info.status == "RUNNING" and job.versions == []
    assert sorted(job.nested) == CANDIDATES
    assert all(run.info.status == "FINISHED" for run in job.nested.values())
    monkeypatch.undo()

    # the rerun finds the same parent by its registration key and finishes it
    assert train() == 0
    registry = ModelRegistry(pipeline_env.registry_dir, MODEL_NAME)
    [job] = jobs(tracked)
    meta = registry.metadata("v0001")
    parent = job.parent
    assert parent.data.tags[TAG_JOB] == meta["registration_key"]  # tasks.tracking's key is the registry's
    assert parent.info.status == "FINISHED"
    assert sorted(job.nested) == CANDIDATES
    ridge = job.nested["ridge_a1"]
    assert ridge.data.params["algorithm.candidate"] == "ridge_a1" and "algorithm.params.alpha" in ridge.data.params
    assert {"validation_rmse", "validation_mae", "validation_r2", "fit_seconds"} <= set(ridge.data.metrics)
    assert ridge.data.tags[TAG_TASK].startswith("CandidateScore_")
    # the evaluation report, its plots and the registration on the parent
    assert parent.data.tags[TAG_VERSION] == "v0001" and parent.data.tags["model_sha256"] == meta["model_sha256"]
    assert parent.data.metrics["test_rmse"] == pytest.approx(meta["metrics"]["test"]["rmse"])
    assert parent.data.params["algorithm.candidate"] == meta["algorithm"]["candidate"]
    assert parent.data.params["test_month"] == "2021-03"
    client = client_for(tracked)
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/metrics.json"} <= report and any(p.endswith(".png") for p in report)
    # one model version, from the parent, with the HTTP API's fields as its signature
    [version] = job.versions
    assert version.tags[TAG_VERSION] == "v0001"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version.version}")
    schema = model.metadata.get_input_schema()
    assert {c.name for c in schema.inputs if c.required} == REQUIRED
    assert {c.name for c in schema.inputs if not c.required} == OPTIONAL
    assert set(model.input_example.columns) == REQUIRED
    assert aliases(tracked) == {"production": "v0001"}

    # a rerun: nothing runs, nothing is added
    before = everything(tracked)
    assert train() == 0
    assert everything(tracked) == before


def test_a_retrain_of_the_monthly_loop_and_a_rollback_move_the_aliases_and_the_export_adds_nothing(
    pipeline_env: PipelineEnv, tracked: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert train() == 0  # v0001: test 2021-03
    # the loop retrains (a dynamic dependency of MonthlyRun): v0002, test 2021-04, validated on 2021-03. Any
    # error counts as degraded (a ratio below 1 is refused as a setting, so the thresholds are forced in the code)
    monkeypatch.setattr(MonitoringConfig, "thresholds", lambda self: Thresholds(rmse_degraded_ratio=0.01))
    assert pipeline.main(["monthly-run", "--month", "2021-04"]) == 0
    # scheduling the dynamic dependency noted its job, so its candidates were logged as they finished
    assert "2021-04" in {job.test_month for jobs in tasks.tracking._JOBS.values() for job in jobs.values()}
    registry = ModelRegistry(pipeline_env.registry_dir, MODEL_NAME)
    assert registry.versions() == ["v0001", "v0002"]
    found = jobs(tracked)
    assert [j.parent.data.tags[TAG_VERSION] for j in found] == ["v0001", "v0002"]
    assert all(sorted(j.nested) == CANDIDATES and len(j.versions) == 1 for j in found)
    production = registry.production()["version"]
    promoted = registry.metadata("v0002")["gate"]["promote"]
    assert production == ("v0002" if promoted else "v0001")
    assert aliases(tracked) == ({"production": "v0002", "challenger": "v0001"} if promoted else {"production": "v0001"})

    # a rollback moves the aliases at once
    target = "v0001" if promoted else "v0002"
    capsys.readouterr()
    assert pipeline.main(["rollback", target, "--reason", "drill", *([] if promoted else ["--force"])]) == 0
    out = capsys.readouterr().out
    assert f"production is now {target}" in out and f"@production -> {target} = version" in out
    other = "v0002" if promoted else "v0001"  # passed the gate (v0001 went into production through it)
    assert aliases(tracked) == {"production": target, "challenger": other}

    # export-mlflow (the backfill) finds what the jobs logged: one mapping, nothing made twice
    before = everything(tracked)
    assert pipeline.main(["export-mlflow", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["created"] == {"runs": 0, "model_versions": 0} and result["errors"] == []
    assert [r["run_id"] for r in result["versions"]] == [j.parent.info.run_id for j in found]
    assert everything(tracked) == before


def test_a_job_whose_model_never_reached_mlflow_is_completed_by_the_export_on_its_own_run(
    pipeline_env: PipelineEnv, tracked: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tripduration.registry.mlflow.tracking as tracking

    def unreachable(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(tracking, "mirror_version", unreachable)
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        assert train() == 0  # tracking never fails a task
    warned = [r.getMessage() for r in caplog.records if "MLflow tracking of RegisteredModel" in r.getMessage()]
    assert len(warned) == 1 and "ConnectionError: tracking server went away" in warned[0]
    [job] = jobs(tracked)
    assert job.versions == [] and TAG_VERSION not in job.parent.data.tags
    monkeypatch.undo()

    assert pipeline.main(["export-mlflow"]) == 0
    [job] = jobs(tracked)  # the model landed on the job's own parent run, not on a new run
    assert job.parent.data.tags[TAG_VERSION] == "v0001" and len(job.versions) == 1
    assert everything(tracked) == (1 + len(CANDIDATES), 1)


def test_tracking_off_imports_no_mlflow_and_tracking_on_without_the_extra_is_refused_up_front(
    pipeline_env: PipelineEnv, tmp_path: Path
) -> None:
    script = (
        "import sys, pipeline\n"
        "code = pipeline.main(sys.argv[1:])\n"
        "print('mlflow imported:', 'mlflow' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file)}
    env.pop("MLFLOW_TRACKING_URI", None)
    off = subprocess.run([sys.executable, "-c", script, "train"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert off.returncode == 0, off.stderr[-2000:]
    assert "mlflow imported: False" in off.stdout
    assert ModelRegistry(pipeline_env.registry_dir, MODEL_NAME).versions() == ["v0001"]

    # tracking on, mlflow not installed (hidden from the process): exit 2, one line naming the extra, nothing run
    cfg = tmp_path / "tracked.cfg"
    cfg.write_text(pipeline_env.cfg_file.read_text() + f"\n[mlflow]\ntracking_uri = sqlite:///{tmp_path}/m.db\n")
    hidden = "import sys; sys.modules['mlflow'] = None\n" + script
    env["LUIGI_CONFIG_PATH"] = str(cfg)
    args = ["monthly", "--month", "2021-04"]
    refused = subprocess.run([sys.executable, "-c", hidden, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr[-2000:]
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("tripduration: error: configuration: [mlflow] tracking_uri = sqlite:///"), line
    assert "'mlflow' extra" in line and "make setup-mlflow" in line
    assert ModelRegistry(pipeline_env.registry_dir, MODEL_NAME).versions() == ["v0001"]
    assert not (tmp_path / "m.db").exists()


# --------------------------------------------------------------------------- against `mlflow server`
def rest(url: str, endpoint: str, body: dict[str, Any] | None = None, **query: str) -> dict[str, Any]:
    """MLflow's REST API as a user of the server sees it: GET with ``query``, or POST ``body``."""
    address = f"{url}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(address, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.fixture
def server(pipeline_env: PipelineEnv, empty_store: Path, tmp_path: Path) -> Iterator[str]:
    with mlflow_server(tmp_path / "server", empty_store) as url:
        pipeline_env.config.set("mlflow", "tracking_uri", url)
        yield url


@pytest.mark.slow  # ~60 s on an idle 2-core machine: server start ~12 s, the job twice, one upload per artifact
def test_a_job_with_two_workers_is_tracked_on_a_real_mlflow_server(
    pipeline_env: PipelineEnv, server: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # candidates in forked task processes, side by side: one parent run all the same (the host's tracking lock)
    assert train("--workers", "2") == 0
    assert "View run" not in capfd.readouterr().out  # MLflow's line per ended run stays out of the job's output
    experiment = rest(server, "experiments/get-by-name", experiment_name=MODEL_NAME)["experiment"]
    runs = rest(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parents = [run for run, t in zip(runs, tags, strict=True) if TAG_JOB in t]
    assert len(parents) == 1
    parent_id = parents[0]["info"]["run_id"]
    nested = sorted(
        run["info"]["run_name"] for run, t in zip(runs, tags, strict=True) if t.get(TAG_PARENT) == parent_id
    )
    assert nested == CANDIDATES and len(runs) == 1 + len(CANDIDATES)
    model = rest(server, "registered-models/get", name=MODEL_NAME)["registered_model"]
    assert {a["alias"]: a["version"] for a in model["aliases"]} == {"production": "1"}
    version = rest(server, "model-versions/get", name=MODEL_NAME, version="1")["model_version"]
    assert version["run_id"] == parent_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    signature = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/1").signature
    assert {c.name for c in signature.inputs.inputs if c.required} == REQUIRED

    assert train("--workers", "2") == 0  # nothing runs, nothing is added
    again = rest(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})
    assert len(again["runs"]) == len(runs)
    assert len(rest(server, "model-versions/search", filter=f"name='{MODEL_NAME}'")["model_versions"]) == 1


def test_a_tracking_server_that_does_not_answer_costs_seconds_and_fails_no_task(
    pipeline_env: PipelineEnv, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    pipeline_env.config.set("mlflow", "tracking_uri", url)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        assert train() == 0
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("MLflow tracking of")]
    assert len(warned) == len(CANDIDATES) + 2  # the candidates, the evaluation, the registration
    assert all(f"no MLflow tracking server answers at {url}" in w for w in warned)
    assert ModelRegistry(pipeline_env.registry_dir, MODEL_NAME).versions() == ["v0001"]
    capsys.readouterr()
    assert pipeline.main(["export-mlflow"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"tripduration export-mlflow: error: no MLflow tracking server answers at {url}")
    assert time.monotonic() - started < 90  # MLflow's own retries: about 4 minutes per call, 5 calls
