"""The foundation as a newcomer meets it: ping, catalog, keys, admin API, errors, through real clients."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests
from conftest import clear_of_window_boundary, is_postgres


def test_ping_answers_without_a_key(gateway):
    body = requests.get(gateway.v1 + "/ping", timeout=5).json()
    assert body["object"] == "ping" and body["status"] == "ok" and body["version"]


def test_fresh_install_serves_the_offline_echo_model(gateway):
    ids = [m["id"] for m in requests.get(gateway.v1 + "/models", timeout=5).json()["data"]]
    assert "echo-1" in ids


def test_openai_sdk_lists_models(gateway):
    client = openai.OpenAI(base_url=gateway.v1, api_key="sk-lazytech-unused", max_retries=0)
    models = client.models.list()
    assert "echo-1" in [m.id for m in models.data]
    assert client.models.retrieve("echo-1").id == "echo-1"


def test_anthropic_sdk_lists_models_in_its_own_shape(gateway):
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-lazytech-unused", max_retries=0)
    page = client.models.list()
    echo = next(m for m in page.data if m.id == "echo-1")
    assert echo.type == "model" and echo.display_name and echo.created_at.year >= 2024
    raw = requests.get(gateway.v1 + "/models", headers={"anthropic-version": "2023-06-01"}, timeout=5).json()
    assert raw["first_id"] and raw["last_id"] and raw["has_more"] is False
    assert raw["data"][0]["created_at"].endswith("Z")


def test_unknown_model_is_404_in_both_shapes(gateway):
    assert requests.get(gateway.v1 + "/models/no-such-model", timeout=5).status_code == 404
    client = openai.OpenAI(base_url=gateway.v1, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_model_is_listed_only_while_an_enabled_account_serves_it(gateway, upstream):
    account = gateway.create_account(provider="openai", base_url=upstream.base_url("openai"), api_key="sk-up-1",
                                     models=["listed-while-enabled"])
    listed = lambda: [m["id"] for m in requests.get(gateway.v1 + "/models", timeout=5).json()["data"]]  # noqa: E731
    assert "listed-while-enabled" in listed()
    assert gateway.admin("PATCH", f"/accounts/{account['id']}", json={"enabled": False}).status_code == 200
    assert "listed-while-enabled" not in listed()
    assert gateway.admin("DELETE", f"/accounts/{account['id']}").json()["deleted"] is True


def test_key_is_shown_once_and_only_its_hash_is_stored(gateway):
    created = gateway.create_key(budget="12.5", name="shown-once")
    plaintext = created["key"]
    assert plaintext.startswith("sk-lazytech-") and len(plaintext) >= len("sk-lazytech-") + 32
    assert created["redacted_value"] == "sk-lazytech-..." + plaintext[-4:]
    assert created["budget_usd"] == "12.500000000" and created["used_usd"] == "0.000000000"
    again = gateway.admin("GET", f"/keys/{created['id']}").json()
    assert "key" not in again and again["redacted_value"] == created["redacted_value"]
    listed = gateway.admin("GET", "/keys?limit=1000").text
    assert plaintext not in listed
    assert plaintext not in _database_dump(gateway)


def _database_dump(gateway) -> str:
    """Every value of every table, as text (read straight from the database)."""
    from service.storage.db import make_database

    db = make_database(gateway.database_url)
    db.connect()
    try:
        tables = db.get_tables()
        text = []
        for table in tables:
            for row in db.execute_sql(f'SELECT * FROM "{table}"').fetchall():
                text.append(" ".join(str(v) for v in row))
        return "\n".join(text)
    finally:
        db.close()


def test_admin_routes_refuse_user_keys_and_strangers(gateway):
    user = gateway.create_key(name="not-admin")["key"]
    assert requests.get(gateway.v1 + "/admin/keys", timeout=5).status_code == 401
    denied = requests.get(gateway.v1 + "/admin/keys", headers={"Authorization": f"Bearer {user}"}, timeout=5)
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    wrong = requests.get(gateway.v1 + "/admin/keys", headers={"Authorization": "Bearer sk-admin-wrong"}, timeout=5)
    assert wrong.status_code == 401 and "error" in wrong.json()


def test_user_routes_refuse_missing_and_revoked_keys(gateway):
    body = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(gateway.v1 + "/chat/completions", json=body, timeout=5).status_code == 401
    created = gateway.create_key(name="to-revoke")
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=5).status_code == 200
    assert gateway.admin("DELETE", f"/keys/{created['id']}").json() == {
        "id": created["id"], "object": "api_key", "deleted": True}
    refused = requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=5)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert gateway.admin("GET", f"/keys/{created['id']}").status_code == 404


def test_a_bad_key_is_the_answer_whatever_else_is_wrong_with_the_request(gateway):
    # the gateway finds a key by its grant; every refusal before it must still read the key first
    created = gateway.create_key(name="bad-and-wrong")
    headers = {"Authorization": f"Bearer {created['key']}", "Content-Type": "application/json"}
    ok = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(gateway.v1 + "/chat/completions", json=ok, headers=headers, timeout=5).status_code == 200
    gateway.admin("DELETE", f"/keys/{created['id']}")
    for data in (json.dumps(ok), "{not json", json.dumps({"model": "echo-1"}),
                 json.dumps({"model": "no-such-model", "messages": ok["messages"]})):
        refused = requests.post(gateway.v1 + "/chat/completions", data=data, headers=headers, timeout=5)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key", data


def test_a_keys_model_list_and_rpm_apply_from_the_next_request(gateway):
    created = gateway.create_key(name="narrowed")
    headers = {"Authorization": f"Bearer {created['key']}"}
    body = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    assert requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=5).status_code == 200
    gateway.admin("PATCH", f"/keys/{created['id']}", json={"models": ["some-other-model"]})
    refused = requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=5)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    gateway.admin("PATCH", f"/keys/{created['id']}", json={"models": None, "rpm": 1})
    clear_of_window_boundary(60)
    first = requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=5)
    second = requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=5)
    assert (first.status_code, second.status_code) == (200, 429)  # the refused request did not count


def test_messages_routes_take_x_api_key_and_answer_the_anthropic_envelope(gateway, user_key):
    body = {"model": "echo-1", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    ok = requests.post(gateway.v1 + "/messages", json=body, headers={"x-api-key": user_key}, timeout=5)
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    bad = requests.post(gateway.v1 + "/messages", json=body, headers={"x-api-key": "sk-lazytech-nope"}, timeout=5)
    assert bad.status_code == 401
    assert bad.json() == {"type": "error", "error": {"type": "authentication_error", "message": "Invalid API key."}}


def test_disabled_and_expired_keys_stop_working(gateway):
    body = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    disabled = gateway.create_key(name="disabled")
    gateway.admin("PATCH", f"/keys/{disabled['id']}", json={"disabled": True})
    answer = requests.post(gateway.v1 + "/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {disabled['key']}"}, timeout=5)
    assert answer.status_code == 401
    expired = gateway.create_key(name="expired", expires_at=1000)
    answer = requests.post(gateway.v1 + "/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {expired['key']}"}, timeout=5)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "key_expired"


@pytest.mark.parametrize("path, body, param", [
    ("/keys", {"name": "x", "budget_usd": "ten dollars"}, "budget_usd"),
    ("/keys", {"name": "x", "budget_usd": -5}, "budget_usd"),
    ("/keys", {"name": "x", "rpm": "fast"}, "rpm"),
    ("/keys", {"name": "x", "unknown_field": 1}, "unknown_field"),
    ("/accounts", {"name": "x", "provider": "martian"}, "provider"),
    ("/accounts", {"provider": "openai"}, "name"),
    ("/accounts", {"name": "x", "provider": "openai", "base_url": "ftp://nope"}, "base_url"),
    ("/accounts", {"name": "x", "provider": "openai", "weight": "heavy"}, "weight"),
    ("/models", {"id": "m", "input_usd_per_mtok": "free"}, "input_usd_per_mtok"),
    ("/models", {"display_name": "no id"}, "id"),
])
def test_bad_admin_bodies_are_400_with_the_field_named(gateway, path, body, param):
    answer = gateway.admin("POST", path, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and param in error["message"]


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"", b"\xff\xfe{", b"[" * 100000])
def test_junk_bodies_are_400_in_the_route_familys_envelope(gateway, user_key, raw):
    headers = {"Authorization": f"Bearer {user_key}", "Content-Type": "application/json"}
    chat = requests.post(gateway.v1 + "/chat/completions", data=raw, headers=headers, timeout=10)
    assert chat.status_code == 400 and chat.json()["error"]["type"] == "invalid_request_error"
    messages = requests.post(gateway.v1 + "/messages", data=raw, headers=headers, timeout=10)
    assert messages.status_code == 400 and messages.json()["type"] == "error"
    if raw:  # an empty admin body is an empty object: every field has a default
        admin = gateway.admin("POST", "/keys", data=raw, headers={"Content-Type": "application/json"})
        assert admin.status_code == 400 and "error" in admin.json()


def test_unknown_paths_and_methods_answer_in_the_envelope(gateway):
    missing = requests.get(gateway.v1 + "/nothing-here", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong_method = requests.delete(gateway.v1 + "/ping", timeout=5)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    anthropic_missing = requests.get(gateway.v1 + "/messages/nope", timeout=5)
    assert anthropic_missing.json()["type"] == "error"


def test_admin_crud_round_trip_with_money_as_decimal_strings(gateway, upstream):
    account = gateway.create_account(provider="anthropic", base_url=upstream.base_url("anthropic"),
                                     api_key="sk-ant-secret-credential-9876", models=["crud-model"],
                                     model_map={"crud-model": "claude-upstream-name"},
                                     limits={"five_hour_usd": 5, "weekly_usd": "20.5"})
    assert account["api_key"] != "sk-ant-secret-credential-9876" and account["api_key"].endswith("9876")
    assert account["limits"] == {"five_hour_usd": "5.000000000", "weekly_usd": "20.500000000"}
    assert account["base_url"] == upstream.base_url("anthropic")
    patched = gateway.admin("PATCH", f"/accounts/{account['id']}", json={"weight": 3, "api_key": "sk-new-credential-0000"})
    assert patched.json()["weight"] == 3 and patched.json()["api_key"].endswith("0000")
    model = gateway.admin("PATCH", "/models/crud-model", json={"input_usd_per_mtok": 3, "output_usd_per_mtok": "15",
                                                               "max_output_tokens": 1000}).json()
    assert model["input_usd_per_mtok"] == "3.000000000" and model["output_usd_per_mtok"] == "15.000000000"
    key = gateway.create_key(budget=7, name="crud", models=["crud-model"], rpm=60)
    patched_key = gateway.admin("PATCH", f"/keys/{key['id']}", json={"budget_usd": "8.25", "name": "renamed"}).json()
    assert patched_key["budget_usd"] == "8.250000000" and patched_key["name"] == "renamed"
    assert patched_key["models"] == ["crud-model"] and patched_key["rpm"] == 60


def test_admin_lists_are_paginated(gateway):
    ids = {gateway.create_key(name=f"page-{i}")["id"] for i in range(5)}
    seen, after = [], None
    while True:
        page = gateway.admin("GET", "/keys", params={"limit": 2, **({"after": after} if after else {})}).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [k["id"] for k in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert ids <= set(seen) and len(seen) == len(set(seen))


def test_openapi_spec_and_docs_are_published(gateway):
    spec = requests.get(gateway.url + "/openapi.json", timeout=5).json()
    assert spec["info"]["title"] == "OneKeyLLM"
    for path in ("/v1/ping", "/v1/models", "/v1/chat/completions", "/v1/responses", "/v1/messages",
                 "/v1/admin/keys", "/v1/admin/accounts/{account_id}"):
        assert path in spec["paths"], path
    assert requests.get(gateway.url + "/docs", timeout=5).status_code == 200


def test_credentials_and_keys_never_reach_the_log(gateway, upstream):
    secret = "sk-upstream-very-secret-credential-4242"
    gateway.create_account(provider="openai", base_url=upstream.base_url("openai"), api_key=secret,
                           models=["log-check-model"])
    key = gateway.create_key(name="log-check")["key"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    client.chat.completions.create(model="log-check-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="log-check-model", messages="not a list")
    log = gateway.log_text()
    assert secret not in log and key not in log and gateway.admin_token not in log
    assert upstream.last("/v1/chat/completions").headers["authorization"] == f"Bearer {secret}"


@pytest.mark.skipif(is_postgres(), reason="reads the SQLite file directly")
def test_sqlite_runs_in_wal_mode(gateway):
    import sqlite3

    path = gateway.database_url.removeprefix("sqlite:///")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_keys_rpm_is_enforced_with_retry_after(gateway):
    key = gateway.create_key(name="rpm", rpm=3)["key"]
    body = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [requests.post(gateway.v1 + "/chat/completions", json=body, headers=headers, timeout=10)
                for _ in range(8)]  # at most one minute boundary falls inside: 8 > 2 windows of 3
    assert {s.status_code for s in statuses} == {200, 429}
    limited = [s for s in statuses if s.status_code == 429]
    assert limited, [s.status_code for s in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["type"] == "rate_limit_error"
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**body)


def test_cors_is_off_unless_configured_and_pages_carry_security_headers(gateway, tmp_path):
    preflight = requests.options(gateway.v1 + "/chat/completions", timeout=5,
                                 headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    docs = requests.get(gateway.url + "/docs", timeout=5)
    assert docs.headers["X-Frame-Options"] == "DENY" and docs.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]
    from conftest import start_server

    server = start_server(tmp_path, name="cors", extra_env={"ONEKEYLLM_CORS_ORIGINS": "https://app.example"})
    try:
        allowed = requests.options(server.v1 + "/models", timeout=5, headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
        other = requests.get(server.v1 + "/models", timeout=5, headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        server.stop()


@pytest.mark.parametrize("expires_at, expected", [(2000000000, 2000000000), ("2033-05-18T03:33:20Z", 2000000000),
                                                  ("2033-05-18T03:33:20", 2000000000), (None, None)])
def test_key_expiry_takes_unix_seconds_or_iso_8601(gateway, expires_at, expected):
    assert gateway.create_key(name="expiry", expires_at=expires_at)["expires_at"] == expected


@pytest.mark.parametrize("expires_at", ["next tuesday", True, -5, [1]])
def test_a_bad_key_expiry_is_400(gateway, expires_at):
    answer = gateway.admin("POST", "/keys", json={"name": "bad-expiry", "expires_at": expires_at})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "expires_at"
