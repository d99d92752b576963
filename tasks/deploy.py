"""Deployment and monitoring: batch predictions, the monthly monitoring report, and the monthly MLOps loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import luigi

from tasks.base import PipelineTask
from tasks.data import ModelInputTable, ValidatedTrips
from tasks.params import ColorParameter, MonthParameter
from tasks.pipelines import MonthlyTraining
from tasks.settings import MonitoringConfig, RegistryConfig, ValidationConfig
from tasks.targets import (
    S3Url,
    atomic_path,
    file_target,
    location,
    open_registry,
    read_json,
    read_table,
    work_root,
    write_json,
)
from tripduration.evaluation import render_monitoring_html
from tripduration.monitoring import monitor_month, retrain_decision
from tripduration.months import format_month
from tripduration.nodes import BATCH_INPUT_COLUMNS, lineage_months, score_dispatchable
from tripduration.parquet import write_parquet
from tripduration.registry import ModelRegistry, check_version


def model_registry(color: str) -> ModelRegistry:
    return open_registry(RegistryConfig().model_name.format(color=color))


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


def production_version(color: str) -> str:
    """The version in production now (vNNNN); a clear error if there is none."""
    pointer = model_registry(color).production()
    if pointer is None:
        raise ValueError(f"no production model for {color}; run `python pipeline.py` (training) first")
    return str(pointer["version"])


class ModelVersionTask(PipelineTask):
    """A task that uses a registered model: ``model_version`` is a version name or ``production``.

    ``production`` is resolved when the task's output path is computed, and the path holds the resolved
    version: when production changes, the task is no longer complete and reruns with the new model.
    (MonthlyRun never passes ``production`` down: it pins a concrete version when it is created.)
    """

    all_cores = True
    color = ColorParameter()
    month = MonthParameter(description="month of trips, YYYY-MM")
    model_version = ModelVersionParameter(default="production", description="registry version (vNNNN) or 'production'")

    def resolved_version(self) -> str:
        if self.model_version != "production":
            return self.model_version
        try:
            return production_version(self.color)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None

    def output_dir(self) -> Path | S3Url:
        base = super().output_dir()
        return base.with_name(f"{base.name}-{self.resolved_version()}")

    def load(self) -> tuple[Any, dict[str, Any]]:
        return model_registry(self.color).load_model(self.resolved_version())


class BatchPredictions(ModelVersionTask):
    """Scores a month as a dispatch-time batch job would: every trip whose dispatch-time fields are valid
    (kept trips and trips rejected only for their outcome), with a registered model (sha256 checked).

    Writes ``predictions.parquet`` (trip key columns, ``source`` kept/rejected, ``trip_row`` in that file,
    ``outcome_rejected``, ``predicted_duration_min`` clipped to the ``[validation]`` duration range,
    ``clipped``, ``model_name``, ``model_version``) and, beside it, ``scoring.json``: rows scored, rows not
    scored per reason, predictions clipped. ``predictions.parquet`` is written last (it marks completion).
    """

    code_version = 2  # 2: dispatchable trips (not only kept ones), clipped, scoring.json
    fingerprint_configs = (ValidationConfig,)

    def requires(self) -> ValidatedTrips:
        return ValidatedTrips(color=self.color, month=self.month)

    def output(self) -> luigi.LocalTarget:
        return self.target("predictions.parquet")

    def scoring_target(self) -> luigi.LocalTarget:
        return self.target("scoring.json")

    def run(self) -> None:
        self.progress("loading the model", 5)
        model, meta = self.load()
        columns = list(BATCH_INPUT_COLUMNS)
        kept = read_table(self.input()["kept.parquet"], columns=columns)
        rejected = read_table(self.input()["rejected.parquet"], columns=[*columns, "reason"])
        cfg = ValidationConfig()
        self.progress(f"predicting {len(kept)} kept trips and the scorable rejected ones with {meta['version']}", 30)
        predictions, facts = score_dispatchable(
            model, kept, rejected, meta["name"], meta["version"], (cfg.min_duration_min, cfg.max_duration_min)
        )
        facts["month"] = format_month(self.month)
        write_json(self.scoring_target(), facts)
        with atomic_path(self.output()) as tmp:
            write_parquet(predictions, tmp)
        self.progress(f"{facts['scored']} predictions, {facts['not_scored']} trips not scorable", 100)


class MonitoringReport(ModelVersionTask):
    """Once a month's actual durations are known: the model's accuracy on it (trips with a valid outcome)
    against its own test metrics, drift (PSI) of each feature and of the predictions against the training
    data, missingness and rejected shares, and a verdict (ok / drift / degraded) from ``[monitoring]``.
    Writes ``report/`` with ``monitoring.json``, plots and ``report.html``."""

    code_version = 2  # 2: PSI on present values, missingness apart, thresholds and model test metrics in it
    fingerprint_configs = (MonitoringConfig,)

    def requires(self) -> dict[str, luigi.Task]:
        return {
            "table": ModelInputTable(color=self.color, month=self.month),
            "validated": ValidatedTrips(color=self.color, month=self.month),
        }

    def output(self) -> luigi.target.FileSystemTarget:
        return self.folder("report")

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
        test_metrics = meta.get("metrics", {}).get("test")
        report = monitor_month(model, profile, table, rejected_share, MonitoringConfig().thresholds(), test_metrics)
        months = lineage_months(meta)
        report.update(
            {
                "month": format_month(self.month),
                "model": {
                    "name": meta["name"],
                    "version": meta["version"],
                    "test_month": ", ".join(months.get("test", [])) or None,
                    "months": months,
                },
            }
        )
        with atomic_path(self.output()) as tmp:
            Path(tmp).mkdir()
            (Path(tmp) / "monitoring.json").write_text(json.dumps(report, indent=2, sort_keys=True))
            render_monitoring_html(report, Path(tmp))
        self.progress(f"verdict: {report['verdict']}", 100)


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
    model_version = luigi.Parameter(
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
        named["model_version"] = production_version(named["color"])
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
            cached = model_registry(self.color).metadata(self.model_version)
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

    def output(self) -> luigi.LocalTarget:
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
                "production_after": production_version(self.color),
                "decision": f"{record['verdict']}; retrained {registered['version']}: {outcome}",
            }
        )

    def _finish(self, record: dict[str, Any]) -> None:
        model_registry(self.color).record_decision(record, key=self.decision_key())
        write_json(self.output(), record)
        self.progress(record["decision"], 100)
