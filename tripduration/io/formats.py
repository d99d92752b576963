"""Reading and writing a file by the suffix of its name, through the storage port (as gokart's targets do).

``.json`` (sorted keys), ``.parquet`` (a DataFrame, read one column at a time) and ``.joblib`` (a fitted model,
compressed). Every write is atomic (:meth:`Storage.writing`): the file appears whole or not at all.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tripduration.io.storage import Storage

#: how :func:`load` reads and :func:`dump` writes a file, by the suffix of its name
FORMATS = (".json", ".parquet", ".joblib")


def suffix_of(key: str) -> str:
    suffix = Path(key).suffix
    if suffix not in FORMATS:
        raise ValueError(f"{key}: no format for {suffix or 'a name without suffix'!r}; use one of {FORMATS}")
    return suffix


def load(storage: Storage, key: str, columns: list[str] | None = None) -> Any:
    """The content of ``key``: ``.json`` -> object, ``.parquet`` -> DataFrame (``columns``: only those),
    ``.joblib`` -> the unpickled object (read as bytes: joblib loads from a file object)."""
    suffix = suffix_of(key)
    if suffix == ".json":
        return json.loads(storage.read_bytes(key))
    if suffix == ".parquet":
        return storage.read_parquet(key, columns)
    import joblib

    return joblib.load(io.BytesIO(storage.read_bytes(key)))


def dump(storage: Storage, key: str, content: Any) -> None:
    """Write ``content`` to ``key`` atomically, in the format of its suffix."""
    suffix = suffix_of(key)
    if suffix == ".json":
        storage.write_bytes(key, json_bytes(content))
        return
    with storage.writing(key) as tmp:
        if suffix == ".parquet":
            from tripduration.io.parquet import write_parquet

            write_parquet(content, tmp)
        else:
            import joblib

            joblib.dump(content, tmp, compress=3)


def dump_folder(storage: Storage, key: str, write: Callable[[Path], object]) -> None:
    """Create the folder ``key`` atomically: ``write(folder)`` fills a fresh local folder, which becomes the
    output only if it returns (renamed locally; uploaded with its completion flag last on S3)."""
    with storage.writing(key, folder=True) as tmp:
        write(tmp)


def json_bytes(payload: Any) -> bytes:
    """The JSON text every JSON output is written as (indented, sorted keys; dates and paths as strings)."""
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
