"""Parquet columns from an S3-compatible bucket through ``pyarrow.fs`` (ranged GETs of only the column chunks
asked for), for :meth:`tripduration.io.s3.S3Storage.read_parquet`. Only the storage port imports ``pyarrow.fs``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tripduration.io.s3_client import S3Settings, parse_s3_url

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.fs


def arrow_s3_filesystem(settings: S3Settings | None = None) -> pyarrow.fs.S3FileSystem:
    """``pyarrow.fs.S3FileSystem`` for the same store boto3 uses.

    Arrow's S3 client does not read ``AWS_ENDPOINT_URL`` (measured with pyarrow 22: it went to
    ``bkt.s3.us-east-1.amazonaws.com``), so the endpoint is passed explicitly, split into host:port and
    scheme (``http`` for a local MinIO/test server). Credentials default to the AWS environment variables.
    """
    from pyarrow import fs

    settings = settings or S3Settings()
    endpoint_url = settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {
        "access_key": settings.access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": settings.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "region": settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    }
    if not (kwargs["access_key"] and kwargs["secret_key"]):
        kwargs.pop("access_key")
        kwargs.pop("secret_key")
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if not parts.netloc:
            raise ValueError(f"S3 endpoint {endpoint_url!r} must be a URL such as http://127.0.0.1:9000")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme or "https"
    return fs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})


def read_parquet_columns(
    url: str, columns: list[str] | None = None, filesystem: pyarrow.fs.FileSystem | None = None
) -> pd.DataFrame:
    """``columns`` (default: all) of an ``s3://`` parquet file, with ranged GETs of only those column chunks;
    the same frame as :func:`tripduration.io.parquet.read_parquet` gives for a local file."""
    import pyarrow.parquet as pq

    from tripduration.io.parquet import read_columns

    bucket, key = parse_s3_url(url)
    try:
        pf = pq.ParquetFile(f"{bucket}/{key}", filesystem=filesystem or arrow_s3_filesystem())
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no such object") from None
    return read_columns(pf, columns, name=url)
