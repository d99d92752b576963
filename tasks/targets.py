"""Luigi targets over the storage port: where a task's outputs live and how they are read and written.

``[paths]`` values are project-relative folders or object-storage prefixes; :func:`work_storage`, :func:`raw_storage`
and :func:`registry_storage` open them through ``tripduration.io`` (the only code that knows the difference).
A task's output is an :class:`Output`: a key in a storage that knows whether it exists and how to ``load()``
and ``dump()`` its content by suffix, atomically (as gokart's targets do), so a task's ``run()`` says what,
not how. :func:`load` and :func:`dump` do the same for the nested lists and dicts ``self.input()`` returns.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi

from tasks.settings import PathsConfig, S3Config
from tripduration.io import Storage, formats, open_file, open_storage

if TYPE_CHECKING:
    from tripduration.registry.store import ModelRegistry

PROJECT_ROOT = Path(__file__).resolve().parents[1]


_OPENED: dict[tuple[Any, ...], Storage] = {}


def _open(value: str, hash_cache: Path | None = None) -> Storage:
    """The storage at a configured location, one object per (location, settings, cache) and process: a graph
    asks for the work directory's storage at every output and completeness check."""
    settings = S3Config().settings()
    key = (os.getpid(), value, settings, hash_cache)
    storage = _OPENED.get(key)
    if storage is None:
        storage = _OPENED[key] = open_storage(value, PROJECT_ROOT, settings, hash_cache)
    return storage


def work_storage() -> Storage:
    """``[paths] work_dir``: where every task's outputs go."""
    return _open(PathsConfig().work_dir)


def content_cache() -> Path:
    """Where the digests of input files are cached (a local folder of the work directory, or of the user's
    cache for a work directory in object storage): a no-op rerun reads no input file."""
    return work_storage().cache_dir("content-sha256")


def raw_storage() -> Storage:
    """``[paths] raw_dir``: the raw monthly files (read-only inputs)."""
    return _open(PathsConfig().raw_dir, content_cache())


def registry_storage() -> Storage:
    """``[paths] registry_dir``: the model registry, one folder per model name."""
    return _open(PathsConfig().registry_dir)


def zone_lookup_file() -> tuple[Storage, str]:
    """``[paths] zone_lookup``: the storage holding the TLC zone lookup CSV, and its key there."""
    return open_file(PathsConfig().zone_lookup, PROJECT_ROOT, S3Config().settings(), content_cache())


def open_registry(name: str) -> ModelRegistry:
    """The ``ModelRegistry`` of ``name`` under ``[paths] registry_dir``."""
    from tripduration.registry.store import ModelRegistry

    return ModelRegistry(registry_storage(), name)


class Output(luigi.Target):
    """A file (or, with ``folder``, a folder) at ``key`` of a storage: it exists, loads and dumps itself.

    A folder output is complete when the storage says so (renamed into place locally; its ``_SUCCESS`` flag
    on object storage), so a killed writer never leaves an output that looks complete.
    """

    def __init__(self, storage: Storage, key: str, folder: bool = False) -> None:
        self.storage, self.key, self.folder = storage, key, folder

    def __repr__(self) -> str:
        return f"Output({self.path!r})"

    @property
    def path(self) -> str:
        """Where the output lives (a path or URL), for messages and records."""
        return self.storage.url_for(self.key)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def sibling(self, name: str) -> Output:
        """Another output in the same folder."""
        return Output(self.storage, f"{self.key.rsplit('/', 1)[0]}/{name}")

    def child(self, name: str) -> Output:
        """A file inside this folder output."""
        return Output(self.storage, f"{self.key}/{name}")

    def exists(self) -> bool:
        return self.storage.folder_exists(self.key) if self.folder else self.storage.exists(self.key)

    def load(self, columns: list[str] | None = None) -> Any:
        return formats.load(self.storage, self.key, columns)

    def dump(self, content: Any) -> None:
        if self.folder:
            raise IsADirectoryError(f"{self.path} is a folder output: write it with dump_folder()")
        formats.dump(self.storage, self.key, content)

    def dump_folder(self, write: Callable[[Path], object]) -> None:
        formats.dump_folder(self.storage, self.key, write)

    def open(self, mode: str = "r") -> contextlib.AbstractContextManager[Any]:
        """A text file handle, as luigi's targets give: ``r`` reads the content, ``w`` writes it atomically
        (published when the ``with`` block ends without an error)."""
        if mode == "r":
            return contextlib.nullcontext(io.StringIO(self.storage.read_bytes(self.key).decode()))
        if mode == "w":
            return self._text_writer()
        raise ValueError(f"{self.path}: mode {mode!r}: use 'r' or 'w'")

    @contextlib.contextmanager
    def _text_writer(self) -> Iterator[Any]:
        with self.storage.writing(self.key) as tmp, open(tmp, "w") as fh:
            yield fh

    def identity(self) -> str | None:
        return self.storage.identity(self.key)

    def local_copy(self, identity: str | None = None) -> contextlib.AbstractContextManager[Path]:
        return self.storage.local_copy(self.key, identity, folder=self.folder)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        """A local path to write this output into with a tool that takes a path (a download)."""
        with self.storage.writing(self.key, folder=self.folder) as tmp:
            yield tmp


def load(inputs: Any, columns: list[str] | None = None) -> Any:
    """The content of a task's input(s), read by suffix: ``.json`` -> object, ``.parquet`` -> DataFrame
    (``columns``: only those), ``.joblib`` -> fitted model. Lists and dicts of outputs (what ``self.input()``
    returns) give lists and dicts of contents, as gokart's ``load`` does."""
    if isinstance(inputs, dict):
        return {key: load(value, columns) for key, value in inputs.items()}
    if isinstance(inputs, list | tuple):
        return [load(value, columns) for value in inputs]
    return inputs.load(columns)


def dump(outputs: Any, content: Any) -> None:
    """Write ``content`` to a task's output(s) atomically, by suffix. A dict of outputs takes a dict of contents
    with the same keys (written in the dict's order: put the output that marks completion last)."""
    if isinstance(outputs, dict):
        missing = set(outputs) - set(content)
        if missing:
            raise ValueError(f"no content for the outputs {sorted(missing)}")
        for key, target in outputs.items():
            dump(target, content[key])
        return
    outputs.dump(content)
