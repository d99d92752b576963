#!/usr/bin/env python
"""Run every benchmark of issue 6 and write ``benchmarks/results.json`` and ``docs/benchmarks.md``.

    python benchmarks/run.py                    # the real benchmark (about 50 minutes on 2 cores)
    python benchmarks/run.py --quick --out DIR  # tiny sizes, about half a minute (the smoke test uses it)
    python benchmarks/run.py --reps 5 --sizes 1000000,3000000 --train-budget 600 --skip-scale

What it measures (every process is a fresh interpreter; the machine is shared and noisy, so every
comparison is a ratio of two runs made next to each other, and the medians of the ratios are reported):

1. Orchestration overhead. Per repetition, in this order, each in fresh temporary folders:
   ``benchmarks/baseline_script.py OUT`` (the same work as one plain script, no luigi),
   ``python pipeline.py`` (1 worker) and ``python pipeline.py --workers 2``, each with
   ``LUIGI_CONFIG_PATH`` pointing at a file that sets ``[paths] work_dir`` and ``registry_dir`` to fresh
   folders (raw data: ``data/``). Ratios: pipeline / baseline for 1 and 2 workers. The three runs must give
   the same selected model and test RMSE (checked and reported).
2. Resume after a failure in the final stage (EvaluationReport + RegisteredModel). The stage's share of a
   full 1-worker run comes from luigi's ``running`` / ``done`` log lines, time-stamped on arrival. Then the
   outputs of those two tasks and the registry are deleted, which is exactly the state a failure of
   EvaluationReport leaves, and ``python pipeline.py`` is run again. Ratio: resume / that full run, against
   share + 0.05. Checked: only EvaluationReport, RegisteredModel and the wrapper ran.
3. Rerun when everything is complete: ``python pipeline.py`` vs ``python -c "import luigi, pandas, sklearn"``,
   interleaved.
4. Batch prediction: ``python -m luigi --module pipeline BatchPredictions --month 2021-03 --local-scheduler``
   (production model of a complete run, output deleted before each run) vs a bare ``model.predict`` on the
   same rows in a fresh process (``stage.py bare-predict``), interleaved; at scale, see ``scale.py``.
5. Scale (``scale.py``): generated months of 1M, 3M, 10M rows; validation, features, training, batch
   prediction, each in its own process: rows/s, peak RSS, growth exponents, peak RSS / in-memory size.
6. CPU contention (issue 12): ``python pipeline.py train`` (1 worker, fresh folders) idle, and the same run
   with one competing busy process per usable CPU minus one (pure-Python ``while True: pass``, started
   before and killed after), interleaved with the order alternating per repetition. The native-thread
   variables (``OMP_WAIT_POLICY``...) are removed from the runs' environment, so what is measured is
   ``pipeline.py``'s own setup (``tripduration/runtime/threads.py``). Ratio: busy / idle, target <= 2.0.

Targets (issue 6) and how each is judged are in the table of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import (  # noqa: E402
    COLOR,
    DATA,
    NATIVE_THREAD_VARIABLES,
    PYTHON,
    TEST_MONTH,
    ProcResult,
    busy_loops,
    competing_processes,
    load_average,
    machine_facts,
    median,
    ran_families,
    run_json_process,
    run_process,
    spread,
    task_timings,
    write_override_cfg,
)
from benchmarks.report import _fmt, evaluate_targets, render_markdown  # noqa: E402

BASELINE_SCRIPT = str(ROOT / "benchmarks" / "baseline_script.py")
PIPELINE = str(ROOT / "pipeline.py")
STAGE = str(ROOT / "benchmarks" / "stage.py")
BARE_IMPORT = [PYTHON, "-c", "import luigi, pandas, sklearn"]
MODEL_NAME = f"{COLOR}-trip-duration"
FINAL_STAGE = ("EvaluationReport", "RegisteredModel")
QUICK_CANDIDATES = ("baseline_linreg", "ridge_a1")
QUICK_SAMPLE_ROWS = 2000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one pipeline run
class Job:
    """A pipeline work directory, registry and override config (one per measured run)."""

    def __init__(self, folder: Path, raw_dir: Path | None, candidates: tuple[str, ...] | None) -> None:
        self.folder = folder
        self.work = folder / "work"
        self.registry = folder / "models"
        self.cfg = write_override_cfg(
            folder / "override.cfg",
            work_dir=self.work,
            registry_dir=self.registry,
            raw_dir=raw_dir,
            candidates=candidates,
        )

    @property
    def env(self) -> dict[str, str]:
        return {"LUIGI_CONFIG_PATH": str(self.cfg)}

    def metrics(self) -> dict[str, Any]:
        report = next(self.work.glob("EvaluationReport/*/report/metrics.json"))
        data = json.loads(report.read_text())
        return {
            "best": data["algorithm"],
            "test_rmse": data["metrics"]["test"]["rmse"],
            "baseline_test_rmse": data["metrics"]["baseline_test"]["rmse"],
        }

    def kept_file(self, month: str) -> Path:
        return next(self.work.glob(f"ValidatedTrips/{COLOR}_{month}-*/kept.parquet"))


def run_pipeline(job: Job, workers: int, log_path: Path) -> ProcResult:
    return run_process([PYTHON, PIPELINE, "--workers", str(workers)], env=job.env, log_path=log_path)


def family_seconds(timings: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in timings:
        out[t["family"]] = round(out.get(t["family"], 0.0) + t["seconds"], 3)
    return out


def final_stage_seconds(timings: list[dict[str, Any]]) -> float:
    first = min(t["start"] for t in timings if t["family"] == FINAL_STAGE[0])
    last = max(t["end"] for t in timings if t["family"] == FINAL_STAGE[1])
    return last - first


# --------------------------------------------------------------------------- benchmarks
def bench_full_runs(
    tmp: Path, reps: int, raw_dir: Path | None, candidates: tuple[str, ...] | None, logs: Path
) -> tuple[dict[str, Any], Job]:
    """Interleaved baseline / pipeline 1 worker / pipeline 2 workers, plus the resume after each 1-worker run."""
    runs: list[dict[str, Any]] = []
    keep: Job | None = None
    for rep in range(reps):
        folder = tmp / f"rep{rep}"
        log(f"rep {rep + 1}/{reps}: baseline script")
        base_out = folder / "baseline"
        base_json, base = run_json_process(
            [PYTHON, BASELINE_SCRIPT, str(base_out)],
            env=Job(folder / "baseline_cfg", raw_dir, candidates).env,
            log_path=logs / f"rep{rep}_baseline.log",
        )
        log(f"rep {rep + 1}/{reps}: baseline {base.seconds:.1f} s; pipeline, 1 worker")
        job1 = Job(folder / "pipeline_1w", raw_dir, candidates)
        p1 = run_pipeline(job1, 1, logs / f"rep{rep}_pipeline_1w.log")
        log(f"rep {rep + 1}/{reps}: pipeline 1w {p1.seconds:.1f} s; pipeline, 2 workers")
        job2 = Job(folder / "pipeline_2w", raw_dir, candidates)
        p2 = run_pipeline(job2, 2, logs / f"rep{rep}_pipeline_2w.log")
        log(f"rep {rep + 1}/{reps}: pipeline 2w {p2.seconds:.1f} s; resume after a final-stage failure")
        t1, t2 = task_timings(p1.lines), task_timings(p2.lines)
        # resume: the state a failure of EvaluationReport leaves (final-stage outputs and registry absent)
        for family in FINAL_STAGE:
            shutil.rmtree(job1.work / family, ignore_errors=True)
        shutil.rmtree(job1.registry, ignore_errors=True)
        resume = run_pipeline(job1, 1, logs / f"rep{rep}_resume.log")
        tr = task_timings(resume.lines)
        share = final_stage_seconds(t1) / p1.seconds
        m1, m2 = job1.metrics(), job2.metrics()
        runs.append(
            {
                "rep": rep,
                "baseline_seconds": base.seconds,
                "pipeline_1w_seconds": p1.seconds,
                "pipeline_2w_seconds": p2.seconds,
                "ratio_1w": p1.seconds / base.seconds,
                "ratio_2w": p2.seconds / base.seconds,
                "resume_seconds": resume.seconds,
                "final_stage_seconds": final_stage_seconds(t1),
                "final_stage_share": share,
                "resume_ratio": resume.seconds / p1.seconds,
                "resume_target": share + 0.05,
                "resume_ran": ran_families(tr),
                "baseline_steps": base_json.get("step_seconds", {}),
                "baseline_seconds_in_process": base_json.get("seconds_in_process"),
                "pipeline_1w_task_seconds": family_seconds(t1),
                "pipeline_1w_outside_tasks_seconds": p1.seconds - sum(t["seconds"] for t in t1),
                "pipeline_2w_task_seconds": family_seconds(t2),
                "results": {"baseline": {k: base_json[k] for k in m1}, "pipeline_1w": m1, "pipeline_2w": m2},
                "same_results": all(
                    m["best"] == base_json["best"] and abs(m["test_rmse"] - base_json["test_rmse"]) < 1e-9
                    for m in (m1, m2)
                ),
                "load_average_after": load_average(),
            }
        )
        log(
            f"rep {rep + 1}/{reps}: ratio 1w {runs[-1]['ratio_1w']:.3f}, 2w {runs[-1]['ratio_2w']:.3f}, "
            f"resume {runs[-1]['resume_ratio']:.3f} (share {share:.3f}); same results: {runs[-1]['same_results']}"
        )
        # keep the last complete 1-worker job for the rerun, batch-prediction and scale benchmarks
        shutil.rmtree(base_out, ignore_errors=True)
        shutil.rmtree(job2.folder, ignore_errors=True)
        if keep is not None:
            shutil.rmtree(keep.folder, ignore_errors=True)
        keep = job1
    assert keep is not None
    summary = {
        "runs": runs,
        "ratio_1w": spread(r["ratio_1w"] for r in runs),
        "ratio_2w": spread(r["ratio_2w"] for r in runs),
        "baseline_seconds": spread(r["baseline_seconds"] for r in runs),
        "pipeline_1w_seconds": spread(r["pipeline_1w_seconds"] for r in runs),
        "pipeline_2w_seconds": spread(r["pipeline_2w_seconds"] for r in runs),
        "same_results_every_rep": all(r["same_results"] for r in runs),
    }
    resume_summary = {
        "ratio": spread(r["resume_ratio"] for r in runs),
        "final_stage_share": spread(r["final_stage_share"] for r in runs),
        "target": spread(r["resume_target"] for r in runs),
        "margin": spread(r["resume_target"] - r["resume_ratio"] for r in runs),
        "resume_seconds": spread(r["resume_seconds"] for r in runs),
        "ran_only_final_stage_every_rep": all(
            r["resume_ran"] == sorted([*FINAL_STAGE, "TrainingPipeline"]) for r in runs
        ),
    }
    return {"full_runs": summary, "resume": resume_summary}, keep


def bench_rerun(job: Job, reps: int, logs: Path) -> dict[str, Any]:
    pairs: list[dict[str, Any]] = []
    for rep in range(reps):
        rerun = run_pipeline(job, 1, logs / f"rerun_{rep}.log")
        bare = run_process(BARE_IMPORT)
        pairs.append(
            {
                "rerun_seconds": rerun.seconds,
                "bare_import_seconds": bare.seconds,
                "ratio": rerun.seconds / bare.seconds,
                "ran": ran_families(task_timings(rerun.lines)),
            }
        )
    log(f"rerun: median ratio {median(p['ratio'] for p in pairs):.2f}")
    return {
        "pairs": pairs,
        "ratio": spread(p["ratio"] for p in pairs),
        "rerun_seconds": spread(p["rerun_seconds"] for p in pairs),
        "bare_import_seconds": spread(p["bare_import_seconds"] for p in pairs),
        "ran_nothing_every_rep": all(not p["ran"] for p in pairs),
    }


def bench_batch_small(job: Job, reps: int, logs: Path) -> dict[str, Any]:
    kept = job.kept_file(TEST_MONTH)
    cmd = [PYTHON, "-m", "luigi", "--module", "pipeline", "BatchPredictions", "--month", TEST_MONTH]
    cmd += ["--local-scheduler"]
    pairs: list[dict[str, Any]] = []
    for rep in range(reps):
        shutil.rmtree(job.work / "BatchPredictions", ignore_errors=True)
        task = run_process(cmd, env=job.env, log_path=logs / f"batch_task_{rep}.log")
        timings = [t for t in task_timings(task.lines) if t["family"] == "BatchPredictions"]
        if not timings:
            raise RuntimeError(f"BatchPredictions did not run:\n{task.text[-3000:]}")
        bare, bare_proc = run_json_process(
            [PYTHON, STAGE, "bare-predict", "--kept", str(kept), "--registry", str(job.registry), "--name", MODEL_NAME],
            log_path=logs / f"batch_bare_{rep}.log",
        )
        pairs.append(
            {
                "rows": bare["rows"],
                "task_process_seconds": task.seconds,
                "task_seconds": timings[0]["seconds"],
                "bare_predict_seconds": bare["first_predict_seconds"],
                "bare_process_seconds": bare_proc.seconds,
                "ratio_process_to_bare_predict": task.seconds / bare["first_predict_seconds"],
                "ratio_task_to_bare_predict": timings[0]["seconds"] / bare["first_predict_seconds"],
                "ratio_process_to_bare_process": task.seconds / bare_proc.seconds,
            }
        )
    rows = pairs[0]["rows"]
    log(f"batch prediction {rows} rows: median ratio {median(p['ratio_process_to_bare_predict'] for p in pairs):.2f}")
    out: dict[str, Any] = {"rows": rows, "pairs": pairs}
    for key in (
        "task_process_seconds",
        "task_seconds",
        "bare_predict_seconds",
        "bare_process_seconds",
        "ratio_process_to_bare_predict",
        "ratio_task_to_bare_predict",
        "ratio_process_to_bare_process",
    ):
        out[key] = spread(p[key] for p in pairs)
    out["rows_per_second_task_process"] = rows / out["task_process_seconds"]["median"]
    out["rows_per_second_bare_predict"] = rows / out["bare_predict_seconds"]["median"]
    return out


def bench_contention(
    tmp: Path, reps: int, raw_dir: Path | None, candidates: tuple[str, ...] | None, logs: Path
) -> dict[str, Any]:
    """The full 1-worker run idle and next to busy processes, side by side (order alternating per rep)."""
    busy = competing_processes()
    pairs: list[dict[str, Any]] = []
    for rep in range(reps):
        order = ("idle", "busy") if rep % 2 == 0 else ("busy", "idle")
        seconds: dict[str, float] = {}
        for condition in order:
            job = Job(tmp / f"contention{rep}_{condition}", raw_dir, candidates)
            log(f"contention rep {rep + 1}/{reps}: pipeline {condition} ({busy if condition == 'busy' else 0} busy)")
            with busy_loops(busy if condition == "busy" else 0):
                result = run_process(
                    [PYTHON, PIPELINE, "train", "--workers", "1"],
                    env=job.env,
                    unset=NATIVE_THREAD_VARIABLES,
                    log_path=logs / f"contention{rep}_{condition}.log",
                )
            seconds[condition] = result.seconds
            shutil.rmtree(job.folder, ignore_errors=True)
        pairs.append(
            {
                "rep": rep,
                "order": list(order),
                "idle_seconds": seconds["idle"],
                "busy_seconds": seconds["busy"],
                "ratio": seconds["busy"] / seconds["idle"],
                "load_average_after": load_average(),
            }
        )
        log(f"contention rep {rep + 1}/{reps}: idle {seconds['idle']:.1f} s, busy {seconds['busy']:.1f} s")
    log(f"contention: median ratio {median(p['ratio'] for p in pairs):.2f}")
    return {
        "busy_processes": busy,
        "pairs": pairs,
        "ratio": spread(p["ratio"] for p in pairs),
        "idle_seconds": spread(p["idle_seconds"] for p in pairs),
        "busy_seconds": spread(p["busy_seconds"] for p in pairs),
    }


def make_quick_raw(folder: Path) -> Path:
    """Seeded samples of the real months (raw schema), for --quick."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for i, month in enumerate(("2021-01", "2021-02", "2021-03")):
        table = pq.read_table(DATA / f"{COLOR}_tripdata_{month}.parquet")
        idx = np.sort(np.random.default_rng(i).choice(table.num_rows, size=QUICK_SAMPLE_ROWS, replace=False))
        pq.write_table(table.take(pa.array(idx)), folder / f"{COLOR}_tripdata_{month}.parquet")
    return folder


