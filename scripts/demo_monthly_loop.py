#!/usr/bin/env python
"""Offline demo of the monthly loop left to cron: late data, a deferred retrain and its resume, on real rows.

The embedded months are 2021-01..03, and a model trained on them can only be monitored on later months. This
script builds later months from the real ones in ``var/demo`` (git-ignored), like the tests do:

- 2021-04, 2021-05, 2021-06: March, January and February moved to those months (the same city: verdict ok);
- 2021-07: March moved to July with every duration x1.6 (a slower city: the production model degrades);

and makes them *arrive* late, the way TLC publishes: each file appears in the raw folder on a chosen day, June
after July. Then it runs the one crontab line, ``tripduration daily``, on a few days (``--now``), as cron
would: April waits, then is monitored; July arrives first and is degraded, but its retrain needs June (its
validation month), so the retrain is deferred; June arrives, and the next day's run monitors June and resumes
July's retrain and the quality gate. It prints what each run printed, the registry's event log and
``tripduration models``, and the Prometheus text file's main lines. Samples of 20,000 trips per month and three
candidates keep it to a few minutes on 2 cores. Usage: ``make demo`` or
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
#: month -> (real month it is made of, duration factor, the day its file appears)
MONTHS = {
    "2021-04": ("2021-03", 1.0, "2021-05-18"),
    "2021-05": ("2021-01", 1.0, "2021-06-15"),
    "2021-06": ("2021-02", 1.0, "2021-08-24"),  # late: after July
    "2021-07": ("2021-03", 1.6, "2021-08-12"),
}
DAYS = ("2021-05-10", "2021-05-19", "2021-06-16", "2021-08-13", "2021-08-25", "2021-08-25")


def make_month(src: Path, dest: Path, month: str, factor: float, rows: int, seed: int) -> None:
    """``rows`` trips of ``src`` with pickups moved to ``month`` (same day and time) and durations x ``factor``."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    picked = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=min(rows, table.num_rows), replace=False))
    frame = table.take(pa.array(picked)).to_pandas()
    pickup, dropoff = frame["lpep_pickup_datetime"], frame["lpep_dropoff_datetime"]
    start = pd.Timestamp(f"{month}-01")
    offsets = (start.year - pickup.dt.year) * 12 + (start.month - pickup.dt.month)
    moved = pd.Series([p + pd.DateOffset(months=int(o)) for p, o in zip(pickup, offsets, strict=True)])
    frame["lpep_pickup_datetime"] = moved.astype(pickup.dtype).to_numpy()
    frame["lpep_dropoff_datetime"] = frame["lpep_pickup_datetime"] + (dropoff - pickup) * factor
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), dest)


def build(home: Path, rows: int) -> Path:
    raw, arrivals = home / "raw", home / "arrivals"
    raw.mkdir(parents=True, exist_ok=True)
    arrivals.mkdir(parents=True, exist_ok=True)
    for i, month in enumerate(("2021-01", "2021-02", "2021-03")):
        name = f"green_tripdata_{month}.parquet"
        make_month(DATA / name, raw / name, month, 1.0, rows, i)
    for i, (month, (source, factor, _)) in enumerate(MONTHS.items()):
        name = f"green_tripdata_{month}.parquet"
        make_month(DATA / f"green_tripdata_{source}.parquet", arrivals / name, month, factor, rows, 3 + i)
    shutil.copy(DATA / "taxi_zone_lookup.csv", raw / "taxi_zone_lookup.csv")
    cfg = home / "demo.cfg"
    cfg.write_text(
        f"[paths]\nraw_dir = {raw}\nwork_dir = {home / 'work'}\nregistry_dir = {home / 'models'}\n"
        f"zone_lookup = {raw / 'taxi_zone_lookup.csv'}\n"
        '[model_search]\ncandidates = ["baseline_linreg", "ridge_a1", "hgb_lr10_l31"]\n'
        "[download]\noffline = true\n"
        f"[metrics]\ntextfile = {home / 'metrics' / 'tripduration.prom'}\n"
    )
    return cfg


def arrive(home: Path, day: str) -> list[str]:
    """The files whose day has come appear in the raw folder; returns the months that arrived now."""
    arrived = []
    for month, (_, _, when) in MONTHS.items():
        name = f"green_tripdata_{month}.parquet"
        if when <= day and not (home / "raw" / name).exists():
            shutil.copy(home / "arrivals" / name, home / "raw" / name)
            arrived.append(month)
    return arrived


def tripduration(cfg: Path, *args: str, block: bool = False, now: str | None = None) -> int:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    if now:  # the clock the records and events carry (tripduration/runtime/clock.py), as `daily --now` sets it
        env["TRIPDURATION_NOW"] = now
    done = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), *args], env=env, capture_output=True, text=True)
    print(f"$ tripduration {' '.join(args)}   -> exit {done.returncode}")
    if done.stdout.strip():
        print("\n".join(f"  {line}" for line in done.stdout.strip().splitlines()))
    if block and "===== result" in done.stderr:
        lines = done.stderr[done.stderr.index("===== result") :].splitlines()
        print("\n".join(f"  {line}" for line in lines if not line.startswith("  ")))
    elif done.returncode not in (0, 20):
        print(done.stderr[-2000:])
    return done.returncode


def show_events(home: Path) -> None:
    print("\n$ the registry's event log (models/green-trip-duration/events.jsonl, selected keys)")
    for line in (home / "models" / "green-trip-duration" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        keep = ("seq", "at", "event", "month", "production_before", "production_after", "verdict", "missing_months")
        keep += ("waited_for", "challenger", "version", "reason")
        print("  " + json.dumps({k: event[k] for k in keep if k in event and event[k] not in (None, "", [])}))


def show_metrics(home: Path) -> None:
    print("\n$ grep -v '^#' var/demo/metrics/tripduration.prom  (selected lines)")
    wanted = ("exit_code", "production_version", "last_monitored", "awaited", "deferred", "verdict", "lateness")
    for line in (home / "metrics" / "tripduration.prom").read_text().splitlines():
        if not line.startswith("#") and any(w in line for w in wanted):
            print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="trips per month (default 20,000)")
    parser.add_argument("--home", type=Path, default=ROOT / "var" / "demo", help="folder of the demo (wiped)")
    args = parser.parse_args()
    shutil.rmtree(args.home, ignore_errors=True)
    cfg = build(args.home, args.rows)
    codes = [tripduration(cfg, "train", block=True, now="2021-04-20T08:00")]
    for day in DAYS:
        arrived = arrive(args.home, day)
        print(f"\n# {day}: {'files appeared: ' + ', '.join(arrived) if arrived else 'no new file'}")
        codes.append(tripduration(cfg, "daily", "--now", f"{day}T08:00"))
    show_events(args.home)
    print()
    codes.append(tripduration(cfg, "models"))
    show_metrics(args.home)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
