"""The storage port on a local (or POSIX network) file system: :class:`LocalStorage`.

Atomic writes are written once, here (:meth:`LocalStorage._publishing`): content goes to a temporary name in
the target's own folder (so the rename is atomic), is flushed and fsynced, and is renamed over the target only
when the writer succeeded; a writer that raised leaves nothing. A process killed in between leaves a
temporary name that :meth:`LocalStorage.sweep_orphans` removes later (:data:`TEMPORARY` matches it).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tripduration.io.content import content_sha256
from tripduration.io.storage import LOCK_SUFFIX, TMP_MARK, Storage, check_key, content_token

if TYPE_CHECKING:
    import pandas as pd

#: names of temporary files and folders of a write in progress (or left by a killed writer)
TEMPORARY = re.compile(rf"{re.escape(TMP_MARK)}|^\.staging-")
#: the folder of a local storage that holds its caches (ignored by listings)
CACHE_DIR = ".cache"


def is_temporary(name: str) -> bool:
    """Is ``name`` a temporary file or folder of a write (in progress, or left by a killed writer)?"""
    return bool(TEMPORARY.search(name))


class LocalStorage:
    """A folder on a local (or POSIX network) file system."""

    def __init__(self, root: str | Path, hash_cache: Path | None = None) -> None:
        """``hash_cache``: where :meth:`identity` caches content digests (default: this storage's own
        :meth:`cache_dir`); a read-only input folder is given the work directory's cache instead."""
        self.root = Path(root)
        self.url = str(self.root)
        self.hash_cache = hash_cache

    def __repr__(self) -> str:
        return f"LocalStorage({self.url!r})"

    @property
    def local_root(self) -> Path:
        return self.root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def url_for(self, key: str) -> str:
        return str(self.path(key)) if key else self.url

    poll_seconds = 0.0  # a stat costs microseconds

    def spec(self) -> dict[str, Any]:
        return {"url": str(self.root.resolve())}

    def where(self, key: str = "") -> Path:
        return self.path(key) if key else self.root

    def child(self, prefix: str) -> Storage:
        return LocalStorage(self.path(prefix), self.hash_cache)

    # ------------------------------------------------------------------ reading
    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except IsADirectoryError:
            raise FileNotFoundError(f"{self.url_for(key)}: a folder, not a file") from None

    def read_with_token(self, key: str) -> tuple[bytes, str]:
        data = self.read_bytes(key)
        return data, content_token(data)

    def exists(self, key: str) -> bool:
        # anything at the name counts (a FIFO or a folder where a file belongs is then refused by its reader,
        # naming the path, instead of being taken as absent and overwritten)
        return self.path(key).exists()

    def folder_exists(self, key: str) -> bool:
        return self.path(key).is_dir()

    def list(self, prefix: str = "") -> list[str]:
        folder = self.root / prefix.rpartition("/")[0]
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            relative = path.relative_to(self.root)
            if any(is_temporary(part) or part == CACHE_DIR for part in relative.parts):
                continue
            if path.name.endswith(LOCK_SUFFIX) or not path.is_file():
                continue
            key = relative.as_posix()
            if key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def children(self, key: str) -> builtins.list[str]:
        folder = self.path(key) if key else self.root
        if not folder.is_dir():
            return []
        # as list(): neither a write in progress (or left by a killed writer), nor a lock file, nor the caches
        return sorted(
            p.name
            for p in folder.iterdir()
            if not (is_temporary(p.name) or p.name.endswith(LOCK_SUFFIX) or p.name == CACHE_DIR)
        )

    def change_token(self, key: str) -> str | None:
        try:
            st = os.stat(self.path(key))
        except FileNotFoundError:
            return None
        return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"

    def identity(self, key: str) -> str | None:
        path = self.path(key)
        cache = self.hash_cache or self.cache_dir("content-sha256")
        return content_sha256(path, cache) if path.is_file() else None

    def confirms(self, identity: str, sha256: str) -> bool:
        return identity == sha256

    @contextlib.contextmanager
    def local_copy(self, key: str, identity: str | None = None, folder: bool = False) -> Iterator[Path]:
        # the file itself: its reader hashes what it reads, and confirms() compares that with ``identity``
        yield self.path(key)

    def read_parquet(self, key: str, columns: builtins.list[str] | None = None) -> pd.DataFrame:
        from tripduration.io.parquet import read_parquet

        return read_parquet(self.path(key), columns)

    def cache_dir(self, name: str) -> Path:
        return self.root / CACHE_DIR / name

    # ------------------------------------------------------------------ writing
    def _temporary(self, final: Path) -> Path:
        return final.parent / f".{final.name}{TMP_MARK}{secrets.token_hex(4)}"

    @contextlib.contextmanager
    def _publishing(self, final: Path, folder: bool, exclusive: bool = False) -> Iterator[Path]:
        """The one atomic write: a temporary name beside ``final``, renamed over it if the block succeeds."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temporary(final)
        if folder:
            tmp.mkdir()
        try:
            yield tmp
            if not folder:
                _fsync(tmp)
            if exclusive:
                _rename_new(tmp, final)
            else:
                if folder and final.is_dir():
                    shutil.rmtree(final)
                os.replace(tmp, final)
        finally:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def writing(
        self, key: str, folder: bool = False, exclusive: bool = False, last: str | None = None
    ) -> contextlib.AbstractContextManager[Path]:
        # ``last`` needs no special order here: the whole folder appears by one rename
        return self._publishing(self.path(key), folder, exclusive)

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._publishing(self.path(key), folder=False) as tmp:
            tmp.write_bytes(data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # link() of a complete file: atomic, and fails if the name exists (O_EXCL on the final name would
        # expose a half-written file to readers while it is being written)
        try:
            with self._publishing(self.path(key), folder=False, exclusive=True) as tmp:
                tmp.write_bytes(data)
        except FileExistsError:
            return False
        return True

    def replace_if(self, key: str, data: bytes, expected_token: str | None) -> bool:
        if expected_token is None:
            return self.create_exclusive(key, data)
        with self.lock(key):
            try:
                _, current = self.read_with_token(key)
            except FileNotFoundError:
                return False
            if current != expected_token:
                return False
            self.write_bytes(key, data)
            return True

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    # ------------------------------------------------------------------ logs and locks
    def append_log(self, key: str, record: dict[str, Any], unique: str | None = None) -> dict[str, Any] | None:
        path = self.path(key)
        with self.lock(key):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            entries = _json_lines(data)
            if unique is not None and any(e.get("entry") == unique for e in entries):
                return None
            last = max((e.get("seq", 0) for e in entries if isinstance(e.get("seq"), int)), default=len(entries))
            stored = {**record, "seq": max(last, len(entries)) + 1, **({"entry": unique} if unique else {})}
            # a line a killed writer (or a full disk) left without its end stays a line of its own
            start = "\n" if data and not data.endswith(b"\n") else ""
            with open(path, "a") as fh:
                fh.write(start + json.dumps(stored, sort_keys=True, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return stored

    def read_log(self, key: str) -> builtins.list[str]:
        try:
            text = self.path(key).read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive ``flock`` on ``.<name>.storage-lock`` (released by the kernel if the holder dies)."""
        final = self.path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(final.parent / f".{final.name}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def sweep_orphans(self, older_than_seconds: float = 0.0) -> builtins.list[str]:
        """Remove temporary files and folders left by killed writers (:data:`TEMPORARY`), older than the age.

        Call it only while no other writer can be writing here, or with an age larger than any write takes.
        """
        removed: builtins.list[str] = []
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - older_than_seconds
        for path in sorted(self.root.rglob("*"), key=lambda p: -len(p.parts)):
            if not is_temporary(path.name):
                continue
            try:
                if path.lstat().st_mtime > cutoff:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:
                continue
            removed.append(str(path))
        return removed


def _fsync(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError), open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _rename_new(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` only if nothing is there: ``FileExistsError`` otherwise."""
    if tmp.is_dir():
        try:
            os.rename(tmp, final)  # fails on an existing non-empty folder
        except OSError:
            if final.exists():
                raise FileExistsError(f"{final}: already exists") from None
            raise
        return
    os.link(tmp, final)  # FileExistsError when the name is taken


def _json_lines(data: bytes) -> list[dict[str, Any]]:
    entries = []
    for line in data.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                entries.append(value)
    return entries
