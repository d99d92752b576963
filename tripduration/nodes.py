"""One pure function per pipeline step (as Kedro's ``nodes.py``): data in, data out, no luigi, no paths
chosen here. The Luigi tasks in ``tasks/`` read their inputs, call one of these and write the result.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import stat
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.candidates import BASELINE, SEED, CandidateSpec, build_pipeline
from tripduration.content import FileStamp, sha256_stream, stamp
from tripduration.errors import TripDataError
from tripduration.evaluation import feature_importance, regression_metrics, render_html, write_plots
from tripduration.features import MODEL_INPUT_COLUMNS, model_table, split_xy
from tripduration.monitoring import build_profile
from tripduration.registry import ModelRegistry, quality_gate, version_number
from tripduration.rules import Rules, split_trips
from tripduration.schema import check_regular_file, read_trips

Progress = Callable[[str, int], None]


def _no_progress(_message: str, _percent: int) -> None:
    return None


def validate_trip_file(
    path: str | Path, month: dt.date, rules: Rules, valid_location_ids: Collection[int] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read a raw TLC file by contract and split it into kept and rejected rows with a summary.

    The summary's ``source`` holds the sha256 and size of the bytes that were read, so the lineage a model
    records later comes from the same read as its row counts and metrics (see :func:`read_unchanged`).
    """
    (trips, report), digest, size = read_unchanged(path, read_trips)
    kept, rejected, summary = split_trips(trips, month, rules, valid_location_ids, report.coerced_rows)
    summary["source"] = {**report.as_dict(), "sha256": digest, "bytes": size}
    return kept, rejected, summary


def read_unchanged(path: str | Path, reader: Callable[[str | Path], Any]) -> tuple[Any, str, int]:
    """``reader(path)`` with the sha256 and size of the bytes it read.

    The file is hashed through an open handle before it is read, and its stat key (size, mtime, inode) must
    be the same after the read: a file replaced or rewritten meanwhile fails instead of pairing one file's
    digest with another's rows.
    """
    with open_regular_file(path) as fh:
        before = FileStamp.of(os.fstat(fh.fileno()))
        digest = sha256_stream(fh)
    result = reader(path)
    if stamp(path) != before:
        raise TripDataError(f"{path}: the file changed while it was being read; run again to read the new one")
    return result, digest, before.size


def open_regular_file(path: str | Path) -> BinaryIO:
    """Open a regular file for reading; a FIFO, folder or device fails at once naming the path.

    :func:`~tripduration.schema.check_regular_file` says what is wrong without opening anything; the open
    itself does not block either (``O_NONBLOCK``), and the opened file is checked again, so a file swapped
    for a FIFO between the two never blocks the task.
    """
    check_regular_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        check_regular_file(path)  # names what it became
        raise TripDataError(f"{path}: is not a regular file any more")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_zone_ids(path: str | Path) -> tuple[set[int], str]:
    """The LocationIDs of the TLC zone lookup CSV, and the sha256 of the bytes they were read from."""

    def ids(p: str | Path) -> set[int]:
        try:
            column = pd.read_csv(p, usecols=["LocationID"])["LocationID"]
        except (ValueError, pd.errors.ParserError) as exc:
            raise TripDataError(f"{p}: not a TLC zone lookup CSV with a LocationID column ({exc})") from exc
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.isna().any() or (numbers != numbers.round()).any():
            bad = column[numbers.isna() | (numbers != numbers.round())].iloc[0]
            raise TripDataError(f"{p}: column 'LocationID' holds {bad!r}, not an integer zone ID")
        return {int(v) for v in numbers}

    zones, digest, _size = read_unchanged(path, ids)
    return zones, digest


def modelling_table(kept: pd.DataFrame) -> pd.DataFrame:
    """Model inputs (dispatch-time columns only) and the target in minutes."""
    return model_table(kept)


def concat_tables(tables: Sequence[pd.DataFrame], what: str) -> pd.DataFrame:
    frames = [t for t in tables if len(t)]
    if not frames:
        raise ValueError(f"no kept trips in the {what} months; check the validation summaries")
    return pd.concat(frames, ignore_index=True)


