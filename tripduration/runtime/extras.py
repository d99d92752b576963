"""Optional extras: the packages only some features need, installed apart from the runtime.

``requirements.lock`` holds what training, prediction, monitoring and the HTTP service need. S3 object
storage (``boto3``) and MLflow tracking and export (``mlflow``) are extras, each with its own hashed lock
(``requirements-<extra>.lock``, installed on top of the runtime lock) and a ``pyproject.toml`` extra. Code
that needs one calls :func:`require_extra` (or :func:`import_extra`) first, so a missing extra is one line
saying what to install, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional extra is not installed; the message is one line naming the extra and how to install it."""


# extra -> (the module that shows it is installed, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("boto3", "object storage (S3-compatible bucket paths in [paths])"),
    "mlflow": ("mlflow", "MLflow (tracking with [mlflow] tracking_uri, export-mlflow)"),
}


# the top-level modules each extra installs that code imports directly
MODULES: dict[str, str] = {"boto3": "s3", "botocore": "s3", "s3transfer": "s3", "mlflow": "mlflow"}


def missing_extra_message(extra: str) -> str:
    """One line: which module is missing, what needs it, the three ways to install it."""
    module, purpose = EXTRAS[extra]
    return (
        f"{module} is not installed: {purpose} needs the optional '{extra}' extra; install it with "
        f"`make setup-{extra}`, or `.venv/bin/pip install --require-hashes -r requirements-{extra}.lock` "
        f"(pinned, hash-checked), or `pip install '.[{extra}]'`"
    )


def has_extra(extra: str) -> bool:
    """True when the extra's module can be imported (nothing is imported)."""
    module, _ = EXTRAS[extra]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or sys.modules[module] = None
        return False


def require_extra(extra: str) -> None:
    """Raise :class:`MissingExtraError` (one line) unless the extra is installed."""
    if not has_extra(extra):
        raise MissingExtraError(missing_extra_message(extra))


def import_extra(extra: str) -> ModuleType:
    """The extra's module, imported; :class:`MissingExtraError` (one line) if it is not installed."""
    module, _ = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name not in (None, module) and not module.startswith(f"{exc.name}."):
            raise  # the extra is there but one of its own dependencies is broken: keep the real error
        raise MissingExtraError(missing_extra_message(extra)) from None


def as_missing_extra(exc: BaseException) -> MissingExtraError | None:
    """The one-line :class:`MissingExtraError` for an ImportError of an extra's module (``No module named
    'boto3'`` from any depth of the code), else None: a safety net for imports that do not go through
    :func:`import_extra`."""
    if isinstance(exc, MissingExtraError):
        return exc
    name = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    extra = MODULES.get(str(name).split(".")[0]) if name else None
    return MissingExtraError(missing_extra_message(extra)) if extra else None
