"""The training steps: the modelling table, one candidate's score, the selection and the final refit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.evaluation.metrics import regression_metrics
from tripduration.runtime.progress import Progress, no_progress
from tripduration.training.candidates import BASELINE, SEED, CandidateSpec, build_pipeline
from tripduration.training.features import model_table, split_xy


def modelling_table(kept: pd.DataFrame) -> pd.DataFrame:
    """Model inputs (dispatch-time columns only) and the target in minutes."""
    return model_table(kept)


def concat_tables(tables: Sequence[pd.DataFrame], what: str) -> pd.DataFrame:
    frames = [t for t in tables if len(t)]
    if not frames:
        raise ValueError(f"no kept trips in the {what} months; check the validation summaries")
    return pd.concat(frames, ignore_index=True)


def training_sample(train: pd.DataFrame, max_rows: int | None) -> pd.DataFrame:
    """``train`` itself, or a seeded uniform sample of ``max_rows`` rows of it when it is larger.

    Gradient boosting on a few million trips is as good as on ten million and costs a fraction of the time
    and memory (the fit holds several float64 copies of its features); ``None`` or 0 means no limit.
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be 0 (no limit) or a positive number of rows, got {max_rows!r}")
    if not max_rows or len(train) <= max_rows:
        return train
    rows = np.sort(np.random.default_rng(SEED).choice(len(train), size=max_rows, replace=False))
    return train.take(rows)


def fit_row_count(rows: int, max_rows: int | None) -> int:
    """How many of ``rows`` training rows a fit uses under ``max_rows`` (see :func:`training_sample`)."""
    return min(rows, max_rows) if max_rows else rows


def fit_candidate(spec: CandidateSpec, train: pd.DataFrame, max_rows: int | None = None) -> tuple[Pipeline, float]:
    """Fit a fresh Pipeline for ``spec`` (on at most ``max_rows`` rows); return it with its fit time in seconds."""
    X, y = split_xy(training_sample(train, max_rows))
    model = build_pipeline(spec)
    start = time.perf_counter()
    model.fit(X, y)
    return model, time.perf_counter() - start


#: the keys of :func:`candidate_facts`
CANDIDATE_FACTS = ("candidate", "family", "params", "description")


def candidate_facts(spec: CandidateSpec) -> dict[str, Any]:
    """What a score, a fit and a model's metadata record of the candidate they come from."""
    return {"candidate": spec.name, "family": spec.family, "params": spec.params, "description": spec.description}


def score_candidate(
    spec: CandidateSpec,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    max_rows: int | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Train on the training months (at most ``max_rows`` of their rows), score on the validation month."""
    model, fit_seconds = fit_candidate(spec, train, max_rows)
    progress(f"fitted in {fit_seconds:.1f}s; scoring {len(validation)} validation trips", 70)
    X_val, y_val = split_xy(validation)
    metrics = regression_metrics(y_val, model.predict(X_val))
    return {
        **candidate_facts(spec),
        "train_rows": len(train),
        "fit_rows": fit_row_count(len(train), max_rows),
        "fit_seconds": round(fit_seconds, 3),
        "validation": metrics,
    }


def score_candidate_on_months(
    spec: CandidateSpec,
    train_tables: Sequence[pd.DataFrame],
    validation: pd.DataFrame,
    max_rows: int | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """:func:`score_candidate` on the training months' tables (concatenated), reporting its steps."""
    train = concat_tables(train_tables, "training")
    progress(f"fitting on {len(train)} trips", 20)
    score = score_candidate(spec, train, validation, max_rows, progress)
    progress(f"validation RMSE {score['validation']['rmse']:.3f}", 100)
    return score


def final_model(
    spec: CandidateSpec, tables: Sequence[pd.DataFrame], max_rows: int | None = None, progress: Progress = no_progress
) -> dict[str, Any]:
    """Refit ``spec`` on the training + validation months: ``{"model": fitted Pipeline, "fit": facts}``."""
    data = concat_tables(tables, "training + validation")
    progress(f"fitting on {len(data)} trips", 20)
    model, seconds = fit_candidate(spec, data, max_rows)
    progress(f"fitted in {seconds:.1f}s", 100)
    fit = {
        **candidate_facts(spec),
        "rows": len(data),
        "fit_rows": fit_row_count(len(data), max_rows),
        "fit_seconds": round(seconds, 3),
    }
    return {"model": model, "fit": fit}


def select_best(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rank candidates by validation RMSE (ties broken by name, so the choice is deterministic)."""
    if not scores:
        raise ValueError("no candidate scores to choose from; configure [model_search] candidates")
    ranked = sorted(scores, key=lambda s: (s["validation"]["rmse"], s["candidate"]))
    baseline = next((s for s in ranked if s["candidate"] == BASELINE), None)
    return {
        "best": ranked[0]["candidate"],
        "best_validation": ranked[0]["validation"],
        "baseline_validation": baseline["validation"] if baseline else None,
        "ranking": [
            {"candidate": s["candidate"], "rmse": s["validation"]["rmse"], "fit_seconds": s["fit_seconds"]}
            for s in ranked
        ],
        "scores": list(ranked),
    }
