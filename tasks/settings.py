"""Every configuration section the pipeline reads: one ``luigi.Config`` class per ``luigi.cfg`` section.

The classes are named ``<Section>Config`` so they collide with no module (``tasks/training.py``,
``tripduration/registry/store.py``...); :class:`Section` maps each one to its ``[section]`` through
:meth:`Section.get_task_family`, which is what luigi uses for config lookup, ``--section-key`` command-line
flags and the "not consumed" warnings. Each key's allowed values are checked before any work starts
(``tasks/ops/config_check.py``); each key is documented in ``docs/configuration.md`` (checked by
``tests/test_docs.py``). Defaults that the pure code also needs (monitoring thresholds) come from the pure
code's dataclasses, so the two cannot disagree.
"""

from __future__ import annotations

from typing import ClassVar

import luigi

from tripduration.io.s3 import S3Settings
from tripduration.monitoring.policy import RETRAIN_RULES, RetrainPolicy, Thresholds
from tripduration.training.candidates import CANDIDATES


class Section(luigi.Config):
    """A ``luigi.Config`` read from the ``[section]`` named by :attr:`section`, not from its class name."""

    section: ClassVar[str] = ""

    @classmethod
    def get_task_family(cls) -> str:
        return cls.section or cls.__name__


class PathsConfig(Section):
    """``[paths]``: where raw inputs are read and everything the pipeline writes goes."""

    section = "paths"

    raw_dir = luigi.Parameter(default="data", description="raw monthly trip files (read-only inputs)")
    work_dir = luigi.Parameter(default="var/work", description="intermediate outputs of every task")
    registry_dir = luigi.Parameter(default="models", description="file-based model registry")
    zone_lookup = luigi.Parameter(default="data/taxi_zone_lookup.csv", description="TLC taxi zone lookup CSV")


class DownloadConfig(Section):
    """``[download]``: where missing months come from and how hard to try."""

    section = "download"

    url_template = luigi.Parameter(
        default="https://d37ci6vzurychx.cloudfront.net/trip-data/{color}_tripdata_{month}.parquet",
        description="URL of a month's file; {color} and {month} (YYYY-MM) are filled in",
    )
    timeout_seconds = luigi.FloatParameter(default=60.0)
    deadline_seconds = luigi.FloatParameter(default=1800.0, description="bounds a whole download, retries included")
    min_bytes_per_second = luigi.FloatParameter(default=20000.0, description="slower over a window fails (0: none)")
    min_rate_window_seconds = luigi.FloatParameter(default=30.0, description="the window; the first is the grace")
    retries = luigi.IntParameter(default=4, description="extra attempts after a transient error")
    backoff_seconds = luigi.FloatParameter(default=2.0, description="first wait; doubles each retry")
    offline = luigi.BoolParameter(
        default=False,
        parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="never touch the network: a month not on disk is not available (exit 20)",
    )
    probe_timeout_seconds = luigi.FloatParameter(
        default=5.0, description="how long the pre-flight waits for the source to answer for a month"
    )


class ValidationConfig(Section):
    """``[validation]``: thresholds of the row rules (part of ValidatedTrips' fingerprint)."""

    section = "validation"

    min_duration_min = luigi.FloatParameter(default=1.0)
    max_duration_min = luigi.FloatParameter(default=60.0)
    max_distance_miles = luigi.FloatParameter(default=100.0)


class ModelSearchConfig(Section):
    """``[model_search]``: the candidates to train and score (each one is its own task)."""

    section = "model_search"

    candidates = luigi.ListParameter(
        default=tuple(CANDIDATES),  # every candidate of tripduration/training/candidates.py, in its order: one place
        description="the candidates trained and scored, one task each",
    )


class TrainingConfig(Section):
    """``[training]``: how much of the training window a fit may use (part of the fits' fingerprints)."""

    section = "training"

    max_rows = luigi.IntParameter(
        default=2_000_000,
        description="fit on a seeded sample of at most this many trips (0: every trip)",
    )


class EvaluationConfig(Section):
    """``[evaluation]``: cost of the permutation importance in the evaluation report (part of its fingerprint)."""

    section = "evaluation"

    importance_rows = luigi.IntParameter(default=5000, description="test trips the importance is computed on")
    importance_repeats = luigi.IntParameter(default=3, description="shuffles per column")


class RegistryConfig(Section):
    """``[registry]``: the model's name in the registry."""

    section = "registry"

    model_name = luigi.Parameter(default="{color}-trip-duration")


