"""The compiled tree model (tripduration/prediction/compiled.py, forest.py) against the model's own Pipeline.

A ``hist_gradient_boosting`` candidate is fitted on real trips of 2021-01 (fewer trees than in production, same
steps); the compiled path must give ``model.predict``'s numbers on thousands of real trips of all three
embedded months: from the canonical frame, and from the JSON the service receives, validated as the service
validates it. The tree kernel alone must match scikit-learn where the features hold NaN (each node's
missing-value direction), and every model it does not reproduce must be refused by name.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from sklearn.ensemble import HistGradientBoostingRegressor

from tripduration.data.rules import Rules
from tripduration.data.validation import validate_trip_file
from tripduration.prediction.compiled import TripArrays, compile_pipeline, probe_frame, verify
from tripduration.prediction.forest import UnsupportedModelError, pack_forest
from tripduration.service.schemas import to_frame, validate_trips
from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import model_table, split_xy

TOLERANCE = 1e-9  # minutes; the compiled path does the same float64 operations, so the numbers are equal


@pytest.fixture(scope="module")
def months() -> dict[str, pd.DataFrame]:
    tables = {}
    for month in ("2021-01", "2021-02", "2021-03"):
        kept, _, _ = validate_trip_file(
            DATA / f"green_tripdata_{month}.parquet", dt.date.fromisoformat(f"{month}-01"), Rules()
        )
        tables[month] = model_table(kept)
    return tables


@pytest.fixture(scope="module")
def model(months: dict[str, pd.DataFrame]) -> Any:
    X, y = split_xy(months["2021-01"].sample(n=20_000, random_state=1))
    pipeline = build_pipeline(CANDIDATES["hgb_lr10_l31"])
    pipeline.set_params(model__max_iter=60)  # the production steps, fewer trees: a test-sized fit
    return pipeline.fit(X, y)


def real_trips(months: dict[str, pd.DataFrame], per_month: int = 4000) -> pd.DataFrame:
    parts = [split_xy(t.sample(n=per_month, random_state=2))[0] for t in months.values()]
    frame = pd.concat(parts, ignore_index=True)
    assert frame["RatecodeID"].isna().any() and frame["RatecodeID"].notna().any()  # both kinds of trip
    return frame


def as_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame as the JSON trips a client sends (missing optional codes left out)."""
    trips = []
    for row in frame.itertuples(index=False):
        trip: dict[str, Any] = {
            "pickup_datetime": row.pickup_datetime.isoformat(),
            "PULocationID": int(row.PULocationID),
            "DOLocationID": int(row.DOLocationID),
            "trip_distance": float(row.trip_distance),
        }
        for name in ("VendorID", "RatecodeID", "trip_type", "passenger_count"):
            if not pd.isna(getattr(row, name)):
                trip[name] = int(getattr(row, name))
        trips.append(trip)
    return trips


def test_compiled_model_gives_the_pipelines_predictions_on_real_trips(
    model: Any, months: dict[str, pd.DataFrame]
) -> None:
    frame = real_trips(months)
    expected = model.predict(frame)
    compiled = compile_pipeline(model)
    for threads in (1, 2):  # one block of rows, and rows split between two threads
        got = compiled.predict(TripArrays.from_frame(frame), threads=threads)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert np.abs(expected - expected.mean()).max() > 1, "the trips must get different predictions"


def test_the_services_path_from_json_gives_the_pipelines_predictions(
    model: Any, months: dict[str, pd.DataFrame]
) -> None:
    """JSON as a client sends it -> the service's validation -> columns -> compiled model, vs model.predict on
    the canonical frame the service built before (to_frame) and on the original frame."""
    frame = real_trips(months, per_month=1500)
    rows = validate_trips(json.loads(json.dumps(as_json(frame))))
    got = compile_pipeline(model).predict(TripArrays.from_trips(rows))
    np.testing.assert_allclose(got, model.predict(to_frame(rows)), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got, model.predict(frame), rtol=0, atol=TOLERANCE)
    one = compile_pipeline(model).predict(TripArrays.from_trips(rows[:1]))  # a lone trip, as a single request
    np.testing.assert_allclose(one, model.predict(frame.iloc[:1]), rtol=0, atol=TOLERANCE)


def test_the_probe_trips_reach_unseen_zone_pairs_and_missing_codes(model: Any) -> None:
    probe = probe_frame()
    seen = set(model.named_steps["encode"].duration_.categories_[0].tolist())
    pairs = probe["PULocationID"].astype("int64") * 1000 + probe["DOLocationID"]
    assert pairs.isin(seen).any() and not pairs.isin(seen).all()
    assert probe["VendorID"].isna().any() and (probe["trip_distance"] == 0).any()
    assert verify(compile_pipeline(model), model) <= TOLERANCE


def test_verify_refuses_a_compiled_model_that_differs(model: Any) -> None:
    compiled = compile_pipeline(model)
    compiled.forest.value[compiled.forest.feature == -1] += 0.01  # every leaf a little off
    with pytest.raises(UnsupportedModelError, match=r"differs from model\.predict"):
        verify(compiled, model)


def test_tree_kernel_follows_each_nodes_missing_value_direction() -> None:
    """NaN goes where scikit-learn learned to send it (left at some nodes, right at others)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 4))
    y = X[:, 0] * 3 + np.where(np.isnan(X[:, 1]), 5.0, X[:, 1]) + rng.normal(size=5000)
    X[rng.random(X.shape) < 0.2] = np.nan
    y = y + np.isnan(X[:, 2]) * -4.0
    hgb = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X, y)
    nodes = np.concatenate([p[0].nodes for p in hgb._predictors])
    inner = ~nodes["is_leaf"].astype(bool)
    assert nodes["missing_go_to_left"][inner].any() and not nodes["missing_go_to_left"][inner].all()
    X_new = rng.normal(size=(3000, 4))
    X_new[rng.random(X_new.shape) < 0.3] = np.nan
    np.testing.assert_allclose(pack_forest(hgb).predict(X_new), hgb.predict(X_new), rtol=0, atol=TOLERANCE)


def _fitted_booster(**params: Any) -> HistGradientBoostingRegressor:
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.integers(0, 5, 500), rng.normal(size=500)])
    return HistGradientBoostingRegressor(max_iter=5, **params).fit(X, X[:, 0] + X[:, 1])


def _fitted_pipeline(candidate: str) -> Any:
    frame = probe_frame(300)
    return build_pipeline(CANDIDATES[candidate]).fit(frame, frame["trip_distance"] * 3 + 1)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: compile_pipeline(_fitted_pipeline("baseline_linreg")), "not ZoneStatistics"),
        (lambda: compile_pipeline(_fitted_pipeline("ridge_a1")), "not ZoneStatistics"),
        (lambda: compile_pipeline(_fitted_booster()), "steps"),
        (lambda: pack_forest(_fitted_booster(loss="absolute_error")), "loss"),
        (lambda: pack_forest(_fitted_booster(categorical_features=[0])), "categorical"),
    ],
    ids=["linear-pipeline", "ridge-pipeline", "booster-without-pipeline", "absolute-error-loss", "categorical-splits"],
)
def test_models_the_compiled_path_does_not_reproduce_are_refused_by_name(make: Any, words: str) -> None:
    with pytest.raises(UnsupportedModelError, match=words):
        make()
