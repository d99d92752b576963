"""The monitoring report as a folder: monitoring.json, plots and a self-contained report.html."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tripduration.evaluation.report import format_value, render_html, save_figure, subplots


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
