"""Metrics on known values, the report's PNG plots and the self-contained HTML page."""

from __future__ import annotations

import base64
import math
import re

import numpy as np
import pandas as pd
import pytest

from tripduration.evaluation.metrics import feature_importance, regression_metrics
from tripduration.evaluation.report import PLOTS, render_html, write_plots
from tripduration.training.features import MODEL_INPUT_COLUMNS, split_xy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_regression_metrics_on_known_values():
    metrics = regression_metrics(pd.Series([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0]))
    # errors 0, 0, 0, 2: MSE 1, MAE 0.5; total sum of squares 5 so R2 = 1 - 4/5
    assert metrics == pytest.approx({"rmse": 1.0, "mae": 0.5, "r2": 0.2, "rows": 4})
    assert isinstance(metrics["rows"], int)
    assert all(isinstance(metrics[k], float) for k in ("rmse", "mae", "r2"))


def test_regression_metrics_perfect_and_constant_predictions():
    y = np.array([10.0, 20.0, 30.0])
    assert regression_metrics(y, y) == {"rmse": 0.0, "mae": 0.0, "r2": 1.0, "rows": 3}
    mean = regression_metrics(y, np.full(3, 20.0))
    assert mean["r2"] == pytest.approx(0.0)
    assert mean["rmse"] == pytest.approx(math.sqrt(200 / 3))
    assert mean["mae"] == pytest.approx(20 / 3)


def test_regression_metrics_refuses_zero_rows():
    with pytest.raises(ValueError, match="zero rows"):
        regression_metrics(pd.Series([], dtype="float64"), np.array([]))


@pytest.fixture
def scored(fitted_candidates, test_table):
    X, y = split_xy(test_table)
    return X, y, fitted_candidates["ridge_a1"].predict(X), fitted_candidates["baseline_linreg"].predict(X)


def test_feature_importance_ranks_every_input_column(fitted_candidates, scored):
    X, y, _, _ = scored
    importance = feature_importance(fitted_candidates["ridge_a1"], X, y, max_rows=100)
    assert set(importance) == set(MODEL_INPUT_COLUMNS)
    values = list(importance.values())
    assert values == sorted(values, reverse=True)
    assert next(iter(importance)) == "trip_distance"  # the synthetic duration is driven by distance


def test_feature_importance_costs_what_it_is_told(fitted_candidates, scored):
    X, y, _, _ = scored
    model = fitted_candidates["ridge_a1"]
    calls: list[int] = []

    from sklearn.base import BaseEstimator, RegressorMixin

    class Counting(RegressorMixin, BaseEstimator):
        def fit(self, *_):
            return self

        def predict(self, frame):
            calls.append(len(frame))
            return model.predict(frame)

    feature_importance(Counting(), X, y, max_rows=40, repeats=2)
    assert calls and set(calls) == {40} and len(calls) == 1 + 2 * len(MODEL_INPUT_COLUMNS)
    with pytest.raises(ValueError, match="max_rows >= 1 and repeats >= 1, got max_rows=40, repeats=0"):
        feature_importance(model, X, y, max_rows=40, repeats=0)


def test_write_plots_writes_the_five_pngs(tmp_path, scored):
    X, y, pred, base = scored
    out_dir = tmp_path / "report" / "plots"
    names = write_plots(out_dir, X, y, pred, base, {"trip_distance": 3.0, "pickup_datetime": 0.5, "VendorID": 0.0})
    assert names == list(PLOTS)
    assert len(PLOTS) == 5
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(PLOTS)
    for name in PLOTS:
        data = (out_dir / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000, name


def test_render_html_embeds_the_plots_as_data_uris(tmp_path, scored):
    X, y, pred, base = scored
    write_plots(tmp_path, X, y, pred, base, {"trip_distance": 1.0})
    metrics = {
        "test": regression_metrics(y, pred),
        "baseline <test>": {"rmse": 5.0, "mae": 4.0, "r2": 0.1, "rows": 150},
    }
    page = render_html("Model <b>&</b> report", {"algorithm": "ridge_a1", "train_rows": 400}, metrics, tmp_path)

    assert page.startswith("<!doctype html>")
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(PLOTS)
    for name, data in zip(PLOTS, uris, strict=True):
        assert base64.b64decode(data) == (tmp_path / name).read_bytes()
    assert page.count('src="') == len(PLOTS)  # nothing refers to an external file
    assert "<title>Model &lt;b&gt;&amp;&lt;/b&gt; report</title>" in page
    assert "baseline &lt;test&gt;" in page
    assert f"<td>{metrics['test']['rmse']:.4f}</td>" in page
    assert "<td>150</td>" in page and "<td>ridge_a1</td>" in page


def test_render_html_without_plots_has_no_images(tmp_path):
    page = render_html("empty", {}, {"test": {"rmse": 1.0}}, tmp_path / "absent")
    assert "data:image/png" not in page
    assert "<td>1.0000</td><td>n/a</td>" in page  # a missing value is n/a, never a literal None (issue 15.6)
