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

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tripduration.evaluation import format_value, regression_metrics, render_html, save_figure, subplots
from tripduration.features import MODEL_INPUT_COLUMNS, TARGET, split_xy

NUMERIC_FEATURES: tuple[str, ...] = ("trip_distance", "pickup_hour", "pickup_weekday", "passenger_count")
CATEGORICAL_FEATURES: tuple[str, ...] = ("PULocationID", "DOLocationID", "VendorID", "RatecodeID", "trip_type")
_FLOOR = 1e-4
_TOP = 60


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the verdict. These are the only defaults: ``[monitoring]`` (``tasks.settings.MonitoringConfig``)
    takes its defaults from this class, and luigi.cfg may only override them."""

    psi_drift: float = 0.2
    prediction_psi_drift: float = 0.2
    rmse_degraded_ratio: float = 1.25
    #: a column whose missing share moves by more than this (absolute, 0.1 = 10 points) is reported
    missing_share_change: float = 0.1


#: the rules ``[monitoring] retrain_on`` may list, in the order they are checked
RETRAIN_RULES: dict[str, str] = {
    "degraded": "the month's RMSE exceeds rmse_degraded_ratio x the model's test RMSE",
    "drift_important": "a feature the model depends on (importance share >= importance_min_share) drifted",
    "drift_any": "any feature drifted",
    "prediction_drift": "the predictions' distribution drifted",
    "missingness": "a column's missing share changed by more than missing_share_change",
}
#: monitored (derived) feature -> the model input column whose permutation importance it shares
FEATURE_INPUT: dict[str, str] = {"pickup_hour": "pickup_datetime", "pickup_weekday": "pickup_datetime"}


@dataclass(frozen=True)
class RetrainPolicy:
    """When a monitored month leads to training a challenger (``[monitoring] retrain_on``).

    Default: retrain on degraded accuracy, or on drift of a feature the model depends on, i.e. whose
    permutation importance (registered metadata) is at least ``importance_min_share`` of the total. Drift
    of a feature the model hardly uses, or a change in missingness, is reported but retrains nothing.
    """

    retrain_on: tuple[str, ...] = ("degraded", "drift_important")
    importance_min_share: float = 0.05

    def __post_init__(self) -> None:
        unknown = [r for r in self.retrain_on if r not in RETRAIN_RULES]
        if unknown:
            raise ValueError(
                f"[monitoring] retrain_on: unknown rule(s) {', '.join(map(repr, unknown))}; "
                f"use a comma-separated subset of {', '.join(RETRAIN_RULES)}"
            )
        if not 0 <= self.importance_min_share <= 1:
            raise ValueError(
                f"[monitoring] importance_min_share is {self.importance_min_share!r}; it is a share between 0 and 1"
            )


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


def verdict(report: Mapping[str, Any], thresholds: Thresholds) -> tuple[str, list[str]]:
    """``degraded`` (accuracy fell past the threshold) > ``drift`` (inputs or predictions shifted) > ``ok``.

    Missingness is not part of the verdict: it is reported beside it (``report["missingness"]``).
    """
    reasons: list[str] = []
    ratio = report["accuracy"]["rmse_ratio_to_test"]
    if ratio > thresholds.rmse_degraded_ratio:
        reasons.append(f"RMSE is {ratio:.2f}x the model's test RMSE (threshold {thresholds.rmse_degraded_ratio})")
    degraded = bool(reasons)
    for col, value in report["drift"]["feature_psi"].items():
        if value > thresholds.psi_drift:
            reasons.append(f"{col} PSI {value:.3f} > {thresholds.psi_drift}")
    if report["drift"]["prediction_psi"] > thresholds.prediction_psi_drift:
        reasons.append(f"prediction PSI {report['drift']['prediction_psi']:.3f} > {thresholds.prediction_psi_drift}")
    if degraded:
        return "degraded", reasons
    return ("drift" if reasons else "ok"), reasons or ["no threshold crossed"]


def importance_shares(importance: Mapping[str, float]) -> dict[str, float]:
    """Each input's share of the total positive permutation importance (negative importances count as 0)."""
    positive = {k: max(0.0, float(v)) for k, v in importance.items()}
    total = sum(positive.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in positive.items()}


def _drifted(report: Mapping[str, Any]) -> dict[str, float]:
    limit = report["thresholds"]["psi_drift"]
    return {c: v for c, v in report["drift"]["feature_psi"].items() if v > limit}


def _important_drift(
    report: Mapping[str, Any], importance: Mapping[str, float] | None, policy: RetrainPolicy
) -> tuple[list[str], list[str]]:
    """(notes on drifted features that count, notes on those that do not) under ``drift_important``."""
    if not importance:
        return [f"{c} PSI {v:.3f} (feature importance unknown: counts)" for c, v in _drifted(report).items()], []
    shares = importance_shares(importance)
    counts: list[str] = []
    ignored: list[str] = []
    for col, value in _drifted(report).items():
        share = shares.get(FEATURE_INPUT.get(col, col), 0.0)
        note = f"{col} PSI {value:.3f} > {report['thresholds']['psi_drift']}, importance share {share:.2f}"
        (counts if share >= policy.importance_min_share else ignored).append(note)
    return counts, ignored


