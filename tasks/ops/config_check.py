"""Every luigi.cfg value the pipeline reads, checked before any work starts.

A value that luigi would parse happily but that breaks the job later (``max_distance_miles = nan`` silently
switching a rule off, inverted duration bounds, an empty candidate list, ``max_rows = -1``) must stop the job
at once, with one line naming the section, the key, the value and what is allowed, and nothing written.
``pipeline.py`` calls :func:`check_configuration` before it takes the work-directory lock.

The rules are data (:data:`RULES`), one per key, plus the relations between keys (:func:`_relations`).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Iterator
from typing import Any

import luigi
import luigi.configuration

from tasks.settings import (
    DownloadConfig,
    EvaluationConfig,
    ModelSearchConfig,
    MonitoringConfig,
    MonthlyConfig,
    ParallelismConfig,
    PathsConfig,
    RegistryConfig,
    TrainingConfig,
    ValidationConfig,
)
from tripduration.data.fetch import ALLOWED_SCHEMES
from tripduration.data.months import parse_month
from tripduration.training.candidates import CANDIDATES

Check = Callable[[Any], str | None]


class ConfigurationError(ValueError):
    """A configuration value the pipeline cannot work with; the message is one line naming it."""


def number(low: float | None = None, high: float | None = None, *, above: bool = False) -> Check:
    """A finite number in ``[low, high]`` (``above``: strictly greater than ``low``)."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return "must be a finite number"
        if low is not None and (value <= low if above else value < low):
            return f"must be {'>' if above else '>='} {low:g}"
        if high is not None and value > high:
            return f"must be <= {high:g}"
        return None

    return check


def non_empty_text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must not be empty"


def url_template(value: Any) -> str | None:
    scheme = str(value).split(":", 1)[0].lower() if ":" in str(value) else ""
    if scheme not in ALLOWED_SCHEMES:
        return f"must be a URL with scheme {', '.join(ALLOWED_SCHEMES)} (got scheme {scheme or 'none'!r})"
    return _placeholders(value, {"color", "month"}, required={"month"})


def model_name(value: Any) -> str | None:
    problem = _placeholders(value, {"color"}, required=set())
    if problem:
        return problem
    import re

    name = str(value).format(color="green")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        return "may hold only letters, digits, '.', '_', '-' and {color}"
    return None


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


def optional_month(value: Any) -> str | None:
    if not str(value).strip():
        return None
    try:
        parse_month(str(value))
    except ValueError as exc:
        return str(exc)
    return None


def candidate_list(value: Any) -> str | None:
    names = list(value)
    if not names:
        return f"must name at least one candidate of {sorted(CANDIDATES)}"
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        return f"names unknown candidates {unknown}; choose from {sorted(CANDIDATES)}"
    if len(set(names)) != len(names):
        return "repeats a candidate"
    return None


#: (config class, key) -> check of the parsed value
RULES: dict[tuple[type[luigi.Config], str], Check] = {
    (PathsConfig, "raw_dir"): non_empty_text,
    (PathsConfig, "work_dir"): non_empty_text,
    (PathsConfig, "registry_dir"): non_empty_text,
    (PathsConfig, "zone_lookup"): non_empty_text,
    (DownloadConfig, "url_template"): url_template,
    (DownloadConfig, "timeout_seconds"): number(0, 3600, above=True),
    (DownloadConfig, "deadline_seconds"): number(0, 86400, above=True),
    (DownloadConfig, "min_bytes_per_second"): number(0),
    (DownloadConfig, "min_rate_window_seconds"): number(1, 3600),
    (DownloadConfig, "retries"): number(0, 100),
    (DownloadConfig, "backoff_seconds"): number(0, 3600),
    (ValidationConfig, "min_duration_min"): number(0),
    (ValidationConfig, "max_duration_min"): number(0, above=True),
    (ValidationConfig, "max_distance_miles"): number(0, above=True),
    (ModelSearchConfig, "candidates"): candidate_list,
    (TrainingConfig, "max_rows"): number(0),
    (EvaluationConfig, "importance_rows"): number(1),
    (EvaluationConfig, "importance_repeats"): number(1, 100),
    (RegistryConfig, "model_name"): model_name,
    (ParallelismConfig, "threads_per_task"): number(0, 1024),
    (MonitoringConfig, "psi_drift"): number(0, above=True),
    (MonitoringConfig, "prediction_psi_drift"): number(0, above=True),
    (MonitoringConfig, "rmse_degraded_ratio"): number(1, above=True),
    (MonthlyConfig, "train_window"): number(1, 120),
    (MonthlyConfig, "first_month"): optional_month,
    (MonthlyConfig, "max_lateness_days"): number(0, 3650),
}


def _section(cls: type[luigi.Config]) -> str:
    return cls.get_task_family()


def _raw(section: str, key: str) -> str | None:
    config = luigi.configuration.get_config()
    return config.get(section, key) if config.has_option(section, key) else None


def _values() -> Iterator[tuple[str, str, str, Any, Check | None]]:
    """(section, key, shown value, parsed value or the parse error, rule) for every key the rules know."""
    sections = {cls for cls, _ in RULES}
    for cls in sorted(sections, key=_section):
        section = _section(cls)
        for key, param in cls.get_params():
            raw = _raw(section, key)
            shown = raw if raw is not None else repr(param._default)
            try:
                value = param.normalize(param.parse(raw)) if raw is not None else getattr(cls(), key)
            except Exception as exc:  # luigi's own parse error: wrong type
                value = ConfigurationError(f"cannot be read as {type(param).__name__} ({exc})")
            yield section, key, shown, value, RULES.get((cls, key))


def _relations(values: dict[tuple[str, str], Any]) -> Iterator[tuple[str, str, str]]:
    low, high = values.get(("validation", "min_duration_min")), values.get(("validation", "max_duration_min"))
    if isinstance(low, int | float) and isinstance(high, int | float) and not low < high:
        yield "validation", "max_duration_min", f"must be greater than min_duration_min ({low:g})"


def problems() -> list[str]:
    """One line per configuration value the pipeline cannot work with (empty when all are fine)."""
    lines: list[str] = []
    parsed: dict[tuple[str, str], Any] = {}
    for section, key, shown, value, rule in _values():
        problem = str(value) if isinstance(value, ConfigurationError) else (rule(value) if rule else None)
        if problem:
            lines.append(f"[{section}] {key} = {shown}: {problem}")
        else:
            parsed[(section, key)] = value
    cores = _raw("resources", "cores")
    if cores is not None and not (cores.strip().isdigit() and int(cores) >= 1):
        lines.append(f"[resources] cores = {cores}: must be a whole number >= 1 (CPUs the tasks may use)")
    lines += [f"[{s}] {k} = {_raw(s, k)}: {why}" for s, k, why in _relations(parsed)]
    return lines


def check_configuration() -> None:
    """Raise :class:`ConfigurationError` naming the first bad value (and how many more there are)."""
    found = problems()
    if found:
        more = f" (and {len(found) - 1} more: {'; '.join(found[1:])})" if len(found) > 1 else ""
        raise ConfigurationError(f"configuration: {found[0]}{more}")
