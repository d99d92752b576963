#!/usr/bin/env python
"""One pipeline stage in a fresh process, so its peak RSS (``ru_maxrss`` of this process) is the stage's own.

    python benchmarks/stage.py validation   --raw FILE --month 2021-03 --out DIR
    python benchmarks/stage.py features     --kept FILE --out DIR
    python benchmarks/stage.py training     --table FILE --candidate NAME --out DIR
    python benchmarks/stage.py prediction   --kept FILE --registry DIR --name NAME --out DIR [--reps 3]
    python benchmarks/stage.py bare-predict --kept FILE --registry DIR --name NAME [--reps 3]

Each stage does what its task's ``run()`` does, calling the same functions, without luigi:
validation = ValidatedTrips (``validate_trip_file``, write kept/rejected parquet and the summary),
features = ModelInputTable (read kept, ``modelling_table``, write the table), training = FinalModel
(read the table, ``fit_candidate``, ``joblib.dump`` compress=3), prediction = BatchPredictions (registry
``load_model`` with its sha256 check, read kept, ``batch_predictions``, write parquet), interleaved per
repetition with a bare ``model.predict`` on the same rows. Thread settings are those of a task in a
one-worker run (single-threaded BLAS, OpenMP at all cores).

Prints one JSON line: seconds of the whole stage and of its core function, rows, peak RSS, RSS after the
imports, and ``frame_mb``, the in-memory size (``DataFrame.memory_usage(deep=True)``) of the frame the
stage reads (for validation: the canonical frame ``read_trips`` returns, measured after the peak was taken).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# as pipeline.py does, before scikit-learn loads: bounded OpenMP spinning (tripduration/runtime/threads.py)
from tripduration.runtime.threads import prepare_process  # noqa: E402

prepare_process()

import datetime as dt  # noqa: E402

import joblib  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from benchmarks.common import current_rss_mb, peak_rss_mb  # noqa: E402
from tripduration.data.months import parse_month  # noqa: E402
from tripduration.data.rules import Rules  # noqa: E402
from tripduration.data.schema import read_trips  # noqa: E402
from tripduration.data.validation import validate_trip_file  # noqa: E402
from tripduration.io.parquet import read_parquet, write_parquet  # noqa: E402
from tripduration.prediction.batch import BATCH_INPUT_COLUMNS, batch_predictions  # noqa: E402
from tripduration.registry.store import ModelRegistry  # noqa: E402
from tripduration.training.candidates import get_candidate  # noqa: E402
from tripduration.training.features import MODEL_INPUT_COLUMNS, MODEL_TABLE_SOURCE_COLUMNS  # noqa: E402
from tripduration.training.steps import fit_candidate, fit_row_count, modelling_table  # noqa: E402

MB = 1024.0**2


def training_max_rows() -> int:
    """``[training] max_rows`` of the project's luigi.cfg (what FinalModel fits on), without importing luigi."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "luigi.cfg")
    return cfg.getint("training", "max_rows", fallback=2_000_000)


def frame_mb(frame: pd.DataFrame) -> float:
    return float(frame.memory_usage(deep=True).sum()) / MB