class ParallelismConfig(Section):
    """``[parallelism]``: native threads (OpenMP/BLAS) per task process.

    With ``--workers N`` luigi forks one process per running task; if each also starts one OpenMP thread per
    core, N processes fight over the cores (measured here: a 10 s HistGradientBoosting fit took 59 s with two
    workers). ``0`` means automatic: all cores with one worker; with several workers, as many threads as
    cores the task holds of the scheduler's ``cores`` resource (see :func:`scheduler_cores`), else one.
    """

    section = "parallelism"

    threads_per_task = luigi.IntParameter(default=0)


class MonitoringConfig(Section):
    """``[monitoring]``: thresholds of the verdict (ok / drift / degraded) and the retrain policy.

    The defaults are those of :class:`~tripduration.monitoring.Thresholds` and
    :class:`~tripduration.monitoring.RetrainPolicy`: one place, so the code and the config cannot disagree.
    """

    section = "monitoring"

    psi_drift = luigi.FloatParameter(
        default=Thresholds.psi_drift, description="a feature with PSI above this has drifted"
    )
    prediction_psi_drift = luigi.FloatParameter(
        default=Thresholds.prediction_psi_drift, description="drift of the predictions' distribution"
    )
    rmse_degraded_ratio = luigi.FloatParameter(
        default=Thresholds.rmse_degraded_ratio,
        description="degraded when the month's RMSE exceeds this multiple of the model's test RMSE",
    )
    missing_share_change = luigi.FloatParameter(
        default=Thresholds.missing_share_change,
        description="report a column whose missing share moves by more than this (not part of the verdict)",
    )
    retrain_on = luigi.Parameter(
        default=", ".join(RetrainPolicy.retrain_on),
        description=f"comma-separated retrain rules, checked in order, among: {', '.join(RETRAIN_RULES)}",
    )
    importance_min_share = luigi.FloatParameter(
        default=RetrainPolicy.importance_min_share,
        description="drift_important: a feature counts if its share of the permutation importance is at least this",
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.psi_drift, self.prediction_psi_drift, self.rmse_degraded_ratio, self.missing_share_change
        )

    def policy(self) -> RetrainPolicy:
        rules = tuple(r.strip() for r in str(self.retrain_on).split(",") if r.strip())
        return RetrainPolicy(rules, self.importance_min_share)


class MonthlyConfig(Section):
    """``[monthly]``: the window of the monthly job, and the calendar of the daily loop (``pipeline.py daily``)."""

    section = "monthly"

    train_window = luigi.IntParameter(default=1, description="number of training months before the validation month")
    first_month = luigi.Parameter(
        default="",
        description="first month the daily loop monitors (YYYY-MM); empty: the month after the test month of the "
        "first model that went into production",
    )
    max_lateness_days = luigi.IntParameter(
        default=60,
        description="a month not published this many days after it ended is overdue: the daily loop exits 20 "
        "naming it (before that it is awaited, not a failure)",
    )


class MetricsConfig(Section):
    """``[metrics]``: where the loop's state goes for Prometheus (node_exporter's textfile collector, or a
    Pushgateway); see docs/operations.md and docs/alerts/tripduration-rules.yml."""

    section = "metrics"

    textfile = luigi.Parameter(
        default="var/metrics/tripduration.prom",
        description="file written atomically at the end of every run (empty: none); point node_exporter's "
        "--collector.textfile.directory at its folder",
    )
    pushgateway_url = luigi.Parameter(default="", description="also push the metrics there (empty: no push)")


class S3Config(Section):
    """``[s3]``: the S3-compatible store of object-storage paths (AWS S3, MinIO, Ceph). Unset keys fall back to
    boto3's standard chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``~/.aws``, instance roles)."""

    section = "s3"

    endpoint_url = luigi.Parameter(default="", description="the S3 API's URL, e.g. http://127.0.0.1:9000 (MinIO)")
    aws_access_key_id = luigi.Parameter(default="", description="access key (else AWS_ACCESS_KEY_ID)")
    aws_secret_access_key = luigi.Parameter(default="", description="secret key (else AWS_SECRET_ACCESS_KEY)")
    region_name = luigi.Parameter(default="", description="region (else AWS_DEFAULT_REGION)")

    def settings(self) -> S3Settings:
        return S3Settings(
            self.endpoint_url or None,
            self.aws_access_key_id or None,
            self.aws_secret_access_key or None,
            self.region_name or None,
        )
