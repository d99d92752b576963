"""The monitoring step: one month's report for a registered model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.monitoring.drift import monitor_month
from tripduration.monitoring.policy import Thresholds
from tripduration.registry.metadata import ModelMetadata
from tripduration.runtime.progress import Progress, no_progress


def monitoring_report(
    model: Pipeline,
    metadata: ModelMetadata,
    profile: Mapping[str, Any],
    table: pd.DataFrame,
    summary: Mapping[str, Any],
    month: str,
    thresholds: Thresholds,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """One month's monitoring report for a registered model (:func:`~tripduration.monitoring.monitor_month`)
    with the month and the model's name, version and data months."""
    progress(f"monitoring {len(table)} trips", 30)
    rejected_share = summary["rows_rejected"] / max(1, summary["rows_in"])
    report = monitor_month(model, profile, table, rejected_share, thresholds, metadata.test_metrics or None)
    model_facts = {"name": metadata.name, "version": metadata.version, "months": metadata.months()}
    report.update(month=month, model={**model_facts, "test_month": metadata.test_month})
    progress(f"verdict: {report['verdict']}", 100)
    return report
