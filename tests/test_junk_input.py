"""Junk input: whatever a client sends, the answer is a 4xx in the route family's envelope.

Every route family (OpenAI routes, /v1/messages*, admin, auth, files, conversations, usage) gets bodies that
are not JSON, wrong types in every field of a valid body, huge strings, deeply nested JSON, bodies over the
size limit, unknown content types, invalid UTF-8 and broken headers. Never a 5xx, never a traceback, and the
server keeps answering /v1/ping.
"""
from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import jwt
import pytest
import requests
from conftest import Server, start_server

BODY_LIMIT = 1024 * 1024
JWT_SECRET = "junk-input-test-secret-0123456789abcdef"
HUGE = "x" * 100_000
WRONG_VALUES = [None, 1, "x", [], {}, True, HUGE]
NOT_JSON = [b"not json", b"<request><model>echo-1</model></request>", b"\xff\xfe\xfd", b"{", b'{"model": "echo-1"',
            b"null", b"1", b'"x"', b"[]", b"true", b"NaN", b'{"a": 1} {"b": 2}', b"\x00\x01\x02"]
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
USER_MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class Route:
    """A route that takes a JSON body, a body it accepts, and who may call it."""

    name: str
    method: str
    path: str
    good: dict
    caller: str = "key"  # key | admin | jwt | nobody
    anthropic: bool = False


JSON_ROUTES = [
    Route("responses", "POST", "/v1/responses", {"model": "echo-1", "input": "hi", "stream": False}),
    Route("chat", "POST", "/v1/chat/completions", {"model": "echo-1", "messages": USER_MESSAGES, "max_tokens": 8}),
    Route("messages", "POST", "/v1/messages", {"model": "echo-1", "max_tokens": 8, "messages": USER_MESSAGES,
                                               "system": "be brief"}, anthropic=True),
    Route("count_tokens", "POST", "/v1/messages/count_tokens", {"model": "echo-1", "messages": USER_MESSAGES},
          anthropic=True),
    Route("admin_keys", "POST", "/v1/admin/keys", {"name": "junk", "budget_usd": "1", "rpm": 100,
                                                   "models": ["echo-1"]}, caller="admin"),
    Route("admin_key_patch", "PATCH", "/v1/admin/keys/{victim}", {"name": "junk", "budget_usd": "1",
                                                                   "disabled": False}, caller="admin"),
    Route("admin_accounts", "POST", "/v1/admin/accounts", {"name": "junk-acct", "provider": "echo",
                                                           "models": ["junk-model"], "weight": 1,
                                                           "limits": {"weekly_usd": "1"}}, caller="admin"),
    Route("admin_models", "POST", "/v1/admin/models", {"id": "junk-model", "input_usd_per_mtok": "1",
                                                       "context_window": 1000}, caller="admin"),
    Route("auth_send", "POST", "/v1/auth/email/send", {"email": "someone@example.com"}, caller="nobody"),
    Route("auth_token", "POST", "/v1/auth/token", {"email": "someone@example.com", "code": "123456"},
          caller="nobody"),
    Route("user_keys", "POST", "/v1/keys", {"name": "mine", "budget_usd": "1"}, caller="jwt"),
    Route("conversations", "POST", "/v1/conversations", {"metadata": {"topic": "junk"}, "items": [
        {"type": "message", "role": "user", "content": "hi"}]}),
    Route("conversation_update", "POST", "/v1/conversations/{conversation}", {"metadata": {"topic": "junk"}}),
    Route("conversation_items", "POST", "/v1/conversations/{conversation}/items", {"items": [
        {"type": "message", "role": "user", "content": "hi"}]}),
]
ROUTE_IDS = [route.name for route in JSON_ROUTES]
# one authenticated route of each family, for the header edge cases
FAMILY_PROBES = [
    ("GET", "/v1/models/echo-1", False), ("POST", "/v1/chat/completions", False), ("POST", "/v1/responses", False),
    ("POST", "/v1/messages", True), ("POST", "/v1/messages/count_tokens", True), ("GET", "/v1/admin/keys", False),
    ("GET", "/v1/auth/verify", False), ("GET", "/v1/keys", False), ("GET", "/v1/files", False),
    ("PUT", "/v1/files/notes/junk.txt", False), ("POST", "/v1/conversations", False), ("GET", "/v1/usage", False),
    ("GET", "/v1/usage/requests", False),
]
KEYED_PROBES = [probe for probe in FAMILY_PROBES if not probe[1].startswith("/v1/models")]


