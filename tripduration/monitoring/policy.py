"""The verdict of a monitored month (ok / drift / degraded) and the retrain policy that acts on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: monitored (derived) feature -> the model input column whose permutation importance it shares
FEATURE_INPUT: dict[str, str] = {"pickup_hour": "pickup_datetime", "pickup_weekday": "pickup_datetime"}


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the verdict. These are the only defaults: ``[monitoring]`` (``tasks.settings.MonitoringConfig``)
    takes its defaults from this class, and luigi.cfg may only override them."""

    psi_drift: float = 0.2
    prediction_psi_drift: float = 0.2
    rmse_degraded_ratio: float = 1.25
    #: a column whose missing share moves by more than this (absolute, 0.1 = 10 points) is reported
    missing_share_change: float = 0.1


#: the rules ``[monitoring] retrain_on`` may list, in the order they are checked
RETRAIN_RULES: dict[str, str] = {
    "degraded": "the month's RMSE exceeds rmse_degraded_ratio x the model's test RMSE",
    "drift_important": "a feature the model depends on (importance share >= importance_min_share) drifted",
    "drift_any": "any feature drifted",
    "prediction_drift": "the predictions' distribution drifted",
    "missingness": "a column's missing share changed by more than missing_share_change",
}


@dataclass(frozen=True)
class RetrainPolicy:
    """When a monitored month leads to training a challenger (``[monitoring] retrain_on``).

    Default: retrain on degraded accuracy, or on drift of a feature the model depends on, i.e. whose
    permutation importance (registered metadata) is at least ``importance_min_share`` of the total. Drift
    of a feature the model hardly uses, or a change in missingness, is reported but retrains nothing.
    """

    retrain_on: tuple[str, ...] = ("degraded", "drift_important")
    importance_min_share: float = 0.05

    def __post_init__(self) -> None:
        unknown = [r for r in self.retrain_on if r not in RETRAIN_RULES]
        if unknown:
            raise ValueError(
                f"[monitoring] retrain_on: unknown rule(s) {', '.join(map(repr, unknown))}; "
                f"use a comma-separated subset of {', '.join(RETRAIN_RULES)}"
            )
        if not 0 <= self.importance_min_share <= 1:
            raise ValueError(
                f"[monitoring] importance_min_share is {self.importance_min_share!r}; it is a share between 0 and 1"
            )


def verdict(report: Mapping[str, Any], thresholds: Thresholds) -> tuple[str, list[str]]:
    """``degraded`` (accuracy fell past the threshold) > ``drift`` (inputs or predictions shifted) > ``ok``.

    Missingness is not part of the verdict: it is reported beside it (``report["missingness"]``).
    """
    reasons: list[str] = []
    ratio = report["accuracy"]["rmse_ratio_to_test"]
    if ratio > thresholds.rmse_degraded_ratio:
        reasons.append(f"RMSE is {ratio:.2f}x the model's test RMSE (threshold {thresholds.rmse_degraded_ratio})")
    degraded = bool(reasons)
    for col, value in report["drift"]["feature_psi"].items():
        if value > thresholds.psi_drift:
            reasons.append(f"{col} PSI {value:.3f} > {thresholds.psi_drift}")
    if report["drift"]["prediction_psi"] > thresholds.prediction_psi_drift:
        reasons.append(f"prediction PSI {report['drift']['prediction_psi']:.3f} > {thresholds.prediction_psi_drift}")
    if degraded:
        return "degraded", reasons
    return ("drift" if reasons else "ok"), reasons or ["no threshold crossed"]


def importance_shares(importance: Mapping[str, float]) -> dict[str, float]:
    """Each input's share of the total positive permutation importance (negative importances count as 0)."""
    positive = {k: max(0.0, float(v)) for k, v in importance.items()}
    total = sum(positive.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in positive.items()}


def _drifted(report: Mapping[str, Any]) -> dict[str, float]:
    limit = report["thresholds"]["psi_drift"]
    return {c: v for c, v in report["drift"]["feature_psi"].items() if v > limit}


def _important_drift(
    report: Mapping[str, Any], importance: Mapping[str, float] | None, policy: RetrainPolicy
) -> tuple[list[str], list[str]]:
    """(notes on drifted features that count, notes on those that do not) under ``drift_important``."""
    if not importance:
        return [f"{c} PSI {v:.3f} (feature importance unknown: counts)" for c, v in _drifted(report).items()], []
    shares = importance_shares(importance)
    counts: list[str] = []
    ignored: list[str] = []
    for col, value in _drifted(report).items():
        share = shares.get(FEATURE_INPUT.get(col, col), 0.0)
        note = f"{col} PSI {value:.3f} > {report['thresholds']['psi_drift']}, importance share {share:.2f}"
        (counts if share >= policy.importance_min_share else ignored).append(note)
    return counts, ignored


def _rule_evidence(
    rule: str, report: Mapping[str, Any], importance: Mapping[str, float] | None, policy: RetrainPolicy
) -> list[str]:
    """Why ``rule`` fires on this report (empty: it does not)."""
    if rule == "degraded":
        return [r for r in report["reasons"] if r.startswith("RMSE is")] if report["verdict"] == "degraded" else []
    if rule == "drift_important":
        return _important_drift(report, importance, policy)[0]
    if rule == "drift_any":
        return [f"{c} PSI {v:.3f} > {report['thresholds']['psi_drift']}" for c, v in _drifted(report).items()]
    if rule == "prediction_drift":
        value, limit = report["drift"]["prediction_psi"], report["thresholds"]["prediction_psi_drift"]
        return [f"prediction PSI {value:.3f} > {limit}"] if value > limit else []
    return list(report["missingness"]["notes"])


def retrain_decision(
    report: Mapping[str, Any], importance: Mapping[str, float] | None, policy: RetrainPolicy
) -> dict[str, Any]:
    """Apply ``policy`` to a monitoring report: whether to retrain, the first rule that fired and why.

    ``importance`` is the model's registered permutation importance per input column (None if unknown:
    then every drifted feature counts for ``drift_important``).
    """
    for rule in policy.retrain_on:
        evidence = _rule_evidence(rule, report, importance, policy)
        if evidence:
            return {"retrain": True, "rule": rule, "reason": f"rule {rule} fired: " + "; ".join(evidence)}
    reason = f"no retrain rule fired (retrain_on = {', '.join(policy.retrain_on)})"
    not_counted = _important_drift(report, importance, policy)[1] if "drift_important" in policy.retrain_on else []
    if not_counted:
        reason += f"; drift of features below importance share {policy.importance_min_share}: " + "; ".join(not_counted)
    if report["missingness"]["notes"] and "missingness" not in policy.retrain_on:
        reason += "; missingness changed (reported, not a retrain rule): " + "; ".join(report["missingness"]["notes"])
    return {"retrain": False, "rule": None, "reason": reason}
