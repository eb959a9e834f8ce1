"""SPEC §7: GET /usage, one static page; in a real Chromium, a pasted key shows its budget and last requests."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


def test_usage_page_is_one_static_page_without_external_assets(gateway):
    answer = requests.get(gateway.url + "/usage", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "v1/usage" in page and "v1/usage/requests" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page loads something from elsewhere"
    assert "connect-src 'self'" in answer.headers["content-security-policy"]
    assert "localStorage" not in page  # the key stays in the tab at most (sessionStorage)


def test_usage_page_does_not_break_the_openapi_spec(gateway):
    spec = requests.get(gateway.url + "/openapi.json", timeout=10)
    assert spec.status_code == 200
    page = spec.json()["paths"]["/usage"]["get"]
    assert "text/html" in page["responses"]["200"]["content"]
    assert page["security"] == []


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright  # a test extra: missing it is a failure, not a skip

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox", "--headless", "--disable-gpu"])
        yield chromium
        chromium.close()


@needs_chromium
def test_pasting_a_key_shows_its_budget_and_last_requests(gateway, browser):
    key = gateway.create_key(budget="12.5", name="page-reader")
    sent = requests.post(gateway.v1 + "/responses", headers={"Authorization": f"Bearer {key['key']}"},
                         json={"model": "echo-1", "input": "hello page"}, timeout=30)
    assert sent.status_code == 200, sent.text
    page = browser.new_page()
    try:
        page.goto(gateway.url + "/usage")
        page.fill("#key", key["key"])
        page.click("#show")
        page.wait_for_selector("#requests tbody tr")
        assert page.inner_text("#limit") == "$12.50"
        assert page.inner_text("#used") == "$0.000004"  # echo-1 costs what a small real model does
        assert page.inner_text("#remaining") == "$12.50"
        assert page.inner_text("#key-name") == "page-reader"
        assert page.inner_text("#key-redacted") == key["redacted_value"]
        assert "echo-1" in page.inner_text("#requests tbody")
        assert page.evaluate("sessionStorage.length") == 0  # not remembered unless asked
    finally:
        page.close()


@needs_chromium
def test_a_bad_key_gets_a_clear_message(gateway, browser):
    page = browser.new_page()
    try:
        page.goto(gateway.url + "/usage")
        page.fill("#key", "sk-lazytech-not-a-real-key")
        page.click("#show")
        page.wait_for_selector("#message.error")
        assert "not accepted" in page.inner_text("#message")
        assert page.is_hidden("#budget")
    finally:
        page.close()


@needs_chromium
def test_remembered_key_lives_in_the_tab_session_only(gateway, browser):
    key = gateway.create_key(budget="3", name="remembered")["key"]
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(gateway.url + "/usage")
        page.fill("#key", key)
        page.check("#remember")
        page.click("#show")
        page.wait_for_selector("#budget:not([hidden])")
        assert page.evaluate("localStorage.length") == 0
        page.reload()
        page.wait_for_selector("#budget:not([hidden])")
        assert page.inner_text("#limit") == "$3.00"
        page.click("#forget")
        assert page.evaluate("sessionStorage.length") == 0
    finally:
        context.close()
