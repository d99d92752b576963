"""Issue 21.1: the work-directory lock cannot be fooled or turned into a weapon.

A real process holds the lock (``tasks.ops.lock.work_dir_lock`` in a child Python process), the test tampers
with the work directory as an outsider would, and a real ``pipeline.py`` run must still exit 10 at once with one
line naming the holder: garbage or a FIFO or a directory in place of the record, the record deleted or created
again, the whole work directory removed (``make clean``) and created again. A symlink planted at the record's
path is replaced, never written through.

The second run asks for ``monthly --month 2021-07``, a month that is nowhere (the test source is an empty
``file://`` folder): a run that wrongly got the lock would go on to exit 20, never 10.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.ops.lock import AlreadyRunningError, work_dir_lock

ROOT = Path(__file__).resolve().parents[2]

#: holds the lock on argv[1] until its stdin closes; says "held" once it holds it
HOLDER = """
import sys
from pathlib import Path
from tasks.ops.lock import work_dir_lock
with work_dir_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


class Holder:
    def __init__(self, work_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(work_dir)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "held\n", self.proc.stderr.read() if self.proc.stderr else line
        self.pid = self.proc.pid

    def release(self) -> str:
        """Let it go; return what it wrote on stderr."""
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def holder(pipeline_env) -> Iterator[Holder]:
    held = Holder(pipeline_env.work_dir)
    try:
        yield held
    finally:
        if held.proc.poll() is None:
            held.proc.kill()
            held.proc.communicate()


def second_run(pipeline_env, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(pipeline_env.cfg_file)}
    return subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "monthly", "--month", "2021-07"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def refused_line(result: subprocess.CompletedProcess) -> str:
    """The run exited 10 with one line saying so, and no traceback."""
    assert result.returncode == 10, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [x for x in result.stderr.splitlines() if "already running" in x]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def no_task_output(work_dir: Path) -> bool:
    """Nothing but the record (whatever a test made of it) in the work directory."""
    return not work_dir.is_dir() or all(p.name == ".pipeline.lock" for p in work_dir.iterdir())


# --------------------------------------------------------------------------- the record cannot be read
def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8 + b"\xff\xfe\x80pid \xc3\x28 12\n")


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # reading it would block forever: nobody writes


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def symlink_to_a_fake_record(path: Path) -> None:
    fake = path.parent.parent / "fake-record"
    fake.write_text("pid 1\nstarted 2020-01-01T00:00:00+00:00\nhost elsewhere\ncommand not this one\n")
    path.unlink()
    path.symlink_to(fake)


def pid_only(path: Path) -> None:
    path.write_bytes(b"pid 4194000\n\xff\xff\xff")  # a pid (no such process) and bytes that are not text


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (garbage, "is unreadable (not UTF-8 text; read: nothing)"),
        (pid_only, "is unreadable (not UTF-8 text; read: pid 4194000)"),
        (fifo, "is unreadable (not a regular file; read: nothing)"),
        (directory, "is unreadable (not a regular file; read: nothing)"),
        (symlink_to_a_fake_record, "is unreadable (a symlink, not followed; read: nothing)"),
    ],
    ids=["garbage", "pid_only", "fifo", "directory", "symlink"],
)
def test_an_unreadable_record_still_exits_10_naming_the_holder(pipeline_env, holder, tmp_path, tamper, said):
    tamper(pipeline_env.work_dir / ".pipeline.lock")
    line = refused_line(second_run(pipeline_env, tmp_path))
    assert f"held by pid {holder.pid} (" in line and said in line, line
    assert no_task_output(pipeline_env.work_dir)


def test_a_directory_at_the_record_path_does_not_block_later_runs(pipeline_env, tmp_path):
    (pipeline_env.work_dir / ".pipeline.lock").mkdir(parents=True)
    result = second_run(pipeline_env, tmp_path)  # the lock is free: taken, without a record
    assert result.returncode == 20, result.stderr[-3000:]
    assert ".pipeline.lock is a directory, not a lock record: this run writes none; remove it" in result.stderr


