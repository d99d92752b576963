"""ZoneStatistics appends zone statistics fitted on the training data, and copes with unseen zones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from tripduration.training.encoders import ZoneStatistics
from tripduration.training.features import ENGINEERED_COLUMNS, engineer_features, split_xy

#: the columns the module docstring documents, in order
DOCUMENTED = [
    "te_pair",
    "te_pu",
    "te_do",
    "pace_pair",
    "pace_pu",
    "pace_do",
    "expected_duration",
    "pair_mean_distance",
    "distance_ratio",
]


@pytest.fixture
def engineered(train_table) -> tuple[pd.DataFrame, pd.Series]:
    X, y = split_xy(train_table)
    return engineer_features(X), y


def test_fit_transform_adds_the_documented_columns(engineered):
    features, y = engineered
    out = ZoneStatistics().fit_transform(features, y)
    assert list(out.columns) == [*ENGINEERED_COLUMNS, *DOCUMENTED]
    pd.testing.assert_frame_equal(out[list(ENGINEERED_COLUMNS)], features)  # inputs pass through unchanged
    assert np.isfinite(out[DOCUMENTED].to_numpy()).all()
    assert out.index.equals(features.index)
    assert len(out) == len(features)


def test_derived_columns_follow_their_definitions(engineered):
    features, y = engineered
    encoder = ZoneStatistics().fit(features, y)
    out = encoder.transform(features)
    np.testing.assert_allclose(out["expected_duration"], out["pace_pair"] * features["trip_distance"])
    np.testing.assert_allclose(out["distance_ratio"], features["trip_distance"] / (out["pair_mean_distance"] + 0.1))
    assert out[["pace_pair", "pace_pu", "pace_do"]].to_numpy().max() <= encoder.max_pace
    assert out[["pace_pair", "pace_pu", "pace_do"]].to_numpy().min() >= 0.0
    # the per-zone mean duration is close to the training means of the zone
    te_pu = out.groupby(features["PULocationID"])["te_pu"].mean()
    actual = y.groupby(features["PULocationID"]).mean()
    assert np.corrcoef(te_pu.loc[actual.index], actual)[0, 1] > 0.9


def test_feature_names_out_match_the_output(engineered):
    features, y = engineered
    encoder = ZoneStatistics()
    out = encoder.fit_transform(features, y)
    assert list(encoder.get_feature_names_out()) == list(out.columns)
    assert encoder.n_features_in_ == len(ENGINEERED_COLUMNS)


def test_transform_on_unseen_zone_pairs_gives_finite_values(engineered):
    features, y = engineered
    encoder = ZoneStatistics().fit(features, y)
    unseen = features.head(4).copy()
    unseen["PULocationID"] = np.array([1, 2, 264, 265], dtype="int32")
    unseen["DOLocationID"] = np.array([265, 264, 2, 1], dtype="int32")
    unseen["pair_code"] = unseen["PULocationID"].astype("int64") * 1000 + unseen["DOLocationID"]
    assert not unseen["pair_code"].isin(features["pair_code"]).any()

    out = encoder.transform(unseen)
    assert list(out.columns) == [*ENGINEERED_COLUMNS, *DOCUMENTED]
    assert np.isfinite(out[DOCUMENTED].to_numpy()).all()
    # unseen categories fall back to the (shrunk) overall mean of the target
    assert out["te_pair"].to_numpy() == pytest.approx(np.full(4, y.mean()), rel=1e-6)


def test_needs_the_target_and_a_fit(engineered):
    features, _ = engineered
    with pytest.raises(ValueError, match="needs the target y"):
        ZoneStatistics().fit_transform(features)
    with pytest.raises(NotFittedError):
        ZoneStatistics().transform(features)


def test_is_a_well_behaved_estimator(engineered):
    features, y = engineered
    encoder = ZoneStatistics(random_state=3, max_pace=30.0, min_distance=0.5)
    copy = clone(encoder)
    assert copy.get_params() == {"random_state": 3, "max_pace": 30.0, "min_distance": 0.5}
    first = ZoneStatistics(random_state=0).fit_transform(features, y)
    second = ZoneStatistics(random_state=0).fit_transform(features, y)
    pd.testing.assert_frame_equal(first, second)
