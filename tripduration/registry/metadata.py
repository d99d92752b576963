"""What a registered version records about itself."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tripduration.training.features import ENGINEERED_COLUMNS, MODEL_INPUT_COLUMNS
from tripduration.training.steps import CANDIDATE_FACTS


def environment_versions() -> dict[str, str]:
    """Versions of the libraries a loaded model depends on."""
    import joblib
    import numpy
    import pyarrow
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
        "pyarrow": pyarrow.__version__,
    }


def lineage_months(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
    """Months of a registered model's data lineage by role (``train``, ``validation``, ``test``); {} if unknown."""
    months: dict[str, list[str]] = {}
    for entry in metadata.get("data", []) or []:
        months.setdefault(str(entry["role"]), []).append(str(entry["month"]))
    return {role: sorted(ms) for role, ms in months.items()}


def fitted_months(metadata: Mapping[str, Any]) -> list[str]:
    """The months a model's parameters were fitted or selected on (train + validation)."""
    months = lineage_months(metadata)
    return sorted({*months.get("train", []), *months.get("validation", [])})


def month_lineage(role: str, month: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What a model records of one month it used: everything from that month's validation summary, i.e. the
    digest of the bytes the validation read (not of whatever the file holds now) and its row counts."""
    return {
        "role": role,
        "month": month,
        "file": Path(summary["source"]["path"]).name,
        "sha256": summary["source"]["sha256"],
        "bytes": summary["source"]["bytes"],
        "rows_in": summary["rows_in"],
        "rows_kept": summary["rows_kept"],
        "rows_rejected": summary["rows_rejected"],
    }


def model_metadata(
    fit: Mapping[str, Any], evaluation: Mapping[str, Any], lineage: list[dict[str, Any]], color: str, task_id: str
) -> dict[str, Any]:
    """The metadata of a model version: algorithm, features, data lineage, metrics, library versions."""
    return {
        "algorithm": {key: fit[key] for key in CANDIDATE_FACTS},
        "features": {"inputs": list(MODEL_INPUT_COLUMNS), "engineered": list(ENGINEERED_COLUMNS)},
        "target": "duration_min",
        "color": color,
        "data": lineage,
        "metrics": evaluation["metrics"],
        "feature_importance": evaluation["feature_importance"],
        "libraries": environment_versions(),
        "pipeline_task": task_id,
    }