# --------------------------------------------------------------------------- the lock does not live in a name
def deleted(path: Path) -> None:
    path.unlink()  # the "stale lock" habit


def deleted_and_created_again(path: Path) -> None:
    path.unlink()
    path.write_text("")


@pytest.mark.parametrize("tamper", [deleted, deleted_and_created_again], ids=lambda f: f.__name__)
def test_deleting_the_lock_file_does_not_free_the_lock(pipeline_env, holder, tmp_path, tamper):
    tamper(pipeline_env.work_dir / ".pipeline.lock")
    line = refused_line(second_run(pipeline_env, tmp_path))
    assert f"held by pid {holder.pid} (" in line and "its record" in line
    assert no_task_output(pipeline_env.work_dir)


@pytest.mark.parametrize("again", [False, True], ids=["removed", "removed_and_created_again"])
def test_removing_the_work_directory_does_not_free_the_lock(pipeline_env, holder, tmp_path, again):
    """``make clean`` (rm -rf var/work) during a run: the next run gets a new directory, and still exits 10."""
    shutil.rmtree(pipeline_env.work_dir)
    if again:
        pipeline_env.work_dir.mkdir()
    line = refused_line(second_run(pipeline_env, tmp_path))
    assert f"held by pid {holder.pid} (" in line
    assert "was removed and created again while it ran (make clean?)" in line
    assert no_task_output(pipeline_env.work_dir)
    # the holder says at its end that what it wrote is gone; then the lock is free
    assert "was removed or replaced while this run held it (make clean?)" in holder.release()
    assert second_run(pipeline_env, tmp_path).returncode == 20


# --------------------------------------------------------------------------- never written through a symlink
def test_a_symlink_at_the_record_path_is_replaced_and_its_target_untouched(pipeline_env, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"x" * 239 + b"\n")
    pipeline_env.work_dir.mkdir()
    (pipeline_env.work_dir / ".pipeline.lock").symlink_to(victim)
    result = second_run(pipeline_env, tmp_path)  # nobody holds the lock: this run takes it
    assert result.returncode == 20, result.stderr[-3000:]
    assert victim.read_bytes() == b"x" * 239 + b"\n"
    assert f".pipeline.lock was a symlink (to {victim}): replaced by this run's record" in result.stderr
    assert not (pipeline_env.work_dir / ".pipeline.lock").exists(), "the finished run removed its own record"


def test_a_symlinked_work_directory_is_one_directory(pipeline_env, tmp_path):
    """The same folder through a symlink (var/work -> /disk/work) is the same lock."""
    real = tmp_path / "real-work"
    real.mkdir()
    link = tmp_path / "linked-work"
    link.symlink_to(real)
    held = Holder(link)
    try:
        with pytest.raises(AlreadyRunningError, match=f"held by pid {held.pid} "), work_dir_lock(real):
            pass
    finally:
        held.release()
    with work_dir_lock(real):
        pass


# --------------------------------------------------------------------------- make clean
def test_make_clean_is_refused_while_a_run_holds_the_work_directory(tmp_path):
    project = tmp_path / "project"
    (project / "var" / "work" / "SomeTask").mkdir(parents=True)
    (project / "models").mkdir()

    def make_clean() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "-s", "-f", str(ROOT / "Makefile"), "-C", str(project), "clean"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    held = Holder(project / "var" / "work")
    try:
        refused = make_clean()
    finally:
        held.release()
    assert refused.returncode != 0
    assert "make clean: a run holds var/work" in refused.stderr
    assert (project / "var" / "work" / "SomeTask").is_dir() and (project / "models").is_dir()
    done = make_clean()
    assert done.returncode == 0, done.stderr
    assert not (project / "var" / "work").exists() and not (project / "models").exists()


def test_a_file_system_refusing_a_directory_lock_is_one_line(tmp_path, monkeypatch):
    import errno
    import fcntl

    def refuse(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(OSError) as info, work_dir_lock(tmp_path / "work"):
        pass
    message = str(info.value)
    assert message.startswith(f"the file system of {tmp_path / 'work'} refuses a lock on a directory (No locks")
    assert "\n" not in message and "--scheduler-port" in message
