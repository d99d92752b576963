"""The work-directory lock: one local run per work directory at a time; every other run exits 10 at once.

What excludes, so that nothing done to the files of the work directory can fool it:

* an exclusive ``flock`` on the work directory itself (an ``O_DIRECTORY`` descriptor), checked after it is
  taken to be the directory at the path. Deleting, re-creating or replacing ``.pipeline.lock`` (or anything
  else inside) changes nothing: that file is not the lock.
* an *anchor* (Linux): an abstract Unix socket whose name is derived from the directory's resolved path,
  bound for the life of the run. It is not on any file system, so removing the work directory and creating it
  again (``make clean`` or ``rm -rf var/work`` during a run: a new inode, which the ``flock`` above does not
  cover) does not free it. The kernel also names its holder (``SO_PEERCRED``).

The kernel releases both when the holding process dies (including a task process it forked), so a killed
run never leaves a stale lock: there is never anything to delete by hand.

``.pipeline.lock`` is only a record (pid, start, host, command) for the message a refused run prints. It is
written to a new file renamed over the path, so a symlink planted there is replaced, never followed; it is
read with ``O_NOFOLLOW``, at most :data:`RECORD_MAX_BYTES`, and a record that is missing, not text or names a
process that does not hold the lock is reported as such, with what could be read: the exit code stays 10.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import logging
import os
import shlex
import socket
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("luigi-interface")

#: the record's name inside the work directory (information only, see the module docstring)
RECORD_NAME = ".pipeline.lock"
#: a record longer than this is not read further
RECORD_MAX_BYTES = 4096
#: a run holding the work-directory lock for longer than this is named as possibly hung
HUNG_AFTER_SECONDS = 6 * 3600
_FIELDS = ("pid", "started", "host", "command")
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class AlreadyRunningError(RuntimeError):
    """Another run holds the work directory's lock; the message is one line naming it."""


class LockError(OSError):
    """The work directory cannot be locked at all (e.g. a file system without ``flock`` on directories)."""

    def __str__(self) -> str:  # the one-line message alone, without OSError's "[Errno N]"
        return str(self.strerror)


@contextlib.contextmanager
def work_dir_lock(work: Path | None) -> Iterator[Path | None]:
    """Hold the lock on the local folder ``work`` (created if missing) for the block; yield the record's path.

    ``None`` takes no lock and yields ``None``: the caller passes it for a work directory that is not a local
    folder (object storage), where a local lock would not stop a run on another host. Raises
    :class:`AlreadyRunningError` (one line naming the holder) when another run holds it.
    """
    if work is None:
        yield None
        return
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        anchor = _bind_anchor(work)
        if anchor is not None:
            held.callback(anchor.close)
        fd = _lock_directory(work)
        held.callback(os.close, fd)
        locked = os.fstat(fd)
        record = _write_record(work, _record_text())
        try:
            yield work / RECORD_NAME
        finally:
            _remove_record(work / RECORD_NAME, record)
            if not _same_file(locked, work):
                log.warning(
                    "%s was removed or replaced while this run held it (make clean?): what the run wrote there "
                    "before is gone; the next run redoes it",
                    work,
                )


# --------------------------------------------------------------------------- taking it
def _anchor_address(work: Path) -> bytes:
    """The abstract socket name of ``work``: its resolved path, hashed (the kernel allows 107 bytes)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(work))).hexdigest()[:40]
    return b"\0tripduration-work-dir-" + digest.encode()


def _bind_anchor(work: Path) -> socket.socket | None:
    if not sys.platform.startswith("linux"):  # abstract sockets are Linux's; the directory flock still holds
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not inherited by exec'd programs (PEP 446)
    try:
        sock.bind(_anchor_address(work))
        sock.listen(64)  # never accepted: a connecting run only reads SO_PEERCRED, the holder's pid
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyRunningError(describe_holder(work, anchor_holder(work))) from None
        raise
    return sock


def anchor_holder(work: Path) -> int | None:
    """The pid of the process holding ``work``'s anchor, as the kernel says; None if none holds it or unknown."""
    if not sys.platform.startswith("linux"):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(_anchor_address(work))
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:  # nobody listens, or its queue is full
            return None
    pid = struct.unpack("3i", creds)[0]
    return pid if pid > 0 else None


