"""Monitoring a registered model on a month whose actual durations are known."""

from __future__ import annotations

import json
from typing import Any

import luigi

from tasks.data import ModelInputTable, ValidatedTrips
from tasks.predictions import ModelVersionTask, model_registry
from tasks.settings import MonitoringConfig
from tasks.targets import Output, load
from tripduration.data.months import format_month
from tripduration.monitoring.report import write_monitoring_report
from tripduration.monitoring.steps import monitoring_report
from tripduration.registry.metadata import ModelMetadata


class MonitoringReport(ModelVersionTask):
    """Once a month's actual durations are known: the model's accuracy on it (trips with a valid outcome)
    against its own test metrics, drift (PSI) of each feature and of the predictions against the training
    data, missingness and rejected shares, and a verdict (ok / drift / degraded) from ``[monitoring]``.
    Writes ``report/`` with ``monitoring.json``, plots and ``report.html``."""

    fingerprint_configs = (MonitoringConfig,)

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "table": ModelInputTable(color=self.color, month=self.month),
            "validated": ValidatedTrips(color=self.color, month=self.month),
        }

    def output(self) -> Output:
        return self.folder("report")

    def run(self) -> None:
        model, meta = self.load()
        data = load(self.input()["table"]), load(self.input()["validated"]["summary.json"])
        thresholds, month = MonitoringConfig().thresholds(), format_month(self.month)
        report = monitoring_report(model, meta, self.reference_profile(meta), *data, month, thresholds, self.progress)
        self.output().dump_folder(lambda folder: write_monitoring_report(report, folder))

    def reference_profile(self, meta: ModelMetadata) -> dict[str, Any]:
        try:
            return json.loads(model_registry(self.color).read_file(str(meta.version), "reference_profile.json"))
        except FileNotFoundError:
            raise RuntimeError(
                f"{meta.name} {meta.version} has no reference_profile.json (registered before monitoring "
                "existed); register a model again (python pipeline.py) to monitor it"
            ) from None
