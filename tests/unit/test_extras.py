"""Optional extras (issue 23 §2): a missing ``boto3`` or ``mlflow`` is one line naming the extra to install."""

from __future__ import annotations

import sys

import pytest

from tripduration.runtime.extras import (
    MissingExtraError,
    as_missing_extra,
    has_extra,
    import_extra,
    missing_extra_message,
)


@pytest.mark.parametrize(("extra", "module"), [("s3", "boto3"), ("mlflow", "mlflow")])
def test_a_missing_extra_is_one_line_naming_it_and_every_way_to_install_it(monkeypatch, extra, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra had not been installed
    assert not has_extra(extra)
    with pytest.raises(MissingExtraError) as caught:
        import_extra(extra)
    message = str(caught.value)
    assert message == missing_extra_message(extra) and "\n" not in message
    assert message.startswith(f"{module} is not installed")
    for how in (f"make setup-{extra}", f"requirements-{extra}.lock", f"pip install '.[{extra}]'"):
        assert how in message


def test_an_installed_extra_is_imported():
    assert has_extra("mlflow") and import_extra("mlflow").__name__ == "mlflow"


def test_an_import_error_deep_in_the_code_is_recognised_as_a_missing_extra():
    deep = ModuleNotFoundError("No module named 'botocore.session'", name="botocore.session")
    assert "'s3' extra" in str(as_missing_extra(deep))
    assert as_missing_extra(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
    assert as_missing_extra(ValueError("boto3")) is None


def test_the_mlflow_export_names_the_extra_when_mlflow_is_missing(monkeypatch, tmp_path):
    from tripduration.registry.mlflow.export import export_registry
    from tripduration.registry.store import ModelRegistry

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingExtraError, match="'mlflow' extra"):
        export_registry(ModelRegistry(tmp_path / "models", "green-trip-duration"), f"sqlite:///{tmp_path}/m.db")
    assert not (tmp_path / "m.db").exists()
