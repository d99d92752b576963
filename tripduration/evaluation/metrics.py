"""Regression metrics and permutation importance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error


def regression_metrics(y_true: pd.Series | np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE (minutes), R2 and the number of rows."""
    y_true = np.asarray(y_true, dtype="float64")
    if len(y_true) == 0:
        raise ValueError("cannot score a model on zero rows; the evaluation month has no kept trips")
    return {
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
        "rows": len(y_true),
    }


def feature_importance(
    model: Any, X: pd.DataFrame, y: pd.Series, *, max_rows: int = 5000, repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """Permutation importance of each canonical input column (RMSE increase, minutes), on a sample.

    Costs ``1 + columns x repeats`` predictions of ``max_rows`` rows (25 x 5,000 by default).
    """
    if max_rows < 1 or repeats < 1:
        raise ValueError(
            f"feature importance needs max_rows >= 1 and repeats >= 1, got max_rows={max_rows!r}, repeats={repeats!r}"
        )
    sample = X.sample(n=min(max_rows, len(X)), random_state=seed)
    result = permutation_importance(
        model, sample, y.loc[sample.index], n_repeats=repeats, random_state=seed, scoring="neg_root_mean_squared_error"
    )
    pairs = sorted(zip(X.columns, result.importances_mean, strict=True), key=lambda kv: -kv[1])
    return {str(k): float(v) for k, v in pairs}
