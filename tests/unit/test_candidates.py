"""Every candidate is one fresh scikit-learn Pipeline from canonical trip columns to minutes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from tripduration.evaluation.metrics import regression_metrics
from tripduration.training.candidates import BASELINE, CANDIDATES, SEED, CandidateSpec, build_pipeline, get_candidate
from tripduration.training.features import split_xy


def test_candidate_registry_is_consistent():
    assert BASELINE in CANDIDATES
    assert all(name == spec.name for name, spec in CANDIDATES.items())
    assert {spec.family for spec in CANDIDATES.values()} == {
        "linear_pair_onehot",
        "ridge_onehot",
        "hist_gradient_boosting",
    }


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_build_pipeline_returns_an_unfitted_pipeline_with_the_spec_params(name):
    spec = get_candidate(name)
    assert spec is CANDIDATES[name]
    pipeline = build_pipeline(spec)
    assert isinstance(pipeline, Pipeline)
    assert [step for step, _ in pipeline.steps] == ["features", "encode", "model"]
    params = pipeline.named_steps["model"].get_params()
    for key, value in spec.params.items():
        assert params[key] == value
    if "random_state" in params:
        assert params["random_state"] == SEED
    assert not hasattr(pipeline.named_steps["model"], "n_features_in_")  # fresh, unfitted
    assert build_pipeline(spec) is not pipeline


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_each_candidate_fits_and_predicts_on_a_tiny_frame(name, fitted_candidates, test_table):
    model = fitted_candidates[name]
    X, y = split_xy(test_table)
    pred = model.predict(X)
    assert pred.shape == (len(X),)
    assert np.isfinite(pred).all()
    # the synthetic duration depends on distance: every candidate must learn something
    assert regression_metrics(y, pred)["r2"] > 0.5


def test_candidates_handle_unseen_zones_and_missing_codes(fitted_candidates, test_table):
    X, _ = split_xy(test_table.head(5))
    X = X.assign(PULocationID=np.int32(1), DOLocationID=np.int32(265))
    X["RatecodeID"] = pd.array([pd.NA] * len(X), dtype="Int32")  # all missing
    for model in fitted_candidates.values():
        assert np.isfinite(model.predict(X)).all()


def test_pipeline_refuses_input_without_the_model_columns(fitted_candidates, test_table):
    X, _ = split_xy(test_table)
    with pytest.raises(ValueError, match="trip_distance"):
        fitted_candidates[BASELINE].predict(X.drop(columns=["trip_distance"]))


@pytest.mark.parametrize("name", ["nope", "HGB_LR10_L31", "", "../baseline_linreg"])
def test_unknown_candidate_name_is_refused_naming_it(name):
    with pytest.raises(ValueError, match=f"unknown candidate '{name}'") as info:
        get_candidate(name)
    assert BASELINE in str(info.value)  # the message lists the valid names


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="candidate 'odd' has unknown family 'svm'"):
        build_pipeline(CandidateSpec("odd", "svm"))


def test_hgb_candidate_is_deterministic(fitted_candidates, train_table, test_table):
    X, y = split_xy(train_table)
    X_test, _ = split_xy(test_table)
    first = fitted_candidates["hgb_lr10_l31"].predict(X_test)
    second = build_pipeline(get_candidate("hgb_lr10_l31")).fit(X, y).predict(X_test)
    third = clone(build_pipeline(get_candidate("hgb_lr10_l31"))).fit(X.copy(), y.copy()).predict(X_test)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third)