def training_sample(train: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """``train`` itself, or a seeded uniform sample of ``max_rows`` rows of it when it is larger.

    Gradient boosting on a few million trips is as good as on ten million and costs a fraction of the time
    and memory (the fit holds several float64 copies of its features); ``None`` or 0 means no limit.
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be 0 (no limit) or a positive number of rows, got {max_rows!r}")
    if not max_rows or len(train) <= max_rows:
        return train
    rows = np.sort(np.random.default_rng(SEED).choice(len(train), size=max_rows, replace=False))
    return train.take(rows)


def fit_row_count(rows: int, max_rows: int | None) -> int:
    """How many of ``rows`` training rows a fit uses under ``max_rows`` (see :func:`training_sample`)."""
    return min(rows, max_rows) if max_rows else rows


def fit_candidate(spec: CandidateSpec, train: pd.DataFrame, max_rows: int | None = None) -> tuple[Pipeline, float]:
    """Fit a fresh Pipeline for ``spec`` (on at most ``max_rows`` rows); return it with its fit time in seconds."""
    X, y = split_xy(training_sample(train, max_rows))
    model = build_pipeline(spec)
    start = time.perf_counter()
    model.fit(X, y)
    return model, time.perf_counter() - start


def score_candidate(
    spec: CandidateSpec, train: pd.DataFrame, validation: pd.DataFrame, max_rows: int | None = None
) -> dict[str, Any]:
    """Train on the training months (at most ``max_rows`` of their rows), score on the validation month."""
    model, fit_seconds = fit_candidate(spec, train, max_rows)
    X_val, y_val = split_xy(validation)
    metrics = regression_metrics(y_val, model.predict(X_val))
    return {
        "candidate": spec.name,
        "family": spec.family,
        "params": spec.params,
        "description": spec.description,
        "train_rows": len(train),
        "fit_rows": fit_row_count(len(train), max_rows),
        "fit_seconds": round(fit_seconds, 3),
        "validation": metrics,
    }


def select_best(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rank candidates by validation RMSE (ties broken by name, so the choice is deterministic)."""
    if not scores:
        raise ValueError("no candidate scores to choose from; configure [model_search] candidates")
    ranked = sorted(scores, key=lambda s: (s["validation"]["rmse"], s["candidate"]))
    baseline = next((s for s in ranked if s["candidate"] == BASELINE), None)
    return {
        "best": ranked[0]["candidate"],
        "best_validation": ranked[0]["validation"],
        "baseline_validation": baseline["validation"] if baseline else None,
        "ranking": [
            {"candidate": s["candidate"], "rmse": s["validation"]["rmse"], "fit_seconds": s["fit_seconds"]}
            for s in ranked
        ],
        "scores": list(ranked),
    }


def evaluate_models(
    model: Pipeline,
    baseline: Pipeline,
    test: pd.DataFrame,
    out_dir: Path,
    context: Mapping[str, Any],
    progress: Progress = _no_progress,
    importance_rows: int = 5000,
    importance_repeats: int = 3,
) -> dict[str, Any]:
    """Score the final model and the baseline on the test month; write plots and ``report.html``.

    Permutation importance is computed on ``importance_rows`` test trips, ``importance_repeats`` shuffles
    per column.
    """
    X, y = split_xy(test)
    progress("predicting the test month", 10)
    pred, base_pred = model.predict(X), baseline.predict(X)
    metrics = {"test": regression_metrics(y, pred), "baseline_test": regression_metrics(y, base_pred)}
    metrics["test"]["rmse_ratio_to_baseline"] = metrics["test"]["rmse"] / metrics["baseline_test"]["rmse"]
    progress("permutation importance", 40)
    importance = feature_importance(model, X, y, max_rows=importance_rows, repeats=importance_repeats)
    progress("plots", 70)
    write_plots(out_dir, X, y, pred, base_pred, importance)
    result = {**context, "metrics": {**context.get("metrics", {}), **metrics}, "feature_importance": importance}
    table = {
        "validation (best, trained on train months)": result["metrics"].get("validation", {}),
        "validation (baseline)": result["metrics"].get("baseline_validation") or {},
        "test (final model)": metrics["test"],
        "test (baseline, same training data)": metrics["baseline_test"],
    }
    summary = {k: v for k, v in context.items() if not isinstance(v, dict | list)}
    summary["gain over baseline (test RMSE ratio)"] = metrics["test"]["rmse_ratio_to_baseline"]
    html = render_html(f"Trip duration model: {context.get('algorithm', '')}", summary, table, out_dir)
    (out_dir / "report.html").write_text(html)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    progress("done", 100)
    return result


def environment_versions() -> dict[str, str]:
    """Versions of the libraries a loaded model depends on."""
    import joblib
    import numpy
    import pyarrow
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
        "pyarrow": pyarrow.__version__,
    }


