#!/usr/bin/env python
"""The training job as one plain script, without luigi: the baseline of the orchestration benchmark.

    python benchmarks/baseline_script.py OUT_DIR [--color green] [--train-months 2021-01]
                                                 [--val-month 2021-02] [--test-month 2021-03]

It does the work of ``python pipeline.py`` (TrainingPipeline) step by step, calling the same functions the
tasks call, with the same configuration: the project's ``luigi.cfg`` and then ``$LUIGI_CONFIG_PATH`` (read
with ``configparser``: ``[paths] raw_dir/zone_lookup``, ``[validation]``, ``[model_search] candidates``,
``[registry] model_name``), and the same thread settings as a one-worker pipeline run (single-threaded
BLAS, OpenMP left at all cores; ``tasks.ops.process.prepare_task_process``). Steps and files, under OUT_DIR:

1. per month: ``validate_trip_file`` -> ``<month>/kept.parquet``, ``rejected.parquet``, ``summary.json``
   (ValidatedTrips), then ``modelling_table`` -> ``<month>/table.parquet`` (ModelInputTable);
2. per candidate: ``score_candidate`` on the training months, scored on the validation month ->
   ``scores/<candidate>.json`` (CandidateScore); ``select_best`` -> ``selection.json`` (ModelSelection);
3. ``final_model`` of the best candidate and of the course baseline on training + validation months ->
   ``final/<role>/model.joblib`` (joblib, compress=3) and ``fit.json`` (FinalModel x 2);
4. ``evaluate_models`` on the test month -> ``report/`` (metrics.json, plots, report.html) (EvaluationReport);
5. ``month_lineage`` (from the validation summaries, as the task) and ``model_metadata``, then ``register_model``
   (reference profile, quality gate) into a file registry ``models/`` -> ``registration.json`` (RegisteredModel).

What it skips is what only the orchestration needs: scheduling, output-path fingerprints, completeness
checks, atomic temporary files, the work-directory lock, status messages. Intermediate frames stay in memory
instead of being read back from the files just written (that re-reading is a cost of the task split, so it
is part of what the benchmark charges to the pipeline). It never imports luigi (checked at the end).
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# as pipeline.py does, before scikit-learn loads: bounded OpenMP spinning (tripduration/runtime/threads.py)
from tripduration.runtime.threads import prepare_process  # noqa: E402

prepare_process()

import joblib  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from tripduration.data.months import format_month, parse_month, parse_month_list  # noqa: E402
from tripduration.data.rules import Rules  # noqa: E402
from tripduration.data.validation import validate_trip_file  # noqa: E402
from tripduration.evaluation.steps import evaluate_models  # noqa: E402
from tripduration.io.parquet import write_parquet  # noqa: E402
from tripduration.registry.metadata import model_metadata, month_lineage  # noqa: E402
from tripduration.registry.registration import register_model  # noqa: E402
from tripduration.registry.store import ModelRegistry  # noqa: E402
from tripduration.training.candidates import BASELINE, CANDIDATES, get_candidate  # noqa: E402
from tripduration.training.steps import (  # noqa: E402
    concat_tables,
    final_model,
    modelling_table,
    score_candidate,
    select_best,
)


def read_config() -> configparser.ConfigParser:
    """luigi.cfg of the project, then $LUIGI_CONFIG_PATH (later files win), as the pipeline reads them."""
    cfg = configparser.ConfigParser(interpolation=None)
    files = [str(ROOT / "luigi.cfg")]
    if os.environ.get("LUIGI_CONFIG_PATH"):
        files.append(os.environ["LUIGI_CONFIG_PATH"])
    cfg.read(files)
    return cfg


def project_path(value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else ROOT / path


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--color", default="green")
    parser.add_argument("--train-months", default="2021-01")
    parser.add_argument("--val-month", default="2021-02")
    parser.add_argument("--test-month", default="2021-03")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    # the same thread settings as a task in a one-worker pipeline run (tasks.ops.process.prepare_task_process)
    threadpool_limits(limits=1, user_api="blas")

    cfg = read_config()
    raw_dir = project_path(cfg.get("paths", "raw_dir", fallback="data"))
    zone_file = project_path(cfg.get("paths", "zone_lookup", fallback="data/taxi_zone_lookup.csv"))
    rules = Rules(
        cfg.getfloat("validation", "min_duration_min", fallback=1.0),
        cfg.getfloat("validation", "max_duration_min", fallback=60.0),
        cfg.getfloat("validation", "max_distance_miles", fallback=100.0),
    )
    # the pipeline's default when luigi.cfg names none: every candidate (tasks.settings.ModelSearchConfig)
    candidates = json.loads(cfg.get("model_search", "candidates", fallback=json.dumps(list(CANDIDATES))))
    max_rows = cfg.getint("training", "max_rows", fallback=2_000_000)
    model_name = cfg.get("registry", "model_name", fallback="{color}-trip-duration").format(color=args.color)
    train_months = parse_month_list(args.train_months)
    val_month, test_month = parse_month(args.val_month), parse_month(args.test_month)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, float] = {}
    mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = round(steps.get(name, 0.0) + now - mark, 3)
        mark = now

    # 1. validation and modelling tables (ValidatedTrips, ModelInputTable)
    zones = set(pd.read_csv(zone_file, usecols=["LocationID"])["LocationID"])
    tables: dict[dt.date, pd.DataFrame] = {}
    summaries: dict[dt.date, dict[str, Any]] = {}
    for month in (*train_months, val_month, test_month):
        raw = raw_dir / f"{args.color}_tripdata_{format_month(month)}.parquet"
        folder = out / format_month(month)
        folder.mkdir(parents=True, exist_ok=True)
        kept, rejected, summary = validate_trip_file(raw, month, rules, zones)
        write_parquet(kept, folder / "kept.parquet")
        write_parquet(rejected, folder / "rejected.parquet")
        write_json(folder / "summary.json", summary)
        table = modelling_table(kept)
        write_parquet(table, folder / "table.parquet")
        tables[month], summaries[month] = table, summary
        step("ValidatedTrips+ModelInputTable")

    # 2. candidate scores and selection (CandidateScore x N, ModelSelection)
    train = concat_tables([tables[m] for m in train_months], "training")
    validation = tables[val_month]
    scores = []
    for name in candidates:
        score = score_candidate(get_candidate(name), train, validation, max_rows)
        write_json(out / "scores" / f"{name}.json", score)
        scores.append(score)
        step(f"CandidateScore[{name}]")
    selection = select_best(scores)
    write_json(out / "selection.json", selection)
    step("ModelSelection")

    # 3. final models refitted on training + validation months (FinalModel role=best, role=baseline)
    fit_tables = [*(tables[m] for m in train_months), validation]
    final: dict[str, Any] = {}
    for role, name in (("best", selection["best"]), ("baseline", BASELINE)):
        final[role] = final_model(get_candidate(name), fit_tables, max_rows)
        folder = out / "final" / role
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(final[role]["model"], folder / "model.joblib", compress=3)
        write_json(folder / "fit.json", final[role]["fit"])
        step(f"FinalModel[{role}]")

    # 4. evaluation report on the test month (EvaluationReport)
    model, fit, baseline_model = final["best"]["model"], final["best"]["fit"], final["baseline"]["model"]
    test = tables[test_month]
    context = {
        "color": args.color,
        "algorithm": fit["candidate"],
        "train_months": [format_month(m) for m in train_months],
        "validation_month": format_month(val_month),
        "test_month": format_month(test_month),
        "final_training_rows": fit["rows"],
        "metrics": {
            "validation": selection["best_validation"],
            "baseline_validation": selection["baseline_validation"],
        },
    }
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    evaluation = evaluate_models(
        model,
        baseline_model,
        test,
        report_dir,
        context,
        importance_rows=cfg.getint("evaluation", "importance_rows", fallback=5000),
        importance_repeats=cfg.getint("evaluation", "importance_repeats", fallback=3),
    )
    step("EvaluationReport")

    # 5. registration behind the quality gate (RegisteredModel)
    roles = {"train": train_months, "validation": (val_month,), "test": (test_month,)}
    lineage = [month_lineage(role, format_month(m), summaries[m]) for role, months in roles.items() for m in months]
    metadata = model_metadata(fit, evaluation, lineage, args.color, "benchmarks/baseline_script.py")
    files = (out / "final" / "best" / "model.joblib", report_dir)
    registry = ModelRegistry(out / "models", model_name)
    result = register_model(registry, model, files, metadata, fit_tables, test, f"baseline_script-{out.resolve()}")
    write_json(out / "registration.json", result)
    step("RegisteredModel")

    if "luigi" in sys.modules:  # the baseline must measure the work without the orchestration
        raise AssertionError("baseline_script imported luigi")
    print(
        json.dumps(
            {
                "best": selection["best"],
                "test_rmse": evaluation["metrics"]["test"]["rmse"],
                "baseline_test_rmse": evaluation["metrics"]["baseline_test"]["rmse"],
                "version": result["version"],
                "seconds_in_process": round(time.perf_counter() - started, 3),
                "step_seconds": steps,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
