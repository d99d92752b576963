"""One pure function per pipeline step (as Kedro's ``nodes.py``): data in, data out, no luigi, no paths
chosen here. The Luigi tasks in ``tasks/`` read their inputs, call one of these and write the result.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import stat
import tempfile
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
from tripduration.evaluation import feature_importance, regression_metrics, render_evaluation_html, write_plots
from tripduration.features import ENGINEERED_COLUMNS, MODEL_INPUT_COLUMNS, model_table, split_xy
from tripduration.monitoring import Thresholds, build_profile, monitor_month
from tripduration.registry import GateDecision, ModelRegistry, quality_gate, version_number
from tripduration.rules import OUTCOME_COLUMNS, OUTCOME_REASONS, Rules, scorable_rejections, split_trips
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
    dispatch = [c for c in report.source_columns if c not in OUTCOME_COLUMNS]
    kept, rejected, summary = split_trips(
        trips, month, rules, valid_location_ids, report.unreadable(dispatch), report.unreadable(OUTCOME_COLUMNS)
    )
    summary["source"] = {**report.as_dict(), "sha256": digest, "bytes": size}
    return kept, rejected, summary


def validated_month(
    trips_path: str | Path,
    zones_path: str | Path,
    month: dt.date,
    rules: Rules,
    names: tuple[str, str] | None = None,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Validate one raw month against the zone lookup: the three outputs of the validation step.

    ``{"kept.parquet": kept rows, "rejected.parquet": rejected rows with a reason, "summary.json": counts}``;
    the summary records the sha256 of the bytes read of both files (``source`` and ``zone_lookup``), under
    ``names`` (where the files live, e.g. an ``s3://`` URL) or else their paths.
    """
    trips_name, zones_name = names or (str(trips_path), str(zones_path))
    zones, zones_sha256 = read_zone_ids(zones_path)
    progress(f"validating {trips_name}", 10)
    kept, rejected, summary = validate_trip_file(trips_path, month, rules, zones)
    summary["source"]["path"] = trips_name
    summary["zone_lookup"] = {"path": zones_name, "sha256": zones_sha256}
    progress(f"{summary['rows_in']} rows: {summary['rows_kept']} kept, {summary['rows_rejected']} rejected", 100)
    return {"kept.parquet": kept, "rejected.parquet": rejected, "summary.json": summary}


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


#: the keys of :func:`candidate_facts`
CANDIDATE_FACTS = ("candidate", "family", "params", "description")


def candidate_facts(spec: CandidateSpec) -> dict[str, Any]:
    """What a score, a fit and a model's metadata record of the candidate they come from."""
    return {"candidate": spec.name, "family": spec.family, "params": spec.params, "description": spec.description}


def score_candidate(
    spec: CandidateSpec, train: pd.DataFrame, validation: pd.DataFrame, max_rows: int | None = None
) -> dict[str, Any]:
    """Train on the training months (at most ``max_rows`` of their rows), score on the validation month."""
    model, fit_seconds = fit_candidate(spec, train, max_rows)
    X_val, y_val = split_xy(validation)
    metrics = regression_metrics(y_val, model.predict(X_val))
    return {
        **candidate_facts(spec),
        "train_rows": len(train),
        "fit_rows": fit_row_count(len(train), max_rows),
        "fit_seconds": round(fit_seconds, 3),
        "validation": metrics,
    }


