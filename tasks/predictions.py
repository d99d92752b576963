"""Using a registered model: resolving ``production`` to a version, and batch predictions of a month."""

from __future__ import annotations

from typing import Any

import luigi

from tasks.base import PipelineTask
from tasks.data import ValidatedTrips
from tasks.params import ColorParameter, MonthParameter
from tasks.settings import RegistryConfig, ValidationConfig
from tasks.targets import Output, dump, load, open_registry
from tripduration.data.months import format_month
from tripduration.prediction.batch import BATCH_INPUT_COLUMNS, score_dispatchable
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.names import check_version
from tripduration.registry.store import ModelRegistry
from tripduration.training.candidates import build_pipeline


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
    runs_also = (build_pipeline,)  # the registered model's feature step and encoders run when it predicts
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

    def output_dir(self) -> str:
        return f"{super().output_dir()}-{self.resolved_version()}"

    def load(self) -> tuple[Any, ModelMetadata]:
        """The model (sha256 checked before unpickling) and its metadata, typed."""
        registry, version = model_registry(self.color), self.resolved_version()
        model, _ = registry.load_model(version)
        return model, registry.model_metadata(version)


class BatchPredictions(ModelVersionTask):
    """Scores a month as a dispatch-time batch job would: every trip whose dispatch-time fields are valid
    (kept trips and trips rejected only for their outcome), with a registered model (sha256 checked).

    Writes ``predictions.parquet`` (trip key columns, ``source`` kept/rejected, ``trip_row`` in that file,
    ``outcome_rejected``, ``predicted_duration_min`` clipped to the ``[validation]`` duration range,
    ``clipped``, ``model_name``, ``model_version``) and, beside it, ``scoring.json``: rows scored, rows not
    scored per reason, predictions clipped. ``predictions.parquet`` is written last (it marks completion).
    """

    fingerprint_configs = (ValidationConfig,)

    def requires(self) -> ValidatedTrips:
        return ValidatedTrips(color=self.color, month=self.month)

    def output(self) -> Output:
        return self.target("predictions.parquet")

    def scoring_target(self) -> Output:
        return self.target("scoring.json")

    def run(self) -> None:
        model, meta = self.load()
        columns, cfg = list(BATCH_INPUT_COLUMNS), ValidationConfig()
        kept = load(self.input()["kept.parquet"], columns)
        rejected = load(self.input()["rejected.parquet"], [*columns, "reason"])
        plausible = (cfg.min_duration_min, cfg.max_duration_min)
        predictions, facts = score_dispatchable(
            model, kept, rejected, str(meta.name), str(meta.version), plausible, progress=self.progress
        )
        dump(self.scoring_target(), {**facts, "month": format_month(self.month)})
        dump(self.output(), predictions)  # last: it marks completion
