"""What the moto server (pinned in requirements-dev.txt) supports of S3 conditional writes, measured with
plain boto3 calls over HTTP: the registry's safety relies on exactly these four behaviours."""

from __future__ import annotations

import botocore.exceptions
import pytest

from tests.storage.conftest import S3Env


def _error(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_second_create_only_put_fails_with_412(s3_env: S3Env) -> None:
    client = s3_env.client()
    client.put_object(Bucket=s3_env.bucket, Key="claim", Body=b"first", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        client.put_object(Bucket=s3_env.bucket, Key="claim", Body=b"second", IfNoneMatch="*")
    assert _error(exc) == ("PreconditionFailed", 412)
    assert client.get_object(Bucket=s3_env.bucket, Key="claim")["Body"].read() == b"first"


def test_put_with_current_etag_replaces(s3_env: S3Env) -> None:
    client = s3_env.client()
    etag = client.put_object(Bucket=s3_env.bucket, Key="pointer", Body=b"v1")["ETag"]
    new_etag = client.put_object(Bucket=s3_env.bucket, Key="pointer", Body=b"v2", IfMatch=etag)["ETag"]
    assert new_etag != etag
    assert client.get_object(Bucket=s3_env.bucket, Key="pointer")["Body"].read() == b"v2"


def test_put_with_stale_etag_fails_with_412(s3_env: S3Env) -> None:
    client = s3_env.client()
    stale = client.put_object(Bucket=s3_env.bucket, Key="pointer", Body=b"v1")["ETag"]
    client.put_object(Bucket=s3_env.bucket, Key="pointer", Body=b"v2")  # another host's write
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        client.put_object(Bucket=s3_env.bucket, Key="pointer", Body=b"v3", IfMatch=stale)
    assert _error(exc) == ("PreconditionFailed", 412)
    assert client.get_object(Bucket=s3_env.bucket, Key="pointer")["Body"].read() == b"v2"


def test_if_match_on_missing_object_is_404(s3_env: S3Env) -> None:
    client = s3_env.client()
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        client.put_object(Bucket=s3_env.bucket, Key="gone", Body=b"x", IfMatch='"0123456789abcdef"')
    assert _error(exc) == ("NoSuchKey", 404)
