"""The benchmark's report: which targets are met (:func:`evaluate_targets`) and ``docs/benchmarks.md``
(:func:`render_markdown`), both computed from ``benchmarks/results.json`` alone, so a report can be rendered
again without measuring (``benchmarks/run.py --render results.json``). The prose around the tables lives in
``benchmarks/report_template.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Any

from benchmarks.common import median

#: busy / idle full-run ratio next to one busy process per usable CPU minus one (issue 12)
CONTENTION_TARGET = 2.0
#: a growth exponent (log time or memory ratio / log rows ratio) at most this is "close to linear"
LINEAR_EXPONENT_LIMIT = 1.2


Target = dict[str, Any]


def _target(key: str, what: str, value: Any, target: str, met: bool | None, note: str = "") -> Target:
    return {"id": key, "what": what, "value": value, "target": target, "met": met, "note": note}


def _at(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        results = results[key]
    return results


#: the fixed-threshold targets: (id, what, where the median is in results.json, target as written, test)
RATIO_TARGETS: tuple[tuple[str, str, tuple[str, ...], str, Callable[[float], bool]], ...] = (
    (
        "pipeline_1w",
        "full pipeline / baseline, 1 worker",
        ("orchestration", "full_runs", "ratio_1w", "median"),
        "<= 1.05",
        lambda v: v <= 1.05,
    ),
    (
        "pipeline_2w",
        "full pipeline / baseline, --workers 2",
        ("orchestration", "full_runs", "ratio_2w", "median"),
        "<= 0.90",
        lambda v: v <= 0.90,
    ),
    (
        "rerun",
        "rerun, all complete / bare `import luigi, pandas, sklearn`",
        ("rerun", "ratio", "median"),
        "<= 2",
        lambda v: v <= 2,
    ),
)


def _ratio_targets(results: dict[str, Any]) -> list[Target]:
    targets = []
    for key, what, path, written, test in RATIO_TARGETS:
        value = _at(results, path)
        targets.append(_target(key, what, value, written, value is not None and test(value)))
    return targets


def _contention_target(results: dict[str, Any]) -> list[Target]:
    contention = results.get("contention")  # absent from results written before issue 12
    if not contention:
        return []
    ratio = contention["ratio"]["median"]
    idle, busy = contention["idle_seconds"]["median"], contention["busy_seconds"]["median"]
    what = f"full run next to {contention['busy_processes']} busy process(es) / the same run idle"
    note = f"idle {idle:.1f} s, busy {busy:.1f} s (medians)"
    return [_target("contention", what, ratio, f"<= {CONTENTION_TARGET}", ratio <= CONTENTION_TARGET, note)]


def _resume_target(results: dict[str, Any]) -> list[Target]:
    res = results["orchestration"]["resume"]
    ratio, limit, margin = res["ratio"]["median"], res["target"]["median"], res["margin"]["median"]
    note = f"share {res['final_stage_share']['median']:.3f}; median margin per rep {margin:+.3f}"
    what = "resume after a final-stage failure / full run"
    return [_target("resume", what, ratio, f"<= final-stage share + 0.05 = {limit:.3f}", margin >= 0, note)]


def _batch_targets(results: dict[str, Any]) -> list[Target]:
    small = results["batch_prediction"]["normal_size"]
    ratio = small["ratio_task_to_bare_predict"]["median"]
    note = (
        "whole `luigi` process / bare process (both: start-up, imports, load, read, predict): "
        f"{small['ratio_process_to_bare_process']['median']:.2f}; whole process / bare predict alone: "
        f"{small['ratio_process_to_bare_predict']['median']:.2f} (start-up is the rerun benchmark's)"
    )
    what = f"BatchPredictions task (running -> done) / bare model.predict, {small['rows']:,} rows (2021-03)"
    targets = [_target("batch_normal", what, ratio, "<= 1.2", ratio <= 1.2, note)]
    for entry in results["scale"]["sizes"]:
        pred = entry["stages"].get("prediction", {})
        if pred.get("measured"):
            ratio = median(pred["ratio_task_to_bare_all"])
            what = f"BatchPredictions code path / bare model.predict, {pred['rows']:,} rows"
            note = f"batch_predictions() alone / bare: {median(pred['ratio_batch_predictions_to_bare_all']):.3f}"
            met = ratio is not None and ratio <= 1.2
            targets.append(_target(f"batch_{entry['rows']}", what, ratio, "<= 1.2", met, note))
    return targets


def _growth_targets(results: dict[str, Any]) -> list[Target]:
    targets = []
    for stage, pairs in results["scale"]["growth"].items():
        if not pairs:
            continue
        overall = pairs[-1]
        span = f"{overall['from_rows']:,} -> {overall['to_rows']:,} rows"
        for kind, key in (("time", "time_exponent"), ("peak RSS", "peak_rss_exponent")):
            value = overall[key]
            steps = ", ".join(f"{p[key]:.2f}" for p in pairs[:-1] if p[key] is not None)
            targets.append(
                _target(
                    f"growth_{stage}_{key}",
                    f"{stage}: growth exponent of {kind}, {span}",
                    value,
                    f"close to linear (<= {LINEAR_EXPONENT_LIMIT})",
                    value is not None and value <= LINEAR_EXPONENT_LIMIT,
                    f"consecutive: {steps}" if len(pairs) > 1 else "",
                )
            )
    return targets


def _memory_targets(results: dict[str, Any]) -> list[Target]:
    sizes = results["scale"]["sizes"]
    if not sizes:
        return []
    largest = max(sizes, key=lambda e: e["rows"])
    targets = []
    for stage, data in largest["stages"].items():
        if not data.get("measured"):
            continue
        value = data["peak_to_frame"]
        note = (
            f"peak {data['peak_rss_mb']:.0f} MB, frame {data['frame_mb']:.0f} MB; without the "
            f"{data['rss_after_imports_mb']:.0f} MB of imports: {data['peak_above_imports_to_frame']:.2f}"
        )
        what = f"{stage}: peak RSS / in-memory size of the frame read, {data['rows']:,} rows"
        targets.append(_target(f"memory_{stage}", what, value, "<= 4", value <= 4, note))
    missing = [s for s, d in largest["stages"].items() if not d.get("measured")]
    failed = [s for s in missing if "predicted_seconds" not in largest["stages"][s]]  # not skipped by budget
    value = "all" if not missing else f"not completed: {', '.join(failed)}" if failed else "all measured ones"
    note = "; ".join(f"{s}: {largest['stages'][s].get('reason', '')}" for s in missing)
    met = False if failed else (None if missing else True)
    what = f"every stage completes at {largest['rows']:,} rows"
    targets.append(_target("largest_completes", what, value, "completes", met, note))
    return targets


#: every target of docs/benchmarks.md, in the order of its table
TARGET_GROUPS: tuple[Callable[[dict[str, Any]], list[Target]], ...] = (
    _ratio_targets,
    _contention_target,
    _resume_target,
    _batch_targets,
    _growth_targets,
    _memory_targets,
)


def evaluate_targets(results: dict[str, Any]) -> list[Target]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    return [target for group in TARGET_GROUPS for target in group(results)]


# --------------------------------------------------------------------------- markdown
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _range(s: dict[str, Any], digits: int = 3) -> str:
    if not s or s.get("median") is None:
        return "–"
    return f"{_fmt(s['min'], digits)} – {_fmt(s['max'], digits)} (n={s['n']})"


def _table(header: str, align: str, rows: list[str]) -> str:
    return "\n".join([header, align, *rows])


def _targets_table(results: dict[str, Any]) -> str:
    rows = []
    for t in results["targets"]:
        met = "not measured" if t["met"] is None else ("**met**" if t["met"] else "**missed**")
        rows.append(f"| {t['what']} | {_fmt(t['value'])} | {t['target']} | {met} | {t['note']} |")
    return _table("| benchmark | measured (median) | target | met | note |", "|---|---:|---|:---:|---|", rows)


def _machine_table(results: dict[str, Any]) -> str:
    meta = results["meta"]
    m = meta["machine"]
    changes = " (uncommitted changes at start)" if m["git_tracked_changes"] else ""
    rows = [
        f"| CPU | {m['cpu_model']} |",
        f"| cores (logical / usable) | {m['logical_cpus']} / {m['usable_cpus']} |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
        "| libraries | " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()) + " |",
        f"| commit at start / end | {m['git_commit']} / {meta['git_commit_at_end']}{changes} |",
        f"| load average at start / end | {m['load_average_at_start']} / {meta['load_average_at_end']} |",
    ]
    return _table("| fact | value |", "|---|---|", rows)


def _orchestration_table(results: dict[str, Any]) -> str:
    full = results["orchestration"]["full_runs"]
    rows = [
        f"| {r['rep'] + 1} | {_fmt(r['baseline_seconds'], 1)} | {_fmt(r['pipeline_1w_seconds'], 1)} | "
        f"{_fmt(r['pipeline_2w_seconds'], 1)} | {_fmt(r['ratio_1w'])} | {_fmt(r['ratio_2w'])} | "
        f"{_fmt(r['same_results'])} | {r['load_average_after']} |"
        for r in full["runs"]
    ]
    rows.append(
        f"| median | {_fmt(full['baseline_seconds']['median'], 1)} | {_fmt(full['pipeline_1w_seconds']['median'], 1)}"
        f" | {_fmt(full['pipeline_2w_seconds']['median'], 1)} | {_fmt(full['ratio_1w']['median'])} | "
        f"{_fmt(full['ratio_2w']['median'])} | | |"
    )
    header = (
        "| rep | baseline s | pipeline 1w s | 2w s | 1w / base | 2w / base | same model and test RMSE | load after |"
    )
    return _table(header, "|---:|---:|---:|---:|---:|---:|:---:|---|", rows)


#: the rows of the "where the time goes" table: task families (``+`` adds them up)
STEP_FAMILIES = (
    "ValidatedTrips+ModelInputTable",
    "CandidateScore",
    "ModelSelection",
    "FinalModel",
    "EvaluationReport",
    "RegisteredModel",
)


def _steps_table(results: dict[str, Any]) -> str:
    runs = results["orchestration"]["full_runs"]["runs"]

    def step_sum(steps: dict[str, float], family: str) -> float:
        return sum(v for k, v in steps.items() if k.split("[")[0] == family)

    def fam(tasks: dict[str, float], family: str) -> float:
        return sum(tasks.get(f, 0.0) for f in family.split("+"))

    rows = []
    for family in STEP_FAMILIES:
        cells = [
            f"{step_sum(r['baseline_steps'], family):.1f} / {fam(r['pipeline_1w_task_seconds'], family):.1f} / "
            f"{fam(r['pipeline_2w_task_seconds'], family):.1f}"
            for r in runs
        ]
        rows.append(f"| {family} | " + " | ".join(cells) + " |")
    cells = [
        f"{r['baseline_seconds'] - (r['baseline_seconds_in_process'] or 0):.1f} / "
        f"{r['pipeline_1w_outside_tasks_seconds']:.1f} / –"
        for r in runs
    ]
    rows.append("| outside the steps (start-up, imports, scheduling) | " + " | ".join(cells) + " |")
    for key in sorted({k for r in runs for k in r["baseline_steps"] if k.startswith("CandidateScore[")}):
        cells = [f"{r['baseline_steps'].get(key, 0):.1f}" for r in runs]
        rows.append(f"| &nbsp;&nbsp;{key} (baseline only) | " + " | ".join(cells) + " |")
    header = "| step | " + " | ".join(f"rep {r['rep'] + 1}" for r in runs) + " |"
    return _table(header, "|---|" + "---:|" * len(runs), rows)


def _measure(what: str, spread: dict[str, Any], digits: int = 3) -> str:
    return f"| {what} | {_fmt(spread['median'], digits)} | {_range(spread, digits)} |"


def _resume_table(results: dict[str, Any]) -> str:
    res, rerun = results["orchestration"]["resume"], results["rerun"]
    rows = [
        _measure(
            "final stage (EvaluationReport + RegisteredModel) share of a full 1-worker run", res["final_stage_share"]
        ),
        _measure("resume s", res["resume_seconds"], 1),
        _measure("resume / full run", res["ratio"]),
        f"| only the final stage ran on resume (every rep) | {_fmt(res['ran_only_final_stage_every_rep'])} | |",
        _measure("rerun with everything complete s", rerun["rerun_seconds"], 2),
        _measure('bare `python -c "import luigi, pandas, sklearn"` s', rerun["bare_import_seconds"], 2),
        _measure("rerun / bare import", rerun["ratio"], 2),
        f"| the rerun ran no task (every rep) | {_fmt(rerun['ran_nothing_every_rep'])} | |",
    ]
    return _table("| measure | median | range |", "|---|---:|---|", rows)


def _contention_section(results: dict[str, Any]) -> str:
    contention = results.get("contention")
    if not contention:
        return ""
    rows = [
        f"| {p['rep'] + 1} | {' then '.join(p['order'])} | {_fmt(p['idle_seconds'], 1)} | "
        f"{_fmt(p['busy_seconds'], 1)} | {_fmt(p['ratio'], 2)} | {p['load_average_after']} |"
        for p in contention["pairs"]
    ]
    rows.append(
        f"| median | | {_fmt(contention['idle_seconds']['median'], 1)} | "
        f"{_fmt(contention['busy_seconds']['median'], 1)} | {_fmt(contention['ratio']['median'], 2)} | |"
    )
    prose = (
        "`python pipeline.py train --workers 1`, fresh folders; busy = pure-Python `while True: pass` processes "
        "(one per usable CPU minus one) running through the whole run. Each task starts no more OpenMP threads "
        "than CPUs free when it starts, and waiting threads spin only briefly (`tripduration/runtime/threads.py`)."
    )
    table = _table(
        "| rep | order | idle s | busy s | busy / idle | load after |", "|---:|---|---:|---:|---:|---|", rows
    )
    heading = f"## CPU contention: full run next to {contention['busy_processes']} busy process(es) vs idle"
    return f"{heading}\n\n{prose}\n\n{table}\n\n"


def _batch_table(results: dict[str, Any]) -> str:
    small = results["batch_prediction"]["normal_size"]
    rows = [
        _measure("`python -m luigi --module pipeline BatchPredictions` process s", small["task_process_seconds"], 2),
        _measure("of which the task (running -> done) s", small["task_seconds"], 2),
        _measure("bare `model.predict` on the same rows s", small["bare_predict_seconds"], 2),
        _measure("task process / bare predict", small["ratio_process_to_bare_predict"], 2),
        _measure("task alone / bare predict", small["ratio_task_to_bare_predict"], 2),
        _measure(
            "task process / bare process (imports + load + read + predict)", small["ratio_process_to_bare_process"], 2
        ),
    ]
    return _table("| measure | median | range |", "|---|---:|---|", rows)


def _scale_table(results: dict[str, Any]) -> str:
    rows = []
    for entry in results["scale"]["sizes"]:
        for stage in ("validation", "features", "training", "prediction"):
            d = entry["stages"].get(stage, {})
            if not d.get("measured"):
                rows.append(f"| {entry['rows']:,} | {stage} | | | | | | | | {d.get('reason', 'not measured')} |")
                continue
            fit = f" (fit on {d['fit_rows']:,})" if d.get("fit_rows", d["rows"]) != d["rows"] else ""
            rows.append(
                f"| {entry['rows']:,} | {stage} | {d['rows']:,}{fit} | {_fmt(d['seconds'], 1)} | "
                f"{_fmt(d.get('rows_per_second'), 0)} | {_fmt(d['peak_rss_mb'], 0)} | "
                f"{_fmt(d['rss_after_imports_mb'], 0)} | {_fmt(d['frame_mb'], 0)} | {_fmt(d['peak_to_frame'], 2)} | "
                f"{_fmt(d['peak_above_imports_to_frame'], 2)} |"
            )
    header = (
        "| rows generated | stage | rows in | s | rows/s | peak RSS MB | RSS after imports MB | frame MB | "
        "peak / frame | (peak − imports) / frame |"
    )
    return _table(header, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|", rows)


def _growth_table(results: dict[str, Any]) -> str:
    rows = [
        f"| {stage} | {p['from_rows']:,} -> {p['to_rows']:,} | {_fmt(p['time_exponent'], 2)} | "
        f"{_fmt(p['peak_rss_exponent'], 2)} | {_fmt(p['peak_above_imports_exponent'], 2)} |"
        for stage, pairs in results["scale"]["growth"].items()
        for p in pairs
    ]
    return _table("| stage | rows | time | peak RSS | peak RSS − imports |", "|---|---|---:|---:|---:|", rows)


def _scale_batch_table(results: dict[str, Any]) -> str:
    rows = []
    for entry in results["scale"]["sizes"]:
        d = entry["stages"].get("prediction", {})
        if d.get("measured"):
            rows.append(
                f"| {d['rows']:,} | {_fmt(d['seconds'], 1)} | {_fmt(d['core_seconds'], 1)} | "
                f"{_fmt(d['bare_predict_seconds'], 1)} | {_fmt(median(d['ratio_task_to_bare_all']), 3)} | "
                f"{_fmt(d['rows_per_second'], 0)} |"
            )
    header = "| rows | task path s | batch_predictions() s | bare predict s | task / bare | rows/s task |"
    return _table(header, "|---:|---:|---:|---:|---:|---:|", rows)


#: the report's prose, with a ``$name`` where each table or value of :func:`render_markdown` goes
TEMPLATE = Path(__file__).with_name("report_template.md")


def render_markdown(results: dict[str, Any]) -> str:
    """docs/benchmarks.md: ``report_template.md`` with the tables and values of ``results``."""
    meta, scale = results["meta"], results["scale"]
    notes = "".join(f"- {note}\n" for note in meta.get("notes") or [])
    values = {
        "command": meta["command"],
        "date": meta["machine"]["date_utc"],
        "kind": "QUICK, tiny sizes" if meta["quick"] else "full run",
        "minutes": f"{meta['duration_minutes']:.0f}",
        "targets": _targets_table(results),
        "machine": _machine_table(results),
        "orchestration": _orchestration_table(results),
        "steps": _steps_table(results),
        "resume": _resume_table(results),
        "contention": _contention_section(results),
        "batch_rows": f"{results['batch_prediction']['normal_size']['rows']:,}",
        "batch": _batch_table(results),
        "candidate": scale["candidate"],
        "train_budget": f"{scale['train_budget_seconds']:.0f}",
        "size_budget": f"{scale['size_budget_seconds']:.0f}",
        "scale": _scale_table(results),
        "growth": _growth_table(results),
        "scale_batch": _scale_batch_table(results),
        "notes": f"\n## Notes\n\n{notes}" if notes else "",
        "linear_limit": str(LINEAR_EXPONENT_LIMIT),
    }
    return Template(TEMPLATE.read_text()).substitute(values)
