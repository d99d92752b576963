"""Small, hand-built data shared by the unit tests of ``tripduration`` (no luigi, no real months)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from threadpoolctl import threadpool_limits

from tripduration.data.schema import CANONICAL_DTYPES
from tripduration.training.features import MODEL_INPUT_COLUMNS, TARGET

#: zones of the synthetic frame and a base distance (miles) per pickup zone
_ZONES = np.array([7, 41, 74, 75, 82, 95, 166, 244])
_ZONE_MILES = {7: 1.2, 41: 2.0, 74: 1.5, 75: 2.5, 82: 3.0, 95: 4.0, 166: 1.8, 244: 5.0}


def synthetic_model_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A modelling table (model inputs + target) shaped like a validated green-taxi month."""
    rng = np.random.default_rng(seed)
    pu = rng.choice(_ZONES, size=n)
    do = rng.choice(_ZONES, size=n)
    base = np.array([_ZONE_MILES[p] for p in pu]) + np.array([_ZONE_MILES[d] for d in do]) / 2
    distance = np.round(np.abs(base + rng.normal(0, 0.5, n)), 2)
    minutes = rng.integers(0, 31 * 24 * 60, size=n)
    pickup = (pd.Timestamp("2021-01-01") + pd.to_timedelta(minutes, unit="min")).astype("datetime64[us]")
    rush = np.isin(pickup.hour, [8, 9, 17, 18]).astype(float)
    duration = np.clip(3.0 + 3.2 * distance + 4.0 * rush + rng.normal(0, 1.5, n), 1.0, 59.0)
    ratecode = pd.array(rng.choice([1, 1, 1, 5], size=n), dtype="Int32")
    ratecode[rng.random(n) < 0.1] = pd.NA
    passengers = pd.array(rng.choice([1, 1, 2, 3], size=n), dtype="Int32")
    passengers[rng.random(n) < 0.1] = pd.NA
    table = pd.DataFrame(
        {
            "pickup_datetime": np.asarray(pickup),
            "PULocationID": pu.astype("int32"),
            "DOLocationID": do.astype("int32"),
            "trip_distance": distance,
            "VendorID": pd.array(rng.choice([1, 2], size=n), dtype="Int32"),
            "RatecodeID": ratecode,
            "trip_type": pd.array(rng.choice([1, 1, 2], size=n), dtype="Int32"),
            "passenger_count": passengers,
            TARGET: duration,
        }
    )
    assert tuple(table.columns[:-1]) == MODEL_INPUT_COLUMNS
    return table


@pytest.fixture(scope="session", autouse=True)
def _single_threaded_blas_and_openmp() -> Iterator[None]:
    """Tiny fits are fastest on one thread, and OpenMP busy-waiting makes them crawl on a loaded machine."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def _model_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_model_table(400, seed=0), synthetic_model_table(150, seed=1)


@pytest.fixture
def train_table(_model_tables: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """400 synthetic training rows (a fresh copy per test)."""
    return _model_tables[0].copy()


@pytest.fixture
def test_table(_model_tables: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    """150 synthetic rows of another 'month' (a fresh copy per test)."""
    return _model_tables[1].copy()


@pytest.fixture(scope="session")
def fitted_candidates(_model_tables: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Any]:
    """Every candidate Pipeline fitted once on the 400 synthetic rows (do not refit or mutate them)."""
    from tripduration.training.candidates import CANDIDATES, build_pipeline
    from tripduration.training.features import split_xy

    X, y = split_xy(_model_tables[0])
    return {name: build_pipeline(spec).fit(X, y) for name, spec in CANDIDATES.items()}


def canonical_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Canonical trips (all of CANONICAL_DTYPES) from partial row dicts; absent values are null."""
    data: dict[str, Any] = {}
    for col, dtype in CANONICAL_DTYPES.items():
        values = [row.get(col) for row in rows]
        if dtype.startswith("datetime"):
            data[col] = pd.Series(pd.to_datetime(values), dtype=dtype)
        elif dtype == "float64":
            data[col] = pd.Series([np.nan if v is None else v for v in values], dtype="float64")
        else:
            data[col] = pd.Series(pd.array([pd.NA if v is None else v for v in values], dtype=dtype))
    return pd.DataFrame(data)


@pytest.fixture
def make_trips() -> Callable[[list[dict[str, Any]]], pd.DataFrame]:
    return canonical_frame


@pytest.fixture
def write_parquet(tmp_path: Path) -> Callable[..., Path]:
    """``write_parquet(table_or_columns, name, schema=None)`` writes a parquet file under tmp_path."""

    def write(data: pa.Table | dict[str, Any], name: str = "trips.parquet", schema: pa.Schema | None = None) -> Path:
        table = data if isinstance(data, pa.Table) else pa.table(data, schema=schema)
        path = tmp_path / name
        pq.write_table(table, path)
        return path

    return write
