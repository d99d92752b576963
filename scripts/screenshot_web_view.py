#!/usr/bin/env python
"""Screenshot (or dump the rendered HTML of) the task list of luigid's web view with headless Chromium.

    python scripts/screenshot_web_view.py http://127.0.0.1:8082 docs/luigid-web-view.png

The web view (``/static/visualiser/index.html``, where luigid's ``/`` redirects) is a page that fills itself
from luigid's JSON API after it has loaded, so Chromium is given a virtual-time budget to let those requests
finish before it takes the picture or dumps the DOM. Each run uses a fresh, temporary profile and is killed
(with every process it started) if it does not finish within ``timeout`` seconds.

Needs Chromium (Debian: ``apt-get install chromium``, at /usr/bin/chromium; ``--chromium`` for another path).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# no sandbox (containers and CI run as root), no GPU, and nothing that talks to Google or to the network
# other than the page itself
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
VIRTUAL_TIME_BUDGET_MS = 10_000
WINDOW_SIZE = (1400, 1000)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ChromiumError(RuntimeError):
    """Chromium failed, timed out, or did not produce what was asked."""


def task_list_url(scheduler_url: str, entries: int = 25) -> str:
    """The web view's task list, showing ``entries`` rows per page (the page's choices: 10, 25, 50, 100)."""
    return f"{scheduler_url.rstrip('/')}/static/visualiser/index.html#tab=tasks&length={entries}"


def run_chromium(
    url: str, *args: str, chromium: Path = CHROMIUM, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium on ``url`` with a fresh profile; always stop it and its child processes."""
    if not Path(chromium).exists():
        raise ChromiumError(f"{chromium} not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            str(chromium),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            *args,
            url,
        ]
        # its own process group, so that the renderer and zygote processes can be killed with it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            raise ChromiumError(f"chromium did not finish within {timeout} s on {url}") from None
        finally:
            _kill_group(proc.pid)  # leftovers of a finished run, if any
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace")[-2000:]
        raise ChromiumError(f"chromium exited with {proc.returncode} on {url}:\n{tail}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def rendered_html(scheduler_url: str, *, chromium: Path = CHROMIUM, timeout: float = 60) -> str:
    """The task list's DOM after its scripts have run (what a browser shows), as HTML."""
    result = run_chromium(task_list_url(scheduler_url), "--dump-dom", chromium=chromium, timeout=timeout)
    return result.stdout.decode("utf-8", errors="replace")


def screenshot(
    scheduler_url: str,
    output: Path | str,
    *,
    window_size: tuple[int, int] = WINDOW_SIZE,
    chromium: Path = CHROMIUM,
    timeout: float = 60,
) -> Path:
    """Write a PNG screenshot of the web view's task list to ``output`` and return its path."""
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)  # so that a stale file is never taken for a new screenshot
    width, height = window_size
    run_chromium(
        task_list_url(scheduler_url),
        f"--screenshot={output}",
        f"--window-size={width},{height}",
        chromium=chromium,
        timeout=timeout,
    )
    if not output.is_file() or not output.read_bytes().startswith(PNG_SIGNATURE):
        raise ChromiumError(f"chromium did not write a PNG to {output}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the task list of luigid's web view.")
    parser.add_argument("scheduler_url", help="e.g. http://127.0.0.1:8082")
    parser.add_argument("output", type=Path, help="PNG file to write")
    parser.add_argument("--window-size", default=f"{WINDOW_SIZE[0]},{WINDOW_SIZE[1]}", help="WIDTH,HEIGHT")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help=f"browser binary (default {CHROMIUM})")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before chromium is killed")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.window_size.split(","))
    except ValueError:
        parser.error(f"--window-size must be WIDTH,HEIGHT, not {args.window_size!r}")
    try:
        path = screenshot(
            args.scheduler_url, args.output, window_size=(width, height), chromium=args.chromium, timeout=args.timeout
        )
    except ChromiumError as exc:
        print(f"screenshot_web_view.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
