"""The model MLflow holds: the registry's pipeline behind the HTTP API's fields, with a signature and an example.

The HTTP service accepts a trip with four required fields (:data:`REQUIRED_FIELDS`) and four optional codes
(:data:`OPTIONAL_FIELDS`); the registry's scikit-learn pipeline wants all eight columns. The logged model is
``Pipeline([("dispatch_fields", DispatchFields()), ("model", <the registry's pipeline>)])``: the first step adds
the optional columns a caller left out (as missing values, which the features encode as -1, like the service
does), so ``mlflow.pyfunc`` callers and ``mlflow models serve`` take what the HTTP API takes. Its predictions on
the full columns are the registry model's, unchanged.

The signature declares the four required fields required and the optional ones optional. The optional codes
are doubles: integers with missing values are floats in pandas (MLflow's own advice); MLflow's scoring server
casts JSON integers to them. The input example holds only the required fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

import tripduration
from tripduration.registry.metadata import ModelMetadata
from tripduration.training.features import MODEL_INPUT_COLUMNS

#: the fields a trip must have (the HTTP API's required ones), and the optional codes
REQUIRED_FIELDS: tuple[str, ...] = ("pickup_datetime", "PULocationID", "DOLocationID", "trip_distance")
OPTIONAL_FIELDS: tuple[str, ...] = tuple(c for c in MODEL_INPUT_COLUMNS if c not in REQUIRED_FIELDS)
#: the ``tripduration`` package, shipped inside each MLflow model (``code_paths``) so that it loads where this
#: project is not installed
PACKAGE_DIR = Path(tripduration.__file__).resolve().parent
MODEL_ARTIFACT = "model"
PREDICTION = "duration_min"


class DispatchFields(TransformerMixin, BaseEstimator):
    """Adds the optional dispatch fields a frame lacks (as missing values) and orders the model's columns."""

    def fit(self, X: Any, y: Any = None) -> DispatchFields:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return dispatch_frame(X)


def dispatch_frame(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with every model input column, the optional ones it lacks as missing values; a required one
    missing is an error naming it."""
    missing = [c for c in REQUIRED_FIELDS if c not in X.columns]
    if missing:
        raise ValueError(f"trips lack the required fields {missing}; each needs {list(REQUIRED_FIELDS)}")
    frame = X.copy()
    for column in OPTIONAL_FIELDS:
        if column not in frame.columns:
            frame[column] = np.nan
    return frame.loc[:, list(MODEL_INPUT_COLUMNS)]


def mlflow_model(pipeline: Pipeline) -> Pipeline:
    """The pipeline MLflow holds for a registry model (see the module docstring)."""
    return Pipeline([("dispatch_fields", DispatchFields()), ("model", pipeline)])


def signature() -> Any:
    """The model's ``ModelSignature``: the HTTP API's fields in, minutes out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    types = {"pickup_datetime": "datetime", "PULocationID": "long", "DOLocationID": "long", "trip_distance": "double"}
    columns: list[ColSpec | TensorSpec] = [ColSpec(types[name], name) for name in REQUIRED_FIELDS]
    columns += [ColSpec("double", name, required=False) for name in OPTIONAL_FIELDS]
    return ModelSignature(inputs=Schema(columns), outputs=Schema([ColSpec("double", PREDICTION)]))


def input_example() -> pd.DataFrame:
    """Two trips with the required fields only, as a dispatcher knows them."""
    return pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2021-03-05 08:30:00", "2021-03-05 18:05:00"]),
            "PULocationID": np.array([74, 41], dtype="int64"),
            "DOLocationID": np.array([75, 151], dtype="int64"),
            "trip_distance": [1.6, 3.2],
        }
    )


def pip_requirements(meta: ModelMetadata) -> list[str]:
    """The libraries the model was trained with (from its metadata, not from whatever logs it), and
    cloudpickle, which pickles it."""
    import cloudpickle  # shipped with mlflow

    pins = [f"{name}=={version}" for name, version in sorted(meta.libraries.items()) if name != "python"]
    return [*pins, f"cloudpickle=={cloudpickle.__version__}"]
