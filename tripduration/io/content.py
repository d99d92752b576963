"""Content identity of input files: sha256, cached beside a cheap stat key.

A task's output path is keyed by what produced it (see ``tasks.base``), and the *content* of every input file
(a raw month, the zone lookup, a downloaded file) is part of that key: a file replaced under the same name
must make new outputs, never leave stale ones that look current. Hashing a month on every no-op rerun would
cost seconds, so the digest is cached with the file's ``(size, mtime_ns, inode, device)``: while those are
unchanged the cached digest is used and nothing is read; when any differs the file is hashed again.

The cache lives in a folder of the work directory (one small JSON file per input path, written atomically),
so concurrent workers never corrupt it: the worst case is two workers hashing the same file once each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileStamp:
    """What ``stat`` says about a file: if all four are unchanged, its content is taken as unchanged."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def stamp(path: str | Path) -> FileStamp:
    return FileStamp.of(os.stat(path))


def sha256_stream(fh: BinaryIO) -> str:
    """sha256 of everything readable from ``fh`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _cache_file(cache_dir: Path, path: Path) -> Path:
    key = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()
    return cache_dir / f"{key}.json"


def _read_cache(entry: Path, path: Path, current: FileStamp) -> str | None:
    try:
        cached = json.loads(entry.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("path") != str(path) or cached.get("stamp") != asdict(current):
        return None
    digest = cached.get("sha256")
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _write_cache(entry: Path, path: Path, current: FileStamp, digest: str) -> None:
    """Write one cache entry atomically; a cache that cannot be written only costs a rehash next time."""
    from tripduration.io.local import LocalStorage

    payload = json.dumps({"path": str(path), "stamp": asdict(current), "sha256": digest}).encode()
    with contextlib.suppress(OSError):
        LocalStorage(entry.parent).write_bytes(entry.name, payload)


def content_sha256(path: str | Path, cache_dir: str | Path | None) -> str:
    """sha256 of ``path``'s content, from the cache when its stat key is unchanged (no read), else hashed.

    The digest is computed from the same open file as the stat key that is cached with it, so a file
    replaced while being hashed is never cached under the wrong key.
    """
    path = Path(path).resolve()
    if cache_dir is not None:
        entry = _cache_file(Path(cache_dir), path)
        cached = _read_cache(entry, path, stamp(path))
        if cached is not None:
            return cached
    with open(path, "rb") as fh:
        before = FileStamp.of(os.fstat(fh.fileno()))
        digest = sha256_stream(fh)
    if cache_dir is not None and stamp(path) == before:
        _write_cache(entry, path, before, digest)
    return digest
