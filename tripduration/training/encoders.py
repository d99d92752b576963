"""Zone statistics learned from the training months, as a scikit-learn transformer.

For tree models, raw zone IDs are kept and the following columns are added, each fitted on the
training data only (with scikit-learn's cross-fitted :class:`~sklearn.preprocessing.TargetEncoder` during
``fit_transform``, so a row's own target never leaks into its encoding):

- mean duration per pickup/dropoff pair, pickup zone and dropoff zone;
- mean pace (minutes per mile) per pair, and pace times distance, an "expected duration";
- mean trip distance per pair and the trip's distance relative to it (a detour indicator).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import TargetEncoder
from sklearn.utils.validation import check_is_fitted

_ZONES = ["pair_code", "PULocationID", "DOLocationID"]
#: the columns :class:`ZoneStatistics` adds, in order (the service's compiled path computes the same ones)
ADDED_COLUMNS: tuple[str, ...] = (
    "te_pair",
    "te_pu",
    "te_do",
    "pace_pair",
    "pace_pu",
    "pace_do",
    "expected_duration",
    "pair_mean_distance",
    "distance_ratio",
)


class ZoneStatistics(TransformerMixin, BaseEstimator):
    """Append target- and distance-based zone statistics to the engineered feature frame."""

    def __init__(self, random_state: int = 0, max_pace: float = 60.0, min_distance: float = 0.2) -> None:
        self.random_state = random_state
        self.max_pace = max_pace
        self.min_distance = min_distance

    def _pace(self, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        distance = np.maximum(X["trip_distance"].to_numpy(dtype="float64"), self.min_distance)
        return np.clip(np.asarray(y, dtype="float64") / distance, 0.0, self.max_pace)

    def _encoders(self) -> tuple[TargetEncoder, TargetEncoder, TargetEncoder]:
        return tuple(TargetEncoder(target_type="continuous", random_state=self.random_state) for _ in range(3))

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ZoneStatistics:
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: pd.DataFrame, y: np.ndarray | None = None, **_: object) -> pd.DataFrame:
        if y is None:
            raise ValueError("ZoneStatistics needs the target y (trip minutes) to be fitted")
        self.duration_, self.pace_, self.distance_ = self._encoders()
        zones = X[_ZONES]
        duration = self.duration_.fit_transform(zones, y)
        pace = self.pace_.fit_transform(zones, self._pace(X, y))
        distance = self.distance_.fit_transform(X[["pair_code"]], X["trip_distance"].to_numpy(dtype="float64"))
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self._assemble(X, duration, pace, distance)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "duration_")
        zones = X[_ZONES]
        return self._assemble(
            X,
            self.duration_.transform(zones),
            self.pace_.transform(zones),
            self.distance_.transform(X[["pair_code"]]),
        )

    def _assemble(self, X: pd.DataFrame, duration: np.ndarray, pace: np.ndarray, distance: np.ndarray) -> pd.DataFrame:
        out = X.copy()
        trip_distance = X["trip_distance"].to_numpy(dtype="float64")
        out["te_pair"], out["te_pu"], out["te_do"] = duration[:, 0], duration[:, 1], duration[:, 2]
        out["pace_pair"], out["pace_pu"], out["pace_do"] = pace[:, 0], pace[:, 1], pace[:, 2]
        out["expected_duration"] = pace[:, 0] * trip_distance
        out["pair_mean_distance"] = distance[:, 0]
        out["distance_ratio"] = trip_distance / (distance[:, 0] + 0.1)
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray([*self.feature_names_in_, *ADDED_COLUMNS], dtype=object)
