"""The model candidates: each is one scikit-learn Pipeline from canonical trip columns to minutes.

All encoders live inside the Pipeline, so they are fitted on the training months only and travel with the
saved model. Seeds are fixed so the same data and parameters give the same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tripduration.training.encoders import ZoneStatistics
from tripduration.training.features import engineer_features, engineered_feature_names

SEED = 42
BASELINE = "baseline_linreg"


@dataclass(frozen=True)
class CandidateSpec:
    name: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


CANDIDATES: dict[str, CandidateSpec] = {
    spec.name: spec
    for spec in (
        CandidateSpec(
            BASELINE,
            "linear_pair_onehot",
            {},
            "MLOps-course baseline: LinearRegression on one-hot PU_DO pair + trip_distance",
        ),
        CandidateSpec("ridge_a1", "ridge_onehot", {"alpha": 1.0}, "Ridge on one-hot zones, pair, time, codes"),
        CandidateSpec("ridge_a10", "ridge_onehot", {"alpha": 10.0}, "Ridge, stronger regularisation"),
        CandidateSpec(
            "hgb_lr10_l31",
            "hist_gradient_boosting",
            {"learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 31},
            "HistGradientBoosting on zones, zone statistics, time and codes",
        ),
        CandidateSpec(
            "hgb_lr10_l63",
            "hist_gradient_boosting",
            {"learning_rate": 0.1, "max_iter": 500, "max_leaf_nodes": 63},
            "HistGradientBoosting, larger trees",
        ),
        CandidateSpec(
            "hgb_lr05_l127",
            "hist_gradient_boosting",
            {
                "learning_rate": 0.05,
                "max_iter": 800,
                "max_leaf_nodes": 127,
                "min_samples_leaf": 50,
                "l2_regularization": 1.0,
            },
            "HistGradientBoosting, slower learning, larger trees",
        ),
    )
}

_CATEGORICAL = [
    "pair_code",
    "PULocationID",
    "DOLocationID",
    "pickup_hour",
    "pickup_weekday",
    "VendorID",
    "RatecodeID",
    "trip_type",
]
_NUMERIC = ["trip_distance", "log_distance", "passenger_count"]


def fit_cost(spec: CandidateSpec) -> float:
    """A rough relative cost of fitting ``spec`` (boosting: iterations x leaves / 1000; linear models: 1).

    Only the order matters: it decides which candidates start first when several fit side by side.
    """
    if spec.family == "hist_gradient_boosting":
        return spec.params.get("max_iter", 100) * spec.params.get("max_leaf_nodes", 31) / 1000.0
    return 1.0


def get_candidate(name: str) -> CandidateSpec:
    try:
        return CANDIDATES[name]
    except KeyError:
        raise ValueError(f"unknown candidate {name!r}; choose from {sorted(CANDIDATES)}") from None


def _features_step() -> FunctionTransformer:
    return FunctionTransformer(engineer_features, feature_names_out=engineered_feature_names, validate=False)


def build_pipeline(spec: CandidateSpec) -> Pipeline:
    """A fresh, unfitted Pipeline for ``spec``."""
    if spec.family == "linear_pair_onehot":
        encode = ColumnTransformer(
            [
                ("pair", OneHotEncoder(handle_unknown="ignore"), ["pair_code"]),
                ("distance", "passthrough", ["trip_distance"]),
            ]
        )
        model: Any = LinearRegression(**spec.params)
    elif spec.family == "ridge_onehot":
        encode = ColumnTransformer(
            [
                ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=5), _CATEGORICAL),
                ("numeric", StandardScaler(), _NUMERIC),
            ]
        )
        model = Ridge(random_state=SEED, **spec.params)
    elif spec.family == "hist_gradient_boosting":
        encode = ZoneStatistics(random_state=SEED)
        model = HistGradientBoostingRegressor(random_state=SEED, early_stopping=False, **spec.params)
    else:
        raise ValueError(f"candidate {spec.name!r} has unknown family {spec.family!r}")
    return Pipeline([("features", _features_step()), ("encode", encode), ("model", model)])
