"""Names in the registry: model names, version names (``vNNNN``) and the files of a model's home, checked
before any key is built from them, and the registry's errors."""

from __future__ import annotations

import re

from tripduration.errors import RegistryError

# ASCII digits only (``\d`` would accept other scripts' digits) and one spelling per number: four digits,
# or more without a leading zero once v9999 is passed, so names sort and compare by number.
VERSION_RE = re.compile(r"v(?:[0-9]{4}|[1-9][0-9]{4,})")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
VERSION_FORM = "'v' and four digits, e.g. v0001 (v10000 and up after v9999)"

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
POINTER_FILE = "production.json"


class VersionNameError(RegistryError, ValueError):
    """A version name that is not ``vNNNN``: refused before any path is built from it."""


class PointerError(RegistryError):
    """``production.json`` cannot be used; ``python pipeline.py rollback vNNNN`` rewrites it."""


class GateRejectedError(RegistryError):
    """A rollback to a version the quality gate rejected, asked for without ``force``."""


def check_version(value: object, source: str = "version") -> str:
    """Return ``value`` if it is a registry version name, else raise naming ``source``, the value and the form."""
    if isinstance(value, str) and VERSION_RE.fullmatch(value):
        return value
    raise VersionNameError(f"{source}: {value!r} is not a registry version name; expected {VERSION_FORM}")


def is_version(name: str) -> bool:
    return bool(VERSION_RE.fullmatch(name))


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(version: str) -> int:
    """``v0012`` -> 12 (versions are compared by number: ``v10000`` comes after ``v9999``)."""
    return int(check_version(version)[1:])


def is_model_name(name: str) -> bool:
    """A model name (``green-trip-duration``): letters, digits, ``.``, ``_``, ``-``."""
    return bool(NAME_RE.fullmatch(name))


def check_file_name(name: str) -> str:
    """A file name stored beside a model (``reference_profile.json``), refused if it could name a path."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"registry file name {name!r} may only hold letters, digits, '.', '_' and '-'")
    return name
