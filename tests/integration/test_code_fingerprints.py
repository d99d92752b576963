"""Fingerprints follow the code (issue 19.3), on a copy of the project edited as a newcomer would edit it.

Each case edits one function of the copy, then a new process imports the copy and lists the output folder of
every task of the training graph (and of a batch prediction): the tasks whose code reaches the edited function
and everything downstream of them get new folders, every other task keeps its folder (so its outputs are
reused). A comment, a docstring or a reformatting gives no new folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_CANDIDATES, ROOT

#: the task folders of the graph, as a new process importing the project at argv[1] computes them
LIST_FOLDERS = """
import datetime as dt, json, sys
root = sys.argv[1]
sys.path.insert(0, root)
import tasks, tripduration
for package in (tasks, tripduration):
    assert package.__file__.startswith(root), f"{package.__name__} imported from {package.__file__}, not {root}"
from luigi.task import flatten
from tasks import BatchPredictions, TrainingPipeline
from tasks.base import PipelineTask
graph = {}
def walk(task):
    if task.task_id not in graph:
        deps = flatten(task.requires())
        folder = task.output_dir() if isinstance(task, PipelineTask) else None
        graph[task.task_id] = {"family": task.task_family, "folder": folder, "requires": [d.task_id for d in deps]}
        for dep in deps:
            walk(dep)
walk(TrainingPipeline())
walk(BatchPredictions(month=dt.date(2021, 3, 1), model_version="v0001"))
print(json.dumps(graph))
"""

Graph = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, sample_raw_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("code-fingerprints")
    cfg = home / "luigi.cfg"
    cfg.write_text(
        f"[paths]\nraw_dir = {sample_raw_dir}\nzone_lookup = {sample_raw_dir / 'taxi_zone_lookup.csv'}\n"
        f"work_dir = {home / 'work'}\nregistry_dir = {home / 'models'}\n"
        f"[model_search]\ncandidates = {FAST_CANDIDATES}\n"
    )
    return cfg


def copy_project(dest: Path) -> Path:
    for package in ("tripduration", "tasks"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def folders(project: Path, settings: Path) -> Graph:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(settings), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LIST_FOLDERS, str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, settings: Path) -> Graph:
    return folders(copy_project(tmp_path_factory.mktemp("original")), settings)


def edit(project: Path, file: str, old: str, new: str) -> None:
    path = project / file
    text = path.read_text()
    assert text.count(old) == 1, f"{file}: {old!r} is not there once; update this test to the code"
    path.write_text(text.replace(old, new))


def downstream(graph: Graph, tasks: set[str]) -> set[str]:
    """``tasks`` and every task that requires one of them, directly or not."""
    found = set(tasks)
    while True:
        more = {t for t, node in graph.items() if t not in found and found & set(node["requires"])}
        if not more:
            return found
        found |= more


def new_folders(before: Graph, after: Graph) -> set[str]:
    assert before.keys() == after.keys()
    return {t for t in before if before[t]["folder"] != after[t]["folder"]}


def by_family(graph: Graph, *families: str) -> set[str]:
    return {t for t, node in graph.items() if node["family"] in families}


@pytest.mark.parametrize(
    ("file", "old", "new", "runs_it"),
    [
        (  # feeds the candidates, the final refits and the registration's reference profile
            "tripduration/training/steps.py",
            "frames = [t for t in tables if len(t)]",
            "frames = [t for t in tables if len(t) > 0]",
            ("CandidateScore", "FinalModel", "RegisteredModel"),
        ),
        (  # reached through FunctionTransformer(engineer_features) in build_pipeline, and run by every model
            "tripduration/training/features.py",
            '"pair_code": pu.astype("int64") * 1000 + do,',
            '"pair_code": pu.astype("int64") * 1000 + do.astype("int64"),',
            ("CandidateScore", "FinalModel", "EvaluationReport", "RegisteredModel", "BatchPredictions"),
        ),
        (  # same module as concat_tables: only the selection (and the best model's refit after it)
            "tripduration/training/steps.py",
            'ranked = sorted(scores, key=lambda s: (s["validation"]["rmse"], s["candidate"]))',
            'ranked = sorted(scores, key=lambda s: (s["validation"]["rmse"], s["candidate"]), reverse=False)',
            ("ModelSelection",),
        ),
        (  # the modelling table's stage function
            "tripduration/training/steps.py",
            "    return model_table(kept)",
            "    table = model_table(kept)\n    return table",
            ("ModelInputTable",),
        ),
        (  # batch predictions only: nothing of the training graph
            "tripduration/prediction/batch.py",
            "    low, high = plausible\n",
            "    low, high = plausible[0], plausible[1]\n",
            ("BatchPredictions",),
        ),
        (  # the download: a source file is keyed by its content, not by the code that fetched it
            "tripduration/data/fetch.py",
            "    dest = Path(dest)\n    pace = _Pace(url, limits, clock)\n",
            "    pace = _Pace(url, limits, clock)\n    dest = Path(dest)\n",
            (),
        ),
    ],
    ids=["concat_tables", "engineer_features", "select_best", "modelling_table", "score_dispatchable", "download"],
)
def test_an_edited_function_gives_new_folders_to_its_tasks_and_downstream_only(
    tmp_path, settings, original, file, old, new, runs_it
):
    project = copy_project(tmp_path)
    edit(project, file, old, new)
    edited = folders(project, settings)
    expected = downstream(original, by_family(original, *runs_it))
    assert new_folders(original, edited) == {t for t in expected if original[t]["folder"] is not None}
    reused = {original[t]["family"] for t in original if t not in expected}
    assert {"TripData", "ValidatedTrips"} <= reused  # the data stages are reused whatever the training edit


def test_comments_docstrings_and_layout_give_no_new_folder(tmp_path, settings, original):
    project = copy_project(tmp_path)
    edit(
        project,
        "tripduration/training/steps.py",
        "    frames = [t for t in tables if len(t)]\n",
        '    """The non-empty tables, end to end."""\n'
        "    # empty months add nothing\n"
        "    frames = [t for t in tables if len(t)]\n\n",
    )
    edit(
        project,
        "tripduration/training/steps.py",
        "    return pd.concat(frames, ignore_index=True)",
        "    return pd.concat(\n        frames,\n        ignore_index=True,  # one index\n    )",
    )
    edit(project, "tripduration/training/features.py", "(used inside the sklearn Pipeline)", "(inside the Pipeline)")
    assert new_folders(original, folders(project, settings)) == set()


def test_the_original_graph_is_what_the_cases_assume(original):
    families = {node["family"] for node in original.values()}
    assert by_family(original, "CandidateScore") and by_family(original, "BatchPredictions")
    assert {"TripData", "ValidatedTrips", "ModelInputTable", "ModelSelection", "FinalModel"} <= families
    assert all(original[t]["folder"] for t in by_family(original, "ValidatedTrips", "RegisteredModel"))


def test_a_downloaded_month_keeps_the_folder_earlier_releases_gave_it():
    """Months downloaded before fingerprints followed the code are not downloaded again (TripData's payload
    keeps the constant those releases hashed: ``code_version`` 1)."""
    from tasks import TripData

    assert TripData(color="green", month=dt.date(2021, 5, 1)).output_dir() == "TripData/green_2021-05-59ffc2e2dd95"
