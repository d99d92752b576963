"""Every configuration section the pipeline reads: one class per ``luigi.cfg`` section, each key with its check.

The classes are named ``<Section>Config`` so they collide with no module (``tasks/training.py``,
``tripduration/registry/store.py``...); :class:`Section` maps each one to its ``[section]``
(``section = "paths"``), which is what luigi uses for config lookup, ``--section-key`` command-line flags and
the "not consumed" warnings. Defaults that the pure code also needs (monitoring thresholds) come from the pure
code's dataclasses, so the two cannot disagree.

Adding a key is one line: its type, default, check and description, e.g. in ``MonthlyConfig``::

    max_lateness_days = Whole(3, between(0, 31), "days after a month's end its file may still be missing")

then one row in ``docs/configuration.md`` (``tests/test_docs.py`` compares the rows, and their "allowed" cell,
with these declarations). The types are :class:`Real` and :class:`Whole` (numbers: NaN and infinities are always
refused), :class:`Flag` (``true`` / ``false``), :class:`Text` and :class:`Names` (a JSON list); the checks are
:func:`at_least`, :func:`between`, :func:`above`, ``non_empty``, ``any_text``, or a :class:`Check` written
beside the key (:data:`URL_TEMPLATE`, :data:`RETRAIN_ON`...). A key declared as a plain ``luigi.Parameter``
is refused when the class is defined. Adding a section is a class with ``section = "name"``; a relation
between two of its keys is its :meth:`~Section.relations` (see :class:`ValidationConfig`).

What the check does with these declarations, and when it runs (before any task, whatever starts the job):
``tasks/ops/config_check.py``. A key that a section does not declare is refused there, naming the closest
known key (``[paths] work_dri``: did you mean work_dir?).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from typing import Any

from tasks.ops.config_check import (
    Check,
    Flag,
    Names,
    Real,
    Section,
    Text,
    Whole,
    above,
    any_text,
    at_least,
    between,
    non_empty,
)
from tripduration.data.fetch import ALLOWED_SCHEMES
from tripduration.data.months import parse_month
from tripduration.io.s3 import S3Settings
from tripduration.monitoring.policy import RETRAIN_RULES, RetrainPolicy, Thresholds
from tripduration.registry.mlflow.mapping import TRACKING_SCHEMES, tracking_uri_problem
from tripduration.runtime.extras import has_extra, missing_extra_message
from tripduration.training.candidates import CANDIDATES


def _placeholders(value: Any, allowed: set[str], required: set[str]) -> str | None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(str(value)) if f is not None}
    except ValueError as exc:
        return f"is not a valid template ({exc})"
    unknown = fields - allowed
    if unknown:
        return f"may use only the placeholders {sorted('{' + f + '}' for f in allowed)}, not {sorted(unknown)}"
    missing = required - fields
    if missing:
        return f"must contain {sorted('{' + f + '}' for f in missing)}"
    return None


def _url_template(value: Any) -> str | None:
    scheme = str(value).split(":", 1)[0].lower() if ":" in str(value) else ""
    if scheme not in ALLOWED_SCHEMES:
        return f"must be a URL with scheme {', '.join(ALLOWED_SCHEMES)} (got scheme {scheme or 'none'!r})"
    return _placeholders(value, {"color", "month"}, required={"month"})


URL_TEMPLATE = Check(
    "scheme `http`, `https` or `file`; must contain `{month}`, may contain `{color}`, no other placeholder",
    _url_template,
)


def _model_name(value: Any) -> str | None:
    problem = _placeholders(value, {"color"}, required=set())
    if problem:
        return problem
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", str(value).format(color="green")):
        return "may hold only letters, digits, '.', '_', '-' and {color}"
    return None


MODEL_NAME = Check("letters, digits, `.`, `_`, `-` and `{color}`", _model_name)


def _candidates(value: Any) -> str | None:
    names = list(value)
    if not names:
        return f"must name at least one candidate of {sorted(CANDIDATES)}"
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        return f"names unknown candidates {unknown}; choose from {sorted(CANDIDATES)}"
    if len(set(names)) != len(names):
        return "repeats a candidate"
    return None


CANDIDATE_LIST = Check(
    "JSON list, at least one, names from `tripduration/training/candidates.py`, no repeats", _candidates
)


def retrain_rules(value: str) -> tuple[str, ...]:
    """The rules of a ``retrain_on`` value, in order (empty: never retrain)."""
    return tuple(rule.strip() for rule in str(value).split(",") if rule.strip())


def _retrain_on(value: Any) -> str | None:
    rules = retrain_rules(value)
    unknown = [rule for rule in rules if rule not in RETRAIN_RULES]
    if unknown:
        return f"names unknown rule(s) {', '.join(map(repr, unknown))}; choose from {', '.join(RETRAIN_RULES)}"
    if len(set(rules)) != len(rules):
        return "repeats a rule"
    return None


RETRAIN_ON = Check(f"comma-separated subset of {', '.join(f'`{r}`' for r in RETRAIN_RULES)}; empty: never", _retrain_on)


def _endpoint(value: Any) -> str | None:
    if str(value) and not re.match(r"^https?://[^\s/]+", str(value)):
        return "must be an http:// or https:// URL (e.g. http://127.0.0.1:9000), or empty"
    return None


ENDPOINT = Check("empty or an `http://` / `https://` URL", _endpoint)


def _optional_month(value: Any) -> str | None:
    if not str(value).strip():
        return None
    try:
        parse_month(str(value))
    except ValueError as exc:
        return str(exc)
    return None


OPTIONAL_MONTH = Check("empty or `YYYY-MM`", _optional_month)


def _tracking_uri(value: Any) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    problem = tracking_uri_problem(text)  # the check of export-mlflow --tracking-uri
    if problem:
        return problem
    if not has_extra("mlflow"):
        return missing_extra_message("mlflow")  # tracking would fail in every task: refuse up front
    return None


TRACKING_URI = Check(
    f"empty, or a URI with scheme {', '.join(f'`{s}`' for s in TRACKING_SCHEMES)} (`sqlite:///path`, "
    "`http(s)://host:port`), with the `mlflow` extra installed",
    _tracking_uri,
)


class PathsConfig(Section):
    """``[paths]``: where raw inputs are read and everything the pipeline writes goes."""

    section = "paths"

    raw_dir = Text("data", non_empty, "raw monthly trip files (read-only inputs)")
    work_dir = Text("var/work", non_empty, "intermediate outputs of every task")
    registry_dir = Text("models", non_empty, "file-based model registry")
    zone_lookup = Text("data/taxi_zone_lookup.csv", non_empty, "TLC taxi zone lookup CSV")


class DownloadConfig(Section):
    """``[download]``: where missing months come from and how hard to try."""

    section = "download"

    url_template = Text(
        "https://d37ci6vzurychx.cloudfront.net/trip-data/{color}_tripdata_{month}.parquet",
        URL_TEMPLATE,
        "URL of a month's file; {color} and {month} (YYYY-MM) are filled in",
    )
    timeout_seconds = Real(60.0, above(0, most=3600), "bounds connecting and each read, not the whole download")
    deadline_seconds = Real(1800.0, above(0, most=86400), "bounds a whole download, retries included")
    min_bytes_per_second = Real(20000.0, at_least(0), "slower over a window fails (0: none)")
    min_rate_window_seconds = Real(30.0, between(1, 3600), "the window; the first is the grace")
    retries = Whole(4, between(0, 100), "extra attempts after a transient error")
    backoff_seconds = Real(2.0, between(0, 3600), "first wait; doubles each retry")
    offline = Flag(False, "never touch the network: a month not on disk is not available (exit 20)")
    probe_timeout_seconds = Real(5.0, above(0, most=3600), "how long the pre-flight waits for the source")


class ValidationConfig(Section):
    """``[validation]``: thresholds of the row rules (part of ValidatedTrips' fingerprint)."""

    section = "validation"

    min_duration_min = Real(1.0, at_least(0), "shorter trips are rejected")
    max_duration_min = Real(60.0, above(0), "longer trips are rejected")
    max_distance_miles = Real(100.0, above(0), "longer trips are rejected (absurd_distance)")

    @classmethod
    def relations(cls, values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        low, high = values.get("min_duration_min"), values.get("max_duration_min")
        if low is not None and high is not None and not low < high:
            yield "max_duration_min", f"must be greater than min_duration_min ({low:g})"


class ModelSearchConfig(Section):
    """``[model_search]``: the candidates to train and score (each one is its own task)."""

    section = "model_search"

    # default: every candidate of tripduration/training/candidates.py, in its order: one place
    candidates = Names(tuple(CANDIDATES), CANDIDATE_LIST, "the candidates trained and scored, one task each")


class TrainingConfig(Section):
    """``[training]``: how much of the training window a fit may use (part of the fits' fingerprints)."""

    section = "training"

    max_rows = Whole(2_000_000, at_least(0), "fit on a seeded sample of at most this many trips (0: every trip)")


class EvaluationConfig(Section):
    """``[evaluation]``: cost of the permutation importance in the evaluation report (part of its fingerprint)."""

    section = "evaluation"

    importance_rows = Whole(5000, at_least(1), "test trips the importance is computed on")
    importance_repeats = Whole(3, between(1, 100), "shuffles per column")


class RegistryConfig(Section):
    """``[registry]``: the model's name in the registry."""

    section = "registry"

    model_name = Text("{color}-trip-duration", MODEL_NAME, "the model's name in the registry")


class ParallelismConfig(Section):
    """``[parallelism]``: native threads (OpenMP/BLAS) per task process.

    With ``--workers N`` luigi forks one process per running task; if each also starts one OpenMP thread per
    core, N processes fight over the cores (measured here: a 10 s HistGradientBoosting fit took 59 s with two
    workers). ``0`` means automatic: all cores with one worker; with several workers, as many threads as
    cores the task holds of the scheduler's ``cores`` resource (see :func:`scheduler_cores`), else one.
    """

    section = "parallelism"

    threads_per_task = Whole(0, between(0, 1024), "native threads per task process (0: automatic)")


class MonitoringConfig(Section):
    """``[monitoring]``: thresholds of the verdict (ok / drift / degraded) and the retrain policy.

    The defaults are those of :class:`~tripduration.monitoring.Thresholds` and
    :class:`~tripduration.monitoring.RetrainPolicy`: one place, so the code and the config cannot disagree.
    """

    section = "monitoring"

    psi_drift = Real(Thresholds.psi_drift, above(0), "a feature with PSI above this has drifted")
    prediction_psi_drift = Real(Thresholds.prediction_psi_drift, above(0), "drift of the predictions' distribution")
    rmse_degraded_ratio = Real(
        Thresholds.rmse_degraded_ratio,
        above(1),
        "degraded when the month's RMSE exceeds this multiple of the model's test RMSE",
    )
    missing_share_change = Real(
        Thresholds.missing_share_change,
        between(0, 1),
        "report a column whose missing share moves by more than this (not part of the verdict)",
    )
    retrain_on = Text(", ".join(RetrainPolicy.retrain_on), RETRAIN_ON, "retrain rules, checked in order")
    importance_min_share = Real(
        RetrainPolicy.importance_min_share,
        between(0, 1),
        "drift_important: a feature counts if its share of the permutation importance is at least this",
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.psi_drift, self.prediction_psi_drift, self.rmse_degraded_ratio, self.missing_share_change
        )

    def policy(self) -> RetrainPolicy:
        return RetrainPolicy(retrain_rules(self.retrain_on), self.importance_min_share)


class MonthlyConfig(Section):
    """``[monthly]``: the window of the monthly job."""

    section = "monthly"

    train_window = Whole(1, between(1, 120), "number of training months before the validation month")
    first_month = Text(
        "",
        OPTIONAL_MONTH,
        "first month the daily loop monitors; empty: the month after the first production model's test month",
    )
    max_lateness_days = Whole(
        60, between(0, 3650), "a month still unpublished this many days after it ended is overdue (daily exits 20)"
    )


class MetricsConfig(Section):
    """``[metrics]``: where the loop's state goes for Prometheus (node_exporter's textfile collector, or a
    Pushgateway); see docs/operations.md and docs/alerts/tripduration-rules.yml."""

    section = "metrics"

    textfile = Text(
        "var/metrics/tripduration.prom", any_text, "written atomically at the end of every run (empty: none)"
    )
    pushgateway_url = Text("", ENDPOINT, "also push the metrics there (empty: no push)")


class S3Config(Section):
    """``[s3]``: the S3-compatible store of object-storage paths (AWS S3, MinIO, Ceph). Unset keys fall back to
    boto3's standard chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``~/.aws``, instance roles)."""

    section = "s3"

    endpoint_url = Text("", ENDPOINT, "the S3 API's URL, e.g. http://127.0.0.1:9000 (MinIO)")
    aws_access_key_id = Text("", any_text, "access key (else AWS_ACCESS_KEY_ID)")
    aws_secret_access_key = Text("", any_text, "secret key (else AWS_SECRET_ACCESS_KEY)")
    region_name = Text("", any_text, "region (else AWS_DEFAULT_REGION)")

    def settings(self) -> S3Settings:
        return S3Settings(
            self.endpoint_url or None,
            self.aws_access_key_id or None,
            self.aws_secret_access_key or None,
            self.region_name or None,
        )


class MlflowConfig(Section):
    """``[mlflow]``: MLflow follows every training run (``tasks/tracking.py``) and ``export-mlflow`` mirrors the
    registry there (its ``--tracking-uri`` wins); empty: no tracking."""

    section = "mlflow"

    tracking_uri = Text(
        "",
        TRACKING_URI,
        "log every training run there as it goes, e.g. sqlite:///var/mlflow/mlflow.db (relative to the project); "
        "empty: no tracking",
    )