# ---------------------------------------------------------------- the server and its callers
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of our own: a 1 MB body limit, a known JWT secret, and junk that may not touch the shared one."""
    server = start_server(tmp_path_factory.mktemp("junk"), name="junk", extra_env={
        "ONEKEYLLM_MAX_BODY_BYTES": str(BODY_LIMIT), "ONEKEYLLM_JWT_SECRET": JWT_SECRET})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def credentials(server) -> dict:
    """The bearer for each kind of caller."""
    key = server.create_key(budget="5", name="junk-caller")["key"]
    now = int(time.time())
    token = jwt.encode({"sub": "owner@example.com", "email": "owner@example.com", "iat": now, "exp": now + 3600,
                        "iss": "onekeyllm"}, JWT_SECRET, algorithm="HS256")
    return {"key": key, "admin": server.admin_token, "jwt": token, "nobody": None}


@pytest.fixture(scope="module")
def path_values(server, credentials) -> dict:
    """Objects the routes' paths name: a key to patch (not the caller's own) and a conversation."""
    victim = server.create_key(budget="1", name="junk-victim")["id"]
    conversation = requests.post(server.v1 + "/conversations", json={}, timeout=10,
                                 headers=auth(credentials["key"])).json()["id"]
    return {"victim": victim, "conversation": conversation}


@pytest.fixture(autouse=True)
def still_answering(server):
    """After each test the server still answers."""
    yield
    assert requests.get(server.v1 + "/ping", timeout=10).status_code == 200


def auth(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def send(server: Server, route: Route, credentials: dict, path_values: dict, **kwargs) -> requests.Response:
    """One request to `route` as its caller."""
    headers = {**auth(credentials[route.caller]), **kwargs.pop("headers", {})}
    return requests.request(route.method, server.url + route.path.format(**path_values), headers=headers,
                            timeout=60, **kwargs)


# ---------------------------------------------------------------- what every answer must look like
def assert_client_error(status: int, text: str, anthropic: bool, context: object = "") -> None:
    """A 4xx in the route family's envelope, with no traceback in it."""
    assert 400 <= status < 500, (context, status, text[:500])
    assert_no_internals(text, context)
    body = json.loads(text)
    if anthropic:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, (context, body)
    else:
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, (context, body)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], (context, body)


def assert_no_internals(text: str, context: object = "") -> None:
    assert "Traceback" not in text and 'File "/' not in text, (context, text[:500])


