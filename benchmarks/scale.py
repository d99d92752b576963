#!/usr/bin/env python
"""Scale run: validation, features, training and batch prediction on generated months of N rows.

    python benchmarks/scale.py --registry DIR [--sizes 1000000,3000000,10000000] [--candidate hgb_lr05_l127]
                               [--train-budget 900] [--work DIR] [--out scale.json]

For each size N: ``generate.py`` writes a 2021-03 month of N rows resampled from the real one (seeded, see
its docstring); then each stage runs in its own process (``stage.py``), so the peak RSS reported is that
stage's own: validation -> features -> batch prediction (with the production model of the registry given,
as BatchPredictions uses it, against a bare ``model.predict`` on the same rows, interleaved: 3 repetitions
up to 1.5M rows, 1 above) -> training (the candidate given, normally the one a normal run selected, with
its configured parameters, on the N-row modelling table).

Training runs last at each size, and is skipped when its time, extrapolated from the largest size trained
so far with the growth exponent measured between the last two sizes (at least 1, i.e. linear), exceeds
``--train-budget`` seconds, or when that plus the time the other stages took at this size exceeds
``--size-budget`` seconds (default 1500: 25 minutes per size); the skip and its reason are recorded.
A stage that runs longer than ``--stage-timeout`` is killed; a stage that is killed (also from outside) or
fails is recorded as not completed, with its exit code or signal.

Reported per stage and size: seconds, rows/s, peak RSS, RSS after imports, in-memory size of the frame read
and peak/frame; per stage: growth exponents ``log(t2/t1) / log(n2/n1)`` of time and peak RSS between
consecutive sizes and between the smallest and the largest (1 = linear).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import PYTHON, growth_exponent, run_process  # noqa: E402

STAGE = str(ROOT / "benchmarks" / "stage.py")
STAGES = ("validation", "features", "training", "prediction")
DEFAULT_SIZES = (1_000_000, 3_000_000, 10_000_000)


def prediction_reps(rows: int) -> int:
    return 3 if rows <= 1_500_000 else 1


def _stage(args: list[str], log: Path, timeout: float) -> dict[str, Any]:
    """Run one stage process; a stage that is killed or fails is recorded as not measured, with why."""
    import signal

    try:
        proc = run_process([PYTHON, STAGE, *args], log_path=log, timeout=timeout, check=False)
    except TimeoutError as exc:
        return {"measured": False, "reason": str(exc)}
    if proc.returncode != 0:
        code = proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        last = next((line for _, line in reversed(proc.lines) if line.strip()), "")
        return {
            "measured": False,
            "reason": f"did not complete: {how} after {proc.seconds:.0f} s (log: {log.name}; last line: {last[:200]})",
            "elapsed_seconds": proc.seconds,
        }
    for _, line in reversed(proc.lines):
        if line.startswith("{"):
            result = json.loads(line)
            result["measured"] = True
            result["process_seconds"] = proc.seconds
            return result
    return {"measured": False, "reason": f"printed no result (log: {log.name})"}


def predicted_training_seconds(trained: list[tuple[int, float]], rows: int) -> tuple[float | None, float]:
    """Extrapolate a training time to ``rows`` from earlier sizes (exponent of the last two, at least 1)."""
    if not trained:
        return None, 1.0
    exponent = 1.0
    if len(trained) >= 2:
        (n1, t1), (n2, t2) = trained[-2], trained[-1]
        exponent = max(1.0, growth_exponent(n1, t1, n2, t2) or 1.0)
    n_last, t_last = trained[-1]
    return t_last * (rows / n_last) ** exponent, exponent


def run_scale(
    sizes: list[int],
    work: Path,
    registry: Path,
    model_name: str,
    candidate: str,
    *,
    seed: int = 6,
    train_budget: float = 900.0,
    size_budget: float = 1500.0,
    stage_timeout: float = 3600.0,
    log_dir: Path | None = None,
    progress: Any = print,
    fixed_prediction_reps: int | None = None,
) -> dict[str, Any]:
    """Run every stage at every size; return the per-size results and the growth exponents."""
    from benchmarks.generate import generate

    log_dir = log_dir or work / "logs"
    results: list[dict[str, Any]] = []
    trained: list[tuple[int, float]] = []
    for rows in sorted(sizes):
        folder = work / f"rows_{rows}"
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / "green_tripdata_2021-03.parquet"
        start = time.perf_counter()
        generated = generate(raw, rows, month="2021-03", seed=seed)
        entry: dict[str, Any] = {
            "rows": rows,
            "generate_seconds": time.perf_counter() - start,
            "file_mb": raw.stat().st_size / 1024**2,
            "generator": {k: generated[k] for k in ("month", "seed", "source")},
            "stages": {},
        }
        stages = entry["stages"]
        progress(f"scale {rows:,} rows: validation")
        stages["validation"] = _stage(
            ["validation", "--raw", str(raw), "--month", "2021-03", "--out", str(folder)],
            log_dir / f"scale_{rows}_validation.log",
            stage_timeout,
        )
        progress(f"scale {rows:,} rows: features")
        stages["features"] = _stage(
            ["features", "--kept", str(folder / "kept.parquet"), "--out", str(folder)],
            log_dir / f"scale_{rows}_features.log",
            stage_timeout,
        )
        pred_reps = fixed_prediction_reps or prediction_reps(rows)
        progress(f"scale {rows:,} rows: batch prediction ({pred_reps} repetition(s))")
        stages["prediction"] = _stage(
            [
                "prediction",
                "--kept",
                str(folder / "kept.parquet"),
                "--registry",
                str(registry),
                "--name",
                model_name,
                "--out",
                str(folder),
                "--reps",
                str(pred_reps),
            ],
            log_dir / f"scale_{rows}_prediction.log",
            stage_timeout,
        )
        table_rows = stages["features"].get("rows") or rows
        estimate, exponent = predicted_training_seconds(trained, table_rows)
        spent = sum(s.get("process_seconds", 0.0) for s in stages.values())
        if estimate is not None and (estimate > train_budget or spent + estimate > size_budget):
            n_last, t_last = trained[-1]
            stages["training"] = {
                "measured": False,
                "candidate": candidate,
                "predicted_seconds": estimate,
                "reason": (
                    f"not measured: fit time extrapolated to {estimate:.0f} s ({t_last:.0f} s at {n_last:,} rows "
                    f"x ({table_rows:,}/{n_last:,})^{exponent:.2f}); with the {spent:.0f} s the other stages took "
                    f"at this size that is over the budget of {size_budget:.0f} s per size "
                    f"(or {train_budget:.0f} s for training)"
                ),
            }
            progress(f"scale {rows:,} rows: training skipped ({stages['training']['reason']})")
        else:
            progress(f"scale {rows:,} rows: training {candidate}")
            stages["training"] = _stage(
                ["training", "--table", str(folder / "table.parquet"), "--candidate", candidate, "--out", str(folder)],
                log_dir / f"scale_{rows}_training.log",
                max(stage_timeout, 3 * train_budget),
            )
            if stages["training"].get("measured"):
                trained.append((stages["training"]["rows"], stages["training"]["seconds"]))
        results.append(entry)
        shutil.rmtree(folder, ignore_errors=True)
    return {"sizes": results, "growth": growth(results)}


def growth(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth exponents of time and peak RSS per stage, between consecutive sizes and first -> last."""
    out: dict[str, Any] = {}
    for stage in STAGES:
        points = [
            (r["stages"][stage]["rows"], r["stages"][stage])
            for r in results
            if r["stages"].get(stage, {}).get("measured")
        ]
        pairs = list(itertools.pairwise(points))
        if len(points) > 2:
            pairs.append((points[0], points[-1]))
        out[stage] = [
            {
                "from_rows": a[0],
                "to_rows": b[0],
                "time_exponent": growth_exponent(a[0], a[1]["seconds"], b[0], b[1]["seconds"]),
                "peak_rss_exponent": growth_exponent(a[0], a[1]["peak_rss_mb"], b[0], b[1]["peak_rss_mb"]),
                "peak_above_imports_exponent": growth_exponent(
                    a[0], a[1]["peak_above_imports_mb"], b[0], b[1]["peak_above_imports_mb"]
                ),
            }
            for a, b in pairs
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, required=True, help="registry with a production model")
    parser.add_argument("--name", default="green-trip-duration")
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--candidate", default="hgb_lr05_l127")
    parser.add_argument("--train-budget", type=float, default=900.0)
    parser.add_argument("--size-budget", type=float, default=1500.0)
    parser.add_argument("--stage-timeout", type=float, default=3600.0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    result = run_scale(
        [int(s) for s in args.sizes.split(",")],
        work,
        args.registry,
        args.name,
        args.candidate,
        train_budget=args.train_budget,
        size_budget=args.size_budget,
        stage_timeout=args.stage_timeout,
    )
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
