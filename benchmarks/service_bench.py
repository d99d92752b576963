#!/usr/bin/env python
"""`pipeline.py serve` against a naive 20-line FastAPI service, same production model, same run (issue 22).

    python benchmarks/service_bench.py [--reps 3] [--seconds 6] [--batches 40] [--output FILE]

Both serve the production model of the registry `make run` makes (``[paths] registry_dir``; the script
exits 2 naming the fix when there is none). Each runs in its own process: ours is ``pipeline.py serve``;
the naive one is :func:`naive_app` below, the service a course student writes (``await request.json()`` ->
``pd.DataFrame`` -> ``model.predict``, no validation) under uvicorn's defaults, started as a student starts it
(``uvicorn.run``, no process setup: OpenMP threads and spinning as libgomp sets them).

The load comes from this process: an asyncio client on raw sockets (benchmarks/loadgen.py: pre-built
requests, a minimal HTTP/1.1 reader), so it costs little CPU on the 2 shared cores; its own CPU time per
phase is reported. Trips are
real ones of the test month (data/green_tripdata_2021-03.parquet). Per repetition, ours and naive alternate
(the order flips every repetition), each measured with:

- single trips: ``--clients`` keep-alive connections each sending one trip, waiting for the answer, sending
  the next, for ``--seconds``: requests/s, p50 and p99 latency;
- batches: ``--batches`` requests of 1,000 trips one after another on one connection: p50 and p99.

Then the same again next to one busy process (``while True: pass``). Before measuring, both services must
give the same predictions (to the 3 decimals ours rounds to) for 200 trips and the batch.

Prints a table and the targets (ratios of medians over the repetitions) and writes them with every run to
``--output`` (default benchmarks/service_results.json). Targets: single-trip throughput >= 5x the naive
service and our p99 <= 50 ms; batch p50 <= 0.5x the naive service; next to a busy process, our single-trip
throughput >= 0.5x our own idle figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request  # the naive service's (its endpoint's annotations are resolved here)

from benchmarks.common import PYTHON, ROOT, busy_loops, load_average, machine_facts
from benchmarks.loadgen import Connection, batches, post, single_trips

RESULTS = ROOT / "benchmarks" / "service_results.json"
BATCH_TRIPS = 1000
SERVICES = ("ours", "naive")
TARGETS = {  # key: (what, bound, higher is better)
    "single_rps_ratio": ("single-trip throughput, ours / naive (idle)", 5.0, True),
    "single_p99_ms": ("single-trip p99 of ours (idle), ms", 50.0, False),
    "batch_p50_ratio": ("1,000-trip batch p50, ours / naive (idle)", 0.5, False),
    "busy_rps_ratio": ("single-trip throughput next to a busy process / idle (ours)", 0.5, True),
}


# --------------------------------------------------------------------------- the naive service (child process)
def naive_app(model: Any) -> Any:
    """The 20-line service: no validation, the frame straight from the JSON, predict in the event loop."""
    import pandas as pd

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        payload = await request.json()
        trips = payload if isinstance(payload, list) else [payload]
        frame = pd.DataFrame(trips, columns=list(model.feature_names_in_))
        minutes = model.predict(frame)
        return {"predictions": [{"duration_min": float(m)} for m in minutes]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def run_naive(version: str, port: int) -> None:
    """As a student runs it: ``uvicorn.run`` with its defaults, no process setup (OpenMP as libgomp sets it)."""
    import uvicorn

    from tasks.predictions import model_registry

    model, _ = model_registry("green").load_model(version)
    uvicorn.run(naive_app(model), host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def server(cmd: list[str], port: int, what: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a service, wait until /health answers 200, stop it (SIGTERM, then SIGKILL) at the end."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{what} exited with {proc.returncode}: {err[-2000:]}")
            try:
                if get(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer /health within 180 s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the load generator
def measure(port: int, pid: int, trips: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    cpu = cpu_seconds(pid)
    single = asyncio.run(single_trips(port, trips["singles"], args.clients, args.seconds))
    single["server_cpu_ms_per_request"] = (cpu_seconds(pid) - cpu) / single["requests"] * 1000
    return single | asyncio.run(batches(port, trips["batch"], args.batches, args.seconds * 2))


# --------------------------------------------------------------------------- trips and the agreement check
def load_trips(count: int) -> list[dict[str, Any]]:
    import datetime as dt

    import pandas as pd

    from tripduration.data.rules import Rules
    from tripduration.data.validation import validate_trip_file
    from tripduration.training.features import model_table

    kept, _, _ = validate_trip_file(ROOT / "data" / "green_tripdata_2021-03.parquet", dt.date(2021, 3, 1), Rules())
    table = model_table(kept).sample(n=count, random_state=7)
    trips = []
    for row in table.itertuples(index=False):
        trip = {"pickup_datetime": row.pickup_datetime.isoformat(), "PULocationID": int(row.PULocationID),
                "DOLocationID": int(row.DOLocationID), "trip_distance": float(row.trip_distance)}  # fmt: skip
        for name in ("VendorID", "RatecodeID", "trip_type", "passenger_count"):
            if not pd.isna(getattr(row, name)):
                trip[name] = int(getattr(row, name))
        trips.append(trip)
    return trips


def minutes(port: int, trips: list[dict[str, Any]]) -> list[float]:
    async def ask() -> tuple[int, bytes]:
        connection = Connection(port)
        try:
            return await connection.send(post(json.dumps(trips).encode()))
        finally:
            connection.close()

    status, body = asyncio.run(ask())
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return [p["duration_min"] for p in json.loads(body)["predictions"]]


def check_agreement(ports: dict[str, int], trips: list[dict[str, Any]]) -> float:
    """The largest difference between the two services' predictions (ours are rounded to 3 decimals)."""
    ours, naive = minutes(ports["ours"], trips), minutes(ports["naive"], trips)
    worst = max(abs(a - b) for a, b in zip(ours, naive, strict=True))
    if worst > 0.0006:
        raise RuntimeError(f"the two services disagree by up to {worst:.4f} minutes: not the same model")
    return worst