def production_rmse_on(registry_model: Pipeline | None, test: pd.DataFrame) -> float | None:
    """RMSE of the current production model on this test month (None if there is none)."""
    if registry_model is None:
        return None
    X, y = split_xy(test)
    return regression_metrics(y, registry_model.predict(X[list(MODEL_INPUT_COLUMNS)]))["rmse"]


def register_with_gate(
    registry: ModelRegistry,
    model_file: Path,
    report_dir: Path,
    metadata: Mapping[str, Any],
    test: pd.DataFrame,
    key: str,
    extra_files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Register a model version and promote it if it passes the quality gate.

    The gate compares the new model's test RMSE with the baseline's (same run, same test month) and with
    the current production model's RMSE measured now on the same test month. The whole decision runs under
    the registry lock, so two racing registrations cannot both believe they beat the same production model.
    A rerun with the same ``key`` (after a crash) reuses the version and completes a promotion it had decided.
    """
    with registry.lock():
        existing = registry.find_by_key(key)
        if existing is not None:
            meta = registry.metadata(existing)
            gate = meta["gate"]
            current = registry.production()
            if gate["promote"] and (
                current is None or version_number(str(current["version"])) < version_number(existing)
            ):
                registry.set_production(existing, gate["reason"])
            return {"version": existing, "reused": True, "gate": gate}
        production = registry.production()
        production_rmse = None
        if production is not None:
            prod_model, _ = registry.load_model(str(production["version"]))
            production_rmse = production_rmse_on(prod_model, test)
        metrics = metadata["metrics"]
        decision = quality_gate(metrics["test"]["rmse"], metrics["baseline_test"]["rmse"], production_rmse)
        gate = {
            "promote": decision.promote,
            "reason": decision.reason,
            "compared_with_production": production["version"] if production else None,
            "production_rmse_on_test_month": production_rmse,
        }
        version = registry.register(
            model_file, {**metadata, "gate": gate}, {"report": report_dir}, key=key, extra_files=dict(extra_files or {})
        )
        if decision.promote:
            registry.set_production(version, decision.reason)
        return {"version": version, "reused": False, "gate": gate}


def reference_profile(
    model: Pipeline,
    training: pd.DataFrame,
    rejected_share: float,
    test_metrics: Mapping[str, float],
    prediction_rows: int = 50_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Profile of the data the final model was trained on, for monitoring later months.

    Features are profiled on every row; the prediction distribution on a seeded sample of
    ``prediction_rows`` rows (its decile shares are as good, and predicting a 10M-row training window
    would cost minutes).
    """
    X, _ = split_xy(training)
    sample = X.sample(n=prediction_rows, random_state=seed) if len(X) > prediction_rows else X
    profile = build_profile(training, model.predict(sample), rejected_share, test_metrics)
    profile["prediction"]["rows"] = len(sample)
    return profile


#: the trip columns a batch-prediction output carries to identify each trip
PREDICTION_KEY_COLUMNS: tuple[str, ...] = (
    "pickup_datetime",
    "dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "trip_distance",
)
#: the only columns of a month's kept trips that batch prediction reads
BATCH_INPUT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((*PREDICTION_KEY_COLUMNS, *MODEL_INPUT_COLUMNS)))


def batch_predictions(
    model: Pipeline, kept: pd.DataFrame, model_name: str, model_version: str, chunk_rows: int = 250_000
) -> pd.DataFrame:
    """Predicted minutes for every kept trip of a month, with the trip's key columns and the model version.

    Predicts ``chunk_rows`` trips at a time: the model's intermediate frames (engineered features, float64
    arrays) then take the memory of one chunk, not of the month. ``model_name`` and ``model_version`` are
    categorical columns (one value each).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows, got {chunk_rows!r}")
    n = len(kept)
    predicted = np.empty(n, dtype="float64")
    inputs = list(MODEL_INPUT_COLUMNS)
    for start in range(0, n, chunk_rows):
        predicted[start : start + chunk_rows] = model.predict(kept.iloc[start : start + chunk_rows][inputs])
    out = kept.loc[:, list(PREDICTION_KEY_COLUMNS)].copy()
    out.insert(0, "trip_row", np.arange(n, dtype="int64"))
    out["predicted_duration_min"] = predicted
    codes = np.zeros(n, dtype="int8")
    out["model_name"] = pd.Categorical.from_codes(codes, categories=[model_name])
    out["model_version"] = pd.Categorical.from_codes(codes, categories=[model_version])
    return out
