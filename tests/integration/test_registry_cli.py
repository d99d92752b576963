"""``models`` and ``rollback`` on a damaged or gated registry (issues 10 §2, 11 §5, 15 §6), run in-process.

``pipeline.main`` is called directly (a subprocess costs seconds of imports per command); ``[paths]
registry_dir`` points at a temporary registry through the ``config`` fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.dummy import DummyRegressor

from tripduration.registry.store import ModelRegistry

NAME = "green-trip-duration"
REJECTED = "RMSE 5.5000 does not beat the production model's 5.4000"


@pytest.fixture
def registry(tmp_path: Path, config) -> ModelRegistry:
    """v0001 promoted by the gate, v0002 rejected by it."""
    config.set("paths", "registry_dir", str(tmp_path / "models"))
    model = tmp_path / "model.joblib"
    joblib.dump(DummyRegressor(strategy="constant", constant=12.5).fit(np.zeros((2, 1)), [1.0, 2.0]), model)
    registry = ModelRegistry(tmp_path / "models", NAME)
    metrics = {"test": {"rmse": 5.4}, "baseline_test": {"rmse": 6.4}}
    registry.register(model, {"metrics": metrics, "gate": {"promote": True, "reason": "no production model yet"}})
    registry.register(model, {"metrics": metrics, "gate": {"promote": False, "reason": REJECTED}})
    with registry.lock():
        registry.set_production("v0001", "no production model yet")
    return registry


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    import pipeline

    try:
        code = pipeline.main(list(argv))
    except SystemExit as exc:  # argparse refuses a bad argument with exit 2
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_rollback_refuses_a_path_as_version_name(registry, capsys):
    code, _out, err = cli(capsys, "rollback", "v0001/../v0001")
    assert code == 2
    assert "'v0001/../v0001' is not a registry version name; expected 'v' and four digits, e.g. v0001" in err
    assert registry.history_file.read_text().count("\n") == 1  # nothing recorded


def test_rollback_to_a_rejected_version_needs_force_and_models_shows_why(registry, capsys):
    code, out, err = cli(capsys, "rollback", "v0002", "--reason", "drill")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "v0002 was rejected by the quality gate" in err and "add --force" in err
    assert registry.production()["version"] == "v0001"

    code, out, _err = cli(capsys, "rollback", "v0002", "--reason", "drill", "--force")
    assert code == 0 and "production is now v0002 (was v0001) [forced past the gate's rejection]: drill" in out

    code, out, _err = cli(capsys, "models")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "retired" in lines["v0001"] and "gate: no production model yet" in lines["v0001"]
    assert "production" in lines["v0002"]
    assert f"gate: {REJECTED} | rollback (forced past the gate): drill" in lines["v0002"]


def test_models_names_a_corrupt_pointer_and_an_incomplete_folder_and_rollback_repairs(registry, capsys):
    registry.production_file.write_text('{"version": "../../../x"')
    (registry.versions_dir / "v0003").mkdir()

    code, out, _err = cli(capsys, "models")
    assert code == 0, out
    assert "v0001" in out and "v0002" in out and "2 problem(s):" in out
    assert f"{registry.production_file}: not valid JSON" in out and "rollback vNNNN" in out
    assert f"{registry.versions_dir / 'v0003' / 'metadata.json'}: missing" in out

    code, out, _err = cli(capsys, "models", "--json")
    listing = json.loads(out)
    assert code == 0 and [r["version"] for r in listing["versions"]] == ["v0001", "v0002"]
    assert [p["path"] for p in listing["problems"]] == [
        str(registry.production_file),
        str(registry.versions_dir / "v0003"),
    ]

    code, out, _err = cli(capsys, "rollback", "v0001", "--reason", "repair")
    assert code == 0 and "production is now v0001 (was unreadable production.json): repair" in out
    assert registry.production()["version"] == "v0001"
    assert (registry.versions_dir / "v0003").is_dir()  # reported, never deleted
