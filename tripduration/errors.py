"""Exceptions raised by the core package.

Every message names the file (or URL), the column and the offending value where there is one, and says
what to do about it, in the spirit of scikit-learn's ``utils/validation.py``.
"""

from __future__ import annotations


class TripDataError(ValueError):
    """An input trip file cannot be used as it is (not parquet, empty, missing or duplicate columns...)."""


class DownloadError(RuntimeError):
    """A trip file could not be fetched; ``transient`` tells whether retrying later may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class RegistryError(RuntimeError):
    """The model registry is inconsistent or a model file failed its integrity check."""
