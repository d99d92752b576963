"""A file-based model registry with immutable versions and a quality-gated production pointer.

Layout::

    <root>/<name>/versions/v0001/{model.joblib, metadata.json, report/...}
    <root>/<name>/production.json      which version serves (written atomically)
    <root>/<name>/history.jsonl        one line per production change (promotion or rollback)
    <root>/<name>/.lock                serialises gate decisions between processes

A version folder is assembled under a temporary name and renamed into place, so it is either complete or
absent; two processes racing for the same number cannot both win the rename. Loading a model checks its
sha256 against the metadata *before* unpickling it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from tripduration.errors import RegistryError

_VERSION_RE = re.compile(r"^v(\d{4,})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file in the same folder, fsync it, and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def version_number(version: str) -> int:
    """``v0012`` -> 12 (versions are compared by number: ``v10000`` comes after ``v9999``)."""
    match = _VERSION_RE.match(version)
    if not match:
        raise ValueError(f"{version!r} is not a registry version name such as v0001")
    return int(match.group(1))


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


class ModelRegistry:
    """Versions of one model name under ``root``."""

    def __init__(self, root: str | Path, name: str) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"model name {name!r} may only hold letters, digits, '.', '_' and '-'")
        self.root = Path(root)
        self.name = name
        self.home = self.root / name
        self.versions_dir = self.home / "versions"
        self.production_file = self.home / "production.json"
        self.history_file = self.home / "history.jsonl"

    # ----------------------------------------------------------------- reading
    def versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted((p.name for p in self.versions_dir.iterdir() if _VERSION_RE.match(p.name)), key=version_number)

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.versions_dir / version / "metadata.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"{self.name}: version {version!r} does not exist under {self.versions_dir}") from None

    def production(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.production_file.read_text())
        except FileNotFoundError:
            return None

    def model_path(self, version: str) -> Path:
        return self.versions_dir / version / "model.joblib"

    def load_model(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        """Load a version (production by default) after checking the model file's sha256."""
        if version is None:
            pointer = self.production()
            if pointer is None:
                raise RegistryError(f"{self.name}: no production model; train and register one first")
            version = str(pointer["version"])
        meta = self.metadata(version)
        path = self.model_path(version)
        actual = sha256_file(path)
        if actual != meta.get("model_sha256"):
            raise RegistryError(
                f"{path}: sha256 {actual} does not match metadata ({meta.get('model_sha256')}); the file was "
                "changed after registration and is refused. Restore it or register the model again."
            )
        return joblib.load(path), meta

    def find_by_key(self, key: str) -> str | None:
        for version in self.versions():
            if self.metadata(version).get("registration_key") == key:
                return version
        return None

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive inter-process lock on this model name (released if the holder dies)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def register(
        self,
        model_file: str | Path,
        metadata: dict[str, Any],
        extra_dirs: dict[str, Path] | None = None,
        key: str | None = None,
        extra_files: dict[str, str] | None = None,
    ) -> str:
        """Create a new immutable version from ``model_file`` and return its name (``v0001``, ...).

        With ``key``, registering the same key again returns the existing version instead of a new one,
        so a rerun after a crash does not duplicate versions.
        """
        if key is not None and (existing := self.find_by_key(key)):
            return existing
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        try:
            shutil.copyfile(model_file, staging / "model.joblib")
            for name, src in (extra_dirs or {}).items():
                shutil.copytree(src, staging / name)
            for name, text in (extra_files or {}).items():
                (staging / name).write_text(text)
            meta = dict(metadata)
            meta["model_sha256"] = sha256_file(staging / "model.joblib")
            meta["registration_key"] = key
            meta["name"] = self.name
            while True:
                existing = self.versions()
                number = version_number(existing[-1]) + 1 if existing else 1
                version = f"v{number:04d}"
                meta["version"] = version
                meta["registered_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                (staging / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
                try:
                    os.rename(staging, self.versions_dir / version)
                    return version
                except OSError:  # another process took this number: try the next one
                    if not (self.versions_dir / version).exists():
                        raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def set_production(self, version: str, reason: str, action: str = "promote") -> dict[str, Any]:
        """Point production at ``version`` (atomically) and log the change. Call it under :meth:`lock`."""
        meta = self.metadata(version)
        previous = self.production()
        pointer = {
            "name": self.name,
            "version": version,
            "action": action,
            "reason": reason,
            "previous_version": previous.get("version") if previous else None,
            "changed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model_sha256": meta["model_sha256"],
            "metrics": meta.get("metrics", {}),
        }
        write_json_atomic(self.production_file, pointer)
        with open(self.history_file, "a") as fh:
            fh.write(json.dumps(pointer, sort_keys=True) + "\n")
        return pointer

    def sweep_orphans(self) -> list[Path]:
        """Remove staging folders and temporary files left by a process killed while writing.

        Every write to the registry happens under :meth:`lock`, so whatever is found while holding it is
        an orphan.
        """
        removed: list[Path] = []
        if not self.home.is_dir():
            return removed
        with self.lock():
            for folder in (self.home, self.versions_dir):
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    if path.name.startswith(".staging-") and path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                        removed.append(path)
                    elif path.name.startswith(".") and path.name.endswith(".tmp"):
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed

    def read_file(self, version: str, name: str) -> str:
        return (self.versions_dir / version / name).read_text()

    def verify(self, version: str) -> None:
        """Check a version's model file against its recorded sha256 (without unpickling it)."""
        meta = self.metadata(version)
        actual = sha256_file(self.model_path(version))
        if actual != meta.get("model_sha256"):
            raise RegistryError(f"{self.model_path(version)}: sha256 {actual} does not match its metadata; refused")

    def rollback(self, version: str, reason: str) -> dict[str, Any]:
        """Point production back at an earlier (or any) registered version, after checking its file."""
        with self.lock():
            self.verify(version)
            return self.set_production(version, reason, action="rollback")

    def decisions(self) -> list[dict[str, Any]]:
        path = self.home / "decisions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def record_decision(self, decision: dict[str, Any], key: str) -> None:
        """Append a monitoring/retraining decision to ``decisions.jsonl``, once per ``key`` (reruns add none)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self.lock():
            if any(d.get("key") == key for d in self.decisions()):
                return
            entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "key": key, **decision}
            with open(self.home / "decisions.jsonl", "a") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")

    def listing(self) -> list[dict[str, Any]]:
        """Every version with its metrics, status (production / challenger / rejected) and the gate's reason."""
        pointer = self.production()
        current = pointer.get("version") if pointer else None
        rows = []
        for version in self.versions():
            meta = self.metadata(version)
            gate = meta.get("gate", {})
            if version == current:
                status = "production"
            elif gate.get("promote"):
                status = "challenger"
            else:
                status = "rejected"
            test = meta.get("metrics", {}).get("test", {})
            rows.append(
                {
                    "version": version,
                    "status": status,
                    "registered_at": meta.get("registered_at"),
                    "algorithm": meta.get("algorithm", {}).get("candidate"),
                    "test_month": next((d["month"] for d in meta.get("data", []) if d.get("role") == "test"), None),
                    "test_rmse": test.get("rmse"),
                    "baseline_rmse": meta.get("metrics", {}).get("baseline_test", {}).get("rmse"),
                    "reason": gate.get("reason"),
                }
            )
        return rows
