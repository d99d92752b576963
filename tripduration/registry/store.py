"""A file-based model registry with immutable versions and a quality-gated production pointer.

Layout::

    <root>/<name>/versions/v0001/{model.joblib, metadata.json, report/...}
    <root>/<name>/production.json      which version serves (written atomically)
    <root>/<name>/history.jsonl        one line per production change (promotion or rollback)
    <root>/<name>/.lock                serialises gate decisions between processes

A version folder is assembled under a temporary name and renamed into place, so it is either complete or
absent; two processes racing for the same number cannot both win the rename.

The registry loads only what it wrote:

- every version name that reaches it (the pointer, the CLI, a task parameter, the service) must be ``vNNNN``
  (:func:`check_version`) before any path is built from it, so ``../../x`` or ``v0001/../v0001`` never name
  a file;
- a model's bytes are hashed once and unpickled from those same bytes, and only when their sha256 equals
  the one in the version's ``metadata.json`` *and* the one the production pointer recorded when it was
  written (when the pointer names that version): replacing ``model.joblib`` and ``metadata.json`` together
  is caught by the pointer;
- a corrupt ``production.json`` is an error naming the file and the repair (``rollback vNNNN``), and
  :meth:`ModelRegistry.rollback` never needs the old pointer to be readable;
- a version folder without ``metadata.json`` (an interrupted registration, a stray folder) is skipped and
  reported, never deleted, and new versions are numbered above it.

Storage: the raw reads and writes of registry files go through a few private methods (``_read_bytes``,
``_write_bytes_atomic``, ``_append_line``, ``_list_names``, ``_exists``, ``_publish``) taking keys relative
to the model's home, so another backend (object storage) can replace them later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib

from tripduration.errors import RegistryError

log = logging.getLogger(__name__)


# ASCII digits only (``\d`` would accept other scripts' digits) and one spelling per number: four digits,
# or more without a leading zero once v9999 is passed, so names sort and compare by number.
_VERSION_RE = re.compile(r"v(?:[0-9]{4}|[1-9][0-9]{4,})")


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


VERSION_FORM = "'v' and four digits, e.g. v0001 (v10000 and up after v9999)"


MODEL_FILE = "model.joblib"


METADATA_FILE = "metadata.json"


POINTER_FILE = "production.json"


HISTORY_FILE = "history.jsonl"


DECISIONS_FILE = "decisions.jsonl"


class VersionNameError(RegistryError, ValueError):
    """A version name that is not ``vNNNN``: refused before any path is built from it."""


class PointerError(RegistryError):
    """``production.json`` cannot be used; ``python pipeline.py rollback vNNNN`` rewrites it."""


class GateRejectedError(RegistryError):
    """A rollback to a version the quality gate rejected, asked for without ``force``."""


def check_version(value: object, source: str = "version") -> str:
    """Return ``value`` if it is a registry version name, else raise naming ``source``, the value and the form."""
    if isinstance(value, str) and _VERSION_RE.fullmatch(value):
        return value
    raise VersionNameError(f"{source}: {value!r} is not a registry version name; expected {VERSION_FORM}")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, fsync it, and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """Serialise first (a payload that cannot be written leaves the old file), then write atomically."""
    write_bytes_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def version_number(version: str) -> int:
    """``v0012`` -> 12 (versions are compared by number: ``v10000`` comes after ``v9999``)."""
    return int(check_version(version)[1:])


def _parse_json_object(data: bytes, path: Path) -> dict[str, Any]:
    """Parse a registry JSON file that must hold an object; anything else is a RegistryError naming it."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _dig(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...`` or None when a level is missing or not a dict (listing tolerates odd metadata)."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _test_month(meta: dict[str, Any]) -> Any:
    data = meta.get("data")
    rows = data if isinstance(data, list) else []
    return next((d.get("month") for d in rows if isinstance(d, dict) and d.get("role") == "test"), None)


def _status(version: str, gate: Any, current: bool, ever_production: set[Any]) -> str:
    """production (the pointer) / retired (was production, replaced since) / challenger (passed the gate, never
    served) / rejected (the gate refused it) / registered (no gate decision: registered through the API)."""
    if current:
        return "production"
    if version in ever_production:
        return "retired"
    if not isinstance(gate, dict):
        return "registered"
    return "challenger" if gate.get("promote") else "rejected"