# --------------------------------------------------------------------------- report
def summarize(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    medians = {
        condition: {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in by_kind.items()}
        for condition, by_kind in runs.items()
    }
    idle, busy = medians["idle"], medians["busy"]
    values = {
        "single_rps_ratio": idle["ours"]["rps"] / idle["naive"]["rps"],
        "single_p99_ms": idle["ours"]["p99_ms"],
        "batch_p50_ratio": idle["ours"]["batch_p50_ms"] / idle["naive"]["batch_p50_ms"],
        "busy_rps_ratio": busy["ours"]["rps"] / idle["ours"]["rps"],
    }
    targets = [
        {"key": key, "what": what, "value": round(values[key], 3), "target": f"{'>=' if higher else '<='} {bound:g}",
         "met": values[key] >= bound if higher else values[key] <= bound}
        for key, (what, bound, higher) in TARGETS.items()
    ]  # fmt: skip
    return {"medians": medians, "targets": targets}


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| service | condition | requests/s, single trips | p50 / p99 ms | 1,000-trip batch p50 / p99 ms | "
        "server CPU ms / request | load generator CPU |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for condition in ("idle", "busy"):
        for kind in SERVICES:
            m = summary["medians"][condition][kind]
            name = "`pipeline.py serve`" if kind == "ours" else "naive 20-line service"
            where = "idle" if condition == "idle" else "next to 1 busy process"
            lines.append(
                f"| {name} | {where} | {m['rps']:.0f} | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} | "
                f"{m['batch_p50_ms']:.1f} / {m['batch_p99_ms']:.1f} | {m['server_cpu_ms_per_request']:.2f} | "
                f"{m['generator_cpu']:.0%} of a core |"
            )
    lines += ["", "| target | value | bound | met |", "|---|---:|---:|---|"]
    for t in summary["targets"]:
        lines.append(f"| {t['what']} | {t['value']} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "_naive":
        run_naive(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per condition (idle, busy)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each single-trip measurement")
    parser.add_argument("--clients", type=int, default=8, help="keep-alive connections sending single trips")
    parser.add_argument("--batches", type=int, default=40, help="1,000-trip requests per measurement")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    production = production_version()
    if production is None:
        print("service_bench: the registry has no production model: run `make run` first", file=sys.stderr)
        return 2
    meta = machine_facts() | {"other_processes_at_start": other_cpu_users()}
    trips = load_trips(2000)
    load = {
        "singles": [post(json.dumps(t).encode()) for t in trips],
        "batch": post(json.dumps(trips[:BATCH_TRIPS]).encode()),
    }
    ports = {kind: free_port() for kind in SERVICES}
    commands = {
        "ours": [PYTHON, str(ROOT / "pipeline.py"), "serve", "--port", str(ports["ours"])],
        "naive": [PYTHON, __file__, "_naive", production, str(ports["naive"])],
    }
    with (
        server(commands["ours"], ports["ours"], "pipeline.py serve") as ours,
        server(commands["naive"], ports["naive"], "the naive service") as naive,
    ):
        info = json.loads(get(ports["ours"], "/model")[1])
        worst = max(check_agreement(ports, trips[:200]), check_agreement(ports, trips[:BATCH_TRIPS]))
        print(
            f"model {info['name']} {info['version']} ({info['algorithm']}): the services agree within {worst:.4f} min"
        )
        runs = run_conditions(ports, {"ours": ours.pid, "naive": naive.pid}, load, args)
    summary = summarize(runs)
    report = table(summary)
    print(f"\n{report}")
    meta["load_average_at_end"] = load_average()
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result: dict[str, Any] = {
        "meta": meta,
        "model": {k: info.get(k) for k in ("name", "version", "algorithm", "model_sha256")},
        "settings": settings | {"batch_trips": BATCH_TRIPS},
        "predictions_agree_within_min": worst,
        "runs": runs,
        **summary,
        "table": report,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.output}")
    return 0


def run_conditions(
    ports: dict[str, int], pids: dict[str, int], load: dict[str, Any], args: argparse.Namespace
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Idle, then next to one busy process: per repetition both services, the order flipping each time."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for condition in ("idle", "busy"):
        runs[condition] = {kind: [] for kind in SERVICES}
        with busy_loops(1 if condition == "busy" else 0):
            for rep in range(args.reps):
                for kind in SERVICES if rep % 2 == 0 else SERVICES[::-1]:
                    r = measure(ports[kind], pids[kind], load, args)
                    runs[condition][kind].append(r)
                    print(
                        f"{condition} rep {rep + 1} {kind}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} p99 "
                        f"{r['p99_ms']:.1f} ms; batch p50 {r['batch_p50_ms']:.1f} ms",
                        flush=True,
                    )
    return runs


def production_version() -> str | None:
    from tasks.predictions import model_registry

    pointer = model_registry("green").production()
    return None if pointer is None else str(pointer["version"])


def other_cpu_users(seconds: float = 1.0, top: int = 5) -> list[dict[str, Any]]:
    """The processes (other than this one) that used the most CPU over ``seconds``: what else was running."""

    def sample() -> dict[int, tuple[str, float]]:
        out = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name, fields = text[text.find("(") + 1 : text.rfind(")")], text.rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        return out

    before = sample()
    time.sleep(seconds)
    after = sample()
    used = sorted(
        ((cpu - before[pid][1]) / seconds, pid, name)
        for pid, (name, cpu) in after.items()
        if pid in before and pid != os.getpid()
    )
    return [{"pid": pid, "name": name, "cpu": round(share, 2)} for share, pid, name in used[::-1][:top] if share > 0.02]


if __name__ == "__main__":
    sys.exit(main())
