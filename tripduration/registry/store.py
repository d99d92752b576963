"""A model registry on the storage port: immutable versions and a quality-gated production pointer.

Layout (a local folder or an object-storage prefix: the same code, through :class:`~tripduration.io.Storage`)::

    <root>/<name>/versions/v0001/{model.joblib, metadata.json, report/...}
    <root>/<name>/production.json      which version serves
    <root>/<name>/events.jsonl         the event log: every production change and every monthly-loop step

A new version is written as a whole folder claimed create-only (``Storage.writing(..., exclusive=True)``:
a rename of a complete folder on disk; a ``.claim`` object, then the files, ``metadata.json`` last, on S3), so
it is complete exactly when its ``metadata.json`` exists, and of two writers racing for a number one wins and
the other takes the next. The production pointer is only ever replaced by compare-and-swap against the pointer
the decision was made on; the gate decision runs under :meth:`ModelRegistry.lock` where the storage has locks.

The registry loads only what it wrote:

- every version name that reaches it (the pointer, the CLI, a task parameter, the service) must be ``vNNNN``
  (:func:`~tripduration.registry.names.check_version`) before any key is built from it;
- a model's bytes are read once, checked against the sha256 in its ``metadata.json`` *and* the one the production
  pointer recorded (when it names that version), and unpickled from those same bytes;
- a corrupt ``production.json`` is an error naming the file and the repair (``rollback vNNNN``), and
  :meth:`ModelRegistry.rollback` never needs the old pointer to be readable;
- a version folder without ``metadata.json`` (an interrupted registration, a stray folder) is skipped and
  reported (:mod:`tripduration.registry.inventory`), never deleted, and new versions are numbered above it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import joblib

from tripduration.errors import RegistryError
from tripduration.io import Storage, open_storage
from tripduration.io.formats import json_bytes
from tripduration.registry.events import EVENTS_FILE
from tripduration.registry.metadata import ModelMetadata
from tripduration.registry.names import (
    METADATA_FILE,
    MODEL_FILE,
    POINTER_FILE,
    SHA256_RE,
    PointerError,
    check_file_name,
    check_version,
    is_model_name,
    is_version,
    version_name,
    version_number,
)
from tripduration.registry.pointer import ProductionPointer
from tripduration.runtime import clock

log = logging.getLogger(__name__)

#: the lock a registry write holds (where the storage has locks: a local folder)
LOCK = "registry"
#: modules that moved since models were pickled: a model registered before the move names the old ones
MOVED_MODULES = {
    "tripduration.features": "tripduration.training.features",
    "tripduration.encoders": "tripduration.training.encoders",
    "tripduration.candidates": "tripduration.training.candidates",
}


def parse_json_object(data: bytes, where: object) -> dict[str, Any]:
    """Parse a registry JSON file that must hold an object; anything else is a RegistryError naming it."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def unpickle(data: bytes, name: str) -> Any:
    """A model from its verified bytes (named after its file, so joblib's errors still say which file)."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
    buffer = io.BytesIO(data)
    buffer.name = name
    return joblib.load(buffer)


def lineage_key(metadata: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The data a version was made from: (role, month, file sha256) of each month, sorted."""
    data = metadata.get("data")
    rows = data if isinstance(data, list) else []
    return sorted((str(d.get("role")), str(d.get("month")), str(d.get("sha256"))) for d in rows if isinstance(d, dict))


