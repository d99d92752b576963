#!/usr/bin/env python
"""A HistGradientBoosting fit alone and next to busy processes, with and without the native-thread setup.

    python benchmarks/contention.py [--rows 130000] [--features 12] [--iterations 200] [--reps 3]
                                    [--busy N] [--timeout 600] [--conditions ...] [--json FILE]
    python benchmarks/contention.py fit --rows ... [--fix] [--threads N]   (one fit; prints one JSON line)

Each fit runs in a fresh interpreter, so OpenMP (libgomp, loaded by scikit-learn) reads the environment it
is given. "fix" = the process calls ``tripduration.runtime.threads.prepare_process()`` before importing
scikit-learn, as ``pipeline.py`` does, and starts no more OpenMP threads than ``free_cpus()``, as every task
does; "default" = it does neither, and the variables that function sets are
removed from its environment (libgomp's defaults: threads spin at barriers). "busy" = one pure-Python
``while True: pass`` process per usable CPU minus one runs during the fit (started before, killed after).
Conditions are interleaved per repetition; the report gives median seconds and the ratios busy / alone.

On a shared machine the "alone" fits are not alone: the figures are noisy and best compared as ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import (  # noqa: E402
    NATIVE_THREAD_VARIABLES,
    PYTHON,
    busy_loops,
    competing_processes,
    median,
    run_json_process,
)

#: (name, busy, fix, threads): "default" is what a process got before the fix
CONDITIONS: dict[str, tuple[bool, bool, int | None]] = {
    "alone_default": (False, False, None),
    "busy_default": (True, False, None),
    "alone_fix": (False, True, None),
    "busy_fix": (True, True, None),
    "busy_1_thread": (True, False, 1),
}


def fit_once(rows: int, features: int, iterations: int, fix: bool, threads: int | None) -> dict[str, Any]:
    """One fit in this process (the child side); imports scikit-learn only after the optional setup."""
    import os

    if fix:
        from tripduration.runtime.threads import free_cpus, prepare_process

        prepare_process()
        if threads is None:  # as tasks.base does at the start of every task
            threads = free_cpus()
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features))
    y = X @ rng.normal(size=features) + np.sin(X[:, 0] * 3) + rng.normal(scale=0.3, size=rows)
    model = HistGradientBoostingRegressor(max_iter=iterations, early_stopping=False, random_state=0)
    with threadpool_limits(limits=threads, user_api="openmp"):
        openmp = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "openmp_threads": openmp,
        "rows": rows,
        "features": features,
        "iterations": iterations,
    }


def timed_fit(args: argparse.Namespace, condition: str, busy: int) -> dict[str, Any]:
    """One fit of ``condition`` in a subprocess, with ``busy`` competing processes if the condition says so."""
    is_busy, fix, threads = CONDITIONS[condition]
    cmd = [PYTHON, __file__, "fit", "--rows", str(args.rows), "--features", str(args.features)]
    cmd += ["--iterations", str(args.iterations)] + (["--fix"] if fix else [])
    cmd += ["--threads", str(threads)] if threads else []
    try:
        with busy_loops(busy if is_busy else 0):
            result, _ = run_json_process(cmd, unset=NATIVE_THREAD_VARIABLES, timeout=args.timeout)
    except TimeoutError:
        return {"seconds": None, "timed_out_after": args.timeout}
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    busy = args.busy if args.busy is not None else competing_processes()
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in args.conditions}
    for rep in range(args.reps):
        for condition in args.conditions:
            result = timed_fit(args, condition, busy)
            runs[condition].append(result)
            shown = f"{result['seconds']:.1f} s" if result["seconds"] is not None else f"> {args.timeout:.0f} s"
            print(f"[contention] rep {rep + 1}/{args.reps} {condition}: {shown}", file=sys.stderr, flush=True)
    seconds = {c: median(r["seconds"] for r in runs[c]) for c in runs}
    ratios = {}
    for busy_name, alone_name in (("busy_default", "alone_default"), ("busy_fix", "alone_fix")):
        busy_s, alone_s = seconds.get(busy_name), seconds.get(alone_name)
        if busy_s and alone_s:
            ratios[f"{busy_name}/{alone_name}"] = busy_s / alone_s
    return {
        "busy_processes": busy,
        "rows": args.rows,
        "features": args.features,
        "iterations": args.iterations,
        "median_seconds": seconds,
        "ratios": ratios,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("measure", "fit"), default="measure")
    parser.add_argument("--rows", type=int, default=130_000)
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--fix", action="store_true", help="fit: call prepare_process() before importing sklearn")
    parser.add_argument("--threads", type=int, default=None, help="fit: OpenMP threads (threadpoolctl)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--busy", type=int, default=None, help="competing processes (default: usable CPUs - 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds after which a fit is killed")
    parser.add_argument("--conditions", nargs="+", choices=tuple(CONDITIONS), default=list(CONDITIONS))
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.mode == "fit":
        print(json.dumps(fit_once(args.rows, args.features, args.iterations, args.fix, args.threads)))
        return 0
    result = measure(args)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
