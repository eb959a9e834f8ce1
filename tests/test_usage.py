"""Usage analytics as an analyst meets them: budget, request log, summaries, admin export, user JWTs."""
from __future__ import annotations

import csv
import io
import re
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from decimal import ROUND_CEILING, Decimal

import jwt
import openai
import pytest
import requests
from conftest import start_server

JWT_SECRET = "usage-tests-" + uuid.uuid4().hex
MONEY = re.compile(r"^\d+\.\d{9}$")
ROW_KEYS = {"id", "created_at", "endpoint", "model", "account", "stream", "status_code", "input_tokens",
            "output_tokens", "cached_tokens", "cache_write_tokens", "cost_usd", "overage_usd", "latency_ms", "response_id",
            "request_id"}
INPUT_PRICE, OUTPUT_PRICE = Decimal("0.123456789"), Decimal("2.5")  # USD per million tokens


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    gateway = start_server(tmp_path_factory.mktemp("usage"), name="usage",
                           extra_env={"ONEKEYLLM_JWT_SECRET": JWT_SECRET})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def models(server, upstream):
    """Two priced models served by one fake-upstream account."""
    names = ("usage-alpha", "usage-beta")
    for name in names:
        server.create_model(name, input_usd_per_mtok=str(INPUT_PRICE), output_usd_per_mtok=str(OUTPUT_PRICE))
    server.create_account(name="usage-upstream", provider="openai", base_url=upstream.base_url("openai", "usage"),
                          api_key="sk-upstream-usage", models=list(names))
    return names


def get(server, path: str, token: str, **params) -> requests.Response:
    return requests.get(server.v1 + path, headers={"Authorization": f"Bearer {token}"}, params=params, timeout=30)


def chat(server, key: str, model: str, text: str) -> dict:
    answer = requests.post(server.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 50},
                           timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def cost(tokens: int, usd_per_mtok: Decimal) -> Decimal:
    """What the price list says `tokens` cost, rounded up to the nano-dollar."""
    return (Decimal(tokens) * usd_per_mtok / 1_000_000).quantize(Decimal("1e-9"), rounding=ROUND_CEILING)


def all_rows(server, token: str, **params) -> list:
    rows, after = [], None
    while True:
        page = get(server, "/usage/requests", token, limit=1000, **({"after": after} if after else {}), **params)
        assert page.status_code == 200, page.text
        body = page.json()
        rows += body["data"]
        if not body["has_more"]:
            return rows
        after = body["last_id"]


def mint_jwt(email: str, secret: str = JWT_SECRET, lifetime: int = 600) -> str:
    now = int(time.time())
    claims = {"sub": email, "email": email, "iat": now, "exp": now + lifetime, "iss": "onekeyllm"}
    return jwt.encode(claims, secret, algorithm="HS256")


def seed_rows(server, key_id: str, rows: list) -> None:
    """Request-log rows at chosen times, written straight to the server's database."""
    from service.storage import rollups
    from service.storage.db import make_database

    db = make_database(server.database_url)
    db.connect()
    try:
        columns = ("id", "key_id", "created_at", "endpoint", "model", "account", "stream", "status_code",
                   "input_tokens", "output_tokens", "cached_tokens", "cost_nano", "latency_ms")
        sql = (f'INSERT INTO request_log ({", ".join(columns)}) '
               f'VALUES ({", ".join([db.param] * len(columns))})')
        with db.atomic():
            for at, model, cost_nano, *status in rows:  # a row's status code is 200 unless given
                db.execute_sql(sql, ("req_seed" + uuid.uuid4().hex, key_id, at, "/v1/chat/completions", model,
                                     "seeded", False, status[0] if status else 200, 10, 5, 0, cost_nano, 7))
        rollups.reset(db)  # rows of past days written behind the gateway's back, as an import would
    finally:
        db.close()


