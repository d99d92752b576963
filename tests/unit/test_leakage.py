"""Leakage guard: no candidate may use a column that is only known once the trip is over.

The leaky columns below are made strongly predictive of the target (fare grows with duration, dropoff is
pickup plus duration), so a model that used any of them would predict differently with them shuffled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tripduration.training.candidates import CANDIDATES, build_pipeline
from tripduration.training.features import LEAKY_COLUMNS, MODEL_INPUT_COLUMNS, split_xy
from tripduration.training.steps import fit_candidate

LEAKY_EXTRAS = ("fare_amount", "tip_amount", "total_amount", "dropoff_datetime")


def with_leaky_columns(table: pd.DataFrame, shuffle_seed: int | None = None) -> pd.DataFrame:
    """Model inputs plus post-trip columns derived from the true duration (optionally shuffled)."""
    X, y = split_xy(table)
    minutes = y.to_numpy()
    fare = 2.5 + 2.5 * minutes
    leaky = pd.DataFrame(
        {
            "fare_amount": fare,
            "tip_amount": 0.2 * fare,
            "total_amount": 1.2 * fare + 0.3,
            "dropoff_datetime": X["pickup_datetime"] + pd.to_timedelta(minutes, unit="min"),
        },
        index=X.index,
    )
    if shuffle_seed is not None:
        rng = np.random.default_rng(shuffle_seed)
        leaky = leaky.apply(lambda col: col.to_numpy()[rng.permutation(len(col))])
    # leaky columns first, so that no step can rely on column positions
    return pd.concat([leaky, X], axis=1)


def test_leaky_extras_are_declared_leaky():
    assert set(LEAKY_EXTRAS) <= LEAKY_COLUMNS


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_predictions_ignore_post_trip_columns(name, fitted_candidates, train_table, test_table):
    model = fitted_candidates[name]
    X_test, _ = split_xy(test_table)
    clean = model.predict(X_test)
    assert np.isfinite(clean).all()

    # (a) adding the post-trip columns at prediction time, true or shuffled, changes nothing
    np.testing.assert_array_equal(model.predict(with_leaky_columns(test_table)), clean)
    np.testing.assert_array_equal(model.predict(with_leaky_columns(test_table, shuffle_seed=1)), clean)

    # (a') training with them present (and highly predictive) gives the same model
    X_leaky = with_leaky_columns(train_table)
    refit = build_pipeline(CANDIDATES[name]).fit(X_leaky, train_table["duration_min"])
    np.testing.assert_allclose(refit.predict(X_test), clean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(refit.predict(with_leaky_columns(test_table, shuffle_seed=2)), clean, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_fitted_pipeline_sees_no_leaky_column(name, train_table):
    """(b) as fitted by the training step, the pipeline's inputs and features hold no leaky column."""
    model, _ = fit_candidate(CANDIDATES[name], train_table)
    assert list(model.feature_names_in_) == list(MODEL_INPUT_COLUMNS)
    assert not set(model.feature_names_in_) & LEAKY_COLUMNS
    names = [str(n) for n in model[:-1].get_feature_names_out()]
    assert names
    assert not {n for n in names for leaky in LEAKY_COLUMNS if leaky in n}
    final = model[-1]
    if hasattr(final, "feature_names_in_"):
        assert not set(final.feature_names_in_) & LEAKY_COLUMNS
