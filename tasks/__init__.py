"""Thin Luigi tasks: each reads its inputs, calls one function of ``tripduration`` and writes its outputs
atomically under a path derived from its parameters (see :mod:`tasks.base`)."""

import tasks.tracking  # noqa: F401 - MLflow follows the training runs (luigi event handlers)
from tasks.base import PipelineTask
from tasks.data import ModelInputTable, TripData, ValidatedTrips, ZoneLookup
from tasks.evaluation import EvaluationReport
from tasks.monitoring import MonitoringReport
from tasks.monthly import MonthlyRun
from tasks.ops.luigi_cli import use_exact_flags
from tasks.pipelines import MonthlyTraining, TrainingPipeline
from tasks.predictions import BatchPredictions
from tasks.registration import RegisteredModel
from tasks.settings import (
    DownloadConfig,
    EvaluationConfig,
    MetricsConfig,
    ModelSearchConfig,
    MonitoringConfig,
    MonthlyConfig,
    ParallelismConfig,
    PathsConfig,
    RegistryConfig,
    TrainingConfig,
    ValidationConfig,
)
from tasks.training import CandidateScore, FinalModel, ModelSelection

__all__ = [
    "BatchPredictions",
    "CandidateScore",
    "DownloadConfig",
    "EvaluationConfig",
    "EvaluationReport",
    "FinalModel",
    "MetricsConfig",
    "ModelInputTable",
    "ModelSearchConfig",
    "ModelSelection",
    "MonitoringConfig",
    "MonitoringReport",
    "MonthlyConfig",
    "MonthlyRun",
    "MonthlyTraining",
    "ParallelismConfig",
    "PathsConfig",
    "PipelineTask",
    "RegisteredModel",
    "RegistryConfig",
    "TrainingConfig",
    "TrainingPipeline",
    "TripData",
    "ValidatedTrips",
    "ValidationConfig",
    "ZoneLookup",
]

use_exact_flags()  # `python -m luigi --module pipeline X --month M`: --month is --month
