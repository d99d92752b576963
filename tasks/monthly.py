"""The monthly MLOps loop: monitor the pinned production model on the new month, retrain when the policy says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi

from tasks import predictions
from tasks.base import PipelineTask
from tasks.monitoring import MonitoringReport
from tasks.params import ColorParameter, MonthParameter
from tasks.pipelines import MonthlyTraining
from tasks.predictions import BatchPredictions
from tasks.settings import MonitoringConfig
from tasks.targets import (
    S3Url,
    file_target,
    location,
    read_json,
    work_root,
    write_json,
)
from tripduration.data.months import format_month
from tripduration.monitoring.policy import retrain_decision
from tripduration.registry.metadata import lineage_months


class MonthlyRun(PipelineTask):
    """The monthly MLOps loop for ``month`` M (cron: ``python pipeline.py monthly-run --month last``).

    Pinned to one model: ``model_version`` ``production`` is resolved to the concrete version (vNNNN) when
    the task is created, before the graph is built (:meth:`get_param_values`), and only the concrete version
    is passed down. A promotion during the run (its own challenger) cannot change what this run monitors,
    and luigi, re-entering :meth:`run` after the challenger is trained, or re-creating the task from its
    string parameters (dynamic dependencies, ``--workers`` > 1), sees the same version.

    Fetches and validates M, batch-predicts it with that version and monitors it on M, unless M is one of
    the version's own months (train / validation / test): then the record says "not monitored". The
    ``[monitoring] retrain_on`` policy decides whether to train a challenger on the most recent window
    (``MonthlyTraining(M)``: test M, validate M-1, train before); if some of the window's months are not
    local, retraining is deferred (recorded, exit 0) instead of downloading them. The registry's quality
    gate decides on promotion. The decision is written to ``run.json`` and appended once to the registry's
    ``decisions.jsonl``.

    One run per (colour, month): ``run.json``'s path does not depend on the version, so a rerun after this
    run promoted a challenger (production then resolves to it) finds the month done and adds nothing.
    """

    code_version = 2  # 2: pinned version, own months not monitored, explicit retrain policy, deferral
    color = ColorParameter()
    month = MonthParameter(description="the month to predict, monitor and (if needed) retrain on")
    model_version = predictions.ModelVersionParameter(  # vNNNN or 'production': never a path
        default="production",
        description="version to monitor (vNNNN); 'production' is resolved once, when the task is created",
    )

    @classmethod
    def get_param_values(cls, params: Any, args: Any, kwargs: Any) -> list[tuple[str, Any]]:
        """luigi's parameter values, with ``model_version='production'`` replaced by the concrete version.

        luigi calls this when a task is created (``Register.__call__`` for its instance cache key, then
        ``Task.__init__``), from Python or from the command line; ``to_str_params`` then carries vNNNN, so
        any later re-creation of the task (from string parameters) keeps the pinned version.
        """
        values = super().get_param_values(params, args, kwargs)
        named = dict(values)
        if named.get("model_version") != "production":
            return values
        named["model_version"] = predictions.production_version(named["color"])
        return [(name, named[name]) for name, _ in values]

    def output_dir(self) -> Path | S3Url:
        """``<work_dir>/MonthlyRun/<color>_<YYYY-MM>-c<code_version>``: one record per month, whatever the
        version it pinned (recorded inside) and whatever changed upstream since (the month's run happened)."""
        name = f"{self.color}_{format_month(self.month)}-c{self.code_version}"
        return work_root() / self.task_family / name

    def decision_key(self) -> str:
        return f"MonthlyRun-{self.color}-{format_month(self.month)}"

    def pinned_metadata(self) -> dict[str, Any]:
        cached = self.__dict__.get("_pinned_metadata")
        if cached is None:
            cached = predictions.model_registry(self.color).metadata(self.model_version)
            self.__dict__["_pinned_metadata"] = cached
        return cached

    def own_month(self) -> bool:
        """M is one of the pinned model's train / validation / test months: monitoring it would be no test."""
        months = lineage_months(self.pinned_metadata())
        return format_month(self.month) in {m for ms in months.values() for m in ms}

    def requires(self) -> dict[str, luigi.Task]:
        deps: dict[str, luigi.Task] = {
            "predictions": BatchPredictions(color=self.color, month=self.month, model_version=self.model_version)
        }
        if not self.own_month():
            deps["monitoring"] = MonitoringReport(color=self.color, month=self.month, model_version=self.model_version)
        return deps

    def output(self) -> luigi.target.FileSystemTarget:
        return self.target("run.json")

    def _base_record(self) -> dict[str, Any]:
        predictions = self.input()["predictions"]
        scoring_file = file_target(location(predictions.path).with_name("scoring.json"))
        scoring = read_json(scoring_file) if scoring_file.exists() else {}
        return {
            "month": format_month(self.month),
            "color": self.color,
            "monitored_version": self.model_version,
            "model_months": lineage_months(self.pinned_metadata()),
            "predictions": predictions.path,
            "scoring": {k: scoring.get(k) for k in ("scored", "not_scored", "not_scored_by_reason", "clipped")},
            "retrained": False,
        }

    def _monitored_record(self) -> dict[str, Any]:
        monitoring_dir = location(self.input()["monitoring"].path)
        report = read_json(file_target(monitoring_dir / "monitoring.json"))
        policy = retrain_decision(report, self.pinned_metadata().get("feature_importance"), MonitoringConfig().policy())
        return {
            "verdict": report["verdict"],
            "reasons": report["reasons"],
            "missingness": report["missingness"]["notes"],
            "rmse_ratio_to_test": report["accuracy"]["rmse_ratio_to_test"],
            "monitoring_report": str(monitoring_dir / "report.html"),
            "retrain_policy": MonitoringConfig().policy().retrain_on,
            "retrain_rule": policy["rule"],
            "policy_reason": policy["reason"],
        }

    def run(self) -> Iterator[MonthlyTraining]:
        record = self._base_record()
        if self.own_month():
            reason = f"not monitored: month used in training/test of {self.model_version}"
            record.update({"verdict": "not monitored", "decision": reason, "why_not_retrained": reason})
        else:
            record.update(self._monitored_record())
            if record["retrain_rule"] is None:
                decision = f"{record['verdict']}; not retrained"
                record.update({"decision": decision, "why_not_retrained": record["policy_reason"]})
            else:
                yield from self._retrain(record)
        self._finish(record)

    def _retrain(self, record: dict[str, Any]) -> Iterator[MonthlyTraining]:
        """Train the challenger (a dynamic dependency) and record the gate's decision, or defer retraining
        when the window's months are not local: never minutes of downloads inside the monthly run."""
        training = MonthlyTraining(color=self.color, month=self.month)
        missing = training.months_not_local()
        if missing:
            decision = f"{record['verdict']}; retrain deferred: {', '.join(missing)} missing"
            record.update(
                {
                    "decision": decision,
                    "retrain_deferred": True,
                    "missing_months": missing,
                    "why_not_retrained": decision,
                }
            )
            return
        self.progress(f"{record['policy_reason']}: training a challenger", 40)
        yield training
        registered = read_json(training.registration().output())
        gate = registered["gate"]
        outcome = "promoted" if gate["promote"] else "not promoted"
        record.update(
            {
                "retrained": True,
                "why_retrained": record["policy_reason"],
                "challenger_version": registered["version"],
                "challenger_months": gate.get("candidate_months"),
                "promoted": gate["promote"],
                "gate_rule": gate.get("rule"),
                "gate_reason": gate["reason"],
                "production_after": predictions.production_version(self.color),
                "decision": f"{record['verdict']}; retrained {registered['version']}: {outcome}",
            }
        )

    def _finish(self, record: dict[str, Any]) -> None:
        predictions.model_registry(self.color).record_decision(record, key=self.decision_key())
        write_json(self.output(), record)
        self.progress(record["decision"], 100)