# --------------------------------------------------------------------------- targets
# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=None, help="repetitions of the full runs (default 3)")
    parser.add_argument("--rerun-reps", type=int, default=None, help="rerun / bare import pairs (default 5)")
    parser.add_argument("--batch-reps", type=int, default=None, help="batch task / bare predict pairs (default 5)")
    parser.add_argument("--sizes", default=None, help="scale sizes (default 1000000,3000000,10000000)")
    parser.add_argument("--train-budget", type=float, default=900.0, help="max extrapolated fit seconds at scale")
    parser.add_argument(
        "--size-budget", type=float, default=1500.0, help="max seconds per scale size (training skipped beyond)"
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--contention-reps", type=int, default=None, help="idle / busy run pairs (default 3)")
    parser.add_argument("--skip-contention", action="store_true")
    parser.add_argument("--note", action="append", default=[], help="a remark to print with the results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (about half a minute)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and benchmarks.md here instead")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, outputs)")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder")
    parser.add_argument("--render", type=Path, default=None, help="only rewrite the markdown from this results.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        md = args.out / "benchmarks.md" if args.out else ROOT / "docs" / "benchmarks.md"
        md.write_text(render_markdown(json.loads(args.render.read_text())))
        log(f"wrote {md}")
        return 0

    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    rerun_reps = args.rerun_reps or (1 if quick else 5)
    batch_reps = args.batch_reps or (1 if quick else 5)
    contention_reps = args.contention_reps or (1 if quick else 3)
    sizes = [int(s) for s in (args.sizes or ("2000,4000" if quick else "1000000,3000000,10000000")).split(",")]
    if args.out is None and quick:
        args.out = Path(tempfile.mkdtemp(prefix="bench-quick-out-"))
    json_path = args.out / "results.json" if args.out else ROOT / "benchmarks" / "results.json"
    md_path = args.out / "benchmarks.md" if args.out else ROOT / "docs" / "benchmarks.md"

    started = time.perf_counter()
    facts = machine_facts()
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=args.tmp))
    logs = tmp / "logs"
    log(f"working in {tmp}")
    succeeded = False

    def checkpoint(name: str, payload: Any) -> None:  # partial results survive a failure later on
        (tmp / f"partial_{name}.json").write_text(json.dumps(payload, indent=2, default=str))

    try:
        raw_dir = make_quick_raw(tmp / "raw") if quick else None
        candidates = QUICK_CANDIDATES if quick else None
        orchestration, job = bench_full_runs(tmp, reps, raw_dir, candidates, logs)
        checkpoint("orchestration", orchestration)
        rerun = bench_rerun(job, rerun_reps, logs)
        checkpoint("rerun", rerun)
        batch_small = bench_batch_small(job, batch_reps, logs)
        checkpoint("batch_small", batch_small)
        contention = None
        if not args.skip_contention:
            # --quick: the same tiny runs as the other stages (a smoke test of the harness, not a measurement)
            contention = bench_contention(tmp, contention_reps, raw_dir, candidates, logs)
            checkpoint("contention", contention)
        best = job.metrics()["best"]
        if args.skip_scale:
            scale: dict[str, Any] = {"sizes": [], "growth": {}}
        else:
            from benchmarks.scale import run_scale

            scale = run_scale(
                sizes,
                tmp / "scale",
                job.registry,
                MODEL_NAME,
                best,
                train_budget=args.train_budget,
                size_budget=args.size_budget,
                log_dir=logs,
                progress=log,
                fixed_prediction_reps=1 if quick else None,
            )
        scale.update(candidate=best, train_budget_seconds=args.train_budget, size_budget_seconds=args.size_budget)
        results: dict[str, Any] = {
            "meta": {
                "command": "benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "quick": quick,
                "reps": reps,
                "rerun_reps": rerun_reps,
                "batch_reps": batch_reps,
                "contention_reps": contention_reps,
                "sizes": sizes,
                "machine": facts,
                "load_average_at_end": load_average(),
                "git_commit_at_end": machine_facts()["git_commit"],
                "notes": args.note,
                "duration_minutes": (time.perf_counter() - started) / 60,
                "candidates": list(candidates) if candidates else "luigi.cfg [model_search]",
                "raw_rows_per_month": QUICK_SAMPLE_ROWS if quick else "full embedded months",
            },
            "orchestration": orchestration,
            "rerun": rerun,
            "batch_prediction": {
                "normal_size": batch_small,
                "at_scale": [
                    {"rows": e["stages"]["prediction"].get("rows"), **e["stages"]["prediction"]}
                    for e in scale["sizes"]
                    if e["stages"].get("prediction", {}).get("measured")
                ],
            },
            "scale": scale,
            "contention": contention,
        }
        results["targets"] = evaluate_targets(results)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(render_markdown(results))
        log(f"wrote {json_path} and {md_path}")
        for t in results["targets"]:
            met = "n/a" if t["met"] is None else "met" if t["met"] else "MISSED"
            log(f"{met:6} {t['what']}: {_fmt(t['value'])} (target {t['target']})")
        succeeded = True
    finally:
        if args.keep or not succeeded:
            log(f"kept {tmp} (logs, partial results)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