def validation(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    zones = set(pd.read_csv(ROOT / "data" / "taxi_zone_lookup.csv", usecols=["LocationID"])["LocationID"])
    core_start = time.perf_counter()
    kept, rejected, summary = validate_trip_file(args.raw, parse_month(args.month), Rules(), zones)
    core = time.perf_counter() - core_start
    write_parquet(kept, out / "kept.parquet")
    write_parquet(rejected, out / "rejected.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    del kept, rejected
    gc.collect()
    frame, _ = read_trips(args.raw)  # after the peak: the size of the columns the stage read
    return {
        "rows": summary["rows_in"],
        "rows_out": summary["rows_kept"],
        "seconds": seconds,
        "core_seconds": core,
        "peak_rss_mb": peak,
        "frame_mb": frame_mb(frame),
    }


def features(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    kept = read_parquet(args.kept, columns=list(MODEL_TABLE_SOURCE_COLUMNS))
    core_start = time.perf_counter()
    table = modelling_table(kept)
    core = time.perf_counter() - core_start
    write_parquet(table, out / "table.parquet")
    seconds = time.perf_counter() - start
    return {
        "rows": len(kept),
        "seconds": seconds,
        "core_seconds": core,
        "peak_rss_mb": peak_rss_mb(),
        "frame_mb": frame_mb(kept),
    }


def training(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    spec = get_candidate(args.candidate)
    start = time.perf_counter()
    table = read_parquet(args.table)
    model, fit_seconds = fit_candidate(spec, table, args.max_rows)
    joblib.dump(model, out / "model.joblib", compress=3)
    seconds = time.perf_counter() - start
    return {
        "rows": len(table),
        "candidate": spec.name,
        "fit_rows": fit_row_count(len(table), args.max_rows),
        "params": spec.params,
        "seconds": seconds,
        "core_seconds": fit_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "frame_mb": frame_mb(table),
    }


def prediction(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(args.registry, args.name)
    task, core, bare = [], [], []
    result: dict[str, Any] = {}
    for rep in range(args.reps):
        # what BatchPredictions.run() does
        start = time.perf_counter()
        model, meta = registry.load_model()
        kept = read_parquet(args.kept, columns=list(BATCH_INPUT_COLUMNS))
        core_start = time.perf_counter()
        predictions = batch_predictions(model, kept, meta["name"], meta["version"])
        core.append(time.perf_counter() - core_start)
        write_parquet(predictions, out / "predictions.parquet")
        task.append(time.perf_counter() - start)
        if rep == 0:
            result.update(
                rows=len(kept), peak_rss_mb=peak_rss_mb(), frame_mb=frame_mb(kept), model_version=meta["version"]
            )
        del predictions
        # bare model.predict on the same rows
        X = kept.loc[:, list(MODEL_INPUT_COLUMNS)]
        start = time.perf_counter()
        model.predict(X)
        bare.append(time.perf_counter() - start)
        del X, kept, model
        gc.collect()
    result.update(
        seconds=sorted(task)[len(task) // 2],
        core_seconds=sorted(core)[len(core) // 2],
        bare_predict_seconds=sorted(bare)[len(bare) // 2],
        task_seconds_all=task,
        batch_predictions_seconds_all=core,
        bare_predict_seconds_all=bare,
        ratio_task_to_bare_all=[t / b for t, b in zip(task, bare, strict=True)],
        ratio_batch_predictions_to_bare_all=[c / b for c, b in zip(core, bare, strict=True)],
    )
    return result


def bare_predict(args: argparse.Namespace) -> dict[str, Any]:
    model, _meta = ModelRegistry(args.registry, args.name).load_model()
    X = pd.read_parquet(args.kept, columns=list(MODEL_INPUT_COLUMNS))
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        model.predict(X)
        times.append(time.perf_counter() - start)
    return {"rows": len(X), "first_predict_seconds": times[0], "predict_seconds_all": times}


STAGES = {
    "validation": validation,
    "features": features,
    "training": training,
    "prediction": prediction,
    "bare-predict": bare_predict,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--raw", type=Path)
    parser.add_argument("--month", default="2021-03")
    parser.add_argument("--kept", type=Path)
    parser.add_argument("--table", type=Path)
    parser.add_argument("--candidate", default="hgb_lr05_l127")
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--name", default="green-trip-duration")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument(
        "--max-rows", type=int, default=training_max_rows(), help="training: [training] max_rows of luigi.cfg"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    # the thread settings of a task in a one-worker pipeline run (tasks.ops.process.prepare_task_process)
    threadpool_limits(limits=1, user_api="blas")
    after_imports = current_rss_mb()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result = STAGES[args.stage](args)
    result.update(stage=args.stage, rss_after_imports_mb=after_imports, started_utc=started)
    if "peak_rss_mb" in result:
        result["peak_above_imports_mb"] = result["peak_rss_mb"] - after_imports
        result["peak_to_frame"] = result["peak_rss_mb"] / result["frame_mb"] if result["frame_mb"] else None
        result["peak_above_imports_to_frame"] = (
            result["peak_above_imports_mb"] / result["frame_mb"] if result["frame_mb"] else None
        )
    if result.get("rows") and result.get("seconds"):
        result["rows_per_second"] = result["rows"] / result["seconds"]
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
