"""What a registered version records about itself: one typed class, :class:`ModelMetadata`, with one writer.

``metadata.json`` is written from :meth:`ModelMetadata.to_json` only (the registry adds its registration fields
through :meth:`ModelMetadata.registered`), and every reader goes through :meth:`ModelMetadata.from_json`, which
names the file and the key when one is missing or has the wrong type: a renamed key is an error at the read,
never a silent ``None`` in a report.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tripduration.errors import RegistryError
from tripduration.training.features import ENGINEERED_COLUMNS, MODEL_INPUT_COLUMNS
from tripduration.training.steps import CANDIDATE_FACTS

ROLES = ("train", "validation", "test")


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


@dataclass(frozen=True)
class MonthRecord:
    """One month a model used, from that month's validation summary (the digest of the bytes it read)."""

    role: str
    month: str
    file: str
    sha256: str
    bytes: int
    rows_in: int
    rows_kept: int
    rows_rejected: int


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a version records: algorithm, features, data lineage, metrics, libraries, registration, gate."""

    algorithm: dict[str, Any]
    features: dict[str, list[str]]
    target: str
    color: str
    data: tuple[MonthRecord, ...]
    metrics: dict[str, dict[str, float]]
    feature_importance: dict[str, float]
    libraries: dict[str, str]
    pipeline_task: str
    # set when the registry registers the version
    name: str | None = None
    version: str | None = None
    registered_at: str | None = None
    model_sha256: str | None = None
    registration_key: str | None = None
    # set by the quality gate
    gate: dict[str, Any] | None = field(default=None)

    # ----------------------------------------------------------------- the one writer, the one reader
    def to_json(self) -> dict[str, Any]:
        """The content of ``metadata.json``."""
        payload = dataclasses.asdict(self)
        payload["data"] = [dataclasses.asdict(m) for m in self.data]
        return payload

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], where: object = "metadata") -> ModelMetadata:
        """Read ``metadata.json``'s content; a missing key or a value of the wrong kind is a RegistryError
        naming ``where`` and the key."""
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            if spec.name not in payload:
                if required:
                    raise RegistryError(f"{where}: no key {spec.name!r}; it was written by another version of the code")
                continue
            values[spec.name] = payload[spec.name]
        try:
            values["data"] = tuple(MonthRecord(**dict(m)) for m in values["data"])
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"{where}: key 'data' is not a list of month records ({exc})") from None
        for key in ("algorithm", "metrics", "feature_importance", "libraries"):
            if not isinstance(values[key], dict):
                raise RegistryError(f"{where}: key {key!r} is {type(values[key]).__name__}, not an object")
        return cls(**values)

    def registered(self, **facts: Any) -> ModelMetadata:
        """A copy with the registry's facts (``name``, ``version``, ``registered_at``, ``model_sha256``,
        ``registration_key``) or the gate's decision (``gate``)."""
        return dataclasses.replace(self, **facts)

    # ----------------------------------------------------------------- what readers ask
    @property
    def candidate(self) -> str:
        return str(self.algorithm.get("candidate"))

    def months(self) -> dict[str, list[str]]:
        """Months by role (``train``, ``validation``, ``test``), each sorted."""
        by_role: dict[str, list[str]] = {}
        for record in self.data:
            by_role.setdefault(record.role, []).append(record.month)
        return {role: sorted(ms) for role, ms in by_role.items()}

    @property
    def fitted_months(self) -> list[str]:
        """The months the model's parameters were fitted or selected on (train + validation)."""
        months = self.months()
        return sorted({*months.get("train", []), *months.get("validation", [])})

    @property
    def test_month(self) -> str | None:
        return next(iter(self.months().get("test", [])), None)

    @property
    def test_metrics(self) -> dict[str, float]:
        return self.metrics.get("test", {})

    @property
    def baseline_test_metrics(self) -> dict[str, float]:
        return self.metrics.get("baseline_test", {})


def month_lineage(role: str, month: str, summary: Mapping[str, Any]) -> MonthRecord:
    """What a model records of one month it used: everything from that month's validation summary, i.e. the
    digest of the bytes the validation read (not of whatever the file holds now) and its row counts."""
    return MonthRecord(
        role=role,
        month=month,
        file=Path(summary["source"]["path"]).name,
        sha256=summary["source"]["sha256"],
        bytes=summary["source"]["bytes"],
        rows_in=summary["rows_in"],
        rows_kept=summary["rows_kept"],
        rows_rejected=summary["rows_rejected"],
    )


def model_metadata(
    fit: Mapping[str, Any], evaluation: Mapping[str, Any], lineage: list[MonthRecord], color: str, task_id: str
) -> ModelMetadata:
    """The metadata of a model version: algorithm, features, data lineage, metrics, library versions."""
    return ModelMetadata(
        algorithm={key: fit[key] for key in CANDIDATE_FACTS},
        features={"inputs": list(MODEL_INPUT_COLUMNS), "engineered": list(ENGINEERED_COLUMNS)},
        target="duration_min",
        color=color,
        data=tuple(lineage),
        metrics=dict(evaluation["metrics"]),
        feature_importance=dict(evaluation["feature_importance"]),
        libraries=environment_versions(),
        pipeline_task=task_id,
    )
