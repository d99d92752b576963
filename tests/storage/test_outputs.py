"""Task outputs stay atomic on both storages: a task failed or killed mid-way is incomplete, the same command run
again completes it. Same tests on a local folder and on the moto S3 server (tasks.targets.Output over the port)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tasks.targets import Output, work_storage
from tests.storage.conftest import S3Env
from tests.storage.output_tasks import FRAME, ThreeOutputs
from tripduration.io import open_storage as storage_for
from tripduration.io.s3 import S3Storage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fail_fast(config) -> None:
    """One failure ends the run (luigi.cfg's retries wait 30 s and keep the worker alive)."""
    for section, key, value in (
        ("scheduler", "retry_count", "1"),
        ("scheduler", "retry_delay", "0.1"),
        ("worker", "keep_alive", "false"),
        ("worker", "wait_interval", "0.1"),
        ("worker", "wait_jitter", "0"),
    ):
        config.set(section, key, value)


@pytest.fixture
def root(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store_kind == "local":
        return str(tmp_path / "out")
    s3: S3Env = request.getfixturevalue("s3_env")
    return s3.url("work/ThreeOutputs")


def _objects(root: str) -> list[str]:
    return storage_for(root).list()


def _assert_complete_and_correct(root: str) -> None:
    task = ThreeOutputs(root=root)
    assert task.complete()
    out = task.output()
    assert out["summary"].load() == {"rows": 3}
    pd.testing.assert_frame_equal(out["table"].load(), FRAME)
    assert sorted(_objects(root)) == sorted(
        ["summary.json", "table.parquet", "report/index.html", "report/plots/residuals.png"]
        + (["report/_SUCCESS"] if root.startswith("s3://") else [])
    )


def test_outputs_follow_the_scheme(root: str) -> None:
    out = ThreeOutputs(root=root).output()
    kind = S3Storage if root.startswith("s3://") else type(storage_for("/tmp"))
    assert all(isinstance(t.storage, kind) for t in out.values())
    assert out["report"].path == f"{root}/report" and out["summary"].path == f"{root}/summary.json"


@pytest.mark.parametrize("point", ["after_summary", "mid_table", "mid_folder"])
def test_failed_run_is_incomplete_and_rerun_completes(root: str, point: str, run_tasks, monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_TEST_FAIL_AT", f"raise:{point}")
    failed = run_tasks([ThreeOutputs(root=root)])
    assert not failed.ok and failed.failed
    assert not ThreeOutputs(root=root).complete()
    assert "table.parquet" not in _objects(root) or point == "mid_folder"
    assert not any(k.startswith("report/") for k in _objects(root))

    monkeypatch.delenv("STORAGE_TEST_FAIL_AT")
    rerun = run_tasks([ThreeOutputs(root=root)])
    assert rerun.ok and rerun.families() == {"ThreeOutputs"}
    _assert_complete_and_correct(root)


def test_killed_process_leaves_no_partial_object_and_rerun_completes(root: str, run_tasks) -> None:
    """SIGKILL while the parquet file is half written: nothing of it reaches the store."""
    code = (
        "import luigi, sys; from tests.storage.output_tasks import ThreeOutputs; "
        "luigi.build([ThreeOutputs(root=sys.argv[1])], local_scheduler=True, log_level='WARNING')"
    )
    env = {**os.environ, "STORAGE_TEST_FAIL_AT": "kill:mid_table", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", code, root], env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert _objects(root) == ["summary.json"]
    assert not ThreeOutputs(root=root).complete()

    rerun = run_tasks([ThreeOutputs(root=root)])
    assert rerun.ok and rerun.families() == {"ThreeOutputs"}
    _assert_complete_and_correct(root)


def test_complete_only_when_every_output_exists(root: str, run_tasks, tmp_path: Path) -> None:
    """Take away one output at a time (a file; the folder's flag on S3, the whole folder locally, since a
    local folder appears by one rename): the task is incomplete; put it back: complete, nothing reruns."""
    assert run_tasks([ThreeOutputs(root=root)]).ok
    _assert_complete_and_correct(root)
    store = storage_for(root)
    for key in ("summary.json", "table.parquet", "report/_SUCCESS"):
        if root.startswith("s3://") or key != "report/_SUCCESS":
            data = store.read_bytes(key)
            store.delete(key)
            assert not ThreeOutputs(root=root).complete(), key
            store.write_bytes(key, data)
        else:
            shutil.move(f"{root}/report", tmp_path / "aside")
            assert not ThreeOutputs(root=root).complete(), "report/"
            shutil.move(tmp_path / "aside", f"{root}/report")
        assert ThreeOutputs(root=root).complete()
    assert run_tasks([ThreeOutputs(root=root)]).ran == []


def test_exception_inside_writing_writes_nothing(root: str) -> None:
    target = Output(storage_for(root), "half.json")
    with pytest.raises(RuntimeError), target.writing() as tmp:
        tmp.write_text("half of it")
        raise RuntimeError("interrupted")
    assert not target.exists() and _objects(root) == []


# --------------------------------------------------------------------------- S3 folder uploads
def test_folder_upload_interrupted_mid_way_is_incomplete_then_rerun_cleans_up(s3_env: S3Env) -> None:
    """The process dies between two files of a folder upload: no flag, the folder is not an output; the
    next upload replaces it, removes what the earlier attempt left, and writes the flag last."""
    real = S3Storage(s3_env.url("work")).client

    class DiesOnSecondFile:
        """The boto3 client of a host that is lost after uploading one file."""

        calls = 0

        def __getattr__(self, name: str):
            return getattr(real, name)

        def upload_file(self, *args, **kwargs):
            DiesOnSecondFile.calls += 1
            if DiesOnSecondFile.calls == 2:
                raise ConnectionError("host lost mid-upload")
            return real.upload_file(*args, **kwargs)

    dying = Output(S3Storage(s3_env.url("work"), client=DiesOnSecondFile()), "report", folder=True)
    with pytest.raises(ConnectionError), dying.writing() as first:
        (first / "old-only").mkdir()
        (first / "a.txt").write_text("a1")
        (first / "old-only" / "b.txt").write_text("b1")
    report = storage_for(s3_env.url("work/report"))
    assert report.list() == ["a.txt"]
    assert not Output(storage_for(s3_env.url("work")), "report", folder=True).exists()

    def second(folder: Path) -> None:
        (folder / "a.txt").write_text("a2")
        (folder / "c.txt").write_text("c2")

    Output(storage_for(s3_env.url("work")), "report", folder=True).dump_folder(second)
    assert report.list() == ["_SUCCESS", "a.txt", "c.txt"]
    assert report.read_bytes("a.txt") == b"a2"
    assert Output(storage_for(s3_env.url("work")), "report", folder=True).exists()


def test_a_file_output_written_as_nothing_or_a_folder_is_refused(s3_env: S3Env) -> None:
    store = storage_for(s3_env.url())
    with pytest.raises(FileNotFoundError, match="nothing was written"), Output(store, "f.json").writing() as tmp:
        tmp.mkdir()
    with pytest.raises(FileNotFoundError, match="nothing was written"), Output(store, "g.json").writing():
        pass
    assert store.list() == []


def test_s3_storage_reads_the_luigi_config_section(s3_env: S3Env, config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the AWS environment variables, luigi.cfg's [s3] section alone reaches the server."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    config.set("paths", "work_dir", s3_env.url("cfg"))
    store = work_storage()
    store.write_bytes("k", b"via [s3]")
    assert Output(store, "k").exists()
    Output(store, "t.parquet").dump(FRAME)
    pd.testing.assert_frame_equal(Output(store, "t.parquet").load(), FRAME)
