"""Luigi outputs in S3 stay atomic: a task failed or killed mid-way is incomplete, the same command run
again completes it. Same tests on a local folder (LocalTarget) and on the moto S3 server (S3Target)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import luigi
import pandas as pd
import pytest
from luigi.contrib.s3 import S3FlagTarget, S3Target

import tasks.s3_targets as s3_targets
from tasks.s3_targets import atomic_output_path, folder_target, read_parquet_target, target_for, upload_folder
from tasks.targets import read_json
from tests.storage.conftest import S3Env
from tests.storage.s3_tasks import FRAME, ThreeOutputs
from tripduration.io.storage import storage_for

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
    store = storage_for(root)
    return [k for k in store.list() if "-luigi-tmp-" not in k]


def _assert_complete_and_correct(root: str) -> None:
    task = ThreeOutputs(root=root)
    assert task.complete()
    out = task.output()
    assert read_json(out["summary"]) == {"rows": 3}
    pd.testing.assert_frame_equal(read_parquet_target(out["table"]), FRAME)
    assert sorted(_objects(root)) == sorted(
        ["summary.json", "table.parquet", "report/index.html", "report/plots/residuals.png"]
        + (["report/_SUCCESS"] if root.startswith("s3://") else [])
    )


def test_targets_follow_the_scheme(root: str) -> None:
    out = ThreeOutputs(root=root).output()
    if root.startswith("s3://"):
        assert isinstance(out["summary"], S3Target) and isinstance(out["report"], S3FlagTarget)
        assert out["report"].path.endswith("/report/")
    else:
        assert all(type(t) is luigi.LocalTarget for t in out.values())


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
        "import luigi, sys; from tests.storage.s3_tasks import ThreeOutputs; "
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


def test_exception_inside_open_w_writes_nothing(root: str) -> None:
    target = target_for(f"{root}/half.txt")
    with pytest.raises(RuntimeError), target.open("w") as fh:
        fh.write("half of it")
        raise RuntimeError("interrupted")
    assert not target.exists()


# --------------------------------------------------------------------------- S3 folder uploads
def test_folder_upload_interrupted_mid_way_is_incomplete_then_rerun_cleans_up(
    s3_env: S3Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies between two files of a folder upload: no flag, the folder is not an output; the
    next upload replaces it, removes what the earlier attempt left, and writes the flag last."""
    url = s3_env.url("work/report")
    first = tmp_path / "first"
    (first / "old-only").mkdir(parents=True)
    (first / "a.txt").write_text("a1")
    (first / "old-only" / "b.txt").write_text("b1")
    real = s3_targets.S3Client().s3.meta.client

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

    with monkeypatch.context() as patch, pytest.raises(ConnectionError):
        patch.setattr(s3_targets, "_boto3", lambda client: DiesOnSecondFile())
        upload_folder(first, url)
    assert storage_for(url).list() == ["a.txt"]
    assert not folder_target(url).exists()

    second = tmp_path / "second"
    second.mkdir()
    (second / "a.txt").write_text("a2")
    (second / "c.txt").write_text("c2")
    assert upload_folder(second, url) == ["work/report/a.txt", "work/report/c.txt"]
    assert storage_for(url).list() == ["_SUCCESS", "a.txt", "c.txt"]
    assert storage_for(url).read_bytes("a.txt") == b"a2"
    assert folder_target(url).exists()


def test_wrong_kind_of_output_is_explained(s3_env: S3Env) -> None:
    with (
        pytest.raises(NotADirectoryError, match="folder output"),
        atomic_output_path(folder_target(s3_env.url("r"))) as tmp,
    ):
        Path(tmp).write_text("a file, not a folder")
    with (
        pytest.raises(IsADirectoryError, match="folder_target"),
        atomic_output_path(target_for(s3_env.url("f"))) as tmp,
    ):
        os.makedirs(tmp)
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_output_path(target_for(s3_env.url("g"))):
        pass
    assert storage_for(s3_env.url()).list() == []


def test_s3_client_reads_the_luigi_config_section(s3_env: S3Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the AWS environment variables, luigi.cfg's [s3] section alone reaches the server."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setattr(s3_targets, "_CLIENTS", {})  # no client built while the variables were set
    store = s3_targets.storage_from_config(s3_env.url("cfg"))
    store.write_bytes("k", b"via [s3]")
    assert target_for(s3_env.url("cfg/k")).exists()
    local = Path(s3_targets.tempfile.mkdtemp()) / "t.parquet"
    FRAME.to_parquet(local, index=False)
    s3_targets.upload_file(local, s3_env.url("cfg/t.parquet"))
    pd.testing.assert_frame_equal(read_parquet_target(target_for(s3_env.url("cfg/t.parquet"))), FRAME)
