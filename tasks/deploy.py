"""Deployment and monitoring: batch predictions, the monthly monitoring report, and the monthly MLOps loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import luigi

from tasks.base import (
    ColorParameter,
    MonthParameter,
    PipelineTask,
    atomic_path,
    paths,
    project_path,
    read_json,
    registry,
    write_json,
)
from tasks.data import ModelInputTable, ValidatedTrips, read_table
from tasks.pipelines import MonthlyTraining
from tripduration.evaluation import render_monitoring_html
from tripduration.monitoring import Thresholds, monitor_month
from tripduration.months import format_month
from tripduration.nodes import BATCH_INPUT_COLUMNS, batch_predictions
from tripduration.parquet import read_parquet, write_parquet
from tripduration.registry import ModelRegistry, check_version


class monitoring(luigi.Config):  # noqa: N801
    """``[monitoring]``: thresholds of the verdict (ok / drift / degraded)."""

    psi_drift = luigi.FloatParameter(default=0.2, description="a feature with PSI above this has drifted")
    prediction_psi_drift = luigi.FloatParameter(default=0.2, description="drift of the predictions' distribution")
    rmse_degraded_ratio = luigi.FloatParameter(
        default=1.25, description="degraded when the month's RMSE exceeds this multiple of the model's test RMSE"
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(self.psi_drift, self.prediction_psi_drift, self.rmse_degraded_ratio)


def model_registry(color: str) -> ModelRegistry:
    return ModelRegistry(project_path(paths().registry_dir), registry().model_name.format(color=color))


class ModelVersionParameter(luigi.Parameter):
    """``production`` or a registry version name (``vNNNN``).

    Checked in ``normalize``, which luigi applies to command-line values, keyword arguments and config
    defaults alike: ``--model-version ../x`` fails when the task is built, before any path is made from it.
    """

    def normalize(self, x: Any) -> str:
        if x == "production":
            return x
        try:
            return check_version(x, "model_version")
        except ValueError as exc:
            raise ValueError(f"{exc}, or 'production'") from None


class ModelVersionTask(PipelineTask):
    """A task that uses a registered model: ``model_version`` is a version name or ``production``.

    ``production`` is resolved when the task's output path is computed, and the path holds the resolved
    version: when production changes, the task is no longer complete and reruns with the new model.
    """

    all_cores = True
    color = ColorParameter()
    month = MonthParameter(description="month of trips, YYYY-MM")
    model_version = ModelVersionParameter(default="production", description="registry version (vNNNN) or 'production'")

    def resolved_version(self) -> str:
        if self.model_version != "production":
            return self.model_version
        pointer = model_registry(self.color).production()
        if pointer is None:
            raise RuntimeError(f"no production model for {self.color}; run `python pipeline.py` (training) first")
        return str(pointer["version"])

    def output_dir(self) -> Path:
        base = super().output_dir()
        return base.with_name(f"{base.name}-{self.resolved_version()}")

    def load(self) -> tuple[Any, dict[str, Any]]:
        return model_registry(self.color).load_model(self.resolved_version())


class BatchPredictions(ModelVersionTask):
    """Reads a month's kept trips and a registered model (sha256 checked); writes ``predictions.parquet``:
    trip key columns, ``predicted_duration_min``, ``model_name`` and ``model_version``."""

    code_version = 1

    def requires(self) -> ValidatedTrips:
        return ValidatedTrips(color=self.color, month=self.month)

    def output(self) -> luigi.LocalTarget:
        return self.target("predictions.parquet")

    def run(self) -> None:
        self.progress("loading the model", 5)
        model, meta = self.load()
        kept = read_parquet(self.input()["kept.parquet"].path, columns=list(BATCH_INPUT_COLUMNS))
        self.progress(f"predicting {len(kept)} trips with {meta['name']} {meta['version']}", 30)
        predictions = batch_predictions(model, kept, meta["name"], meta["version"])
        with atomic_path(self.output()) as tmp:
            write_parquet(predictions, tmp)
        self.progress(f"{len(predictions)} predictions", 100)


class MonitoringReport(ModelVersionTask):
    """Once a month's actual durations are known: the model's accuracy on it against its own test metrics,
    drift (PSI) of each feature and of the predictions against the training data, missing and rejected
    shares, and a verdict (ok / drift / degraded) from ``[monitoring]``. Writes ``report/`` with
    ``monitoring.json``, plots and ``report.html``."""

    code_version = 1
    fingerprint_configs = (monitoring,)

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "table": ModelInputTable(color=self.color, month=self.month),
            "validated": ValidatedTrips(color=self.color, month=self.month),
        }

    def output(self) -> luigi.LocalTarget:
        return self.target("report")

    def run(self) -> None:
        self.progress("loading the model and its reference profile", 5)
        model, meta = self.load()
        try:
            profile = json.loads(model_registry(self.color).read_file(meta["version"], "reference_profile.json"))
        except FileNotFoundError:
            raise RuntimeError(
                f"{meta['name']} {meta['version']} has no reference_profile.json (registered before monitoring "
                "existed); register a model again (python pipeline.py) to monitor it"
            ) from None
        summary = read_json(self.input()["validated"]["summary.json"])
        rejected_share = summary["rows_rejected"] / max(1, summary["rows_in"])
        table = read_table(self.input()["table"])
        self.progress(f"monitoring {len(table)} trips", 30)
        report = monitor_month(model, profile, table, rejected_share, monitoring().thresholds())
        report.update({"month": format_month(self.month), "model": {"name": meta["name"], "version": meta["version"]}})
        with atomic_path(self.output()) as tmp:
            Path(tmp).mkdir()
            (Path(tmp) / "monitoring.json").write_text(json.dumps(report, indent=2, sort_keys=True))
            render_monitoring_html(report, Path(tmp))
        self.progress(f"verdict: {report['verdict']}", 100)


class MonthlyRun(PipelineTask):
    """The monthly MLOps loop for ``month`` M (cron: ``python pipeline.py monthly-run --month last``).

    Fetches and validates M, batch-predicts it with the production model, monitors the model on M. When the
    verdict is drift or degraded, trains a challenger on the most recent window (``MonthlyTraining(M)``:
    test M, validate M-1, train before) and lets the registry's quality gate decide on promotion. Every
    decision is written to ``run.json`` and appended to the registry's ``decisions.jsonl``.
    """

    code_version = 1
    color = ColorParameter()
    month = MonthParameter(description="the month to predict, monitor and (if needed) retrain on")

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "predictions": BatchPredictions(color=self.color, month=self.month),
            "monitoring": MonitoringReport(color=self.color, month=self.month),
        }

    def output(self) -> luigi.LocalTarget:
        return self.target("run.json")

    def run(self):
        monitoring_dir = Path(self.input()["monitoring"].path)
        report = json.loads((monitoring_dir / "monitoring.json").read_text())
        decision: dict[str, Any] = {
            "month": format_month(self.month),
            "monitored_version": report["model"]["version"],
            "verdict": report["verdict"],
            "reasons": report["reasons"],
            "predictions": self.input()["predictions"].path,
            "monitoring_report": str(monitoring_dir / "report.html"),
            "retrained": False,
        }
        if report["verdict"] in ("drift", "degraded"):
            self.progress(f"verdict {report['verdict']}: training a challenger", 40)
            training = MonthlyTraining(color=self.color, month=self.month)
            yield training
            registered = read_json(training.requires().requires().output())
            decision.update(
                {
                    "retrained": True,
                    "why_retrained": f"verdict {report['verdict']}: " + "; ".join(report["reasons"]),
                    "challenger_version": registered["version"],
                    "promoted": registered["gate"]["promote"],
                    "gate_reason": registered["gate"]["reason"],
                }
            )
        else:
            decision["why_not_retrained"] = "verdict ok: no threshold crossed"
        model_registry(self.color).record_decision(decision, key=self.task_id)
        write_json(self.output(), decision)
        self.progress(f"verdict {decision['verdict']}; retrained: {decision['retrained']}", 100)
