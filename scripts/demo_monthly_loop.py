#!/usr/bin/env python
"""Offline demo of the monthly MLOps loop: drift -> challenger -> quality gate -> promotion, on real rows.

The embedded months are 2021-01..03, and a model trained on them can only be monitored on later months. This
script builds later months from the real ones in ``var/demo/raw`` (git-ignored), like the tests do:

- 2021-04: March's trips moved 31 days later (the same city: verdict ok);
- 2021-05, 2021-06, 2021-07: January, February and March moved ~4 months later with every duration x1.6
  (a slower city: the production model degrades, a challenger trained on 05, validated on 06 and tested on 07
  beats it and is promoted);

then runs ``pipeline.py train`` (v0001) and ``pipeline.py monthly-run`` for 2021-04, 2021-07 and 2021-07
again, and prints ``decisions.jsonl`` and ``pipeline.py models``. Samples of 20,000 trips per month and
three candidates keep it to a few minutes on 2 cores. Usage: ``make demo`` or
``.venv/bin/python scripts/demo_monthly_loop.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SLOWER = {"2021-05": ("2021-01", 120), "2021-06": ("2021-02", 120), "2021-07": ("2021-03", 122)}


def later_month(src: Path, dest: Path, days: int, factor: float, rows: int, seed: int) -> None:
    """``rows`` trips of ``src`` with pickups ``days`` later and durations x ``factor``, in the raw layout."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    picked = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=min(rows, table.num_rows), replace=False))
    frame = table.take(pa.array(picked)).to_pandas()
    pickup, dropoff = frame["lpep_pickup_datetime"], frame["lpep_dropoff_datetime"]
    frame["lpep_pickup_datetime"] = pickup + pd.Timedelta(days=days)
    frame["lpep_dropoff_datetime"] = frame["lpep_pickup_datetime"] + (dropoff - pickup) * factor
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), dest)


def build(home: Path, rows: int) -> Path:
    raw = home / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for i, month in enumerate(("2021-01", "2021-02", "2021-03")):
        later_month(DATA / f"green_tripdata_{month}.parquet", raw / f"green_tripdata_{month}.parquet", 0, 1.0, rows, i)
    later_month(DATA / "green_tripdata_2021-03.parquet", raw / "green_tripdata_2021-04.parquet", 31, 1.0, rows, 3)
    for i, (month, (source, days)) in enumerate(SLOWER.items()):
        src, dest = DATA / f"green_tripdata_{source}.parquet", raw / f"green_tripdata_{month}.parquet"
        later_month(src, dest, days, 1.6, rows, 4 + i)
    shutil.copy(DATA / "taxi_zone_lookup.csv", raw / "taxi_zone_lookup.csv")
    cfg = home / "demo.cfg"
    cfg.write_text(
        f"[paths]\nraw_dir = {raw}\nwork_dir = {home / 'work'}\nregistry_dir = {home / 'models'}\n"
        f"zone_lookup = {raw / 'taxi_zone_lookup.csv'}\n"
        '[model_search]\ncandidates = ["baseline_linreg", "ridge_a1", "hgb_lr10_l31"]\n'
        "[download]\noffline = true\n"
    )
    return cfg


def pipeline(cfg: Path, *args: str) -> int:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    done = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), *args], env=env, capture_output=True, text=True)
    print(f"$ pipeline.py {' '.join(args)}  -> exit {done.returncode}")
    if "===== result" in done.stderr:
        block = done.stderr[done.stderr.index("===== result") :].splitlines()
        print("\n".join(line for line in block if not line.startswith("  ")), flush=True)
    elif done.returncode:
        print(done.stderr[-2000:])
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="trips per month (default 20,000)")
    parser.add_argument("--home", type=Path, default=ROOT / "var" / "demo", help="folder of the demo (wiped)")
    args = parser.parse_args()
    shutil.rmtree(args.home, ignore_errors=True)
    cfg = build(args.home, args.rows)
    codes = [pipeline(cfg, "train")]
    for month in ("2021-04", "2021-07", "2021-07"):
        codes.append(pipeline(cfg, "monthly-run", "--month", month))
    print("\n$ cat decisions.jsonl")
    decisions = args.home / "models" / "green-trip-duration" / "decisions.jsonl"
    for line in decisions.read_text().splitlines():
        entry = json.loads(line)
        keep = ("month", "monitored_version", "verdict", "decision", "challenger_version", "promoted", "gate_rule")
        print(json.dumps({k: entry[k] for k in keep if k in entry}))
    print("\n$ pipeline.py models")
    listed = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "models"], env={**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    )
    return max(*codes, listed.returncode)


if __name__ == "__main__":
    sys.exit(main())
