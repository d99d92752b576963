"""Download of monthly trip files: streamed, retried on transient errors, checked before use."""

from __future__ import annotations

import errno
import http.client
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tripduration.data.schema import open_parquet
from tripduration.errors import DownloadError, TripDataError

ALLOWED_SCHEMES = ("http", "https", "file")
CHUNK = 1 << 20
#: seconds between two progress reports of a download (each may be a call to luigid)
PROGRESS_EVERY = 1.0


def check_url(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadError(
            f"{url}: scheme {scheme or '(none)'!r} is not allowed; use one of {', '.join(ALLOWED_SCHEMES)}",
            transient=False,
        )
    return url


#: reasons urlopen wraps in a URLError when it could not connect at all (nothing was transferred)
_NO_CONNECTION = (socket.gaierror, ConnectionRefusedError, TimeoutError)
_NO_ROUTE_ERRNOS = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN)


def _is_transient(exc: BaseException) -> bool:
    """Is ``exc`` a transfer that started and broke (worth retrying), rather than a source that is not there?

    Retried: the connection broke mid-response (reset, incomplete read, fewer bytes than announced), a timeout
    after connecting, HTTP 5xx/408/429. Not retried: 404 and other 4xx, no such file, and every failure to
    connect at all (DNS failure, connection refused, connect timeout, no route): retrying those only delays
    the "not available" a cron run must report at once.
    """
    if isinstance(exc, http.client.IncompleteRead | http.client.RemoteDisconnected | http.client.BadStatusLine):
        return True  # the connection broke mid-response: trying again may well work
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, _NO_CONNECTION) or getattr(reason, "errno", None) in _NO_ROUTE_ERRNOS:
            return False
        # the request reached the server and the connection was then reset or broken
        return isinstance(reason, ConnectionResetError | ConnectionAbortedError | BrokenPipeError)
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return False
    return isinstance(exc, TimeoutError | ConnectionError | DownloadError) and getattr(exc, "transient", True)


@dataclass(frozen=True)
class TransferLimits:
    """Bounds on a whole :func:`download`, so that a slow source cannot hold a run for hours.

    ``deadline``: seconds for everything (every attempt and the waits between them); None: no deadline. The
    socket timeout bounds each read, so a download ends at the latest one timeout after the deadline.
    ``min_rate``: bytes per second a transfer must keep over every ``window`` seconds (0: no minimum). The
    first window, from the moment the request is sent, is the grace period for connecting and starting.
    Neither is retried: a source this slow now is slow on the next attempt too; the next run tries again.
    """

    deadline: float | None = None
    min_rate: float = 0.0
    window: float = 30.0


NO_LIMITS = TransferLimits()


