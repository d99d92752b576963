"""The registration step: profile the training data, register the model, apply the gate."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.evaluation.report import render_evaluation_html
from tripduration.monitoring.drift import build_profile
from tripduration.registry.gate import _recheck, gate_decision
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.names import version_number
from tripduration.registry.store import ModelRegistry
from tripduration.runtime.progress import Progress, no_progress
from tripduration.training.features import split_xy
from tripduration.training.steps import concat_tables


def _next_version(registry: ModelRegistry) -> str:
    """The name :meth:`ModelRegistry.register` gives the next version (exact while the registry lock is held)."""
    versions = registry.versions()
    return f"v{version_number(versions[-1]) + 1 if versions else 1:04d}"


def _registered_report(report_dir: Path, staging: Path, registration: Mapping[str, Any]) -> Path:
    """A copy of the evaluation report whose page also shows the version and the gate decision."""
    copy = staging / "report"
    shutil.copytree(report_dir, copy)
    metrics_file = copy / "metrics.json"
    if metrics_file.exists():
        result = json.loads(metrics_file.read_text())
        (copy / "report.html").write_text(render_evaluation_html(result, copy, registration))
    return copy


def register_with_gate(
    registry: ModelRegistry,
    model_file: Path,
    report_dir: Path,
    metadata: ModelMetadata,
    test: pd.DataFrame,
    key: str,
    extra_files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Register a model version and promote it if it passes the quality gate.

    The gate (:func:`gate_decision`) compares the new model's test RMSE with the baseline's (same run, same
    test month) and with the current production model's RMSE measured now on the same test month, when the
    production model was not fitted on that month. The whole decision runs under the registry lock, so two
    racing registrations cannot both believe they beat the same production model (and the next version's
    name is known: the registered report shows it). A rerun with the same ``key`` (after a crash) reuses
    the version and completes a promotion it had decided.
    """
    with registry.lock():
        existing = registry.find_by_key(key)
        if existing is not None:
            meta = registry.metadata(existing)
            gate = meta["gate"]
            current = registry.production()
            if gate["promote"] and (
                current is None or version_number(str(current["version"])) < version_number(existing)
            ):
                registry.set_production(existing, gate["reason"])
            return {"version": existing, "reused": True, "gate": gate}
        registry.production()  # a corrupt pointer stops the registration here, naming the repair
        identical = registry.find_identical(
            hashlib.sha256(Path(model_file).read_bytes()).hexdigest(), metadata.to_json()
        )
        if identical is not None:  # e.g. `invalidate` and a rerun on unchanged data: the same model, same data
            return {
                "version": identical,
                "reused": True,
                "identical": True,
                "gate": registry.metadata(identical).get("gate"),
            }
        decision, facts = gate_decision(registry, metadata, test)
        gate = {"promote": decision.promote, "reason": decision.reason, **facts}
        with tempfile.TemporaryDirectory(prefix="registered-report-") as staging:
            report = _registered_report(report_dir, Path(staging), {"version": _next_version(registry), "gate": gate})
            version = registry.register(
                model_file,
                metadata.registered(gate=gate),
                {"report": report},
                key=key,
                extra_files=dict(extra_files or {}),
            )
        promoted = decision.promote and registry.set_production(
            version, decision.reason, recheck=_recheck(registry, metadata, test, gate)
        )
        if not promoted:  # a promotion is its own event (the registry logs every pointer change)
            reason = decision.reason if not decision.promote else "another promotion beat it first"
            registry.record_event("rejected", unique=f"rejected:{version}", version=version, reason=reason)
        return {"version": version, "reused": False, "gate": gate}


def reference_profile(
    model: Pipeline,
    training: pd.DataFrame,
    rejected_share: float,
    test_metrics: Mapping[str, float],
    prediction_rows: int = 50_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Profile of the data the final model was trained on, for monitoring later months.

    Features are profiled on every row; the prediction distribution on a seeded sample of
    ``prediction_rows`` rows (its decile shares are as good, and predicting a 10M-row training window
    would cost minutes).
    """
    X, _ = split_xy(training)
    sample = X.sample(n=prediction_rows, random_state=seed) if len(X) > prediction_rows else X
    profile = build_profile(training, model.predict(sample), rejected_share, test_metrics)
    profile["prediction"]["rows"] = len(sample)
    return profile


def register_model(
    registry: ModelRegistry,
    model: Pipeline,
    files: tuple[Path, Path],
    metadata: ModelMetadata,
    training_tables: Sequence[pd.DataFrame],
    test: pd.DataFrame,
    key: str,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Profile the training data for monitoring, then register ``model`` (``files``: its ``model.joblib`` and
    the evaluation report folder) behind the quality gate. Returns the registration record."""
    fitted = [d for d in metadata.data if d.role in ("train", "validation")]
    rejected_share = sum(d.rows_rejected for d in fitted) / max(1, sum(d.rows_in for d in fitted))
    progress("profiling the training data for monitoring", 30)
    training = concat_tables(training_tables, "training")
    profile = reference_profile(model, training, rejected_share, metadata.test_metrics)
    progress("applying the quality gate", 60)
    model_file, report_dir = files
    extra = {"reference_profile.json": json.dumps(profile, indent=1)}
    result = register_with_gate(registry, model_file, report_dir, metadata, test, key=key, extra_files=extra)
    result.update(model_name=registry.name, registry=str(registry.home))
    progress(f"registered {result['version']}; promoted: {result['gate']['promote']}", 100)
    return result
