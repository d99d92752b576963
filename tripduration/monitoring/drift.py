"""Monitoring: reference profiles of the training data, drift (PSI) per feature, and a verdict.

At registration, :func:`build_profile` summarises the final training data (binned distributions of each
model input, of the predictions and of the target; missing and rejected shares) into a JSON-able dict kept
in the model's version folder. Each new month is compared with it by :func:`monitor_month`.

PSI (population stability index) = sum over bins of (cur - ref) * ln(cur / ref), with proportions floored at
1e-4. Usual reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift. PSI is computed on the
values that are present: a change in how often a column is missing is its own signal (``missingness``),
reported per column, not drift (from 2022 the TLC files fill passenger_count / RatecodeID / trip_type far
more often, which made every month "drift" while accuracy did not move).

Whether a month's signals lead to retraining is a separate, explicit policy (:class:`RetrainPolicy`,
``[monitoring] retrain_on``): :func:`retrain_decision` names the rule that fired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from tripduration.evaluation.metrics import regression_metrics
from tripduration.monitoring.policy import Thresholds, verdict
from tripduration.training.features import MODEL_INPUT_COLUMNS, split_xy

NUMERIC_FEATURES: tuple[str, ...] = ("trip_distance", "pickup_hour", "pickup_weekday", "passenger_count")


CATEGORICAL_FEATURES: tuple[str, ...] = ("PULocationID", "DOLocationID", "VendorID", "RatecodeID", "trip_type")


_FLOOR = 1e-4


_TOP = 60


def _monitored_columns(X: pd.DataFrame) -> pd.DataFrame:
    pickup = pd.to_datetime(X["pickup_datetime"])
    out = pd.DataFrame(index=X.index)
    out["trip_distance"] = pd.to_numeric(X["trip_distance"]).astype("float64")
    out["pickup_hour"] = pickup.dt.hour.astype("float64")
    out["pickup_weekday"] = pickup.dt.dayofweek.astype("float64")
    for col in ("passenger_count", *CATEGORICAL_FEATURES):
        out[col] = pd.to_numeric(X[col]).astype("Float64")
    return out


def _numeric_edges(values: pd.Series, bins: int = 10) -> list[float]:
    finite = values.dropna().to_numpy(dtype="float64")
    if finite.size == 0:
        return []
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(e) for e in edges]


def _numeric_shares(values: pd.Series, edges: list[float]) -> list[float]:
    """Shares per bin: (-inf, e0], (e0, e1], ..., (e_last, inf), then one bin for missing values."""
    data = values.to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(data)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), data[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    counts = np.append(counts, missing.sum())
    total = counts.sum()
    return (counts / total).tolist() if total else counts.tolist()


def _categorical_shares(values: pd.Series, categories: list[str]) -> list[float]:
    """Shares per known category, then 'other', then 'missing'."""
    keys = values.astype("string").fillna("<missing>")
    counts = keys.value_counts()
    total = float(len(keys)) or 1.0
    known = [float(counts.get(c, 0)) / total for c in categories]
    missing = float(counts.get("<missing>", 0)) / total
    return [*known, max(0.0, 1.0 - sum(known) - missing), missing]


def present_shares(shares: list[float]) -> list[float]:
    """Shares of the bins of present values (the last bin, missing, dropped), renormalised to sum to 1.

    All-missing gives all zeros: there is no distribution to compare, missingness reports it.
    """
    present = np.asarray(shares[:-1], dtype="float64")
    total = present.sum()
    return (present / total).tolist() if total > 0 else np.zeros_like(present).tolist()


def psi(reference: list[float], current: list[float]) -> float:
    ref = np.maximum(np.asarray(reference, dtype="float64"), _FLOOR)
    cur = np.maximum(np.asarray(current, dtype="float64"), _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def build_profile(
    table: pd.DataFrame, predictions: np.ndarray, rejected_share: float, test_metrics: Mapping[str, float]
) -> dict[str, Any]:
    """The reference profile of the data a model was trained on (JSON-able)."""
    X, y = split_xy(table)
    cols = _monitored_columns(X)
    features: dict[str, Any] = {}
    for col in NUMERIC_FEATURES:
        edges = _numeric_edges(cols[col])
        features[col] = {"kind": "numeric", "edges": edges, "shares": _numeric_shares(cols[col], edges)}
    for col in CATEGORICAL_FEATURES:
        top = cols[col].astype("string").dropna().value_counts().head(_TOP).index.tolist()
        features[col] = {"kind": "categorical", "categories": top, "shares": _categorical_shares(cols[col], top)}
    pred_edges = _numeric_edges(pd.Series(predictions))
    target_edges = _numeric_edges(y)
    return {
        "rows": len(table),
        "features": features,
        "prediction": {
            "edges": pred_edges,
            "shares": _numeric_shares(pd.Series(predictions), pred_edges),
            "mean": float(np.mean(predictions)),
        },
        "target": {"edges": target_edges, "shares": _numeric_shares(y, target_edges), "mean": float(y.mean())},
        "missing_share": {c: float(X[c].isna().mean()) for c in MODEL_INPUT_COLUMNS},
        "rejected_share": float(rejected_share),
        "test_metrics": dict(test_metrics),
    }


def drift(profile: Mapping[str, Any], table: pd.DataFrame, predictions: np.ndarray) -> dict[str, Any]:
    """PSI per feature (on present values; see :func:`missingness`) and for the predictions, of ``table``
    against the reference ``profile``."""
    X, _ = split_xy(table)
    cols = _monitored_columns(X)
    per_feature = {}
    for col, ref in profile["features"].items():
        if ref["kind"] == "numeric":
            current = _numeric_shares(cols[col], ref["edges"])
        else:
            current = _categorical_shares(cols[col], ref["categories"])
        ref_present, cur_present = present_shares(ref["shares"]), present_shares(current)
        per_feature[col] = psi(ref_present, cur_present) if sum(ref_present) and sum(cur_present) else 0.0
    pred = profile["prediction"]
    return {
        "feature_psi": per_feature,
        "prediction_psi": psi(pred["shares"], _numeric_shares(pd.Series(predictions), pred["edges"])),
        "prediction_mean": {"reference": pred["mean"], "current": float(np.mean(predictions))},
    }


def missingness(profile: Mapping[str, Any], X: pd.DataFrame, thresholds: Thresholds) -> dict[str, Any]:
    """Missing share per model input, reference vs this month, and the columns that moved past the threshold."""
    shares = {}
    for c in MODEL_INPUT_COLUMNS:
        ref, cur = float(profile["missing_share"].get(c, 0.0)), float(X[c].isna().mean())
        shares[c] = {"reference": ref, "current": cur, "change": cur - ref}
    changed = {c: v for c, v in shares.items() if abs(v["change"]) > thresholds.missing_share_change}
    notes = [
        f"{c} missing {v['reference']:.1%} -> {v['current']:.1%} (change > {thresholds.missing_share_change:.0%})"
        for c, v in changed.items()
    ]
    return {"shares": shares, "changed": sorted(changed), "notes": notes}


def monitor_month(
    model: Any,
    profile: Mapping[str, Any],
    table: pd.DataFrame,
    rejected_share: float,
    thresholds: Thresholds,
    model_test_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Accuracy, drift, missingness and rejected shares of one month, and the verdict.

    ``model_test_metrics`` are the model's metrics on its own test month (its registered metadata); by
    default those kept in the profile. The report carries the ``thresholds`` its verdict used.
    """
    if len(table) == 0:
        raise ValueError("the month has no kept trips to monitor; check its validation summary")
    X, y = split_xy(table)
    predictions = model.predict(X)
    metrics = regression_metrics(y, predictions)
    model_test = dict(model_test_metrics or profile["test_metrics"])
    test_rmse = float(model_test["rmse"])
    missing = missingness(profile, X, thresholds)
    report: dict[str, Any] = {
        "accuracy": {
            **metrics,
            "model_test_rmse": test_rmse,
            "model_test": {k: model_test.get(k) for k in ("rmse", "mae", "r2", "rows")},
            "rmse_ratio_to_test": metrics["rmse"] / test_rmse,
            "target_mean": {"reference": profile["target"]["mean"], "current": float(y.mean())},
        },
        "drift": drift(profile, table, predictions),
        "missing_share": missing["shares"],
        "missingness": {"changed": missing["changed"], "notes": missing["notes"]},
        "rejected_share": {"reference": profile["rejected_share"], "current": float(rejected_share)},
        "thresholds": asdict(thresholds),
    }
    report["verdict"], report["reasons"] = verdict(report, thresholds)
    return report
