"""Evaluation of the final model against the baseline on the test month."""

from __future__ import annotations

import datetime as dt
from typing import Any

import luigi

from tasks.data import ModelInputTable
from tasks.params import MonthParameter
from tasks.settings import EvaluationConfig
from tasks.targets import Output, load
from tasks.training import FinalModel, ModelSelection, TrainingWindow
from tripduration.data.months import format_month
from tripduration.evaluation.steps import evaluate_models
from tripduration.training.candidates import build_pipeline


class EvaluationReport(TrainingWindow):
    """Reads the final and baseline models, the selection and the test month's modelling table.

    Writes a ``report/`` folder (atomically, as a whole): ``metrics.json`` (validation and test RMSE/MAE/R2
    and row counts, for the model and the baseline), the PNG plots and a self-contained ``report.html``.
    """

    fingerprint_configs = (EvaluationConfig,)
    all_cores = True
    runs_also = (build_pipeline,)  # the models' feature step and encoders run when they predict
    test_month = MonthParameter(default=dt.date(2021, 3, 1), description="month the final model is evaluated on")

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "model": self.clone(FinalModel, role="best"),
            "baseline": self.clone(FinalModel, role="baseline"),
            "selection": self.clone(ModelSelection),
            "test": ModelInputTable(color=self.color, month=self.test_month),
        }

    def output(self) -> Output:
        return self.folder("report")

    def run(self) -> None:
        data, cfg = load(self.input()), EvaluationConfig()
        models = (data["model"]["model"], data["baseline"]["model"])
        options = {"importance_rows": cfg.importance_rows, "importance_repeats": cfg.importance_repeats}
        self.output().dump_folder(
            lambda folder: evaluate_models(*models, data["test"], folder, self.context(data), self.progress, **options),
        )

    def context(self, data: dict[str, Any]) -> dict[str, Any]:
        """What the report says besides the test metrics: the data split, the algorithm and the search."""
        selection, fit = data["selection"], data["model"]["fit"]
        return {
            "color": self.color,
            "algorithm": fit["candidate"],
            "train_months": [format_month(m) for m in self.train_months],
            "validation_month": format_month(self.val_month),
            "test_month": format_month(self.test_month),
            "final_training_rows": fit["rows"],
            "ranking": selection["ranking"],
            "metrics": {
                "validation": selection["best_validation"],
                "baseline_validation": selection["baseline_validation"],
            },
        }