def assert_answered(answer: requests.Response, anthropic: bool, context: object = "") -> None:
    """Not a 5xx; an error is a 4xx in the envelope (a replacement may still be a valid body: then a 2xx)."""
    assert answer.status_code < 500, (context, answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        assert_client_error(answer.status_code, answer.text, anthropic, context)
    else:
        assert_no_internals(answer.text, context)


# ---------------------------------------------------------------- bodies
@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
def test_bodies_that_are_not_a_json_object_are_400(server, credentials, path_values, route):
    for raw in NOT_JSON:
        answer = send(server, route, credentials, path_values, data=raw,
                      headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (raw, answer.text)
        assert_client_error(answer.status_code, answer.text, route.anthropic, raw)


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
def test_wrong_types_in_every_field_never_break_a_route(server, credentials, path_values, route):
    errors = 0
    for name in route.good:
        for value in WRONG_VALUES:
            if value == route.good[name]:
                continue
            answer = send(server, route, credentials, path_values, json={**route.good, name: value})
            assert_answered(answer, route.anthropic, (name, repr(value)[:40]))
            errors += answer.status_code >= 400
    assert errors, "no replacement was refused"


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
def test_huge_strings_and_deep_nesting_are_refused(server, credentials, path_values, route):
    for raw in (DEEP_ARRAY, DEEP_OBJECT, b'{"model": ' + DEEP_ARRAY + b"}"):
        answer = send(server, route, credentials, path_values, data=raw,
                      headers={"Content-Type": "application/json"})
        assert_client_error(answer.status_code, answer.text, route.anthropic, raw[:20])
    huge_keys = send(server, route, credentials, path_values, json={**route.good, HUGE: HUGE})
    assert_answered(huge_keys, route.anthropic, "a 100 KB field name")


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
def test_invalid_utf8_in_a_json_body_is_400(server, credentials, path_values, route):
    good = json.dumps(route.good).encode()
    for raw in (good.replace(b'"', b'"\xff', 1), good[:-1] + b', "x": "\xc3\x28"}', b"\xef\xbb\xbf" + good[:5]):
        answer = send(server, route, credentials, path_values, data=raw,
                      headers={"Content-Type": "application/json"})
        assert_client_error(answer.status_code, answer.text, route.anthropic, raw[:30])


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
def test_unknown_content_types_are_refused(server, credentials, path_values, route):
    for content_type, raw in (("text/plain", b"make me a sandwich"), ("application/xml", b"<model>echo-1</model>"),
                              ("application/x-www-form-urlencoded", b"model=echo-1&input=hi"),
                              ("application/octet-stream", b"\x00\x01binary"), ("", b"model: echo-1")):
        answer = send(server, route, credentials, path_values, data=raw, headers={"Content-Type": content_type})
        assert_client_error(answer.status_code, answer.text, route.anthropic, content_type)
    multipart = send(server, route, credentials, path_values, files={"file": ("a.json", b"{}")},
                     data={"model": "echo-1"})
    assert_client_error(multipart.status_code, multipart.text, route.anthropic, "multipart")


# ---------------------------------------------------------------- the size limit
def too_big_body() -> bytes:
    return json.dumps({"model": "echo-1", "input": "y" * (10 * 1024 * 1024)}).encode()


@pytest.mark.parametrize("route", JSON_ROUTES, ids=ROUTE_IDS)
def test_a_10_mb_body_is_413_with_or_without_content_length(server, credentials, path_values, route):
    body = too_big_body()
    declared = send(server, route, credentials, path_values, data=body,
                    headers={"Content-Type": "application/json"})
    chunked = send(server, route, credentials, path_values, headers={"Content-Type": "application/json"},
                   data=iter(body[i:i + 65536] for i in range(0, len(body), 65536)))
    for answer in (declared, chunked):
        assert answer.status_code == 413, answer.text[:300]
        assert_client_error(answer.status_code, answer.text, route.anthropic)


def test_a_body_just_under_the_limit_is_read_with_or_without_content_length(server, credentials):
    body = json.dumps({"model": "echo-1", "input": "z" * (BODY_LIMIT - 1000)}).encode()
    headers = {**auth(credentials["key"]), "Content-Type": "application/json"}
    declared = requests.post(server.v1 + "/responses", data=body, headers=headers, timeout=60)
    chunked = requests.post(server.v1 + "/responses", headers=headers, timeout=60,
                            data=iter(body[i:i + 65536] for i in range(0, len(body), 65536)))
    for answer in (declared, chunked):
        assert answer.status_code == 200, answer.text[:300]


# ---------------------------------------------------------------- files, conversations and usage: their own junk
def test_files_upload_refuses_what_is_not_a_multipart_upload(server, credentials):
    url, headers = server.v1 + "/files", auth(credentials["key"])
    answers = [
        requests.post(url, json={"file": "x", "purpose": "user_data"}, headers=headers, timeout=10),
        requests.post(url, data=b"not a form", headers={**headers, "Content-Type": "text/plain"}, timeout=10),
        requests.post(url, data=b"--x\r\nbroken", timeout=10,
                      headers={**headers, "Content-Type": "multipart/form-data; boundary=x"}),
        requests.post(url, data=b"junk", headers={**headers, "Content-Type": "multipart/form-data"}, timeout=10),
        requests.post(url, files={"file": ("a.txt", b"x")}, headers=headers, timeout=10),
        requests.post(url, data={"purpose": "user_data"}, headers=headers, timeout=10),
        requests.post(url, files={"file": ("a.txt", b"x")}, data={"purpose": HUGE}, headers=headers, timeout=10),
        requests.post(url, files={"purpose": ("p.txt", b"user_data"), "file": ("a.txt", b"x")}, headers=headers,
                      timeout=10),
    ]
    for answer in answers:
        assert_client_error(answer.status_code, answer.text, False, repr(answer.request.body)[:60])


def test_files_upload_survives_odd_names_and_types(server, credentials):
    url, headers = server.v1 + "/files", auth(credentials["key"])
    for filename, content_type in ((HUGE[:5000], "text/plain"), ("\u00e9\u2603.txt", "x/\u00e9"),
                                   ("a\x00b.txt", "text/plain"), ("", "application/json"),
                                   ("../../etc/passwd", "text/plain"), ("a.txt", "not a type at all")):
        answer = requests.post(url, files={"file": (filename, b"data", content_type)}, data={"purpose": "user_data"},
                               headers=headers, timeout=10)
        assert_answered(answer, False, filename[:20])


def test_files_put_survives_junk_paths_and_content_types(server, credentials):
    headers = auth(credentials["key"])
    for path, content_type in (("a" * 5000, "text/plain"), ("%ff%fe", "text/plain"), ("dir/", "text/plain"),
                               ("%2e%2e/escape", "text/plain"), ("ok.txt", "\u00e9/\u00e9"),
                               ("ok.txt", "text/plain; charset=\u2603")):
        answer = requests.put(f"{server.v1}/files/{path}", data=b"data", timeout=10,
                              headers={**headers, "Content-Type": content_type.encode("utf-8")})
        assert_answered(answer, False, path[:20])


@pytest.mark.parametrize("path", ["/v1/usage/requests", "/v1/usage/summary", "/v1/files",
                                  "/v1/conversations/{conversation}/items",
                                  "/v1/responses/resp_missing/input_items"])
def test_junk_query_parameters_are_400_or_ignored(server, credentials, path_values, path):
    url, headers = server.url + path.format(**path_values), auth(credentials["key"])
    for query in ("limit=x", "limit=-1", "limit=99999999999999999999999", "limit=1e3", "limit=", "after=" + "a" * 4000,
                  "since=yesterday", "since=1e400", "until=-5", "since=2025-13-45", "group_by=week",
                  "model=" + "m" * 4000, "order=sideways", "limit=1&limit=2", "%ff%fe=%ff", "after=%ff",
                  "purpose[]=x", "a" * 2000):
        answer = requests.get(f"{url}?{query}", headers=headers, timeout=10)
        assert_answered(answer, False, query[:40])


@pytest.mark.parametrize("path", ["/v1/models/%ff%fe", "/v1/responses/%ff", "/v1/conversations/%c3%28",
                                  "/v1/files/%ff/content", "/v1/admin/keys/%ff", "/v1/admin/models/%00",
                                  "/v1/usage/requests?after=%00", "/v1/messages/%ff"])
def test_invalid_utf8_and_nul_in_the_url_are_4xx(server, credentials, path):
    parsed = urlparse(server.url)
    token = credentials["admin"] if "/admin/" in path else credentials["key"]
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    connection.request("GET", path, headers=auth(token))
    answer = connection.getresponse()
    text = answer.read().decode("utf-8", "replace")
    connection.close()
    assert_client_error(answer.status, text, path.startswith("/v1/messages"), path)


# ---------------------------------------------------------------- headers
def raw_request(server: Server, method: str, path: str, headers: list, body: bytes = b"{}") -> tuple[int, str]:
    """A request with headers exactly as given (bytes included), which `requests` would refuse or rewrite."""
    parsed = urlparse(server.url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers + [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]:
        connection.putheader(name, value)
    connection.endheaders(body)
    answer = connection.getresponse()
    text = answer.read().decode("utf-8", "replace")
    connection.close()
    return answer.status, text


BROKEN_AUTHORIZATION = [b"", b"Bearer", b"Bearer ", b"bearer", b"Basic dXNlcjpwYXNz", b"Bearer " + b"k" * 10240,
                        b"Bearer sk-lazytech-\xff\xfe\xc3", b"\xff\xfe", b"Bearer \x7f\x01", b"Bearer a b c",
                        b"Bearer sk-lazytech-" + b"\xe2\x98\x83" * 50]


@pytest.mark.parametrize("method, path, anthropic", KEYED_PROBES, ids=[f"{m} {p}" for m, p, _ in KEYED_PROBES])
def test_broken_authorization_headers_are_401(server, method, path, anthropic):
    for value in BROKEN_AUTHORIZATION:
        status, text = raw_request(server, method, path, [("Authorization", value)])
        assert status == 401, (value[:30], status, text[:300])
        assert_client_error(status, text, anthropic, value[:30])


@pytest.mark.parametrize("method, path, anthropic", FAMILY_PROBES, ids=[f"{m} {p}" for m, p, _ in FAMILY_PROBES])
def test_odd_headers_beside_a_valid_key_never_break_a_route(server, credentials, method, path, anthropic):
    token = (credentials["admin"] if "/admin/" in path else credentials["jwt"] if path in ("/v1/auth/verify",
                                                                                          "/v1/keys")
             else credentials["key"])
    valid = ("Authorization", f"Bearer {token}")
    for extra in ([("X-Big", "v" * 10240)], [("anthropic-version", b"\xff\xfe")], [("anthropic-beta", "")],
                  [("x-api-key", b"\xc3\x28")], [("Accept", "")], [("Accept-Encoding", "\u00e9".encode())],
                  [("Origin", "null")], [("X-Forwarded-For", "not an address")],
                  [("User-Agent", b"\x00\x01\x02")], [("anthropic-version", "9" * 10240)]):
        status, text = raw_request(server, method, path, [valid] + extra, body=b"{}")
        assert status < 500, (extra, status, text[:300])
        assert_no_internals(text, extra)
        if status >= 400:
            assert_client_error(status, text, anthropic, extra)


def test_x_api_key_edge_cases_on_the_messages_routes(server):
    for value in (b"", b" ", b"sk-lazytech-", b"k" * 10240, b"\xff\xfe", b"sk-lazytech-\xe2\x98\x83"):
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            status, text = raw_request(server, "POST", path, [("x-api-key", value)])
            assert status == 401, (value[:20], status, text[:300])
            assert_client_error(status, text, True, value[:20])


def test_nothing_above_was_an_unhandled_error(server):
    log = server.log_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
