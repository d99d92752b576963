"""The tree models' Pipeline, compiled for serving: numpy features, table look-ups, one kernel for the trees.

A ``hist_gradient_boosting`` candidate is ``engineer_features -> ZoneStatistics -> HistGradientBoosting``
(:mod:`tripduration.training.candidates`). ``model.predict`` on a frame builds pandas frames at each step,
checks its inputs and walks the trees one Python call at a time: ~10 ms for one trip whatever the machine.
:func:`compile_pipeline` reads the fitted steps once and gives a :class:`CompiledPipeline` that computes the
same 21 features with numpy from :class:`TripArrays` (engineer_features' arithmetic, the fitted target
encoders as sorted look-up tables, ZoneStatistics' ratios) and walks the trees with
:mod:`tripduration.prediction.forest`.

It gives the model's own numbers (the same float64 operations in the same order), and :func:`verify` checks
that on probe trips before the service uses it. Training never uses this module: the saved model is the
Pipeline, and anything this module does not recognise raises :class:`UnsupportedModelError` (the caller then
uses ``model.predict``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tripduration.prediction.forest import Forest, UnsupportedModelError, pack_forest
from tripduration.training.encoders import ADDED_COLUMNS, ZoneStatistics
from tripduration.training.features import ENGINEERED_COLUMNS, MODEL_INPUT_COLUMNS, engineer_features

CODE_COLUMNS = ("VendorID", "RatecodeID", "trip_type", "passenger_count")
FEATURES = (*ENGINEERED_COLUMNS, *ADDED_COLUMNS)

__all__ = ["CompiledPipeline", "TripArrays", "UnsupportedModelError", "compile_pipeline", "verify"]


@dataclass(frozen=True)
class TripArrays:
    """Canonical trips as columns: zones, distance, the pickup's hour / weekday (Monday 0) / minute, and the
    optional codes (``codes[:, j]`` for :data:`CODE_COLUMNS` [j], -1 where missing, as engineer_features)."""

    pu: np.ndarray
    do: np.ndarray
    distance: np.ndarray
    hour: np.ndarray
    weekday: np.ndarray
    minute: np.ndarray
    codes: np.ndarray

    def __len__(self) -> int:
        return len(self.pu)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> TripArrays:
        """From a canonical model-input frame, with engineer_features' own conversions."""
        pickup = pd.to_datetime(frame["pickup_datetime"])
        codes = np.column_stack(
            [pd.to_numeric(frame[c]).astype("Float64").fillna(-1).to_numpy(dtype="float64") for c in CODE_COLUMNS]
        ).reshape(len(frame), len(CODE_COLUMNS))
        return cls(
            pu=pd.to_numeric(frame["PULocationID"]).astype("int32").to_numpy(),
            do=pd.to_numeric(frame["DOLocationID"]).astype("int32").to_numpy(),
            distance=pd.to_numeric(frame["trip_distance"]).astype("float64").to_numpy(),
            hour=pickup.dt.hour.to_numpy(dtype="int64"),
            weekday=pickup.dt.dayofweek.to_numpy(dtype="int64"),
            minute=pickup.dt.minute.to_numpy(dtype="int64"),
            codes=codes,
        )

    @classmethod
    def from_trips(cls, trips: Sequence[Mapping[str, Any]]) -> TripArrays:
        """From validated trips (``pickup_datetime`` a naive datetime; optional codes absent or None)."""
        pickups: list[dt.datetime] = [t["pickup_datetime"] for t in trips]
        codes = np.array(
            [[-1.0 if t.get(c) is None else float(t[c]) for c in CODE_COLUMNS] for t in trips], dtype=np.float64
        ).reshape(len(trips), len(CODE_COLUMNS))
        return cls(
            pu=np.array([t["PULocationID"] for t in trips], dtype=np.int32),
            do=np.array([t["DOLocationID"] for t in trips], dtype=np.int32),
            distance=np.array([t["trip_distance"] for t in trips], dtype=np.float64),
            hour=np.array([p.hour for p in pickups], dtype=np.int64),
            weekday=np.array([p.weekday() for p in pickups], dtype=np.int64),
            minute=np.array([p.minute for p in pickups], dtype=np.int64),
            codes=codes,
        )

    @staticmethod
    def concat(parts: Sequence[TripArrays]) -> TripArrays:
        if len(parts) == 1:
            return parts[0]
        return TripArrays(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in TripArrays.__dataclass_fields__)
        )


@dataclass(frozen=True)
class _Lookup:
    """One fitted target encoding: sorted categories, their encodings, and the value of an unseen category."""

    categories: np.ndarray
    encodings: np.ndarray
    default: float

    def __call__(self, values: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.categories, values)
        at[at == len(self.categories)] = 0
        return np.where(self.categories[at] == values, self.encodings[at], self.default)


def _lookups(encoder: Any, columns: Sequence[str]) -> list[_Lookup]:
    """TargetEncoder.transform as tables (continuous target: encodings_[i][category], target_mean_ if unseen)."""
    if getattr(encoder, "target_type_", None) != "continuous" or list(encoder.feature_names_in_) != list(columns):
        raise UnsupportedModelError(f"a zone encoder is not a continuous TargetEncoder of {list(columns)}")
    tables = []
    for categories, encodings in zip(encoder.categories_, encoder.encodings_, strict=True):
        if categories.dtype.kind not in "iu" or np.any(np.diff(categories) <= 0):
            raise UnsupportedModelError("a zone encoder's categories are not sorted integers")
        tables.append(_Lookup(categories, np.asarray(encodings, dtype=np.float64), float(encoder.target_mean_)))
    return tables