class SlowSourceError(DownloadError):
    """A download ended by its :class:`TransferLimits`: past the deadline, or below the minimum rate."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class _Pace:
    """Keeps :class:`TransferLimits` for one download: :meth:`check` raises :class:`SlowSourceError`."""

    def __init__(self, url: str, limits: TransferLimits, clock: Callable[[], float]) -> None:
        self.url, self.limits, self.clock = url, limits, clock
        self.started = clock()
        self.window_started, self.window_done = self.started, 0

    def remaining(self) -> float:
        if self.limits.deadline is None:
            return float("inf")
        return self.limits.deadline - (self.clock() - self.started)

    def begin_attempt(self, why_not: str = "") -> None:
        if self.remaining() <= 0:
            raise self.late(0, why_not)
        self.window_started, self.window_done = self.clock(), 0

    def check(self, done: int) -> None:
        """After each read of an attempt that has received ``done`` bytes so far."""
        if self.remaining() < 0:
            raise self.late(done)
        spent = self.clock() - self.window_started
        if self.limits.min_rate > 0 and spent >= self.limits.window:
            got = done - self.window_done
            if got < self.limits.min_rate * spent:
                raise SlowSourceError(
                    f"{self.url}: too slow: {got} bytes in {spent:.0f} s ({got / spent:.0f} bytes/s, "
                    f"{done} received), below the minimum of {self.limits.min_rate:g} bytes/s over "
                    f"{self.limits.window:g} s; not retried, nothing kept: use a faster source or lower the minimum"
                )
            self.window_started, self.window_done = self.clock(), done

    def late(self, done: int, why_not: str = "") -> SlowSourceError:
        last = f", last attempt: {why_not}" if why_not else f", {done} bytes received"
        return SlowSourceError(
            f"{self.url}: not downloaded within the deadline of {self.limits.deadline:g} s "
            f"({self.clock() - self.started:.0f} s spent{last}); not retried, nothing kept: use a faster source "
            "or a longer deadline"
        )


def _fetch_once(
    url: str,
    dest: Path,
    timeout: float,
    opener: Callable[..., Any],
    progress: Callable[[int, int | None], None],
    pace: _Pace,
) -> int:
    with opener(url, timeout=timeout) as response, open(dest, "wb") as out:
        length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
        total = int(length) if length and str(length).isdigit() else None
        # read1: what has arrived, at most CHUNK; read(CHUNK) would wait for a whole MiB from a trickling source
        read = getattr(response, "read1", response.read)
        done, reported = 0, pace.clock()
        while chunk := read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            pace.check(done)
            if pace.clock() - reported >= PROGRESS_EVERY:
                progress(done, total)
                reported = pace.clock()
        progress(done, total)
    if total is not None and done != total:
        raise DownloadError(f"{url}: connection closed after {done} of {total} bytes", transient=True)
    return done


def download_progress(url: str, progress: Callable[[str, int | None], None]) -> Callable[[int, int | None], None]:
    """Turn :func:`download`'s byte counts into messages (``downloading URL: 3.1 MB of 12.0``) and percents."""

    def report(done: int, total: int | None) -> None:
        percent = int(100 * done / total) if total else None
        progress(f"downloading {url}: {done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f}" if total else ""), percent)

    return report


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
    limits: TransferLimits = NO_LIMITS,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Stream ``url`` into ``dest`` and check it is readable parquet; return its size in bytes.

    A transfer that started and broke (reset or cut mid-body, a timeout after connecting, HTTP 5xx/408/429)
    is retried ``retries`` times with exponential backoff (``backoff``, ``2*backoff``, ...). A 404 (or other
    4xx), no such file, a failure to connect at all (DNS, refused, connect timeout) or a corrupt file fails
    at once with a non-transient :class:`DownloadError` naming the URL. ``timeout`` bounds connecting and
    each read; ``limits`` bound the whole download (a deadline, a minimum rate: :class:`TransferLimits`).
    ``dest`` is written in place (the caller passes a temporary path) and removed on every failure.
    """
    check_url(url)
    dest = Path(dest)
    pace = _Pace(url, limits, clock)
    attempt, why_not = 0, ""
    while True:
        try:
            pace.begin_attempt(why_not)
            size = _fetch_once(url, dest, min(timeout, max(pace.remaining(), 0.001)), opener, progress, pace)
            break
        except Exception as exc:  # classified below; anything unknown is not retried
            dest.unlink(missing_ok=True)
            if isinstance(exc, DownloadError) and not exc.transient:
                raise  # names the URL already (too slow, past the deadline, ...)
            transient, wait = _is_transient(exc), backoff * (2**attempt)
            what = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else f"{type(exc).__name__}: {exc}"
            if not transient or attempt >= retries:
                hint = "giving up after retries" if transient else "not retried"
                raise DownloadError(f"{url}: download failed ({what}); {hint}", transient=transient) from exc
            why_not = what
            if pace.remaining() < wait:
                raise pace.late(0, why_not) from exc
            sleep(wait)
            attempt += 1
    try:
        open_parquet(dest).metadata  # noqa: B018 - reading the footer is the check
    except TripDataError as exc:
        dest.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the downloaded file is not readable parquet ({exc})", transient=False) from exc
    return size


@dataclass(frozen=True)
class Availability:
    """What a probe found at a URL: ``available`` (it can be downloaded now) and why, in a few words."""

    url: str
    available: bool
    reason: str


def _describe_connect_failure(url: str, reason: object) -> str:
    host = urllib.parse.urlsplit(url).netloc
    if isinstance(reason, socket.gaierror):
        return f"host name {urllib.parse.urlsplit(url).hostname!r} does not resolve (DNS: {reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused by {host}"
    if isinstance(reason, TimeoutError):
        return f"no answer from {host} (timed out)"
    return f"cannot connect to {host} ({reason})"


def probe(url: str, *, timeout: float = 5.0, opener: Callable[..., Any] = urllib.request.urlopen) -> Availability:
    """Can the file at ``url`` be downloaded now? Asked with one short HEAD request, never retried.

    Not available: HTTP 404/403/410 and other 4xx, no such file, DNS failure, connection refused, no answer
    within ``timeout``. Available: 2xx/3xx, and 5xx/408/429 (the server was reached; the download's own
    retries are for that). A server refusing HEAD (405/501) is asked again with a one-byte ranged GET.
    """
    check_url(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        return Availability(url, path.is_file(), "file exists" if path.is_file() else f"no such file {path}")
    for request in (
        urllib.request.Request(url, method="HEAD"),
        urllib.request.Request(url, headers={"Range": "bytes=0-0"}),
    ):
        try:
            with opener(request, timeout=timeout) as response:
                return Availability(url, True, f"HTTP {getattr(response, 'status', 200)}")
        except urllib.error.HTTPError as exc:
            if exc.code in (405, 501) and request.get_method() == "HEAD":
                continue  # the server does not do HEAD: ask with a ranged GET
            if exc.code >= 500 or exc.code in (408, 429):
                return Availability(url, True, f"HTTP {exc.code} (server reached; the download retries)")
            meaning = {404: "not published (yet?)", 403: "forbidden", 410: "gone"}.get(exc.code, "refused")
            return Availability(url, False, f"HTTP {exc.code}: {meaning}")
        except urllib.error.URLError as exc:
            return Availability(url, False, _describe_connect_failure(url, exc.reason))
        except TimeoutError:
            return Availability(url, False, f"no answer from {parts.netloc} within {timeout:g} s")
        except (OSError, http.client.HTTPException) as exc:
            return Availability(url, False, f"cannot connect to {parts.netloc} ({type(exc).__name__}: {exc})")
    return Availability(url, False, "the server answers neither HEAD nor GET")  # pragma: no cover


def probe_all(
    urls: Iterable[str], *, timeout: float = 5.0, opener: Callable[..., Any] = urllib.request.urlopen
) -> dict[str, Availability]:
    """Probe every URL at once, in daemon threads, and return within about ``timeout`` seconds whatever happens.

    A socket timeout does not bound DNS resolution (``getaddrinfo`` can wait for a dead resolver much
    longer), so the deadline is kept here: a URL with no verdict by then is not available ("no answer").
    Daemon threads never delay the process's exit.
    """
    urls = list(dict.fromkeys(urls))
    found: dict[str, Availability] = {}

    def work(url: str) -> None:
        found[url] = probe(url, timeout=timeout, opener=opener)

    threads = [threading.Thread(target=work, args=(url,), daemon=True, name=f"probe {url}") for url in urls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 1.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {
        url: found.get(url) or Availability(url, False, f"no answer within {timeout:g} s (DNS or connection)")
        for url in urls
    }