def score_candidate_on_months(
    spec: CandidateSpec,
    train_tables: Sequence[pd.DataFrame],
    validation: pd.DataFrame,
    max_rows: int | None = None,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """:func:`score_candidate` on the training months' tables (concatenated), reporting its steps."""
    train = concat_tables(train_tables, "training")
    progress(f"fitting on {len(train)} trips", 20)
    score = score_candidate(spec, train, validation, max_rows)
    progress(f"validation RMSE {score['validation']['rmse']:.3f}", 100)
    return score


def final_model(
    spec: CandidateSpec, tables: Sequence[pd.DataFrame], max_rows: int | None = None, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Refit ``spec`` on the training + validation months: ``{"model": fitted Pipeline, "fit": facts}``."""
    data = concat_tables(tables, "training + validation")
    progress(f"fitting on {len(data)} trips", 20)
    model, seconds = fit_candidate(spec, data, max_rows)
    progress(f"fitted in {seconds:.1f}s", 100)
    fit = {
        **candidate_facts(spec),
        "rows": len(data),
        "fit_rows": fit_row_count(len(data), max_rows),
        "fit_seconds": round(seconds, 3),
    }
    return {"model": model, "fit": fit}


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
    (out_dir / "report.html").write_text(render_evaluation_html(result, out_dir))
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


def lineage_months(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
    """Months of a registered model's data lineage by role (``train``, ``validation``, ``test``); {} if unknown."""
    months: dict[str, list[str]] = {}
    for entry in metadata.get("data", []) or []:
        months.setdefault(str(entry["role"]), []).append(str(entry["month"]))
    return {role: sorted(ms) for role, ms in months.items()}


def fitted_months(metadata: Mapping[str, Any]) -> list[str]:
    """The months a model's parameters were fitted or selected on (train + validation)."""
    months = lineage_months(metadata)
    return sorted({*months.get("train", []), *months.get("validation", [])})


def _recorded_ratio_gate(metrics: Mapping[str, Any], production: Mapping[str, Any], test_month: str) -> GateDecision:
    """Rule when the production model cannot be scored on the candidate's test month (it was fitted on it):
    promote only if the candidate beats its baseline AND its test RMSE ratio to that baseline is below the
    production model's own recorded ratio (each measured on a month the model never saw)."""
    version = production.get("version")
    cand, base = metrics["test"]["rmse"], metrics["baseline_test"]["rmse"]
    ratio = cand / base
    prod_ratio = production.get("metrics", {}).get("test", {}).get("rmse_ratio_to_baseline")
    months = lineage_months(production)
    head = (
        f"cannot compare with production {version} on {test_month}: {version} was fitted on it "
        f"(train {', '.join(months.get('train', []))}; validation {', '.join(months.get('validation', []))}); "
        "rule: promote only if the candidate beats its baseline and its test RMSE ratio to its baseline "
        f"beats {version}'s recorded ratio"
    )
    if not cand < base:
        return GateDecision(False, f"{head}: RMSE {cand:.4f} does not beat the baseline's {base:.4f}")
    if prod_ratio is None:
        return GateDecision(False, f"{head}: {version} has no recorded ratio, so the candidate is not promoted")
    verdict = "promoted" if ratio < prod_ratio else "not promoted"
    return GateDecision(ratio < prod_ratio, f"{head}: {ratio:.4f} vs {float(prod_ratio):.4f}: {verdict}")


def gate_decision(
    registry: ModelRegistry,
    metadata: Mapping[str, Any],
    test: pd.DataFrame,
    production: Mapping[str, Any] | None | bool = False,
) -> tuple[GateDecision, dict[str, Any]]:
    """The quality gate, on a month neither model was fitted on (issue 15.1).

    The production model is scored on the candidate's test month only if that month is outside every month
    it was trained or validated on (its registered lineage; a model without lineage is taken as not fitted
    on it). Otherwise the gate says it cannot compare there and decides by :func:`_recorded_ratio_gate`.
    (Comparing both on a third month neither used would need that month's table at registration; not done.)
    Returns the decision and the facts recorded with it, both models' months included. ``production``: the
    pointer to compare with (default: the registry's current one).
    """
    metrics = metadata["metrics"]
    test_month = next(iter(lineage_months(metadata).get("test", [])), None)
    facts: dict[str, Any] = {
        "candidate_months": lineage_months(metadata),
        "compared_with_production": None,
        "production_months": None,
        "production_rmse_on_test_month": None,
        "compared_on_month": None,
    }
    if production is False:
        production = registry.production()
    if not isinstance(production, Mapping) or not production:
        decision = quality_gate(metrics["test"]["rmse"], metrics["baseline_test"]["rmse"], None)
        return decision, {**facts, "rule": "no_production"}
    version = str(production["version"])
    prod_meta = registry.metadata(version)
    facts.update({"compared_with_production": version, "production_months": lineage_months(prod_meta)})
    if test_month is not None and test_month in fitted_months(prod_meta):
        return _recorded_ratio_gate(metrics, prod_meta, test_month), {**facts, "rule": "recorded_ratio"}
    prod_model, _ = registry.load_model(version)
    production_rmse = production_rmse_on(prod_model, test)
    decision = quality_gate(metrics["test"]["rmse"], metrics["baseline_test"]["rmse"], production_rmse)
    facts.update({"production_rmse_on_test_month": production_rmse, "compared_on_month": test_month})
    return decision, {**facts, "rule": "same_month"}


def _next_version(registry: ModelRegistry) -> str:
    """The name :meth:`ModelRegistry.register` gives the next version (exact while the registry lock is held)."""
    versions = registry.versions()
    return f"v{version_number(versions[-1]) + 1 if versions else 1:04d}"


def _registered_report(report_dir: Path, staging: Path, registration: Mapping[str, Any]) -> Path:
    """A copy of the evaluation report whose page also shows the version and the gate decision."""
    copy = staging / "report"
    shutil.copytree(report_dir, copy)
    metrics_file = copy / "metrics.json"
    if metrics_file.exists():
        result = json.loads(metrics_file.read_text())
        (copy / "report.html").write_text(render_evaluation_html(result, copy, registration))
    return copy


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

    The gate (:func:`gate_decision`) compares the new model's test RMSE with the baseline's (same run, same
    test month) and with the current production model's RMSE measured now on the same test month, when the
    production model was not fitted on that month. The whole decision runs under the registry lock, so two
    racing registrations cannot both believe they beat the same production model (and the next version's
    name is known: the registered report shows it). A rerun with the same ``key`` (after a crash) reuses
    the version and completes a promotion it had decided.
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
        decision, facts = gate_decision(registry, metadata, test)
        gate = {"promote": decision.promote, "reason": decision.reason, **facts}
        scratch = registry.home if registry.store is None else None  # S3: local TMPDIR
        with tempfile.TemporaryDirectory(prefix=".staging-report-", dir=scratch) as staging:
            report = _registered_report(report_dir, Path(staging), {"version": _next_version(registry), "gate": gate})
            version = registry.register(
                model_file, {**metadata, "gate": gate}, {"report": report}, key=key, extra_files=dict(extra_files or {})
            )
        if decision.promote:
            registry.set_production(version, decision.reason, recheck=_recheck(registry, metadata, test, gate))
        return {"version": version, "reused": False, "gate": gate}


def _recheck(registry: ModelRegistry, metadata: Mapping[str, Any], test: pd.DataFrame, gate: Mapping[str, Any]) -> Any:
    """The gate again, against the pointer a compare-and-swap is about to replace (S3: no lock).

    If it is still the production model the decision compared with, the decision stands; if another host
    promoted meanwhile, the candidate must beat that one too (so two hosts cannot both promote against the
    same pointer and the better model never gets replaced by a worse one).
    """

    def recheck(current: dict[str, Any] | None) -> tuple[bool, str]:
        if (current or {}).get("version") == gate.get("compared_with_production"):
            return bool(gate["promote"]), str(gate["reason"])
        decision, _facts = gate_decision(registry, metadata, test, production=current)
        return decision.promote, decision.reason

    return recheck


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


def month_lineage(role: str, month: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What a model records of one month it used: everything from that month's validation summary, i.e. the
    digest of the bytes the validation read (not of whatever the file holds now) and its row counts."""
    return {
        "role": role,
        "month": month,
        "file": Path(summary["source"]["path"]).name,
        "sha256": summary["source"]["sha256"],
        "bytes": summary["source"]["bytes"],
        "rows_in": summary["rows_in"],
        "rows_kept": summary["rows_kept"],
        "rows_rejected": summary["rows_rejected"],
    }


def model_metadata(
    fit: Mapping[str, Any], evaluation: Mapping[str, Any], lineage: list[dict[str, Any]], color: str, task_id: str
) -> dict[str, Any]:
    """The metadata of a model version: algorithm, features, data lineage, metrics, library versions."""
    return {
        "algorithm": {key: fit[key] for key in CANDIDATE_FACTS},
        "features": {"inputs": list(MODEL_INPUT_COLUMNS), "engineered": list(ENGINEERED_COLUMNS)},
        "target": "duration_min",
        "color": color,
        "data": lineage,
        "metrics": evaluation["metrics"],
        "feature_importance": evaluation["feature_importance"],
        "libraries": environment_versions(),
        "pipeline_task": task_id,
    }


def register_model(
    registry: ModelRegistry,
    model: Pipeline,
    files: tuple[Path, Path],
    metadata: Mapping[str, Any],
    training_tables: Sequence[pd.DataFrame],
    test: pd.DataFrame,
    key: str,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Profile the training data for monitoring, then register ``model`` (``files``: its ``model.joblib`` and
    the evaluation report folder) behind the quality gate. Returns the registration record."""
    fitted = [d for d in metadata["data"] if d["role"] in ("train", "validation")]
    rejected_share = sum(d["rows_rejected"] for d in fitted) / max(1, sum(d["rows_in"] for d in fitted))
    progress("profiling the training data for monitoring", 30)
    training = concat_tables(training_tables, "training")
    profile = reference_profile(model, training, rejected_share, metadata["metrics"]["test"])
    progress("applying the quality gate", 60)
    model_file, report_dir = files
    extra = {"reference_profile.json": json.dumps(profile, indent=1)}
    result = register_with_gate(registry, model_file, report_dir, metadata, test, key=key, extra_files=extra)
    result.update(model_name=registry.name, registry=str(registry.home))
    progress(f"registered {result['version']}; promoted: {result['gate']['promote']}", 100)
    return result


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
    model: Pipeline,
    kept: pd.DataFrame,
    model_name: str,
    model_version: str,
    chunk_rows: int = 250_000,
    clip: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Predicted minutes for every trip of ``kept``, with the trip's key columns and the model version.

    Predicts ``chunk_rows`` trips at a time: the model's intermediate frames (engineered features, float64
    arrays) then take the memory of one chunk, not of the month. ``model_name`` and ``model_version`` are
    categorical columns (one value each). With ``clip=(low, high)`` predictions are clipped to that
    plausible range and a boolean ``clipped`` column marks the rows that were.
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
    if clip is not None:
        low, high = clip
        out["clipped"] = (predicted < low) | (predicted > high)
        predicted = np.clip(predicted, low, high)
    out["predicted_duration_min"] = predicted
    codes = np.zeros(n, dtype="int8")
    out["model_name"] = pd.Categorical.from_codes(codes, categories=[model_name])
    out["model_version"] = pd.Categorical.from_codes(codes, categories=[model_version])
    return out


def dispatchable_trips(kept: pd.DataFrame, rejected: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every trip a batch job could score at dispatch time: the kept ones and those rejected only for their
    outcome (dropoff, duration; see :data:`tripduration.rules.OUTCOME_REASONS`), with ``source`` (kept /
    rejected), ``source_row`` (row in that file) and ``outcome_rejected`` (the outcome reason, or null).

    Also returns what could not be scored and why (counts per dispatch-time reason).
    """
    scorable = scorable_rejections(rejected["reason"])
    extra = rejected.loc[scorable].copy()
    for col in ("PULocationID", "DOLocationID"):  # present: the dispatch rules passed
        extra[col] = extra[col].astype("int32")
    columns = list(kept.columns)
    trips = pd.concat([kept, extra.loc[:, columns]], ignore_index=True) if len(extra) else kept.copy()
    # categorical columns from int8 codes: one byte per trip, not a Python string per trip
    source_codes = np.repeat(np.array([0, 1], dtype="int8"), [len(kept), len(extra)])
    trips["source"] = pd.Categorical.from_codes(source_codes, categories=["kept", "rejected"])
    trips["source_row"] = np.concatenate([np.arange(len(kept)), np.flatnonzero(scorable)]).astype("int64")
    outcome_codes = np.full(len(trips), -1, dtype="int8")
    outcome_codes[len(kept) :] = pd.Categorical(extra["reason"].astype(str), categories=list(OUTCOME_REASONS)).codes
    trips["outcome_rejected"] = pd.Categorical.from_codes(outcome_codes, categories=list(OUTCOME_REASONS))
    not_scored = rejected.loc[~scorable, "reason"].astype("string").value_counts()
    by_outcome = extra["reason"].astype("string").value_counts()
    facts = {
        "rows_in": len(kept) + len(rejected),
        "scored": len(trips),
        "scored_with_valid_outcome": len(kept),
        "scored_outcome_rejected": {str(k): int(v) for k, v in by_outcome.items()},
        "not_scored": int((~scorable).sum()),
        "not_scored_by_reason": {str(k): int(v) for k, v in not_scored.items()},
    }
    return trips, facts


def score_dispatchable(
    model: Pipeline,
    kept: pd.DataFrame,
    rejected: pd.DataFrame,
    model_name: str,
    model_version: str,
    plausible: tuple[float, float],
    chunk_rows: int = 250_000,
    progress: Progress = _no_progress,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Batch predictions of a month as a dispatch-time job would make them (issue 11.3).

    Scores every trip whose dispatch-time fields are valid (:func:`dispatchable_trips`), clips predictions
    to the ``plausible`` (min, max) minutes of ``[validation]`` and returns them with a summary: rows scored
    (with a valid outcome or rejected only for it), rows not scored per reason, and predictions clipped.
    """
    trips, facts = dispatchable_trips(kept, rejected)
    progress(f"predicting {len(trips)} dispatchable trips with {model_version}", 30)
    low, high = plausible
    raw_low = raw_high = 0
    out = batch_predictions(model, trips, model_name, model_version, chunk_rows, clip=plausible)
    if len(out):
        at_low, at_high = out["predicted_duration_min"] == low, out["predicted_duration_min"] == high
        raw_low, raw_high = int((out["clipped"] & at_low).sum()), int((out["clipped"] & at_high).sum())
    out["trip_row"] = trips["source_row"].to_numpy(dtype="int64")
    out.insert(1, "source", trips["source"].array)
    out["outcome_rejected"] = trips["outcome_rejected"].array
    facts["clipped"] = {"to_min": raw_low, "to_max": raw_high, "range_min": [low, high]}
    facts.update({"model_name": model_name, "model_version": model_version})
    progress(f"{facts['scored']} predictions, {facts['not_scored']} trips not scorable", 100)
    return out, facts


def monitoring_report(
    model: Pipeline,
    metadata: Mapping[str, Any],
    profile: Mapping[str, Any],
    table: pd.DataFrame,
    summary: Mapping[str, Any],
    month: str,
    thresholds: Thresholds,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """One month's monitoring report for a registered model (:func:`~tripduration.monitoring.monitor_month`)
    with the month and the model's name, version and data months."""
    progress(f"monitoring {len(table)} trips", 30)
    rejected_share = summary["rows_rejected"] / max(1, summary["rows_in"])
    test_metrics = metadata.get("metrics", {}).get("test")
    report = monitor_month(model, profile, table, rejected_share, thresholds, test_metrics)
    months = lineage_months(metadata)
    model_facts = {"name": metadata["name"], "version": metadata["version"], "months": months}
    report.update(month=month, model={**model_facts, "test_month": ", ".join(months.get("test", [])) or None})
    progress(f"verdict: {report['verdict']}", 100)
    return report
