"""A tiny task with three outputs (json, parquet, folder) for the output tests, importable by a subprocess.

``STORAGE_TEST_FAIL_AT`` makes it fail (``raise``) or die (``kill``: SIGKILL of its own process) at a point:
``after_summary`` (one of three outputs written), ``mid_table`` (half a parquet file written),
``mid_folder`` (one file of the folder written).
"""

from __future__ import annotations

import os
import signal

import luigi
import pandas as pd

from tasks.targets import Output
from tripduration.io import open_storage
from tripduration.io.parquet import write_parquet

FRAME = pd.DataFrame({"zone": pd.array([1, 2, 3], dtype="int32"), "minutes": [4.5, 12.0, 30.25]})


def maybe_fail(point: str) -> None:
    wanted = os.environ.get("STORAGE_TEST_FAIL_AT", "")
    if wanted == f"raise:{point}":
        raise RuntimeError(f"test failure at {point}")
    if wanted == f"kill:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class ThreeOutputs(luigi.Task):
    """Writes ``summary.json`` (dump), ``table.parquet`` (a path) and ``report/`` (a folder) under ``root``."""

    root = luigi.Parameter(description="local folder or s3://bucket/prefix")

    def output(self) -> dict[str, Output]:
        store = open_storage(self.root)
        return {
            "summary": Output(store, "summary.json"),
            "table": Output(store, "table.parquet"),
            "report": Output(store, "report", folder=True),
        }

    def run(self) -> None:
        out = self.output()
        out["summary"].dump({"rows": len(FRAME)})
        maybe_fail("after_summary")
        with out["table"].writing() as tmp:
            write_parquet(FRAME, tmp)
            with open(tmp, "r+b") as fh:  # a half-written file at the moment of the failure
                fh.truncate(os.path.getsize(tmp) // 2)
            maybe_fail("mid_table")
            write_parquet(FRAME, tmp)
        with out["report"].writing() as tmp:
            (tmp / "plots").mkdir()
            (tmp / "index.html").write_text("<h1>report</h1>")
            maybe_fail("mid_folder")
            (tmp / "plots" / "residuals.png").write_bytes(b"\x89PNG fake")
