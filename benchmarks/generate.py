#!/usr/bin/env python
"""Build a large, realistic TLC month by resampling the real rows of that month with noise.

    python benchmarks/generate.py OUT.parquet --rows 10000000 [--month 2021-03] [--seed 6] [--source FILE]

Method (all draws from one seeded ``numpy.random.Generator``, so the same arguments give the same file):

- rows: drawn uniformly **with replacement** from the real file of the month (``data/green_tripdata_<month>
  .parquet`` unless ``--source`` is given), all raw columns kept as they are (IDs, codes, fares, nulls);
- pickup time: moved by ``k * 7 days + u``, ``k`` uniform in {-2, ..., 2} and ``u`` uniform in [-30, +30]
  minutes, so the hour-of-day and weekday pattern is kept; if that leaves the month, only ``u`` is applied,
  and if that also leaves it the time is kept. Rows whose real pickup is outside the month are not moved,
  so they are still rejected for the same reason (``pickup_outside_month``);
- dropoff time: moved by the same offset, so every trip keeps its real duration (also the invalid ones);
- ``trip_distance``: multiplied by lognormal noise ``exp(N(0, 0.05))`` (about +-5 %); nulls stay null.

The output has the raw TLC schema of the source file (same column names, types and order), written in row
groups of ``--chunk`` rows (default 1,000,000) so that generating 10M rows needs little memory. Rows per
rejection reason stay close to the real month's shares; absurd distances near the 100-mile limit can cross
it either way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]

PICKUP_NAMES = ("lpep_pickup_datetime", "tpep_pickup_datetime", "pickup_datetime")
DROPOFF_NAMES = ("lpep_dropoff_datetime", "tpep_dropoff_datetime", "dropoff_datetime")
WEEK_US = 7 * 24 * 3600 * 10**6
JITTER_US = 30 * 60 * 10**6
DISTANCE_SIGMA = 0.05


def _month_bounds_us(month: str) -> tuple[int, int]:
    start = dt.datetime.strptime(month, "%Y-%m")
    end = dt.datetime(start.year + (start.month == 12), start.month % 12 + 1, 1)
    epoch = dt.datetime(1970, 1, 1)
    return (start - epoch) // dt.timedelta(microseconds=1), (end - epoch) // dt.timedelta(microseconds=1)


def _find(names: list[str], wanted: tuple[str, ...]) -> str:
    lowered = {n.lower(): n for n in names}
    for name in wanted:
        if name.lower() in lowered:
            return lowered[name.lower()]
    raise ValueError(f"none of {wanted} in the source columns {names}")


def _timestamps_us(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """int64 microseconds since the epoch (nulls as 0) and the null mask."""
    as_us = column.cast(pa.timestamp("us"))
    nulls = as_us.is_null().to_numpy(zero_copy_only=False)
    values = as_us.cast(pa.int64()).fill_null(0).to_numpy()
    return values, nulls


def generate(
    dest: Path, rows: int, month: str = "2021-03", seed: int = 6, source: Path | None = None, chunk: int = 1_000_000
) -> dict[str, object]:
    """Write ``rows`` resampled rows of ``month`` to ``dest``; return a short description."""
    source = source or ROOT / "data" / f"green_tripdata_{month}.parquet"
    real = pq.read_table(source)
    names = real.schema.names
    pickup_col, dropoff_col = _find(names, PICKUP_NAMES), _find(names, DROPOFF_NAMES)
    pickup_us, pickup_null = _timestamps_us(real.column(pickup_col))
    dropoff_us, dropoff_null = _timestamps_us(real.column(dropoff_col))
    start, end = _month_bounds_us(month)
    inside = ~pickup_null & (pickup_us >= start) & (pickup_us < end)

    rng = np.random.default_rng(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    writer = pq.ParquetWriter(tmp, real.schema)
    try:
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            idx = rng.integers(0, real.num_rows, size=n)
            weeks = rng.integers(-2, 3, size=n) * WEEK_US
            jitter = rng.integers(-JITTER_US, JITTER_US + 1, size=n)
            noise = np.exp(rng.normal(0.0, DISTANCE_SIGMA, size=n))

            base = pickup_us[idx]
            offset = weeks + jitter
            ok_full = (base + offset >= start) & (base + offset < end)
            ok_jitter = (base + jitter >= start) & (base + jitter < end)
            offset = np.where(ok_full, offset, np.where(ok_jitter, jitter, 0))
            offset = np.where(inside[idx], offset, 0)

            part = real.take(pa.array(idx))
            for col, values, nulls in (
                (pickup_col, pickup_us, pickup_null),
                (dropoff_col, dropoff_us, dropoff_null),
            ):
                moved = pa.array(values[idx] + offset, type=pa.int64(), mask=nulls[idx]).cast(pa.timestamp("us"))
                i = part.schema.get_field_index(col)
                part = part.set_column(i, part.schema.field(i), moved.cast(part.schema.field(i).type))
            i = part.schema.get_field_index(_find(names, ("trip_distance",)))
            distance = part.column(i).combine_chunks()
            dist_values = distance.cast(pa.float64()).to_numpy(zero_copy_only=False) * noise
            noisy = pa.array(dist_values, type=pa.float64(), mask=distance.is_null().to_numpy(zero_copy_only=False))
            part = part.set_column(i, part.schema.field(i), noisy.cast(part.schema.field(i).type))
            writer.write_table(part, row_group_size=chunk)
            done += n
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    tmp.replace(dest)
    return {"path": str(dest), "rows": rows, "month": month, "seed": seed, "source": str(source)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--month", default="2021-03")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(generate(args.dest, args.rows, args.month, args.seed, args.source, args.chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
