"""The memory-lean paths used at scale give exactly what the plain pandas calls give."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tripduration.data.rules import REASONS, Rules, reason_codes, split_trips
from tripduration.io.parquet import read_parquet, write_parquet
from tripduration.prediction.batch import BATCH_INPUT_COLUMNS, batch_predictions
from tripduration.registry.registration import reference_profile
from tripduration.training.candidates import CANDIDATES, fit_cost, get_candidate
from tripduration.training.features import MODEL_INPUT_COLUMNS, split_xy

from .reasons import rejection_reasons


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    n = 7
    return pd.DataFrame(
        {
            "ids": pd.array([1, None, 3, 4, 5, None, 7], dtype="Int32"),
            "when": pd.date_range("2021-03-01", periods=n, freq="h").astype("datetime64[us]"),
            "text": pd.array(["a", None, "c", "d", "e", "f", "g"], dtype="string"),
            "cat": pd.Categorical(["v1"] * n),
            "x": np.linspace(0, 1, n),
        }
    )


@pytest.mark.parametrize("rows", [1, 3, 1_000])
def test_write_parquet_in_row_groups_reads_back_like_to_parquet(tmp_path, mixed_frame, rows):
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    write_parquet(mixed_frame, ours, row_group_rows=rows)
    mixed_frame.to_parquet(theirs, index=False)
    expected = pd.read_parquet(theirs)
    for got in (pd.read_parquet(ours), read_parquet(ours), read_parquet(theirs)):
        pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(read_parquet(ours, ["x", "ids"]), expected[["x", "ids"]])


def test_write_and_read_an_empty_frame(tmp_path, mixed_frame):
    write_parquet(mixed_frame.iloc[:0], tmp_path / "empty.parquet")
    got = read_parquet(tmp_path / "empty.parquet")
    assert len(got) == 0 and list(got.columns) == list(mixed_frame.columns)


def test_bad_arguments_are_named(tmp_path, mixed_frame):
    with pytest.raises(ValueError, match="row_group_rows must be a positive number of rows, got 0"):
        write_parquet(mixed_frame, tmp_path / "x.parquet", row_group_rows=0)
    write_parquet(mixed_frame, tmp_path / "x.parquet")
    with pytest.raises(KeyError, match=r"no column\(s\) \['nope'\]"):
        read_parquet(tmp_path / "x.parquet", ["x", "nope"])


def test_batch_predictions_in_chunks_equal_one_predict(fitted_candidates, test_table):
    model = fitted_candidates["hgb_lr10_l31"]
    kept = test_table.assign(dropoff_datetime=test_table["pickup_datetime"] + pd.Timedelta(minutes=10))
    kept = kept.loc[:, list(BATCH_INPUT_COLUMNS)]
    whole = model.predict(kept.loc[:, list(MODEL_INPUT_COLUMNS)])
    for chunk in (1, 7, len(kept), 10 * len(kept)):
        out = batch_predictions(model, kept, "m", "v0003", chunk_rows=chunk)
        np.testing.assert_array_equal(out["predicted_duration_min"].to_numpy(), whole)
        assert out["trip_row"].tolist() == list(range(len(kept)))
        assert set(out["model_version"]) == {"v0003"} and out["model_version"].dtype == "category"
    with pytest.raises(ValueError, match="chunk_rows must be a positive number of rows, got 0"):
        batch_predictions(model, kept, "m", "v", chunk_rows=0)


def test_reference_profile_predicts_on_a_sample_only(fitted_candidates, train_table):
    calls: list[int] = []
    model = fitted_candidates["ridge_a1"]

    class Counting:
        def predict(self, X):
            calls.append(len(X))
            return model.predict(X)

    profile = reference_profile(Counting(), train_table, 0.02, {"rmse": 5.0}, prediction_rows=50)
    assert calls == [50] and profile["prediction"]["rows"] == 50
    assert profile["rows"] == len(train_table)  # features are profiled on every row
    full = reference_profile(Counting(), train_table, 0.02, {"rmse": 5.0}, prediction_rows=10**9)
    assert calls[-1] == len(train_table) and full["prediction"]["rows"] == len(train_table)
    X, _ = split_xy(train_table)
    assert full["prediction"]["mean"] == pytest.approx(float(model.predict(X).mean()))


def test_reason_codes_match_the_reasons_and_split_counts_them():
    month = dt.date(2021, 3, 1)
    t0 = pd.Timestamp("2021-03-05 10:00")
    trips = pd.DataFrame(
        {
            "pickup_datetime": pd.Series([t0, t0, pd.NaT, pd.Timestamp("2021-04-02"), t0]).astype("datetime64[us]"),
            "dropoff_datetime": pd.Series(
                [t0 + pd.Timedelta(minutes=12), t0 + pd.Timedelta(minutes=90), t0, t0, t0 + pd.Timedelta(minutes=5)]
            ).astype("datetime64[us]"),
            "PULocationID": pd.array([74, 74, 74, 74, 74], dtype="Int32"),
            "DOLocationID": pd.array([75, 75, 75, 75, None], dtype="Int32"),
            "trip_distance": [2.0, 3.0, 1.0, 1.0, 1.0],
        }
    )
    codes = reason_codes(trips, month, Rules())
    names = [None if c == 0 else REASONS[c - 1] for c in codes]
    assert names == rejection_reasons(trips, month, Rules()).tolist()
    assert names[0] is None and names[1] == "duration_out_of_range"
    kept, rejected, summary = split_trips(trips, month, Rules())
    assert len(kept) == 1 and kept["PULocationID"].dtype == "int32" and list(kept.index) == [0]
    assert rejected["reason"].tolist() == names[1:] and rejected["reason"].dtype == "string"
    assert sum(summary["rejected_by_reason"].values()) == 4
    assert summary["rejected_by_reason"]["duration_out_of_range"] == 1


def test_fit_cost_orders_the_slowest_candidates_first():
    order = sorted(CANDIDATES, key=lambda name: fit_cost(get_candidate(name)), reverse=True)
    assert order[:3] == ["hgb_lr05_l127", "hgb_lr10_l63", "hgb_lr10_l31"]


def test_training_sample_is_seeded_and_bounded(train_table):
    from tripduration.training.steps import fit_candidate, training_sample

    assert training_sample(train_table, None) is train_table and training_sample(train_table, 0) is train_table
    a, b = training_sample(train_table, 50), training_sample(train_table, 50)
    assert len(a) == 50 and a.index.equals(b.index) and a.index.is_monotonic_increasing
    with pytest.raises(ValueError, match=r"max_rows must be 0 .* got -1"):
        training_sample(train_table, -1)
    model, _ = fit_candidate(get_candidate("ridge_a1"), train_table, max_rows=50)
    assert model.named_steps  # fitted on the sample