def _rule_evidence(
    rule: str, report: Mapping[str, Any], importance: Mapping[str, float] | None, policy: RetrainPolicy
) -> list[str]:
    """Why ``rule`` fires on this report (empty: it does not)."""
    if rule == "degraded":
        return [r for r in report["reasons"] if r.startswith("RMSE is")] if report["verdict"] == "degraded" else []
    if rule == "drift_important":
        return _important_drift(report, importance, policy)[0]
    if rule == "drift_any":
        return [f"{c} PSI {v:.3f} > {report['thresholds']['psi_drift']}" for c, v in _drifted(report).items()]
    if rule == "prediction_drift":
        value, limit = report["drift"]["prediction_psi"], report["thresholds"]["prediction_psi_drift"]
        return [f"prediction PSI {value:.3f} > {limit}"] if value > limit else []
    return list(report["missingness"]["notes"])


def retrain_decision(
    report: Mapping[str, Any], importance: Mapping[str, float] | None, policy: RetrainPolicy
) -> dict[str, Any]:
    """Apply ``policy`` to a monitoring report: whether to retrain, the first rule that fired and why.

    ``importance`` is the model's registered permutation importance per input column (None if unknown:
    then every drifted feature counts for ``drift_important``).
    """
    for rule in policy.retrain_on:
        evidence = _rule_evidence(rule, report, importance, policy)
        if evidence:
            return {"retrain": True, "rule": rule, "reason": f"rule {rule} fired: " + "; ".join(evidence)}
    reason = f"no retrain rule fired (retrain_on = {', '.join(policy.retrain_on)})"
    not_counted = _important_drift(report, importance, policy)[1] if "drift_important" in policy.retrain_on else []
    if not_counted:
        reason += f"; drift of features below importance share {policy.importance_min_share}: " + "; ".join(not_counted)
    if report["missingness"]["notes"] and "missingness" not in policy.retrain_on:
        reason += "; missingness changed (reported, not a retrain rule): " + "; ".join(report["missingness"]["notes"])
    return {"retrain": False, "rule": None, "reason": reason}


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


__all__ = [
    "RETRAIN_RULES",
    "TARGET",
    "RetrainPolicy",
    "Thresholds",
    "build_profile",
    "drift",
    "missingness",
    "monitor_month",
    "psi",
    "retrain_decision",
    "verdict",
]


# --------------------------------------------------------------------------- the report's page
def drift_plot_lines(report: Mapping[str, Any]) -> list[tuple[float, str]]:
    """The vertical lines of the drift plot: the thresholds the verdict used (from the report itself)."""
    limits = report.get("thresholds", {})
    features, prediction = limits.get("psi_drift"), limits.get("prediction_psi_drift")
    lines = [(float(features), f"{features} drift threshold (verdict)")] if features is not None else []
    if prediction is not None and prediction != features:
        lines.append((float(prediction), f"{prediction} prediction drift threshold (verdict)"))
    return lines


def _missingness_text(report: Mapping[str, Any]) -> str:
    notes = report.get("missingness", {}).get("notes", [])
    return "; ".join(notes) if notes else "no column's missing share moved past the threshold"


def render_monitoring_html(report: Mapping[str, Any], out_dir: Path) -> None:
    """Write ``psi.png`` and a self-contained ``report.html`` for a monitoring report.

    The plot draws the thresholds the verdict used; the model's own test-month metrics come from the report
    (its registered metadata), and an unknown value is shown as ``n/a``.
    """
    psi_values = report["drift"]["feature_psi"]
    fig, ax = subplots(figsize=(6, 4))
    names = list(psi_values)
    ax.barh([*names, "prediction"], [*[psi_values[n] for n in names], report["drift"]["prediction_psi"]])
    for (value, label), color in zip(drift_plot_lines(report), ("red", "purple"), strict=False):
        ax.axvline(value, color=color, lw=1, ls="--", label=label)
    ax.set(xlabel="PSI against the training data (present values)", title=f"Drift, {report.get('month', '')}")
    if drift_plot_lines(report):
        ax.legend(loc="lower right")
    save_figure(fig, out_dir / "psi.png")
    accuracy = report["accuracy"]
    model = report.get("model", {})
    summary = {
        "month": report.get("month"),
        "model": f"{model.get('name', 'n/a')} {model.get('version', 'n/a')}",
        "verdict": report["verdict"],
        "reasons": "; ".join(report["reasons"]),
        "RMSE / model's test RMSE": accuracy["rmse_ratio_to_test"],
        "thresholds (PSI / prediction PSI / RMSE ratio)": (
            " / ".join(
                format_value(report.get("thresholds", {}).get(k))
                for k in ("psi_drift", "prediction_psi_drift", "rmse_degraded_ratio")
            )
        ),
        "missingness (not part of the verdict)": _missingness_text(report),
        "rejected share (reference / current)": (
            f"{report['rejected_share']['reference']:.4f} / {report['rejected_share']['current']:.4f}"
        ),
        "mean prediction (reference / current)": (
            f"{report['drift']['prediction_mean']['reference']:.2f} / "
            f"{report['drift']['prediction_mean']['current']:.2f}"
        ),
    }
    own = accuracy.get("model_test") or {"rmse": accuracy["model_test_rmse"]}
    metrics = {"this month": accuracy, f"model's test month ({model.get('test_month', 'n/a')})": own}
    html_text = render_html(
        f"Monitoring {report.get('month', '')}: {report['verdict']}", summary, metrics, out_dir, plots=("psi.png",)
    )
    (out_dir / "report.html").write_text(html_text)


def write_monitoring_report(report: Mapping[str, Any], out_dir: Path) -> None:
    """The monitoring report's folder: ``monitoring.json``, ``psi.png`` and ``report.html``."""
    (out_dir / "monitoring.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    render_monitoring_html(report, out_dir)
