"""Registration of the evaluated model in the file-based registry, behind the quality gate."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.data import ModelInputTable, ValidatedTrips
from tasks.evaluation import EvaluationReport
from tasks.settings import RegistryConfig
from tasks.targets import Output, dump, load, open_registry
from tasks.training import FinalModel
from tripduration.data.months import format_month
from tripduration.registry.metadata import MonthRecord, model_metadata, month_lineage
from tripduration.registry.registration import register_model
from tripduration.registry.store import ModelRegistry
from tripduration.training.candidates import build_pipeline


@inherits(EvaluationReport)
class RegisteredModel(PipelineTask):
    """Registers the final model as a new immutable version and applies the quality gate.

    Reads the evaluation report, the final model, the validation summaries of every month used and the
    test month's table (to score the current production model on the same month). Writes a new version
    folder in the registry (model.joblib, metadata.json, report/) and, in the work directory,
    ``registration.json`` naming the version and the gate's decision.
    """

    if TYPE_CHECKING:  # parameters added by @inherits/@requires, declared for the type checker
        color: str
        train_months: tuple[dt.date, ...]
        val_month: dt.date
        test_month: dt.date

    all_cores = True
    runs_also = (build_pipeline,)  # the gate scores the production model: its feature step and encoders run

    def requires(self) -> dict[str, Any]:
        months = {"train": self.train_months, "validation": (self.val_month,), "test": (self.test_month,)}
        return {
            "report": self.clone(EvaluationReport),
            "model": self.clone(FinalModel, role="best"),
            "months": {role: [ValidatedTrips(color=self.color, month=m) for m in ms] for role, ms in months.items()},
            "test": ModelInputTable(color=self.color, month=self.test_month),
            "training": [ModelInputTable(color=self.color, month=m) for m in (*self.train_months, self.val_month)],
        }

    def output(self) -> Output:
        return self.target("registration.json")

    def model_registry(self) -> ModelRegistry:
        return open_registry(RegistryConfig().model_name.format(color=self.color))

    def data_lineage(self) -> list[MonthRecord]:
        return [
            month_lineage(role, format_month(task.month), load(task.output()["summary.json"]))
            for role, tasks in self.requires()["months"].items()
            for task in tasks
        ]

    def run(self) -> None:
        inputs = self.input()
        data = load({"fit": inputs["model"]["fit"], "training": inputs["training"], "test": inputs["test"]})
        # outputs in S3 are copied to local scratch first (the registry copies files from local paths); the
        # model is unpickled from that copy, so it is read once
        with inputs["report"].local_copy() as report, inputs["model"]["model"].local_copy() as model_file:
            model = joblib.load(model_file)
            evaluation = json.loads((report / "metrics.json").read_text())
            metadata = model_metadata(data["fit"], evaluation, self.data_lineage(), self.color, self.task_id)
            files, tables = (Path(model_file), Path(report)), (data["training"], data["test"])
            registry, key = self.model_registry(), f"{self.task_family}-{self.fingerprint()}"
            result = register_model(registry, model, files, metadata, *tables, key, self.progress)
        dump(self.output(), result)
