"""Registration of the evaluated model in the file-based registry, behind the quality gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import luigi
from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.data import ModelInputTable, ValidatedTrips
from tasks.evaluation import EvaluationReport
from tasks.settings import RegistryConfig
from tasks.targets import load_model, local_copy, open_registry, read_json, read_table, write_json
from tasks.training import FinalModel
from tripduration.features import ENGINEERED_COLUMNS, MODEL_INPUT_COLUMNS
from tripduration.months import format_month
from tripduration.nodes import concat_tables, environment_versions, reference_profile, register_with_gate
from tripduration.registry import ModelRegistry


@inherits(EvaluationReport)
class RegisteredModel(PipelineTask):
    """Registers the final model as a new immutable version and applies the quality gate.

    Reads the evaluation report, the final model, the validation summaries of every month used and the
    test month's table (to score the current production model on the same month). Writes a new version
    folder in the registry (model.joblib, metadata.json, report/) and, in the work directory,
    ``registration.json`` naming the version and the gate's decision.
    """

    code_version = 4  # 2: reference profile; 3: prediction profile on a sample; 4: lineage from validation, fair gate
    all_cores = True

    def requires(self) -> dict[str, Any]:
        months = {"train": self.train_months, "validation": (self.val_month,), "test": (self.test_month,)}
        return {
            "report": self.clone(EvaluationReport),
            "model": self.clone(FinalModel, role="best"),
            "months": {role: [ValidatedTrips(color=self.color, month=m) for m in ms] for role, ms in months.items()},
            "test": ModelInputTable(color=self.color, month=self.test_month),
            "training": [ModelInputTable(color=self.color, month=m) for m in (*self.train_months, self.val_month)],
        }

    def output(self) -> luigi.LocalTarget:
        return self.target("registration.json")

    def model_registry(self) -> ModelRegistry:
        return open_registry(RegistryConfig().model_name.format(color=self.color))

    def data_lineage(self) -> list[dict[str, Any]]:
        lineage = []
        for role, tasks in self.requires()["months"].items():
            for task in tasks:
                # everything from the validation's own summary: the digest of the bytes it read, not of
                # whatever the file holds now
                summary = read_json(task.output()["summary.json"])
                lineage.append(
                    {
                        "role": role,
                        "month": format_month(task.month),
                        "file": Path(summary["source"]["path"]).name,
                        "sha256": summary["source"]["sha256"],
                        "bytes": summary["source"]["bytes"],
                        "rows_in": summary["rows_in"],
                        "rows_kept": summary["rows_kept"],
                        "rows_rejected": summary["rows_rejected"],
                    }
                )
        return lineage

    def run(self) -> None:
        inputs = self.input()
        # outputs in S3 are copied to local scratch first: the registry copies files from local paths
        with local_copy(inputs["report"]) as report_dir, local_copy(inputs["model"]["model"]) as model_path:
            self._register(inputs, Path(report_dir), Path(model_path))

    def _register(self, inputs: dict[str, Any], report_dir: Path, model_path: Path) -> None:
        evaluation = read_json(luigi.LocalTarget(str(report_dir / "metrics.json")))
        fit = read_json(inputs["model"]["fit"])
        self.progress("hashing input files", 10)
        metadata = {
            "algorithm": {
                "candidate": fit["candidate"],
                "family": fit["family"],
                "params": fit["params"],
                "description": fit["description"],
            },
            "features": {"inputs": list(MODEL_INPUT_COLUMNS), "engineered": list(ENGINEERED_COLUMNS)},
            "target": "duration_min",
            "color": self.color,
            "data": self.data_lineage(),
            "metrics": evaluation["metrics"],
            "feature_importance": evaluation["feature_importance"],
            "libraries": environment_versions(),
            "pipeline_task": self.task_id,
        }
        self.progress("profiling the training data for monitoring", 30)
        lineage = metadata["data"]
        fitted = [d for d in lineage if d["role"] in ("train", "validation")]
        rejected_share = sum(d["rows_rejected"] for d in fitted) / max(1, sum(d["rows_in"] for d in fitted))
        training = concat_tables([read_table(t) for t in inputs["training"]], "training")
        profile = reference_profile(
            load_model(inputs["model"]["model"]), training, rejected_share, evaluation["metrics"]["test"]
        )
        self.progress("applying the quality gate", 60)
        result = register_with_gate(
            self.model_registry(),
            model_path,
            report_dir,
            metadata,
            read_table(inputs["test"]),
            key=f"{self.task_family}-{self.fingerprint()}",
            extra_files={"reference_profile.json": json.dumps(profile, indent=1)},
        )
        result["model_name"] = self.model_registry().name
        result["registry"] = str(self.model_registry().home)
        write_json(self.output(), result)
        self.progress(f"registered {result['version']}; promoted: {result['gate']['promote']}", 100)