class _ModelBytes(io.BytesIO):
    """The verified bytes of a model file, named after it so joblib's errors still say which file."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


class _Url(str):
    """An ``s3://`` location with ``/`` (``Path`` would collapse the ``//``), for messages and listings."""

    def __truediv__(self, other: object) -> _Url:
        return _Url(f"{self.rstrip('/')}/{other}")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


#: one object per history / decision entry on S3, under ``<log file>.d/`` (objects cannot be appended to)
LOG_SUFFIX = ".d"


class ModelRegistry:
    """Versions of one model name under ``root`` (a folder, or ``s3://bucket/prefix``).

    On S3 (``storage``: a ``tripduration.io.storage.S3Storage`` for ``<root>/<name>``, built from the AWS
    environment when not given) there is no lock: a version number is claimed by a create-only write of
    ``versions/vNNNN/.claim`` (If-None-Match), ``metadata.json`` is written last as on disk (a version is
    complete when it exists), the production pointer is replaced only by compare-and-swap (If-Match on its
    ETag, :meth:`set_production` with ``recheck``), and history / decisions are one create-only object per
    entry.
    """

    def __init__(self, root: str | Path, name: str, storage: Any = None) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"model name {name!r} may only hold letters, digits, '.', '_' and '-'")
        self.store: Any = None
        if str(root).startswith("s3://"):
            from tripduration.io.storage import S3Storage

            url = f"{str(root).rstrip('/')}/{name}"
            self.store = storage if storage is not None else S3Storage(url)
            self.root: Any = _Url(str(root).rstrip("/"))
        else:
            self.root = Path(root)
        self.name = name
        self.home = self.root / name
        self.versions_dir = self.home / "versions"
        self.production_file = self.home / POINTER_FILE
        self.history_file = self.home / HISTORY_FILE

    # ----------------------------------------------------------------- storage (the only raw file access)
    def _path(self, key: str) -> Path:
        """The local path of ``key`` (``versions/v0001/metadata.json``); keys are built from checked names only."""
        parts = key.split("/")
        if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise RegistryError(f"{self.name}: refusing registry key {key!r} (it could leave {self.home})")
        if self.store is not None:
            return self.home / key  # an s3:// URL, for messages only
        return self.home.joinpath(*parts)

    def _read_bytes(self, key: str) -> bytes:
        """The bytes stored under ``key``; FileNotFoundError when absent."""
        if self.store is not None:
            self._path(key)
            return self.store.read_bytes(key)
        return self._path(key).read_bytes()

    def _write_bytes_atomic(self, key: str, data: bytes) -> None:
        """Replace ``key`` with ``data`` so that readers see the old or the new content, never a mix."""
        if self.store is not None:
            self.store.write_bytes(key, data)  # one PUT: all or nothing
            return
        write_bytes_atomic(self._path(key), data)

    def _log_lines(self, key: str, errors: str = "replace") -> list[str]:
        """The lines of a log (history, decisions); on S3 its entry objects in name order."""
        if self.store is None:
            return self._read_bytes(key).decode(errors=errors).splitlines()
        names = self.store.list(f"{key}{LOG_SUFFIX}/")
        return [self.store.read_bytes(n).decode(errors=errors) for n in names]

    def _append_line(self, key: str, line: str, order: str | None = None) -> None:
        """Append one line to a log (history, decisions); callers hold :meth:`lock`.

        On S3: a new object ``<key>.d/<order>`` written create-only (``order``: a sortable name, the time by
        default), so two hosts appending at once never overwrite each other's entry.
        """
        if self.store is not None:
            import uuid

            name = order or f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
            if not self.store.create_exclusive(f"{key}{LOG_SUFFIX}/{name}.json", line.rstrip("\n").encode()):
                raise RegistryError(f"{self._path(key)}{LOG_SUFFIX}/{name}.json: already exists; entry not added")
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(line.rstrip("\n") + "\n")

    def _list_names(self, key: str) -> list[str]:
        """Names directly under the folder ``key`` (sorted); empty when the folder does not exist."""
        if self.store is not None:
            head = f"{key}/"
            return sorted({k[len(head) :].split("/", 1)[0] for k in self.store.list(head)})
        path = self._path(key)
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def _exists(self, key: str) -> bool:
        if self.store is not None:
            return self.store.exists(key) or bool(self.store.list(f"{key}/"))
        return self._path(key).exists()

    def _publish(self, staging: Path, version: str) -> bool:
        """Move a complete staging folder to ``versions/<version>``; False if another process took the name."""
        if self.store is not None:
            return self._publish_s3(staging, version)
        try:
            os.rename(staging, self._path(f"versions/{version}"))
            return True
        except OSError:
            if not self._exists(f"versions/{version}"):
                raise
            return False

    def _publish_s3(self, staging: Path, version: str) -> bool:
        """Claim ``version`` create-only (If-None-Match), upload the files, ``metadata.json`` last."""
        if not self.store.create_exclusive(f"versions/{version}/.claim", b""):
            return False
        files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != METADATA_FILE)
        for path in files:
            self.store.write_bytes(f"versions/{version}/{path.relative_to(staging).as_posix()}", path.read_bytes())
        self.store.write_bytes(f"versions/{version}/{METADATA_FILE}", (staging / METADATA_FILE).read_bytes())
        return True

    # ----------------------------------------------------------------- reading
    def _version_folders(self) -> list[str]:
        """Every entry of ``versions/`` with a version name, complete or not, in number order."""
        names = [n for n in self._list_names("versions") if _VERSION_RE.fullmatch(n)]
        return sorted(names, key=version_number)

    def _is_complete(self, version: str) -> bool:
        return self._exists(f"versions/{version}/{METADATA_FILE}")

    def incomplete_versions(self) -> list[str]:
        """Version folders without ``metadata.json``: an interrupted registration or a stray folder."""
        return [v for v in self._version_folders() if not self._is_complete(v)]

    def versions(self) -> list[str]:
        """Complete versions in number order; incomplete folders are skipped with a warning, never deleted."""
        complete = []
        for version in self._version_folders():
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
            data = self._read_bytes(key)
        except FileNotFoundError:
            if self._exists(f"versions/{version}"):
                raise RegistryError(
                    f"{self._path(key)}: missing; {version} is an incomplete version folder (an interrupted "
                    "registration or a stray folder) and cannot be used. Inspect it, then remove it by hand."
                ) from None
            raise RegistryError(f"{self.name}: version {version!r} does not exist under {self.versions_dir}") from None
        meta = _parse_json_object(data, self._path(key))
        if meta.get("version", version) != version:
            raise RegistryError(
                f"{self._path(key)}: describes version {meta.get('version')!r} but lies in folder {version}; refused"
            )
        return meta

    def _pointer_error(self, problem: str) -> PointerError:
        return PointerError(
            f"{self.production_file}: {problem}. Repair it with `python pipeline.py rollback vNNNN` "
            "(pick a version from `python pipeline.py models`)"
        )

    def production(self) -> dict[str, Any] | None:
        """The validated production pointer, or None if there is none yet.

        Raises PointerError (naming the file and the repair) if it is not JSON, has a field of the wrong type,
        a bad version name or sha256, or names a version that is missing or incomplete.
        """
        try:
            data = self._read_bytes(POINTER_FILE)
        except FileNotFoundError:
            return None
        try:
            pointer = _parse_json_object(data, self.production_file)
            check_version(pointer.get("version"), "field 'version'")
        except RegistryError as exc:
            raise self._pointer_error(str(exc).removeprefix(f"{self.production_file}: ")) from None
        sha = pointer.get("model_sha256")
        if not (isinstance(sha, str) and _SHA256_RE.fullmatch(sha)):
            raise self._pointer_error(f"field 'model_sha256' is {sha!r}, not a sha256 of 64 hex digits")
        if not self._is_complete(pointer["version"]):
            raise self._pointer_error(f"it names {pointer['version']}, which is missing or incomplete")
        return pointer

    def model_path(self, version: str) -> Path:
        return self._path(f"versions/{check_version(version)}/{MODEL_FILE}")

    def _model_bytes(self, version: str) -> bytes:
        try:
            return self._read_bytes(f"versions/{version}/{MODEL_FILE}")
        except FileNotFoundError:
            raise RegistryError(f"{self.model_path(version)}: missing; {version} cannot be loaded") from None

    def _current_pointer_for(self, version: str) -> dict[str, Any] | None:
        """The production pointer if it is readable and names ``version`` (an unreadable one is not a witness)."""
        try:
            pointer = self.production()
        except RegistryError:
            return None
        return pointer if pointer is not None and pointer["version"] == version else None

    def _check_model_bytes(
        self, version: str, meta: dict[str, Any], data: bytes, pointer: dict[str, Any] | None
    ) -> None:
        """Refuse bytes whose sha256 differs from the metadata's or (when given) the production pointer's."""
        path = self.model_path(version)
        actual = hashlib.sha256(data).hexdigest()
        recorded = meta.get("model_sha256")
        if not (isinstance(recorded, str) and _SHA256_RE.fullmatch(recorded)):
            raise RegistryError(
                f"{self._path(f'versions/{version}/{METADATA_FILE}')}: 'model_sha256' is {recorded!r}, not a "
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
        self._check_model_bytes(version, meta, data, pointer)
        return joblib.load(_ModelBytes(data, str(self.model_path(version)))), meta

    def verify(self, version: str) -> None:
        """Check a version's model file against its recorded sha256s (without unpickling it)."""
        version = check_version(version)
        meta = self.metadata(version)
        self._check_model_bytes(version, meta, self._model_bytes(version), self._current_pointer_for(version))

    def read_file(self, version: str, name: str) -> str:
        """A file stored beside the model (e.g. ``reference_profile.json``); FileNotFoundError when absent."""
        version = check_version(version)
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"registry file name {name!r} may only hold letters, digits, '.', '_' and '-'")
        return self._read_bytes(f"versions/{version}/{name}").decode()

    def find_by_key(self, key: str) -> str | None:
        for version in self.versions():
            try:
                meta = self.metadata(version)
            except RegistryError as exc:  # unreadable metadata: not this key's version; `models` reports it
                log.warning("%s; skipped while looking for registration key %s", exc, key)
                continue
            if meta.get("registration_key") == key:
                return version
        return None

    def history(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Entries of ``history.jsonl`` and a description of each line that could not be read."""
        try:
            lines = self._log_lines(HISTORY_FILE)
        except FileNotFoundError:
            return [], []
        entries, problems = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                problems.append(f"{self.history_file} line {number}: not valid JSON ({exc}); ignored")
                continue
            if isinstance(entry, dict):
                entries.append(entry)
            else:
                problems.append(f"{self.history_file} line {number}: not a JSON object; ignored")
        return entries, problems

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive inter-process lock on this model name (released if the holder dies).

        None on S3 (hosts share no lock): there every write is create-only or compare-and-swap instead.
        """
        if self.store is not None:
            yield
            return
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _next_number(self) -> int:
        """One above every version folder, complete or not, so a new version never lands on a stray folder."""
        folders = self._version_folders()
        return version_number(folders[-1]) + 1 if folders else 1

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
        if self.store is None:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
        scratch = None if self.store is not None else self.versions_dir  # S3: stage in local TMPDIR
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=scratch))
        try:
            shutil.copyfile(model_file, staging / MODEL_FILE)
            for name, src in (extra_dirs or {}).items():
                shutil.copytree(src, staging / name)
            for name, text in (extra_files or {}).items():
                (staging / name).write_text(text)
            meta = dict(metadata)
            meta["model_sha256"] = sha256_file(staging / MODEL_FILE)
            meta["registration_key"] = key
            meta["name"] = self.name
            while True:
                version = f"v{self._next_number():04d}"
                meta["version"] = version
                meta["registered_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
                if self._publish(staging, version):  # else another process took this number: try the next one
                    if self.store is not None:
                        shutil.rmtree(staging, ignore_errors=True)
                    return version
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _previous_version(self) -> tuple[str | None, str | None]:
        """The current pointer's version, or (None, why) when it cannot be read: a rollback must still work."""
        try:
            previous = self.production()
        except RegistryError as exc:
            return None, str(exc)
        return (previous["version"] if previous else None), None

    def set_production(
        self,
        version: str,
        reason: str,
        action: str = "promote",
        extra: dict[str, Any] | None = None,
        recheck: Callable[[dict[str, Any] | None], tuple[bool, str]] | None = None,
    ) -> dict[str, Any] | None:
        """Point production at ``version`` (atomically) and log the change. Call it under :meth:`lock`.

        The old pointer need not be readable: a corrupt one is replaced, and the new pointer records
        ``previous_version: null`` with ``previous_pointer_error`` saying what was wrong.

        On S3 (no lock) the pointer is swapped with If-Match on the ETag it was read with; ``recheck(current)``
        (the quality gate against the pointer about to be replaced) runs before each attempt, and again if
        another host swapped first. Returns None when ``recheck`` says no (nothing written).
        """
        if self.store is not None:
            return self._swap_production(version, reason, action, extra, recheck)
        meta = self.metadata(check_version(version))
        previous, previous_error = self._previous_version()
        pointer = {
            "name": self.name,
            "version": version,
            "action": action,
            "reason": reason,
            "previous_version": previous,
            "changed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model_sha256": meta["model_sha256"],
            "metrics": meta.get("metrics", {}),
            **(extra or {}),
        }
        if previous_error is not None:
            pointer["previous_pointer_error"] = previous_error
        self._write_bytes_atomic(POINTER_FILE, json.dumps(pointer, indent=2, sort_keys=True, default=str).encode())
        self._append_line(HISTORY_FILE, json.dumps(pointer, sort_keys=True, default=str))
        return pointer

    def _swap_production(
        self,
        version: str,
        reason: str,
        action: str,
        extra: dict[str, Any] | None,
        recheck: Callable[[dict[str, Any] | None], tuple[bool, str]] | None,
    ) -> dict[str, Any] | None:
        from tripduration.io.storage import update_pointer

        meta = self.metadata(check_version(version))

        def decide(current: dict[str, Any] | None) -> dict[str, Any] | None:
            why = reason
            if recheck is not None:
                promote, why = recheck(current)
                if not promote:
                    return None
            return {
                "name": self.name,
                "version": version,
                "action": action,
                "reason": why,
                "previous_version": current.get("version") if current else None,
                "sequence": int(current.get("sequence", 0)) + 1 if current else 1,
                "changed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "model_sha256": meta["model_sha256"],
                "metrics": meta.get("metrics", {}),
                **(extra or {}),
            }

        written, _ = update_pointer(self.store, POINTER_FILE, decide)
        if written is not None:  # the pointer's sequence orders the history, whatever the hosts' clocks
            line = json.dumps(written, sort_keys=True, default=str)
            self._append_line(HISTORY_FILE, line, order=f"{written['sequence']:010d}")
        return written

    def sweep_orphans(self) -> list[Path]:
        """Remove staging folders and temporary files left by a process killed while writing.

        Every write to the registry happens under :meth:`lock`, so whatever is found while holding it is
        an orphan. Incomplete version folders are not orphans of a write in progress: they are reported by
        :meth:`inventory`, never deleted.
        """
        removed: list[Path] = []
        if self.store is not None or not self.home.is_dir():  # S3: staging is in local TMPDIR
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

    def rollback(self, version: str, reason: str, force: bool = False) -> dict[str, Any]:
        """Point production at any registered version, after checking its model file against its metadata.

        The old pointer is neither needed nor trusted (this is how a corrupt ``production.json`` is repaired).
        A version the quality gate rejected needs ``force=True``; the pointer then records ``forced`` and the
        gate's reason, so the rollback is visible in ``models`` and in the history.
        """
        version = check_version(version, "rollback version")
        with self.lock():
            meta = self.metadata(version)
            self._check_model_bytes(version, meta, self._model_bytes(version), None)
            gate = meta.get("gate")
            extra: dict[str, Any] = {}
            if isinstance(gate, dict) and gate.get("promote") is False:
                if not force:
                    raise GateRejectedError(
                        f"{version} was rejected by the quality gate ({gate.get('reason')}); "
                        "add --force to roll back to it anyway"
                    )
                extra = {"forced": True, "gate_reason": gate.get("reason")}
            pointer = self.set_production(version, reason, action="rollback", extra=extra)
            if pointer is None:  # only a recheck can refuse, and a rollback has none
                raise RegistryError(f"{self.name}: rollback to {version} was refused")
            return pointer

    def decisions(self) -> list[dict[str, Any]]:
        try:
            lines = self._log_lines(DECISIONS_FILE, errors="strict")
        except FileNotFoundError:
            return []
        entries = [json.loads(line) for line in lines if line.strip()]
        return sorted(entries, key=lambda d: str(d.get("at"))) if self.store is not None else entries

    def record_decision(self, decision: dict[str, Any], key: str) -> None:
        """Append a monitoring/retraining decision to ``decisions.jsonl``, once per ``key`` (reruns add none)."""
        entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "key": key, **decision}
        if self.store is not None:  # one object named after the key, create-only: a second host adds nothing
            name = f"{DECISIONS_FILE}{LOG_SUFFIX}/{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
            self.store.create_exclusive(name, json.dumps(entry, default=str).encode())
            return
        with self.lock():
            if any(d.get("key") == key for d in self.decisions()):
                return
            self._append_line(DECISIONS_FILE, json.dumps(entry, default=str))

    # ----------------------------------------------------------------- listing
    def inventory(self) -> dict[str, list[Any]]:
        """What ``models`` shows: ``versions`` (valid ones, with status) and ``problems`` (what is not valid).

        Never fails on a bad registry entry: a corrupt pointer, an incomplete folder, unreadable metadata or a
        model whose sha256 does not match are each named in ``problems`` with the file and what to do.
        """
        problems: list[dict[str, str]] = []
        try:
            pointer = self.production()
        except RegistryError as exc:
            pointer = None
            problems.append({"path": str(self.production_file), "problem": str(exc)})
        entries, history_problems = self.history()
        problems += [{"path": str(self.history_file), "problem": p} for p in history_problems]
        ever = {e.get("version") for e in entries}
        problems += self._stray_entries()
        rows = []
        for version in self._version_folders():
            try:
                rows.append(self._listing_row(version, pointer, ever))
            except RegistryError as exc:
                problems.append({"path": str(self.versions_dir / version), "problem": str(exc)})
        return {"versions": rows, "problems": problems}

    def listing(self) -> list[dict[str, Any]]:
        """The valid versions of :meth:`inventory`."""
        return self.inventory()["versions"]

    def _stray_entries(self) -> list[dict[str, str]]:
        """Entries of ``versions/`` that are not version names (staging folders of a write in progress aside)."""
        return [
            {
                "path": str(self.versions_dir / n),
                "problem": f"{self.versions_dir / n}: not a version name ({VERSION_FORM}); ignored",
            }
            for n in self._list_names("versions")
            if not _VERSION_RE.fullmatch(n) and not n.startswith(".staging-")
        ]

    def _listing_row(self, version: str, pointer: dict[str, Any] | None, ever: set[Any]) -> dict[str, Any]:
        """One valid version's row; RegistryError if it is incomplete, unreadable or fails its sha256 check."""
        meta = self.metadata(version)
        current = pointer is not None and pointer["version"] == version
        self._check_model_bytes(version, meta, self._model_bytes(version), pointer if current else None)
        status = _status(version, meta.get("gate"), current, ever)
        rollback_reason = pointer.get("reason") if current and pointer and pointer.get("action") == "rollback" else None
        return {
            "version": version,
            "status": status,
            "registered_at": meta.get("registered_at"),
            "algorithm": _dig(meta, "algorithm", "candidate"),
            "test_month": _test_month(meta),
            "test_rmse": _dig(meta, "metrics", "test", "rmse"),
            "baseline_rmse": _dig(meta, "metrics", "baseline_test", "rmse"),
            "gate_reason": _dig(meta, "gate", "reason"),
            "rollback_reason": rollback_reason,
            "forced": bool(current and pointer and pointer.get("forced")),
        }