class ModelRegistry(ProductionPointer):
    """Versions of one model name under ``root`` (a configured location, see ``tripduration.io``, or a Storage)."""

    def __init__(self, root: str | Path | Storage, name: str) -> None:
        if not is_model_name(name):
            raise ValueError(f"model name {name!r} may only hold letters, digits, '.', '_' and '-'")
        self.base = root if isinstance(root, Storage) else open_storage(root)
        base = self.base
        self.storage = base.child(name)
        self.name = name
        self.root = base.where()
        self.home = self.storage.where()
        self.versions_dir = self.storage.where("versions")
        self.production_file = self.storage.where(POINTER_FILE)
        self.history_file = self.storage.where(EVENTS_FILE)

    def __repr__(self) -> str:
        return f"ModelRegistry({self.storage.url!r})"

    # ----------------------------------------------------------------- reading
    def version_folders(self) -> list[str]:
        """Every entry of ``versions/`` with a version name, complete or not, in number order."""
        return sorted((n for n in self.storage.children("versions") if is_version(n)), key=version_number)

    def _is_complete(self, version: str) -> bool:
        return self.storage.exists(f"versions/{version}/{METADATA_FILE}")

    def incomplete_versions(self) -> list[str]:
        """Version folders without ``metadata.json``: an interrupted registration or a stray folder."""
        return [v for v in self.version_folders() if not self._is_complete(v)]

    def versions(self) -> list[str]:
        """Complete versions in number order; incomplete folders are skipped with a warning, never deleted."""
        complete = []
        for version in self.version_folders():
            if self._is_complete(version):
                complete.append(version)
            else:
                log.warning(
                    "%s: no %s (an interrupted registration or a stray folder); skipped, not deleted",
                    self.versions_dir / version,
                    METADATA_FILE,
                )
        return complete

    def metadata(self, version: str) -> dict[str, Any]:
        version = check_version(version)
        key = f"versions/{version}/{METADATA_FILE}"
        try:
            data = self.storage.read_bytes(key)
        except FileNotFoundError:
            if version in self.version_folders():
                raise RegistryError(
                    f"{self.storage.where(key)}: missing; {version} is an incomplete version folder (an interrupted "
                    "registration or a stray folder) and cannot be used. Inspect it, then remove it by hand."
                ) from None
            raise RegistryError(f"{self.name}: version {version!r} does not exist under {self.versions_dir}") from None
        meta = parse_json_object(data, self.storage.where(key))
        if meta.get("version", version) != version:
            raise RegistryError(
                f"{self.storage.where(key)}: describes version {meta.get('version')!r} but lies in folder "
                f"{version}; refused"
            )
        return meta

    def _pointer_error(self, problem: str) -> PointerError:
        return PointerError(
            f"{self.production_file}: {problem}. Repair it with `python pipeline.py rollback vNNNN` "
            "(pick a version from `python pipeline.py models`)"
        )

    def _validated_pointer(self, data: bytes) -> dict[str, Any]:
        try:
            pointer = parse_json_object(data, self.production_file)
            check_version(pointer.get("version"), "field 'version'")
        except RegistryError as exc:
            raise self._pointer_error(str(exc).removeprefix(f"{self.production_file}: ")) from None
        sha = pointer.get("model_sha256")
        if not (isinstance(sha, str) and SHA256_RE.fullmatch(sha)):
            raise self._pointer_error(f"field 'model_sha256' is {sha!r}, not a sha256 of 64 hex digits")
        if not self._is_complete(pointer["version"]):
            raise self._pointer_error(f"it names {pointer['version']}, which is missing or incomplete")
        return pointer

    def model_metadata(self, version: str) -> ModelMetadata:
        """A version's metadata, typed (:class:`ModelMetadata`): a missing or renamed key is an error naming
        the file and the key, never a silent None."""
        return ModelMetadata.from_json(self.metadata(version), self.versions_dir / version / METADATA_FILE)

    def production(self) -> dict[str, Any] | None:
        """The validated production pointer, or None if there is none yet.

        Raises PointerError (naming the file and the repair) if it is not JSON, has a field of the wrong type,
        a bad version name or sha256, or names a version that is missing or incomplete.
        """
        try:
            data = self.storage.read_bytes(POINTER_FILE)
        except FileNotFoundError:
            return None
        return self._validated_pointer(data)

    def production_token(self) -> str | None:
        """A cheap token that changes whenever ``production.json`` is replaced (the service polls it)."""
        return self.storage.change_token(POINTER_FILE)

    def model_path(self, version: str) -> Any:
        return self.storage.where(f"versions/{check_version(version)}/{MODEL_FILE}")

    def _model_bytes(self, version: str) -> bytes:
        try:
            return self.storage.read_bytes(f"versions/{version}/{MODEL_FILE}")
        except FileNotFoundError:
            raise RegistryError(f"{self.model_path(version)}: missing; {version} cannot be loaded") from None

    def _current_pointer_for(self, version: str) -> dict[str, Any] | None:
        """The production pointer if it is readable and names ``version`` (an unreadable one is not a witness)."""
        try:
            pointer = self.production()
        except RegistryError:
            return None
        return pointer if pointer is not None and pointer["version"] == version else None

    def check_model_bytes(self, version: str, meta: dict[str, Any], data: bytes, pointer: dict[str, Any] | None) -> str:
        """Refuse bytes whose sha256 differs from the metadata's or (when given) the production pointer's;
        return the sha256."""
        path = self.model_path(version)
        actual = hashlib.sha256(data).hexdigest()
        recorded = meta.get("model_sha256")
        if not (isinstance(recorded, str) and SHA256_RE.fullmatch(recorded)):
            raise RegistryError(
                f"{self.versions_dir / version / METADATA_FILE}: 'model_sha256' is {recorded!r}, not a "
                "sha256; the model cannot be checked and is refused. Register the model again."
            )
        if actual != recorded:
            raise RegistryError(
                f"{path}: sha256 {actual} does not match metadata ({recorded}); the file was "
                "changed after registration and is refused. Restore it or register the model again."
            )
        if pointer is not None and pointer["model_sha256"] != actual:
            raise RegistryError(
                f"{path}: sha256 {actual} does not match the {pointer['model_sha256']} that "
                f"{self.production_file} recorded when {version} became production (model.joblib and "
                f"metadata.json were both replaced since); refused. Restore them, or roll back to a good version."
            )
        return actual

    def load_model(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        """Load a version (production by default) after checking its bytes' sha256.

        The bytes are read once, checked against the metadata and, when the production pointer names this
        version, against the pointer too; then these same bytes are unpickled, so the file cannot be swapped
        between the check and the load.
        """
        if version is None:
            pointer = self.production()
            if pointer is None:
                raise RegistryError(f"{self.name}: no production model; train and register one first")
            version = pointer["version"]
        else:
            version = check_version(version, "model version")
            pointer = self._current_pointer_for(version)
        meta = self.metadata(version)
        data = self._model_bytes(version)
        self.check_model_bytes(version, meta, data, pointer)
        return unpickle(data, str(self.model_path(version))), meta

    def verify(self, version: str) -> str:
        """Check a version's model file against its recorded sha256s (without unpickling it); its sha256."""
        version = check_version(version)
        meta = self.metadata(version)
        return self.check_model_bytes(version, meta, self._model_bytes(version), self._current_pointer_for(version))

    def read_file(self, version: str, name: str) -> str:
        """A file stored beside the model (e.g. ``reference_profile.json``); FileNotFoundError when absent."""
        key = f"versions/{check_version(version)}/{check_file_name(name)}"
        return self.storage.read_bytes(key).decode()

    def version_files(self, version: str) -> list[str]:
        """The files of a version folder, relative to it (``model.joblib``, ``report/report.html``, ...)."""
        head = f"versions/{check_version(version)}/"
        return [key[len(head) :] for key in self.storage.list(head)]

    def find_by_key(self, key: str) -> str | None:
        return self._find(lambda meta: meta.get("registration_key") == key, f"registration key {key}")

    def find_identical(self, sha256: str, metadata: Mapping[str, Any]) -> str | None:
        """The version holding the same model bytes (``sha256``), evaluated on the same data (the months and the
        sha256 of each file in ``metadata['data']``), if any: registering it again would add nothing."""
        data = lineage_key(metadata)
        return self._find(
            lambda meta: meta.get("model_sha256") == sha256 and lineage_key(meta) == data, f"model {sha256[:12]}"
        )

    def _find(self, matches: Callable[[dict[str, Any]], bool], what: str) -> str | None:
        for version in self.versions():
            try:
                meta = self.metadata(version)
            except RegistryError as exc:  # unreadable metadata: not this version; `models` reports it
                log.warning("%s; skipped while looking for %s", exc, what)
                continue
            if matches(meta):
                return version
        return None

    # ----------------------------------------------------------------- writing
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on this model name between processes of a host (released if the holder dies).

        Nothing on object storage (hosts share no lock): there every write is create-only or compare-and-swap.
        """
        return self.storage.lock(LOCK)

    def _next_number(self) -> int:
        """One above every version folder, complete or not, so a new version never lands on a stray folder."""
        folders = self.version_folders()
        return version_number(folders[-1]) + 1 if folders else 1

    def register(
        self,
        model_file: str | Path,
        metadata: ModelMetadata | Mapping[str, Any],
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
        digest = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()
        while True:
            version = version_name(self._next_number())
            facts = {
                "model_sha256": digest,
                "registration_key": key,
                "name": self.name,
                "version": version,
                "registered_at": clock.stamp(),
            }
            # the pipeline's versions: ModelMetadata's one writer; a Mapping: a version registered through the
            # API with its own fields (the registry's checks need only the facts above)
            meta = (
                metadata.registered(**facts).to_json() if isinstance(metadata, ModelMetadata) else {**metadata, **facts}
            )
            try:
                with self.storage.writing(
                    f"versions/{version}", folder=True, exclusive=True, last=METADATA_FILE
                ) as tmp:
                    shutil.copyfile(model_file, tmp / MODEL_FILE)
                    for name, src in (extra_dirs or {}).items():
                        shutil.copytree(src, tmp / name)
                    for name, text in (extra_files or {}).items():
                        (tmp / name).write_text(text)
                    (tmp / METADATA_FILE).write_bytes(json_bytes(meta))
            except FileExistsError:
                continue  # another process took this number: try the next one
            return version

    def sweep_orphans(self) -> list[str]:
        """Remove staging folders and temporary files left by a process killed while writing.

        Every write to the registry happens under :meth:`lock`, so whatever is found while holding it is
        an orphan. Incomplete version folders are not orphans of a write in progress: they are reported by
        ``models``, never deleted.
        """
        with self.lock():
            return self.storage.sweep_orphans()

    # ----------------------------------------------------------------- listing
    def inventory(self) -> dict[str, list[Any]]:
        """What ``models`` shows (see :func:`tripduration.registry.inventory.inventory`)."""
        from tripduration.registry.inventory import inventory

        return inventory(self)

    def listing(self) -> list[dict[str, Any]]:
        """The valid versions of :meth:`inventory`."""
        return self.inventory()["versions"]
