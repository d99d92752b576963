"""A tiny task with three outputs (json, parquet, folder) for the S3 target tests, importable by a subprocess.

``STORAGE_TEST_FAIL_AT`` makes it fail (``raise``) or die (``kill``: SIGKILL of its own process) at a point:
``after_summary`` (one of three outputs written), ``mid_table`` (half a parquet file written),
``mid_folder`` (one file of the folder written).
"""

from __future__ import annotations

import os
import signal

import luigi
import pandas as pd

from tasks.s3_targets import atomic_output_path, folder_target, target_for
from tasks.targets import write_json
from tripduration.io.parquet import write_parquet

FRAME = pd.DataFrame({"zone": pd.array([1, 2, 3], dtype="int32"), "minutes": [4.5, 12.0, 30.25]})


def maybe_fail(point: str) -> None:
    wanted = os.environ.get("STORAGE_TEST_FAIL_AT", "")
    if wanted == f"raise:{point}":
        raise RuntimeError(f"test failure at {point}")
    if wanted == f"kill:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class ThreeOutputs(luigi.Task):
    """Writes ``summary.json`` (target.open), ``table.parquet`` (a path) and ``report/`` (a folder) under ``root``."""

    root = luigi.Parameter(description="local folder or s3://bucket/prefix")

    def output(self) -> dict[str, luigi.target.FileSystemTarget]:
        return {
            "summary": target_for(f"{self.root}/summary.json"),
            "table": target_for(f"{self.root}/table.parquet"),
            "report": folder_target(f"{self.root}/report"),
        }

    def run(self) -> None:
        out = self.output()
        write_json(out["summary"], {"rows": len(FRAME)})
        maybe_fail("after_summary")
        with atomic_output_path(out["table"]) as tmp:
            write_parquet(FRAME, tmp)
            with open(tmp, "r+b") as fh:  # a half-written file at the moment of the failure
                fh.truncate(os.path.getsize(tmp) // 2)
            maybe_fail("mid_table")
            write_parquet(FRAME, tmp)
        with atomic_output_path(out["report"]) as tmp:
            os.makedirs(os.path.join(tmp, "plots"))
            with open(os.path.join(tmp, "index.html"), "w") as fh:
                fh.write("<h1>report</h1>")
            maybe_fail("mid_folder")
            with open(os.path.join(tmp, "plots", "residuals.png"), "wb") as fh:
                fh.write(b"\x89PNG fake")
