"""The CLI x storage-backend matrix (issue 19 section 1): one place, a local folder or a moto S3 bucket.

A :class:`Backend` is what a user of either kind of deployment has: a luigi config file (``LUIGI_CONFIG_PATH``)
with ``[paths] raw_dir``, ``work_dir``, ``registry_dir`` and ``zone_lookup`` all local or all in one bucket
(``[s3]`` naming the moto server on 127.0.0.1), the sampled real months in ``raw_dir``, and ``cli(...)`` to run
``python pipeline.py ...`` as a real process. The subprocess gets no ``AWS_*`` endpoint or keys from the
environment: the configuration file alone must get every process (luigi's task processes, uvicorn's worker
processes) to the bucket. Its content cache (``XDG_CACHE_HOME``) and scratch (``TMPDIR``) are the backend's own.

The test side looks at the effects through the storage port (:meth:`Backend.registry`, :meth:`Backend.work`).
"""

from __future__ import annotations

import configparser
import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import FAST_CANDIDATES, ROOT
from tests.storage.conftest import ACCESS_KEY, REGION, SECRET_KEY
from tripduration.io import Storage, open_storage
from tripduration.io.s3 import S3Settings, make_s3_client
from tripduration.registry.store import ModelRegistry

MODEL = "green-trip-duration"
KINDS = ("local", "s3")
#: the AWS variables a subprocess must not inherit: the config file alone says where the bucket is
AWS_HIDDEN = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")
_buckets = itertools.count(1)


@dataclass
class Backend:
    kind: str
    home: Path  # this backend's local folder: config file, metrics text file, cache, scratch
    raw: str
    work_url: str
    registry_url: str
    settings: S3Settings | None = None

    @property
    def cfg_file(self) -> Path:
        return self.home / "luigi.cfg"

    @property
    def textfile(self) -> Path:
        return self.home / "metrics" / "tripduration.prom"

    def storage(self, url: str) -> Storage:
        return open_storage(url, s3=self.settings)

    def work(self) -> Storage:
        return self.storage(self.work_url)

    def raw_storage(self) -> Storage:
        return self.storage(self.raw)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.storage(self.registry_url), MODEL)

    def env(self) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if k not in AWS_HIDDEN}
        scratch = self.home / "scratch"
        scratch.mkdir(exist_ok=True)
        return {
            **environ,
            "LUIGI_CONFIG_PATH": str(self.cfg_file),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "TMPDIR": str(scratch),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(ROOT / "pipeline.py"), *args]

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``python pipeline.py ARGS``, run in the backend's folder (not the project's)."""
        return subprocess.run(
            self.command(*args), env=self.env(), cwd=self.home, capture_output=True, text=True, timeout=timeout
        )

    def set_config(self, section: str, key: str, value: str) -> None:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(self.cfg_file)
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
        with open(self.cfg_file, "w") as fh:
            parser.write(fh)


def make_backend(kind: str, home: Path, raw_source: Path, endpoint_url: str | None = None) -> Backend:
    """A fresh backend of ``kind`` under ``home``, its raw folder (or prefix) holding ``raw_source``'s files."""
    home.mkdir(parents=True, exist_ok=True)
    if kind == "local":
        raw = home / "raw"
        shutil.copytree(raw_source, raw)
        backend = Backend(kind, home, str(raw), str(home / "work"), str(home / "models"))
        zone_lookup = str(raw / "taxi_zone_lookup.csv")
    else:
        assert endpoint_url, "the S3 backend needs the moto server"
        settings = S3Settings(endpoint_url, ACCESS_KEY, SECRET_KEY, REGION)
        bucket = f"cli-matrix-{next(_buckets):04d}"
        client = make_s3_client(settings)
        client.create_bucket(Bucket=bucket)
        for path in sorted(raw_source.iterdir()):
            client.upload_file(str(path), bucket, f"raw/{path.name}")
        base = f"s3://{bucket}"
        backend = Backend(kind, home, f"{base}/raw", f"{base}/work", f"{base}/registry", settings)
        zone_lookup = f"{base}/raw/taxi_zone_lookup.csv"
    write_config(backend, zone_lookup)
    return backend


def write_config(backend: Backend, zone_lookup: str) -> None:
    """The test settings of tests/conftest.py's ``pipeline_env``, with this backend's places."""
    values: dict[str, dict[str, str]] = {
        "paths": {
            "raw_dir": backend.raw,
            "work_dir": backend.work_url,
            "registry_dir": backend.registry_url,
            "zone_lookup": zone_lookup,
        },
        "model_search": {"candidates": FAST_CANDIDATES},
        # nothing comes from the network: a month is there (raw_dir) or it is not published
        "download": {"offline": "true", "retries": "1", "backoff_seconds": "0.01"},
        "scheduler": {"retry_count": "1", "retry_delay": "0.1"},
        "worker": {"wait_interval": "0.1", "wait_jitter": "0"},
        "parallelism": {"threads_per_task": "1"},
        "evaluation": {"importance_rows": "500"},
        "metrics": {"textfile": str(backend.textfile)},
    }
    if backend.settings is not None:
        values["s3"] = {
            "endpoint_url": str(backend.settings.endpoint_url),
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "region_name": REGION,
        }
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(values)
    with open(backend.cfg_file, "w") as fh:
        parser.write(fh)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """The end of a command's output, for an assertion message."""
    return f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-4000:]}"
