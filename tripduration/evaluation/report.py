"""Metrics, plots and the self-contained HTML evaluation report."""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PLOTS: tuple[str, ...] = (
    "predicted_vs_actual.png",
    "residuals.png",
    "error_by_hour.png",
    "error_by_distance.png",
    "feature_importance.png",
)


def _error_by(frame: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    grouped = frame.groupby(key, observed=True)
    return pd.DataFrame(
        {
            name: grouped[col].apply(lambda e: float(np.sqrt(np.mean(np.square(e)))))
            for name, col in (("model", "err"), ("baseline", "err_base"))
        }
    )


def write_plots(
    out_dir: Path,
    X: pd.DataFrame,
    y: pd.Series,
    pred: np.ndarray,
    baseline_pred: np.ndarray,
    importance: Mapping[str, float],
) -> list[str]:
    """Write the report's PNG plots into ``out_dir``; return their file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype="float64")
    frame = pd.DataFrame({"err": pred - y, "err_base": baseline_pred - y})

    fig, ax = subplots(figsize=(5.5, 5))
    ax.hexbin(y, pred, gridsize=60, bins="log", cmap="viridis", mincnt=1)
    lim = [0, max(float(np.max(y)), float(np.max(pred)))]
    ax.plot(lim, lim, color="red", lw=1)
    ax.set(xlabel="actual minutes", ylabel="predicted minutes", title="Predicted vs actual (test month)")
    save_figure(fig, out_dir / PLOTS[0])

    fig, ax = subplots(figsize=(6, 4))
    ax.hist(frame["err_base"], bins=120, range=(-40, 40), alpha=0.5, label="baseline")
    ax.hist(frame["err"], bins=120, range=(-40, 40), alpha=0.6, label="model")
    ax.set(xlabel="prediction - actual (minutes)", ylabel="trips", title="Residuals")
    ax.legend()
    save_figure(fig, out_dir / PLOTS[1])

    hour = pd.to_datetime(X["pickup_datetime"]).dt.hour.to_numpy()
    by_hour = _error_by(frame, pd.Series(hour, name="pickup hour"))
    fig, ax = subplots(figsize=(6, 4))
    by_hour.plot(ax=ax, marker="o", title="RMSE by pickup hour")
    ax.set(xlabel="pickup hour", ylabel="RMSE (minutes)")
    save_figure(fig, out_dir / PLOTS[2])

    bins = [0, 1, 2, 3, 5, 8, 12, 20, np.inf]
    dist = pd.cut(X["trip_distance"].astype("float64").to_numpy(), bins=bins, include_lowest=True)
    by_dist = _error_by(frame, pd.Series(dist, name="distance"))
    fig, ax = subplots(figsize=(6, 4))
    by_dist.plot(ax=ax, kind="bar", title="RMSE by trip distance (miles)")
    ax.set(xlabel="trip distance (miles)", ylabel="RMSE (minutes)")
    save_figure(fig, out_dir / PLOTS[3])

    fig, ax = subplots(figsize=(6, 4))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="RMSE increase when shuffled (minutes)", title="Permutation importance (test sample)")
    save_figure(fig, out_dir / PLOTS[4])
    return list(PLOTS)


def subplots(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure without pyplot: no global state, no GUI backend, and matplotlib is imported only when a
    report is drawn (it costs a third of a second at start-up of every pipeline run otherwise)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # pandas' plotting imports pyplot: never a GUI backend in a task process
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)


def format_value(value: Any) -> str:
    """A cell: floats to 4 decimals, lists joined, and ``n/a`` for an unknown value (never ``None``)."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{format_value(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(
    title: str,
    summary: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Any]],
    plot_dir: Path,
    plots: tuple[str, ...] = PLOTS,
    tables: Mapping[str, tuple[list[str], list[list[Any]]]] | None = None,
) -> str:
    """A single HTML page with metrics tables and the plots embedded as base64 PNG.

    ``tables`` adds sections (heading -> (columns, rows)) after the metrics, e.g. the candidate ranking.
    """
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{format_value(m.get(k))}</td>" for k in ("rmse", "mae", "r2", "rows"))
        + "</tr>"
        for name, m in metrics.items()
    )
    facts = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{format_value(v)}</td></tr>" for k, v in summary.items())
    extra = "".join(f"<h2>{html.escape(h)}</h2>{_table(*t)}" for h, t in (tables or {}).items())
    images = ""
    for name in plots:
        path = plot_dir / name
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            images += (
                f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'
            )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{text-align:left}}
figure{{display:inline-block;margin:.5em}}img{{max-width:520px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Summary</h2><table>{facts}</table>
<h2>Metrics (minutes)</h2><table><tr><th></th><th>RMSE</th><th>MAE</th><th>R2</th><th>rows</th></tr>{rows}</table>
{extra}<h2>Plots</h2>{images}
</body></html>
"""


def render_evaluation_html(
    result: Mapping[str, Any], out_dir: Path, registration: Mapping[str, Any] | None = None
) -> str:
    """The evaluation report page from its ``metrics.json`` content (and the plots in ``out_dir``).

    The evaluation runs before registration, so its own page says the version and the gate decision are not
    known yet. Registration renders the page again, with ``registration`` (version and gate decision), into
    the copy it stores in the version folder: the registered report shows both.
    """
    metrics = result.get("metrics", {})
    gate = (registration or {}).get("gate")
    summary = {
        "version": (registration or {}).get("version", "not registered yet (see the registered copy)"),
        "algorithm": result.get("algorithm"),
        "color": result.get("color"),
        "training months": result.get("train_months"),
        "validation month": result.get("validation_month"),
        "test month": result.get("test_month"),
        "final training rows": result.get("final_training_rows"),
        "gain over baseline (test RMSE ratio)": metrics.get("test", {}).get("rmse_ratio_to_baseline"),
        "gate decision": (
            f"{'promoted' if gate['promote'] else 'not promoted'}: {gate['reason']}"
            if gate
            else "decided at registration"
        ),
    }
    table = {
        "validation (best, trained on train months)": metrics.get("validation") or {},
        "validation (baseline)": metrics.get("baseline_validation") or {},
        "test (final model)": metrics.get("test") or {},
        "test (baseline, same training data)": metrics.get("baseline_test") or {},
    }
    ranking = result.get("ranking") or []
    tables = {
        "Candidate ranking (validation RMSE)": (
            ["rank", "candidate", "validation RMSE", "fit seconds"],
            [[i + 1, r.get("candidate"), r.get("rmse"), r.get("fit_seconds")] for i, r in enumerate(ranking)],
        )
    }
    return render_html(f"Trip duration model: {result.get('algorithm', '')}", summary, table, out_dir, tables=tables)