def _lock_directory(work: Path) -> int:
    """An open descriptor of ``work`` holding an exclusive flock, and ``work`` still the directory at the path."""
    for _ in range(5):
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _BUSY:
                raise AlreadyRunningError(describe_holder(work)) from None
            raise LockError(
                exc.errno,
                f"the file system of {work} refuses a lock on a directory ({exc.strerror}): put [paths] "
                "work_dir on a local disk, or run with the central scheduler (--scheduler-port), which takes none",
            ) from None
        if _same_file(os.fstat(fd), work):
            return fd
        os.close(fd)  # removed or replaced between open and flock: lock the one there now
        work.mkdir(parents=True, exist_ok=True)
    raise LockError(errno.EAGAIN, f"{work} was replaced 5 times while being locked; stop what is replacing it")


def _same_file(opened: os.stat_result, path: Path) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (now.st_dev, now.st_ino)


# --------------------------------------------------------------------------- the record
def _record_text() -> str:
    """What the holder writes into the record, so a later run can say who holds it and since when."""
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return f"pid {os.getpid()}\nstarted {started}\nhost {socket.gethostname()}\ncommand {command}\n"


def _write_record(work: Path, text: str) -> os.stat_result | None:
    """Write the record to a new file and rename it over ``.pipeline.lock``: whatever is there (a symlink
    included) is replaced, never followed or written through; a directory there is left alone and this run
    writes no record (the lock holds all the same). Called only while holding the lock."""
    path = work / RECORD_NAME
    with contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            log.warning("%s is a directory, not a lock record: this run writes none; remove it", path)
            return None
        if stat.S_ISLNK(mode):
            target = os.readlink(path)
            log.warning("%s was a symlink (to %s): replaced by this run's record, its target untouched", path, target)
    tmp = work / f"{RECORD_NAME}.{os.getpid()}.tmp"  # a leftover is swept like every ".*.tmp" file
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by an earlier run with this pid: unlink never follows a symlink
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            written = os.fstat(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written


def _remove_record(path: Path, written: os.stat_result | None) -> None:
    """Remove the record if it is still the one this run wrote: a finished run leaves none."""
    if written is None:
        return
    with contextlib.suppress(OSError):
        if (os.lstat(path).st_dev, os.lstat(path).st_ino) == (written.st_dev, written.st_ino):
            path.unlink()


@dataclass(frozen=True)
class Record:
    """What could be read of a record: its known fields, and what was wrong with it (None: nothing)."""

    fields: dict[str, str]
    problem: str | None = None

    def pid(self) -> int | None:
        value = self.fields.get("pid", "")
        return int(value) if value.isdigit() and len(value) < 10 else None

    def readable_part(self) -> str:
        return ", ".join(f"{key} {self.fields[key]}" for key in _FIELDS if key in self.fields) or "nothing"


def read_record(path: Path) -> Record:
    """Read a record without following a symlink or blocking, at most :data:`RECORD_MAX_BYTES`; never raises."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Record({}, "missing")
    except OSError as exc:
        return Record({}, "a symlink, not followed" if exc.errno == errno.ELOOP else f"unreadable: {exc.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Record({}, "not a regular file")
        data = os.read(fd, RECORD_MAX_BYTES + 1)
    except OSError as exc:
        return Record({}, f"unreadable: {exc.strerror}")
    finally:
        os.close(fd)
    problems = [f"longer than {RECORD_MAX_BYTES} bytes"] if len(data) > RECORD_MAX_BYTES else []
    try:
        text = data[:RECORD_MAX_BYTES].decode("utf-8")
    except UnicodeDecodeError:
        text = data[:RECORD_MAX_BYTES].decode("utf-8", errors="replace")
        problems.append("not UTF-8 text")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        shown = _printable(value.strip())
        if key in _FIELDS and shown and key not in fields:
            fields[key] = shown
    if "pid" in fields and not fields["pid"].isdigit():
        problems.append("its pid is not a number")
    elif "pid" not in fields and data and not problems:
        problems.append("no pid in it")
    return Record(fields, "; ".join(problems) or (None if data else "empty"))


# --------------------------------------------------------------------------- naming the holder
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # alive, owned by another user / not a pid at all
        return True
    return True


def _flock_holders(path: Path) -> set[int] | None:
    """Pids the kernel lists as holding a flock on ``path`` (Linux ``/proc/locks``); None if it cannot tell."""
    try:
        st = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in lines:
        fields = line.replace("->", "").split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].lower() == wanted and fields[4].isdigit():
            holders.add(int(fields[4]))
    return holders


def _command_of(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return None
    if not argv or not argv[0]:
        return None
    return _printable(" ".join(os.fsdecode(a) for a in argv), limit=160)


def _printable(text: str, limit: int = 200) -> str:
    """``text`` on one line: control characters (newlines...) shown as ``?``, at most ``limit`` characters."""
    shown = "".join(c if c.isprintable() else "?" for c in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _age(started: str, now: dt.datetime) -> float | None:
    try:
        return (now - dt.datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None


def describe_holder(work: Path, anchor_pid: int | None = None, now: dt.datetime | None = None) -> str:
    """Who holds ``work``'s lock, since when, whether it looks hung: one line that never names a process
    that has ended, and that says what it could read of a record it cannot trust.

    The record is trusted only if it reads cleanly and the kernel confirms its pid (holder of the directory's
    flock or of the anchor, ``anchor_pid``) or, where the kernel cannot tell, the pid is alive on this host.
    """
    now = now or dt.datetime.now().astimezone()
    record = read_record(work / RECORD_NAME)
    flockers = _flock_holders(work)
    kernel = {p for p in (flockers or set()) | ({anchor_pid} if anchor_pid else set()) if _pid_alive(p)}
    pid = record.pid()
    same_host = record.fields.get("host") in (None, socket.gethostname())
    if record.problem is not None or pid is None:
        trusted = False
    elif kernel:
        trusted = pid in kernel
    else:
        trusted = not same_host or _pid_alive(pid)
    if not trusted:
        return _describe_untrusted(work, record, sorted(kernel), replaced=anchor_pid is not None and flockers == set())
    started = record.fields.get("started", "an unknown time")
    age = _age(started, now)
    text = (
        f"work directory {work} is held by pid {pid} on {record.fields.get('host', '?')} "
        f"({record.fields.get('command', 'unknown command')}), running since {started}"
    )
    if age is not None and age >= HUNG_AFTER_SECONDS:
        return (
            f"{text} ({age / 3600:.1f} h ago): it may be hung. Check it with `ps -o pid,etime,args -p {pid}` "
            f"and its log; if it makes no progress, stop it with `kill {pid}` (the next run resumes where it stopped)"
        )
    ago = f" ({age / 60:.0f} min ago)" if age is not None else ""
    return f"{text}{ago}: a run on this work directory is going on; try again when it has finished"


def _describe_untrusted(work: Path, record: Record, pids: list[int], replaced: bool) -> str:
    path = work / RECORD_NAME
    if pids:
        commands = [_command_of(p) for p in pids]
        who = ", ".join(f"pid {p}" + (f" ({c})" if c else "") for p, c in zip(pids, commands, strict=True))
    else:
        who = "another process"
    if record.problem == "missing":
        note = f"its record {path} is missing"
    elif record.problem:
        note = f"its record {path} is unreadable ({record.problem}; read: {record.readable_part()})"
    else:
        note = f"its record {path} is stale (written by a process that does not hold the lock)"
    if replaced:
        note += f"; {work} was removed and created again while it ran (make clean?)"
    check = f"; check it with `ps -o pid,etime,args -p {pids[0]}`" if pids else ""
    return (
        f"work directory {work} is held by {who}; {note}: a run on this work directory is going on; "
        f"try again when it has finished{check}"
    )
