"""Thin Luigi tasks: each reads its inputs, calls one function of ``tripduration`` and writes its outputs
atomically under a path derived from its parameters (see :mod:`tasks.base`)."""

from tasks.base import PipelineTask, download, model_search, parallelism, paths, registry, validation
from tasks.data import ModelInputTable, TripData, ValidatedTrips, ZoneLookup
from tasks.deploy import BatchPredictions, MonitoringReport, MonthlyRun, monitoring
from tasks.evaluation import EvaluationReport
from tasks.pipelines import MonthlyTraining, TrainingPipeline, monthly
from tasks.registration import RegisteredModel
from tasks.training import CandidateScore, FinalModel, ModelSelection

__all__ = [
    "BatchPredictions",
    "CandidateScore",
    "EvaluationReport",
    "FinalModel",
    "ModelInputTable",
    "ModelSelection",
    "MonitoringReport",
    "MonthlyRun",
    "MonthlyTraining",
    "PipelineTask",
    "RegisteredModel",
    "TrainingPipeline",
    "TripData",
    "ValidatedTrips",
    "ZoneLookup",
    "download",
    "model_search",
    "monitoring",
    "monthly",
    "parallelism",
    "paths",
    "registry",
    "validation",
]
