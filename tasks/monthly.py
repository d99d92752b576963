"""The monthly MLOps loop: monitor the pinned production model on the new month, retrain when the policy says so."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import luigi

from tasks import predictions
from tasks.base import PipelineTask, invalidation_salt
from tasks.data import TripData
from tasks.monitoring import MonitoringReport
from tasks.params import ColorParameter, MonthParameter
from tasks.pipelines import MonthlyTraining
from tasks.predictions import BatchPredictions
from tasks.settings import MonitoringConfig
from tasks.targets import Output, work_storage
from tripduration.data.months import format_month, parse_month
from tripduration.monitoring.policy import retrain_decision
from tripduration.registry.metadata import ModelMetadata
from tripduration.runtime import clock


class MonthlyRun(PipelineTask):
    """The monthly MLOps loop for ``month`` M (cron runs it for every month as its data arrives: ``daily``).

    Pinned to one model: ``model_version`` ``production`` is resolved when the task is created, before the graph
    is built (:meth:`get_param_values`): to the version M was already monitored with if M has a record, else to
    the version in production now. Only the concrete version is passed down, so the task id (and ``status``)
    names the version M was actually monitored with, and a promotion during the run (its own challenger)
    cannot change it.

    Fetches and validates M, batch-predicts it with that version and monitors it on M, unless M is one of
    the version's own months (train / validation / test): then the record says "not monitored". The
    ``[monitoring] retrain_on`` policy decides whether to train a challenger on the most recent window
    (``MonthlyTraining(M)``: test M, validate M-1, train before); if some of the window's months are not
    local, retraining is deferred instead of downloading them inside the monthly run. The registry's gate
    decides on promotion. Each step is an event of the registry's log (monitored, deferred, resumed,
    retrained; promoted/rejected come from the registration), and the month's record is ``run.json``.

    One record per (colour, month), whatever the version: a rerun after this run promoted a challenger finds
    the month done and adds nothing. A deferred retrain is not done: once the months it waits for are here,
    the task is incomplete again (:meth:`complete`) and its next run resumes the retrain and the gate
    (``daily`` does that, and so does ``monthly-run --month M``): rerun = resume holds for the loop too.
    """

    color = ColorParameter()
    month = MonthParameter(description="the month to predict, monitor and (if needed) retrain on")
    model_version = predictions.ModelVersionParameter(  # vNNNN or 'production': never a path
        default="production",
        description="version to monitor (vNNNN); 'production': the version of the month's record, or the "
        "production version when the month has none, resolved once, when the task is created",
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
        record = month_record(named["color"], named["month"])
        if record is not None and record.get("monitored_version"):
            named["model_version"] = str(record["monitored_version"])
        else:
            named["model_version"] = predictions.production_version(named["color"])
        return [(name, named[name]) for name, _ in values]

    def invalidation_key(self) -> str:
        """One key per (colour, month), whatever the version: ``invalidate MonthlyRun --month M`` redoes M."""
        return month_key(self.color, self.month)

    def output_dir(self) -> str:
        return record_dir(self.color, self.month)

    def output(self) -> Output:
        return self.target("run.json")

    def complete(self) -> bool:
        """The month's record exists and no deferred retrain of it could run now (its months arrived)."""
        return self.output().exists() and not resumable(self.output().load(), self.color)

    def pinned_metadata(self) -> ModelMetadata:
        cached = self.__dict__.get("_pinned_metadata")
        if cached is None:
            cached = predictions.model_registry(self.color).model_metadata(self.model_version)
            self.__dict__["_pinned_metadata"] = cached
        return cached

    def own_month(self) -> bool:
        """M is one of the pinned model's train / validation / test months: monitoring it would be no test."""
        months = self.pinned_metadata().months()
        return format_month(self.month) in {m for ms in months.values() for m in ms}

    def requires(self) -> dict[str, luigi.Task]:
        deps: dict[str, luigi.Task] = {
            "predictions": BatchPredictions(color=self.color, month=self.month, model_version=self.model_version)
        }
        if not self.own_month():
            deps["monitoring"] = MonitoringReport(color=self.color, month=self.month, model_version=self.model_version)
        return deps

    def _base_record(self) -> dict[str, Any]:
        predictions = self.input()["predictions"]
        scoring_file = predictions.sibling("scoring.json")
        scoring = scoring_file.load() if scoring_file.exists() else {}
        return {
            "month": format_month(self.month),
            "color": self.color,
            "at": now(),
            "monitored_version": self.model_version,
            "model_months": self.pinned_metadata().months(),
            "predictions": predictions.path,
            "scoring": {k: scoring.get(k) for k in ("scored", "not_scored", "not_scored_by_reason", "clipped")},
            "retrained": False,
        }

    def _monitored_record(self) -> dict[str, Any]:
        monitoring_dir = self.input()["monitoring"]
        report = monitoring_dir.child("monitoring.json").load()
        policy = retrain_decision(report, self.pinned_metadata().feature_importance, MonitoringConfig().policy())
        return {
            "verdict": report["verdict"],
            "reasons": report["reasons"],
            "missingness": report["missingness"]["notes"],
            "rmse_ratio_to_test": report["accuracy"]["rmse_ratio_to_test"],
            "monitoring_report": monitoring_dir.child("report.html").path,
            "retrain_policy": MonitoringConfig().policy().retrain_on,
            "retrain_rule": policy["rule"],
            "policy_reason": policy["reason"],
        }

    def run(self) -> Iterator[MonthlyTraining]:
        previous = self.output().load() if self.output().exists() else None
        if previous is not None and previous.get("retrain_deferred"):
            record = dict(previous)
            waited = record.pop("missing_months", [])
            record.update(retrain_deferred=False, resumed_at=now(), resumed_after=waited)
            self._event("resumed", record, waited_for=waited, deferred_at=previous.get("deferred_at"))
            yield from self._retrain(record)
        else:
            record = self._base_record()
            if self.own_month():
                reason = f"not monitored: month used in training/test of {self.model_version}"
                record.update({"verdict": "not monitored", "decision": reason, "why_not_retrained": reason})
                self._event("not monitored", record, reason=reason)
            else:
                record.update(self._monitored_record())
                self._event("monitored", record, verdict=record["verdict"], ratio=record["rmse_ratio_to_test"])
                if record["retrain_rule"] is None:
                    decision = f"{record['verdict']}; not retrained"
                    record.update({"decision": decision, "why_not_retrained": record["policy_reason"]})
                else:
                    yield from self._retrain(record)
        self.output().dump(record)
        self.progress(record["decision"], 100)

    def _event(self, kind: str, record: dict[str, Any], **facts: Any) -> None:
        """One event of the registry's log, once per (month, record, kind): a rerun after a crash adds none."""
        unique = f"{kind}:{self.invalidation_key()}:{invalidation_salt(self.invalidation_key()) or ''}"
        unique += f":{record.get('resumed_at', '')}:{record.get('challenger_version', '')}"
        predictions.model_registry(self.color).record_event(
            kind,
            unique=unique,
            month=format_month(self.month),
            color=self.color,
            monitored_version=self.model_version,
            **facts,
        )

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
                    "deferred_at": now(),
                    "why_not_retrained": decision,
                }
            )
            self._event("deferred", record, missing_months=missing, reason=record["policy_reason"])
            return
        self.progress(f"{record['policy_reason']}: training a challenger", 40)
        yield training
        registered = training.registration().output().load()
        gate = registered["gate"] or {}
        outcome = "promoted" if gate.get("promote") else "not promoted"
        if registered.get("identical"):
            outcome = f"identical to {registered['version']}, nothing registered"
        resumed = " (resumed deferral)" if record.get("resumed_at") else ""
        record.update(
            {
                "retrained": True,
                "why_retrained": record["policy_reason"],
                "challenger_version": registered["version"],
                "challenger_months": gate.get("candidate_months"),
                "promoted": bool(gate.get("promote")) and not registered.get("identical"),
                "gate_rule": gate.get("rule"),
                "gate_reason": gate.get("reason"),
                "production_after": predictions.production_version(self.color),
                "decision": f"{record['verdict']}; retrained {registered['version']}{resumed}: {outcome}",
            }
        )
        self._event("retrained", record, challenger=registered["version"], promoted=record["promoted"])


def month_key(color: str, month: dt.date) -> str:
    return f"MonthlyRun-{color}-{format_month(month)}"


def record_dir(color: str, month: dt.date) -> str:
    """``MonthlyRun/<color>_<YYYY-MM>``: one record per month, whatever the version it pinned (recorded inside)
    and whatever changed upstream since; ``invalidate MonthlyRun --month M`` starts a new one."""
    folder = f"MonthlyRun/{color}_{format_month(month)}"
    salt = invalidation_salt(month_key(color, month))
    return f"{folder}-{hashlib.sha256(salt.encode()).hexdigest()[:8]}" if salt else folder


def month_record(color: str, month: dt.date) -> dict[str, Any] | None:
    """The month's ``run.json`` (None when the month has not run)."""
    target = Output(work_storage(), f"{record_dir(color, month)}/run.json")
    return target.load() if target.exists() else None


def resumable(record: dict[str, Any], color: str) -> bool:
    """A deferred retrain whose missing months have all arrived (its run can resume it now)."""
    if not record.get("retrain_deferred"):
        return False
    waiting = [parse_month(m) for m in record.get("missing_months", [])]
    return all(TripData(color=color, month=m).complete() for m in waiting)


def now() -> str:
    return clock.stamp()
