"""``/docs`` and ``/redoc`` work without internet access (issue 23 section 4).

FastAPI's pages load Swagger UI and ReDoc from a CDN, so offline they stay blank. The service serves those
assets itself (fastapi-offline). Checked twice: the pages' HTML refers to no other host; and (slow) headless
Chromium, with every host name but 127.0.0.1 made unresolvable, renders /docs into Swagger UI's operation list.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from tripduration.registry.store import ModelRegistry

from . import test_service as service
from .test_service import TIMEOUT, Client, Trained

trained, registry, serve = service.trained, service.registry, service.serve  # the fixtures, used by name

CHROMIUM = Path("/usr/bin/chromium")
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"  # no name resolves, but this machine


def _get(client: Client, path: str) -> tuple[int, bytes]:
    conn = client.connection()
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_pages_load_their_assets_from_the_service(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client], page: str
) -> None:
    client = serve(registry)
    status, html = _get(client, page)
    assert status == 200
    text = html.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert any(a.endswith(".js") for a in assets), assets
    assert not [a for a in assets if "://" in a or a.startswith("//")], assets  # nothing from another host
    for asset in assets:
        asset_status, body = _get(client, asset)
        assert asset_status == 200 and len(body) > 1000, (asset, asset_status)


def _web_view() -> Any:
    """scripts/screenshot_web_view.py: runs headless Chromium with a fresh profile, killed on timeout."""
    spec = importlib.util.spec_from_file_location("web_view", ROOT / "scripts" / "screenshot_web_view.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_docs_render_in_a_browser_without_network(
    trained: Trained, registry: ModelRegistry, serve: Callable[..., Client]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian/Ubuntu: apt-get install chromium)")
    client = serve(registry)
    url = f"http://127.0.0.1:{client.port}/docs"
    dom = _web_view().run_chromium(url, "--dump-dom", OFFLINE, chromium=CHROMIUM, timeout=TIMEOUT * 9).stdout
    dom = dom.decode("utf-8", errors="replace")
    paths = re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom)
    assert {"/predict", "/health", "/model", "/metrics"} <= set(paths), dom[:2000]
    assert "NYC green taxi trip duration" in dom
