"""SPEC §5 OpenAPI: `/docs` is served whole by the gateway (Swagger UI from the swagger-ui-bundle package) and
renders in a real Chromium with every non-loopback request refused."""
from __future__ import annotations

import re
from urllib.parse import urlparse

import requests
from test_usage_page import browser  # noqa: F401 - the module's Chromium fixture (skips without Debian's chromium)

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def test_the_docs_page_loads_nothing_from_elsewhere(gateway):
    page = requests.get(gateway.url + "/docs", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text), "the page loads something from elsewhere"
    assets = re.findall(r"""(?:src|href)="([^"]+)\"""", page.text)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        served = requests.get(gateway.url + asset, timeout=10)
        assert served.status_code == 200, asset
        assert served.headers["content-type"].split(";")[0] in ("application/javascript", "text/javascript", "text/css")
    assert "cdn" not in page.headers.get("content-security-policy", "")


def test_the_docs_page_renders_offline_in_chromium(gateway, browser, tmp_path):  # noqa: F811
    page = browser.new_page()
    refused: list = []

    def only_loopback(route):
        if urlparse(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    try:
        page.goto(gateway.url + "/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20000)
        page.wait_for_selector(".opblock-summary-path", timeout=20000)
        assert page.title() == "OneKeyLLM"
        assert "OneKeyLLM" in page.inner_text(".swagger-ui .info .title")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/v1/responses" in path for path in paths) and any("/v1/admin/keys" in path for path in paths)
        shot = tmp_path / "docs.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
        assert refused == []  # it never needed the network
    finally:
        page.close()
