"""The quality gate: promote a new model only if it beats the baseline and the production model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from tripduration.evaluation.metrics import regression_metrics
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.store import ModelRegistry
from tripduration.training.features import MODEL_INPUT_COLUMNS, split_xy


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def quality_gate(candidate_rmse: float, baseline_rmse: float, production_rmse: float | None) -> GateDecision:
    """Promote only a model that beats the course baseline and the current production model.

    All three RMSEs must be measured on the same test month.
    """
    if not candidate_rmse < baseline_rmse:
        return GateDecision(False, f"RMSE {candidate_rmse:.4f} does not beat the baseline's {baseline_rmse:.4f}")
    if production_rmse is not None and not candidate_rmse < production_rmse:
        return GateDecision(
            False, f"RMSE {candidate_rmse:.4f} does not beat the production model's {production_rmse:.4f}"
        )
    against = "no production model yet" if production_rmse is None else f"production {production_rmse:.4f}"
    return GateDecision(True, f"RMSE {candidate_rmse:.4f} beats baseline {baseline_rmse:.4f} and {against}")


def production_rmse_on(registry_model: Pipeline | None, test: pd.DataFrame) -> float | None:
    """RMSE of the current production model on this test month (None if there is none)."""
    if registry_model is None:
        return None
    X, y = split_xy(test)
    return regression_metrics(y, registry_model.predict(X[list(MODEL_INPUT_COLUMNS)]))["rmse"]


def _recorded_ratio_gate(metrics: Mapping[str, Any], production: ModelMetadata, test_month: str) -> GateDecision:
    """Rule when the production model cannot be scored on the candidate's test month (it was fitted on it):
    promote only if the candidate beats its baseline AND its test RMSE ratio to that baseline is below the
    production model's own recorded ratio (each measured on a month the model never saw)."""
    version = production.version
    cand, base = metrics["test"]["rmse"], metrics["baseline_test"]["rmse"]
    ratio = cand / base
    prod_ratio = production.test_metrics.get("rmse_ratio_to_baseline")
    months = production.months()
    head = (
        f"cannot compare with production {version} on {test_month}: {version} was fitted on it "
        f"(train {', '.join(months.get('train', []))}; validation {', '.join(months.get('validation', []))}); "
        "rule: promote only if the candidate beats its baseline and its test RMSE ratio to its baseline "
        f"beats {version}'s recorded ratio"
    )
    if not cand < base:
        return GateDecision(False, f"{head}: RMSE {cand:.4f} does not beat the baseline's {base:.4f}")
    if prod_ratio is None:
        return GateDecision(False, f"{head}: {version} has no recorded ratio, so the candidate is not promoted")
    verdict = "promoted" if ratio < prod_ratio else "not promoted"
    return GateDecision(ratio < prod_ratio, f"{head}: {ratio:.4f} vs {float(prod_ratio):.4f}: {verdict}")


def gate_decision(
    registry: ModelRegistry,
    metadata: ModelMetadata,
    test: pd.DataFrame,
    production: Mapping[str, Any] | None | bool = False,
) -> tuple[GateDecision, dict[str, Any]]:
    """The quality gate, on a month neither model was fitted on (issue 15.1).

    The production model is scored on the candidate's test month only if that month is outside every month
    it was trained or validated on (its registered lineage; a model without lineage is taken as not fitted
    on it). Otherwise the gate says it cannot compare there and decides by :func:`_recorded_ratio_gate`.
    (Comparing both on a third month neither used would need that month's table at registration; not done.)
    Returns the decision and the facts recorded with it, both models' months included. ``production``: the
    pointer to compare with (default: the registry's current one).
    """
    metrics = metadata.metrics
    test_month = metadata.test_month
    facts: dict[str, Any] = {
        "candidate_months": metadata.months(),
        "compared_with_production": None,
        "production_months": None,
        "production_rmse_on_test_month": None,
        "compared_on_month": None,
    }
    if production is False:
        production = registry.production()
    if not isinstance(production, Mapping) or not production:
        decision = quality_gate(metrics["test"]["rmse"], metrics["baseline_test"]["rmse"], None)
        return decision, {**facts, "rule": "no_production"}
    version = str(production["version"])
    prod_meta = registry.model_metadata(version)
    facts.update({"compared_with_production": version, "production_months": prod_meta.months()})
    if test_month is not None and test_month in prod_meta.fitted_months:
        return _recorded_ratio_gate(metrics, prod_meta, test_month), {**facts, "rule": "recorded_ratio"}
    prod_model, _ = registry.load_model(version)
    production_rmse = production_rmse_on(prod_model, test)
    decision = quality_gate(metrics["test"]["rmse"], metrics["baseline_test"]["rmse"], production_rmse)
    facts.update({"production_rmse_on_test_month": production_rmse, "compared_on_month": test_month})
    return decision, {**facts, "rule": "same_month"}


def _recheck(registry: ModelRegistry, metadata: ModelMetadata, test: pd.DataFrame, gate: Mapping[str, Any]) -> Any:
    """The gate again, against the pointer a compare-and-swap is about to replace (S3: no lock).

    If it is still the production model the decision compared with, the decision stands; if another host
    promoted meanwhile, the candidate must beat that one too (so two hosts cannot both promote against the
    same pointer and the better model never gets replaced by a worse one).
    """

    def recheck(current: dict[str, Any] | None) -> tuple[bool, str]:
        if (current or {}).get("version") == gate.get("compared_with_production"):
            return bool(gate["promote"]), str(gate["reason"])
        decision, _facts = gate_decision(registry, metadata, test, production=current)
        return decision.promote, decision.reason

    return recheck