@dataclass(frozen=True)
class CompiledPipeline:
    """A fitted tree Pipeline as numpy features and a :class:`~tripduration.prediction.forest.Forest`."""

    duration: list[_Lookup]  # pair, pickup zone, drop-off zone
    pace: list[_Lookup]
    pair_distance: _Lookup
    forest: Forest

    def features(self, trips: TripArrays) -> np.ndarray:
        """The (n, 21) float64 matrix the boosting model sees (columns: :data:`FEATURES`)."""
        n = len(trips)
        x = np.empty((n, len(FEATURES)), dtype=np.float64)
        pu, do = trips.pu.astype(np.int32), trips.do.astype(np.int32)
        pair = pu.astype(np.int64) * 1000 + do
        distance = trips.distance.astype(np.float64).clip(min=0)  # pandas' clip(lower=0)
        minute_of_week = trips.weekday * 1440 + trips.hour * 60 + trips.minute
        duration = [lookup(v) for lookup, v in zip(self.duration, (pair, pu, do), strict=True)]
        pace = [lookup(v) for lookup, v in zip(self.pace, (pair, pu, do), strict=True)]
        pair_distance = self.pair_distance(pair)
        columns = (
            pu, do, pair, distance, np.log1p(distance), trips.hour, trips.weekday, minute_of_week,
            *trips.codes.T, *duration, *pace, pace[0] * distance, pair_distance, distance / (pair_distance + 0.1),
        )  # fmt: skip
        for j, column in enumerate(columns):
            x[:, j] = column
        return x

    def predict(self, trips: TripArrays, threads: int = 1) -> np.ndarray:
        """Predicted minutes, as ``model.predict`` on the same trips."""
        if len(trips) == 0:
            return np.empty(0, dtype=np.float64)
        return self.forest.predict(self.features(trips), threads)


def compile_pipeline(model: Any) -> CompiledPipeline:
    """Compile a fitted ``features -> ZoneStatistics -> HistGradientBoostingRegressor`` Pipeline; raises
    :class:`UnsupportedModelError` naming the step it does not recognise."""
    steps = dict(getattr(model, "steps", []))
    if list(steps) != ["features", "encode", "model"]:
        raise UnsupportedModelError(f"steps {list(steps)} are not features -> encode -> model")
    features, encode, booster = steps["features"], steps["encode"], steps["model"]
    if getattr(features, "func", None) is not engineer_features or getattr(features, "kw_args", None):
        raise UnsupportedModelError("the features step is not engineer_features")
    if type(encode) is not ZoneStatistics:
        raise UnsupportedModelError(f"the encode step is {type(encode).__name__}, not ZoneStatistics")
    names = list(getattr(booster, "feature_names_in_", []))
    if names != list(FEATURES):
        raise UnsupportedModelError(f"the model's features {names} are not {list(FEATURES)}")
    zones = ("pair_code", "PULocationID", "DOLocationID")
    return CompiledPipeline(
        duration=_lookups(encode.duration_, zones),
        pace=_lookups(encode.pace_, zones),
        pair_distance=_lookups(encode.distance_, ("pair_code",))[0],
        forest=pack_forest(booster),
    )


def probe_frame(rows: int = 256, seed: int = 0) -> pd.DataFrame:
    """Canonical trips that reach every kind of input: any zones (seen pairs and unseen), distances from 0 to
    60 miles, every hour and weekday, codes present and missing."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2021-01-04T00:00:00")  # a Monday
    minutes = rng.integers(0, 7 * 1440, rows)
    codes = {
        "VendorID": rng.integers(1, 3, rows),
        "RatecodeID": rng.integers(1, 7, rows),
        "trip_type": rng.integers(1, 3, rows),
        "passenger_count": rng.integers(0, 7, rows),
    }
    frame = pd.DataFrame(
        {
            "pickup_datetime": (start + minutes.astype("timedelta64[m]")).astype("datetime64[us]"),
            "PULocationID": rng.integers(1, 266, rows).astype("int32"),
            "DOLocationID": rng.integers(1, 266, rows).astype("int32"),
            "trip_distance": np.round(rng.exponential(3.0, rows).clip(0, 60), 2),
        }
    )
    for name, values in codes.items():
        frame[name] = pd.array(np.where(rng.random(rows) < 0.3, pd.NA, values), dtype="Int32")
    frame.loc[frame.index[:8], "trip_distance"] = 0.0
    return frame.loc[:, list(MODEL_INPUT_COLUMNS)]


def verify(compiled: CompiledPipeline, model: Any, frame: pd.DataFrame | None = None, atol: float = 1e-9) -> float:
    """The largest difference between ``compiled`` and ``model.predict`` on ``frame`` (default: the probe
    trips); raises :class:`UnsupportedModelError` when it exceeds ``atol``."""
    frame = probe_frame() if frame is None else frame
    expected = np.asarray(model.predict(frame), dtype=np.float64)
    got = compiled.predict(TripArrays.from_frame(frame))
    worst = float(np.max(np.abs(got - expected))) if len(frame) else 0.0
    if not worst <= atol:
        raise UnsupportedModelError(f"the compiled model differs from model.predict by {worst:g} (over {atol:g})")
    return worst
