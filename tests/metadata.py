"""Model metadata for tests that register models by hand: a :class:`ModelMetadata` with only what they set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tripduration.registry.metadata import ModelMetadata, MonthRecord


def month(role: str, month: str, sha256: str = "0" * 64, rows: int = 100) -> MonthRecord:
    return MonthRecord(role, month, f"green_tripdata_{month}.parquet", sha256, 1000, rows, rows, 0)


def metadata_for(
    metrics: Mapping[str, Mapping[str, float]],
    data: Iterable[MonthRecord | Mapping[str, Any]] = (),
    algorithm: str = "test",
    **extra: Any,
) -> ModelMetadata:
    """A version's metadata with these metrics and months (dicts with ``role``/``month`` are completed)."""
    records = tuple(r if isinstance(r, MonthRecord) else month(str(r["role"]), str(r["month"])) for r in data)
    return ModelMetadata(
        algorithm={"candidate": algorithm},
        features={"inputs": [], "engineered": []},
        target="duration_min",
        color="green",
        data=records,
        metrics={k: dict(v) for k, v in metrics.items()},
        feature_importance=dict(extra.pop("feature_importance", {})),
        libraries={},
        pipeline_task="tests",
        **extra,
    )
