"""Issue 23.5: losing luigid during a run (exit 46) names the port to start it on again, as exit 45 does."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import luigi
import luigi.rpc
import pytest

from tasks.ops import runner


class Pending(luigi.Task):
    def complete(self) -> bool:
        return False


@pytest.fixture
def listening_port() -> Iterator[int]:
    """Something listening on 127.0.0.1 (so the up-front check passes); it never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_luigid_lost_during_the_run_names_the_port_in_one_line(pipeline_env, monkeypatch, caplog, listening_port):
    def lost(*_args: object, **_kwargs: object) -> None:
        raise luigi.rpc.RPCError("Errors (3 attempts) when connecting to remote scheduler 'http://127.0.0.1'")

    monkeypatch.setattr(runner, "offer_cores", lambda url: 0)
    monkeypatch.setattr(luigi, "build", lost)
    with caplog.at_level("ERROR", logger="luigi-interface"):
        code = runner.run([Pending()], scheduler_port=listening_port)
    assert code == runner.SCHEDULER_LOST == 46
    (line,) = [r.getMessage() for r in caplog.records if "lost the central scheduler" in r.getMessage()]
    assert f"at 127.0.0.1:{listening_port} during the run (Errors (3 attempts)" in line
    assert f"start it again with `make scheduler` (SCHEDULER_PORT={listening_port} for this port)" in line
    assert "\n" not in line
