"""The house's layers that import-linter cannot see (``make lint`` runs import-linter for the rest)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = [*sorted((ROOT / "tripduration").rglob("*.py")), *sorted((ROOT / "tasks").rglob("*.py")), ROOT / "pipeline.py"]
PORT = ROOT / "tripduration" / "io"
MAX_LINES = 400


def test_only_the_storage_port_knows_object_storage() -> None:
    """No code outside tripduration/io names an s3:// URL, asks whether a location is one, or opens pyarrow.fs."""
    pattern = re.compile(r"s3://|is_s3_url|pyarrow\.fs|from pyarrow import fs")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in CODE
        if PORT not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in CODE if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines (one concern each): {long}"