def utc(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- the budget and the log agree
def test_usage_equals_the_request_log_and_tokens_times_model_prices(server, models):
    key = server.create_key(budget="5", name="analyst")
    client = openai.OpenAI(base_url=server.v1, api_key=key["key"], max_retries=0)
    texts = ["one", "two words", "and now three words", "a somewhat longer question about the weather"]
    expected = Decimal(0)
    for text in texts:
        completion = client.chat.completions.create(model=models[0], messages=[{"role": "user", "content": text}],
                                                    max_tokens=50)
        # the fake upstream counts words: the prompt plus 3, and one token per word of its greeting
        assert completion.usage.prompt_tokens == len(text.split()) + 3
        assert completion.usage.completion_tokens == len(completion.choices[0].message.content.split())
        expected += cost(completion.usage.prompt_tokens, INPUT_PRICE)
        expected += cost(completion.usage.completion_tokens, OUTPUT_PRICE)

    usage = get(server, "/usage", key["key"]).json()
    assert usage["object"] == "api_key.usage" and usage["id"] == key["id"] and usage["name"] == "analyst"
    assert usage["redacted_value"] == key["redacted_value"] and usage["expires_at"] is None
    assert isinstance(usage["created_at"], int) and usage["last_used_at"] >= usage["created_at"]
    budget = usage["budget"]
    assert all(MONEY.match(budget[name]) for name in ("limit_usd", "used_usd", "remaining_usd"))
    assert Decimal(budget["used_usd"]) == expected > 0
    assert Decimal(budget["limit_usd"]) == Decimal("5")
    assert Decimal(budget["remaining_usd"]) == Decimal("5") - expected

    rows = all_rows(server, key["key"])
    assert len(rows) == len(texts) and all(set(row) == ROW_KEYS for row in rows)
    assert sum(Decimal(row["cost_usd"]) for row in rows) == expected
    for row in rows:
        assert MONEY.match(row["cost_usd"]) and isinstance(row["created_at"], int)
        assert Decimal(row["cost_usd"]) == cost(row["input_tokens"], INPUT_PRICE) + cost(row["output_tokens"],
                                                                                          OUTPUT_PRICE)
        assert row["account"] == "usage-upstream" and row["status_code"] == 200 and row["model"] == models[0]
        assert row["endpoint"] == "/v1/chat/completions" and row["stream"] is False
    assert server.admin("GET", f"/keys/{key['id']}").json()["used_usd"] == budget["used_usd"]


def test_a_key_without_a_limit_has_no_limit_and_no_remaining(server, models):
    key = server.create_key(budget=None, name="unlimited")
    chat(server, key["key"], models[0], "hello")
    budget = get(server, "/usage", key["key"]).json()["budget"]
    assert budget["limit_usd"] is None and budget["remaining_usd"] is None
    assert Decimal(budget["used_usd"]) > 0


def test_usage_needs_a_valid_key(server):
    assert get(server, "/usage", "sk-lazytech-nope").status_code == 401
    answer = requests.get(server.v1 + "/usage/requests", params={"limit": "many"}, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"


# ---------------------------------------------------------------- the request log
@pytest.fixture(scope="module")
def traffic(server, models):
    """A key with seven requests: five on alpha, two on beta, in a known order."""
    key = server.create_key(budget="5", name="traffic")
    sent = []
    for i in range(7):
        model = models[1] if i in (2, 5) else models[0]
        sent.append((chat(server, key["key"], model, f"request number {i}")["id"], model))
    return key, sent


def test_requests_are_newest_first_and_pages_follow_the_cursor(server, traffic):
    key, sent = traffic
    everything = get(server, "/usage/requests", key["key"], limit=1000).json()
    assert everything["object"] == "list" and everything["has_more"] is False
    assert [row["response_id"] for row in everything["data"]] == [rid for rid, _ in reversed(sent)]
    assert everything["first_id"] == everything["data"][0]["id"]
    assert everything["last_id"] == everything["data"][-1]["id"]

    pages, after = [], None
    while True:
        page = get(server, "/usage/requests", key["key"], limit=3, **({"after": after} if after else {})).json()
        pages.append(page)
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert [len(page["data"]) for page in pages] == [3, 3, 1]
    assert [row["id"] for page in pages for row in page["data"]] == [row["id"] for row in everything["data"]]
    assert len(get(server, "/usage/requests", key["key"]).json()["data"]) == 7  # default limit 20


def test_requests_filter_by_model_and_time(server, traffic, models):
    key, sent = traffic
    beta = get(server, "/usage/requests", key["key"], model=models[1]).json()["data"]
    assert [row["response_id"] for row in beta] == [rid for rid, model in reversed(sent) if model == models[1]]
    first = min(row["created_at"] for row in beta)
    assert len(get(server, "/usage/requests", key["key"], since=time.time() + 3600).json()["data"]) == 0
    assert len(get(server, "/usage/requests", key["key"], until="2000-01-01").json()["data"]) == 0
    iso_since = datetime.fromtimestamp(first - 60, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    assert len(get(server, "/usage/requests", key["key"], since=iso_since).json()["data"]) == 7
    assert len(get(server, "/usage/requests", key["key"], since=first - 60, until=time.time() + 60,
                   model=models[0]).json()["data"]) == 5


def test_bad_log_queries_are_clear_400s(server, traffic):
    key, _ = traffic
    other = server.create_key(budget="1", name="other")
    for params in ({"limit": 0}, {"limit": 1001}, {"since": "yesterday"}, {"after": "req_nope"},
                   {"since": 2000, "until": 1000}):
        answer = get(server, "/usage/requests", key["key"], **params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["error"]["type"] == "invalid_request_error"
    # another key's row is not a cursor this key can use
    row_id = get(server, "/usage/requests", key["key"], limit=1).json()["data"][0]["id"]
    assert get(server, "/usage/requests", other["key"], after=row_id).status_code == 400
    assert get(server, "/usage/requests", other["key"]).json()["data"] == []
    assert get(server, "/usage/summary", key["key"], group_by="week").status_code == 400


# ---------------------------------------------------------------- summaries
def test_summary_by_model_adds_up_the_log(server, traffic, models):
    key, _ = traffic
    rows = all_rows(server, key["key"])
    summary = get(server, "/usage/summary", key["key"], group_by="model").json()
    assert summary["object"] == "list" and summary["group_by"] == "model"
    by_model = {row["model"]: row for row in summary["data"]}
    assert set(by_model) == set(models)
    for model in models:
        mine = [row for row in rows if row["model"] == model]
        got = by_model[model]
        assert got["requests"] == len(mine)
        for name in ("input_tokens", "output_tokens", "cached_tokens"):
            assert got[name] == sum(row[name] for row in mine)
        assert MONEY.match(got["cost_usd"])
        assert Decimal(got["cost_usd"]) == sum(Decimal(row["cost_usd"]) for row in mine)
    assert [row["model"] for row in summary["data"]] == [models[0], models[1]]  # costliest first


def test_summary_by_day_cuts_at_utc_midnight(server):
    key = server.create_key(budget="1", name="seeded")
    seed_rows(server, key["id"], [
        (utc("2024-03-26T12:00:00Z"), "m1", 1_000_000_001),
        (utc("2024-03-26T23:59:59.5Z"), "m1", 2),
        (utc("2024-03-27T00:00:00Z"), "m2", 3),
        (utc("2024-03-27T00:00:00.5Z"), "m1", 4),
        (utc("2024-03-29T08:00:00Z"), "m2", 5),
    ])
    days = get(server, "/usage/summary", key["key"], group_by="day").json()["data"]
    assert [(d["day"], d["requests"], d["cost_usd"]) for d in days] == [
        ("2024-03-26", 2, "1.000000003"), ("2024-03-27", 2, "0.000000007"), ("2024-03-29", 1, "0.000000005")]
    assert days[0]["input_tokens"] == 20 and days[0]["output_tokens"] == 10 and days[0]["cached_tokens"] == 0
    assert set(days[0]) == {"day", "requests", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"}

    window = get(server, "/usage/summary", key["key"], group_by="day", since="2024-03-27",
                 until="2024-03-27T00:00:00.5Z", model="m2").json()["data"]
    assert [(d["day"], d["requests"]) for d in window] == [("2024-03-27", 1)]
    assert len(get(server, "/usage/requests", key["key"], since="2024-03-27T00:00:00Z",
                   until="2024-03-28").json()["data"]) == 2
    assert get(server, "/usage/summary", key["key"]).json()["group_by"] == "day"


def test_summary_by_day_of_live_traffic_matches_the_rows(server, traffic):
    key, _ = traffic
    rows = all_rows(server, key["key"])
    expected = Counter(datetime.fromtimestamp(row["created_at"], tz=timezone.utc).date().isoformat() for row in rows)
    days = get(server, "/usage/summary", key["key"], group_by="day").json()["data"]
    assert {d["day"]: d["requests"] for d in days} == dict(expected)
    assert sum(Decimal(d["cost_usd"]) for d in days) == sum(Decimal(row["cost_usd"]) for row in rows)


# ---------------------------------------------------------------- the admin's view of every key
def test_admin_usage_covers_every_key_as_json_and_csv(server, traffic, models):
    key, sent = traffic
    other = server.create_key(budget="1", name="=HYPERLINK(1)")
    chat(server, other["key"], models[1], "from the other key")

    everyone = server.admin("GET", "/usage", params={"limit": 1000}).json()
    assert {key["id"], other["id"]} <= {row["key_id"] for row in everyone["data"]}
    assert all(set(row) == ROW_KEYS | {"key_id", "key_name"} for row in everyone["data"])

    mine = server.admin("GET", "/usage", params={"key_id": key["id"], "limit": 1000}).json()["data"]
    assert [row["response_id"] for row in mine] == [rid for rid, _ in reversed(sent)]
    assert {row["key_name"] for row in mine} == {"traffic"}
    assert mine == [{"key_id": key["id"], "key_name": "traffic", **row} for row in all_rows(server, key["key"])]
    beta = server.admin("GET", "/usage", params={"model": models[1], "limit": 1000}).json()["data"]
    assert {row["key_id"] for row in beta} >= {key["id"], other["id"]} and {row["model"] for row in beta} == {models[1]}

    exported = server.admin("GET", "/usage", params={"format": "csv", "key_id": key["id"]})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0][:2] == ["key_id", "key_name"] and set(table[0]) == ROW_KEYS | {"key_id", "key_name"}
    records = [dict(zip(table[0], line, strict=True)) for line in table[1:]]
    assert [r["id"] for r in records] == [row["id"] for row in mine]
    assert [r["cost_usd"] for r in records] == [row["cost_usd"] for row in mine]
    assert [int(r["input_tokens"]) for r in records] == [row["input_tokens"] for row in mine]

    other_csv = server.admin("GET", "/usage", params={"format": "csv", "key_id": other["id"]}).text
    assert "'=HYPERLINK(1)" in other_csv  # a spreadsheet shows it, never runs it
    header_only = server.admin("GET", "/usage", params={"format": "csv", "since": time.time() + 3600}).text
    assert header_only.strip().splitlines() == [",".join(table[0])]


def test_a_user_key_cannot_read_admin_usage(server, traffic):
    key, _ = traffic
    assert requests.get(server.v1 + "/admin/usage", timeout=10).status_code == 401
    answer = get(server, "/admin/usage", key["key"], format="csv")
    assert answer.status_code == 403 and answer.json()["error"]["type"] == "permission_error"
    assert get(server, "/admin/usage", mint_jwt("someone@example.com")).status_code == 401
    assert server.admin("GET", "/usage", params={"format": "xml"}).status_code == 400


# ---------------------------------------------------------------- a user's JWT
def test_a_user_jwt_sees_the_usage_of_every_key_of_its_email(server, models):
    email = f"ana-{uuid.uuid4().hex[:6]}@example.com"
    first = server.create_key(budget="2", name="ana-laptop", email=email)
    second = server.create_key(budget="3", name="ana-ci", email=email)
    stranger = server.create_key(budget="3", name="bob", email="bob-" + email)
    for key, text in ((first, "from the laptop"), (second, "from ci"), (second, "again from ci"),
                      (stranger, "not ana")):
        chat(server, key["key"], models[0], text)
    token = mint_jwt(email)

    usage = get(server, "/usage", token).json()
    assert usage["object"] == "list"
    by_id = {item["id"]: item for item in usage["data"]}
    assert set(by_id) == {first["id"], second["id"]}
    for key in (first, second):
        own = get(server, "/usage", key["key"]).json()
        assert by_id[key["id"]] == own and own["object"] == "api_key.usage"

    rows = all_rows(server, token)
    assert Counter(row["key_id"] for row in rows) == {first["id"]: 1, second["id"]: 2}
    assert all(set(row) == ROW_KEYS | {"key_id"} for row in rows)
    total = sum(Decimal(by_id[k]["budget"]["used_usd"]) for k in by_id)
    assert sum(Decimal(row["cost_usd"]) for row in rows) == total
    summary = get(server, "/usage/summary", token, group_by="model").json()["data"]
    assert [(s["model"], s["requests"]) for s in summary] == [(models[0], 3)]
    assert Decimal(summary[0]["cost_usd"]) == total

    # a revoked key's budget is gone, its spend stays in the history
    assert server.admin("DELETE", f"/keys/{first['id']}").status_code == 200
    assert [item["id"] for item in get(server, "/usage", token).json()["data"]] == [second["id"]]
    assert len(all_rows(server, token)) == 3
    assert get(server, "/usage", mint_jwt("nobody@example.com")).json() == {"object": "list", "data": []}
    assert all_rows(server, mint_jwt("nobody@example.com")) == []


def test_forged_or_expired_jwts_are_refused(server):
    email = "mallory@example.com"
    for token in (mint_jwt(email, secret="not-the-server-secret-" + "x" * 32), mint_jwt(email, lifetime=-60),
                  jwt.encode({"sub": email, "email": email, "iss": "onekeyllm", "iat": int(time.time()),
                              "exp": int(time.time()) + 60}, key=None, algorithm="none")):
        answer = get(server, "/usage/requests", token)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["type"] == "authentication_error"
