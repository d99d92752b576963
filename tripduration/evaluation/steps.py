"""The evaluation step: the final model and the baseline on the test month, with plots and a report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.evaluation.metrics import feature_importance, regression_metrics
from tripduration.evaluation.report import render_evaluation_html, write_plots
from tripduration.runtime.progress import Progress, no_progress
from tripduration.training.features import split_xy


def evaluate_models(
    model: Pipeline,
    baseline: Pipeline,
    test: pd.DataFrame,
    out_dir: Path,
    context: Mapping[str, Any],
    progress: Progress = no_progress,
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
