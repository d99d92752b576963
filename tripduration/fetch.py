"""Download of monthly trip files: streamed, retried on transient errors, checked before use."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tripduration.errors import DownloadError, TripDataError
from tripduration.schema import open_parquet

ALLOWED_SCHEMES = ("http", "https", "file")
CHUNK = 1 << 20


def check_url(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadError(
            f"{url}: scheme {scheme or '(none)'!r} is not allowed; use one of {', '.join(ALLOWED_SCHEMES)}",
            transient=False,
        )
    return url


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, http.client.IncompleteRead | http.client.RemoteDisconnected | http.client.BadStatusLine):
        return True  # the connection broke mid-response: trying again may well work
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, FileNotFoundError | PermissionError | IsADirectoryError):
            return False
        return isinstance(reason, OSError | socket.timeout | str)
    return isinstance(exc, TimeoutError | ConnectionError | socket.timeout | DownloadError) and getattr(
        exc, "transient", True
    )


def _fetch_once(
    url: str, dest: Path, timeout: float, opener: Callable[..., Any], progress: Callable[[int, int | None], None]
) -> int:
    with opener(url, timeout=timeout) as response, open(dest, "wb") as out:
        length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
        total = int(length) if length and str(length).isdigit() else None
        done = 0
        while chunk := response.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            progress(done, total)
    if total is not None and done != total:
        raise DownloadError(f"{url}: connection closed after {done} of {total} bytes", transient=True)
    return done


def download(
    url: str,
    dest: str | Path,
    *,
    timeout: float = 60.0,
    retries: int = 4,
    backoff: float = 2.0,
    progress: Callable[[int, int | None], None] = lambda done, total: None,
    sleep: Callable[[float], None] = time.sleep,
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> int:
    """Stream ``url`` into ``dest`` and check it is readable parquet; return its size in bytes.

    Timeouts, connection resets and HTTP 5xx/408/429 are retried ``retries`` times with exponential
    backoff (``backoff``, ``2*backoff``, ...). A 404 (or other 4xx) or a corrupt file fails at once with a
    :class:`DownloadError` naming the URL. ``dest`` is written in place: the caller passes a temporary path.
    """
    check_url(url)
    dest = Path(dest)
    attempt = 0
    while True:
        try:
            size = _fetch_once(url, dest, timeout, opener, progress)
            break
        except Exception as exc:  # classified below; anything unknown is not retried
            transient = _is_transient(exc)
            if not transient or attempt >= retries:
                dest.unlink(missing_ok=True)
                what = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else f"{type(exc).__name__}: {exc}"
                hint = "giving up after retries" if transient else "not retried"
                raise DownloadError(f"{url}: download failed ({what}); {hint}", transient=transient) from exc
            sleep(backoff * (2**attempt))
            attempt += 1
    try:
        open_parquet(dest).metadata  # noqa: B018 - reading the footer is the check
    except TripDataError as exc:
        dest.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the downloaded file is not readable parquet ({exc})", transient=False) from exc
    return size


def probe(url: str, *, timeout: float = 15.0, opener: Callable[..., Any] = urllib.request.urlopen) -> bool | None:
    """Is the file at ``url`` there? True, False (404/403/410 or no such file), or None (cannot tell now)."""
    check_url(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path)).is_file()
    try:
        with opener(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        return False if exc.code in (403, 404, 410) else None
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return None
