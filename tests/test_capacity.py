"""Account capacity: rolling-window limits steer routing, refresh probes health, credentials stay hidden."""
from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
import requests
from conftest import free_port, start_server

from service.gateway.capacity import parse_rate_limits

SECRET = "sk-upstream-capacity-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    gateway = start_server(tmp_path_factory.mktemp("capacity"), name="capacity")
    yield gateway
    gateway.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def chat(server, key: str, model: str) -> requests.Response:
    return requests.post(server.v1 + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "how much is left"}],
                               "max_tokens": 20}, timeout=30)


def capacity(server, key: str, refresh: bool = False) -> requests.Response:
    path = "/usage/account_capacity" + ("/refresh" if refresh else "")
    return requests.request("POST" if refresh else "GET", server.v1 + path,
                            headers={"Authorization": f"Bearer {key}"}, timeout=60)


def log_accounts(server, key: str) -> list:
    rows = requests.get(server.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key}"},
                        params={"limit": 1000}, timeout=30).json()["data"]
    return [row["account"] for row in reversed(rows)]


# ---------------------------------------------------------------- routing by remaining capacity
def test_a_spent_account_stops_being_chosen_and_the_other_takes_the_traffic(server, upstream):
    model = unique("cap-model")
    server.create_model(model, input_usd_per_mtok="1000", output_usd_per_mtok="1000")
    tiny, roomy = unique("cap-tiny"), unique("cap-roomy")
    server.create_account(name=tiny, provider="openai", base_url=upstream.base_url("openai", tiny), api_key=SECRET,
                          models=[model], weight=1000, limits={"five_hour_requests": 1})
    key = server.create_key(budget="50", models=[model])["key"]
    assert chat(server, key, model).status_code == 200  # the tiny account alone: its one request of the window

    server.create_account(name=roomy, provider="openai", base_url=upstream.base_url("openai", roomy),
                          api_key=SECRET, models=[model], weight=1)
    for _ in range(5):
        assert chat(server, key, model).status_code == 200
    assert upstream.count(tiny) == 1 and upstream.count(roomy) == 5
    assert log_accounts(server, key) == [tiny] + [roomy] * 5

    body = capacity(server, key).json()
    views = {view["name"]: view for view in body["data"]}
    assert body["object"] == "list" and set(views) == {tiny, roomy}
    five_hour, weekly = views[tiny]["windows"]
    assert five_hour["window"] == "five_hour" and weekly["window"] == "weekly"
    spent = sum(Decimal(row["cost_usd"]) for row in requests.get(
        server.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["data"]
        if row["account"] == tiny)
    assert Decimal(five_hour["used_usd"]) == spent > 0 and five_hour["limit_usd"] is None
    assert five_hour["limit_requests"] == 1 and five_hour["remaining_requests"] == 0
    assert five_hour["exhausted"] is True and five_hour["used_requests"] == 1
    assert 0 < five_hour["resets_at"] - time.time() <= 5 * 3600 + 1
    assert weekly["limit_requests"] is None and weekly["remaining_requests"] is None and weekly["exhausted"] is False
    roomy_window = views[roomy]["windows"][0]
    assert roomy_window["used_requests"] == 5 and roomy_window["limit_usd"] is None
    assert roomy_window["exhausted"] is False


# each limit fits one request's worst case (60 tokens: the input's bound of 40 and 20 output, $0.00006), not a
# second one beside the first's usage (about 15 tokens)
@pytest.mark.parametrize("limits", [{"five_hour_usd": "0.00007"}, {"weekly_requests": 1},
                                    {"five_hour_tokens": 70}], ids=["usd", "requests", "tokens"])
def test_when_every_account_is_exhausted_the_answer_is_503(server, upstream, limits):
    model = unique("cap-lonely")
    server.create_model(model, input_usd_per_mtok="1", output_usd_per_mtok="1")
    name = unique("cap-only")
    server.create_account(name=name, provider="openai", base_url=upstream.base_url("openai", name), api_key=SECRET,
                          models=[model], limits=limits)
    key = server.create_key(budget="10")
    assert chat(server, key["key"], model).status_code == 200
    answer = chat(server, key["key"], model)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "no_capacity" and model in answer.json()["error"]["message"]
    assert upstream.count(name) == 1
    # the refused request held nothing back: the key spent exactly what its one request cost
    used = server.admin("GET", f"/keys/{key['id']}").json()["used_usd"]
    assert requests.get(server.v1 + "/usage", headers={"Authorization": f"Bearer {key['key']}"},
                        timeout=10).json()["budget"]["used_usd"] == used
    account = server.admin("GET", f"/accounts/{name}").json()
    assert account["limits"] == {name_: (value if not name_.endswith("_usd") else f"{Decimal(value):.9f}")
                                 for name_, value in limits.items()}


def test_limits_are_validated(server):
    for limits in ({"five_hour_usd": "-1"}, {"weekly_requests": -1}, {"five_hour_tokens": "lots"}):
        answer = server.admin("POST", "/accounts", json={"name": unique("cap-bad"), "provider": "echo",
                                                          "models": ["echo-1"], "limits": limits})
        assert answer.status_code == 400, answer.text


# ---------------------------------------------------------------- health probes
def test_refresh_marks_a_dead_account_unhealthy_and_a_live_one_healthy_with_its_rate_limits(server, upstream):
    model = unique("cap-probe")
    dead, live_openai, live_anthropic = unique("cap-dead"), unique("cap-live-oa"), unique("cap-live-an")
    closed_port = free_port()
    server.create_account(name=dead, provider="openai", base_url=f"http://127.0.0.1:{closed_port}/v1",
                          api_key=SECRET, models=[model])
    server.create_account(name=live_openai, provider="openai", base_url=upstream.base_url("openai", live_openai),
                          api_key=SECRET, models=[model])
    server.create_account(name=live_anthropic, provider="anthropic",
                          base_url=upstream.base_url("anthropic", live_anthropic), api_key=SECRET, models=[model])
    key = server.create_key(budget="1", models=[model])["key"]

    before = {view["name"]: view for view in capacity(server, key).json()["data"]}
    assert set(before) == {dead, live_openai, live_anthropic}
    assert all(view["healthy"] and view["last_checked_at"] is None for view in before.values())

    refreshed = capacity(server, key, refresh=True)
    assert refreshed.status_code == 200
    views = {view["name"]: view for view in refreshed.json()["data"]}
    assert views[dead]["healthy"] is False and views[dead]["last_error"]
    # recorded, not acted on: a probe any key can ask for cools nobody down (issue 12)
    assert views[dead]["cooldown_until"] is None and views[dead]["last_checked_at"] >= int(time.time()) - 60
    assert server.admin("GET", f"/accounts/{dead}").json()["healthy"] is False

    for name, provider in ((live_openai, "openai"), (live_anthropic, "anthropic")):
        view = views[name]
        assert view["provider"] == provider and view["models"] == [model]
        assert view["healthy"] is True and view["last_error"] is None and view["cooldown_until"] is None
        limits = view["rate_limits"]
        assert limits["requests"]["limit"] == 1000 and limits["requests"]["remaining"] == 999
        assert limits["tokens"]["limit"] == 100000 and limits["tokens"]["remaining"] == 99000
        assert limits["tokens"]["resets_at"] > limits["requests"]["resets_at"] >= limits["observed_at"] - 1
        assert any(name_.startswith(("x-ratelimit-", "anthropic-ratelimit-")) for name_ in limits["headers"])
    assert upstream.last("/v1/models", scenario=live_anthropic).headers["x-api-key"] == SECRET

    # what refresh recorded stays on the account rows
    again = {view["name"]: view for view in capacity(server, key).json()["data"]}
    assert again[dead]["healthy"] is False and again[live_openai]["rate_limits"]["requests"]["limit"] == 1000

    # a dead account that comes back is healthy again after the next refresh
    assert server.admin("PATCH", f"/accounts/{dead}",
                        json={"base_url": upstream.base_url("openai", dead)}).status_code == 200
    views = {view["name"]: view for view in capacity(server, key, refresh=True).json()["data"]}
    assert views[dead]["healthy"] is True and views[dead]["last_error"] is None


def test_the_capacity_body_never_shows_a_credential_or_base_url(server, upstream):
    model = unique("cap-secret")
    name = unique("cap-secret-acct")
    base_url = upstream.base_url("openai", name)
    server.create_account(name=name, provider="openai", base_url=base_url, api_key=SECRET, models=[model])
    server.create_account(name=unique("cap-secret-bad"), provider="openai",
                          base_url=upstream.base_url("openai", "http401"), api_key=SECRET, models=[model])
    key = server.create_key(budget="1", models=[model])["key"]
    assert chat(server, key, model).status_code in (200, 502)
    for answer in (capacity(server, key), capacity(server, key, refresh=True), capacity(server, key)):
        assert answer.status_code == 200
        assert SECRET not in answer.text and SECRET[-8:] not in answer.text
        assert upstream.url not in answer.text and "base_url" not in answer.text and "api_key" not in answer.text
    views = {view["name"]: view for view in capacity(server, key).json()["data"]}
    bad = next(view for view in views.values() if view["name"] != name)
    assert bad["healthy"] is False and bad["last_error"] == "invalid api key"


def test_capacity_lists_the_accounts_serving_the_keys_models(server, upstream):
    wanted, other = unique("cap-wanted"), unique("cap-other")
    serving = unique("cap-serving")
    server.create_account(name=serving, provider="openai", base_url=upstream.base_url("openai"), api_key=SECRET,
                          models=[wanted])
    elsewhere = unique("cap-elsewhere")
    server.create_account(name=elsewhere, provider="openai", base_url=upstream.base_url("openai"), api_key=SECRET,
                          models=[other])
    disabled = unique("cap-disabled")
    server.create_account(name=disabled, provider="openai", base_url=upstream.base_url("openai"), api_key=SECRET,
                          models=[wanted], enabled=False)
    restricted = server.create_key(budget="1", models=[wanted])["key"]
    names = [view["name"] for view in capacity(server, restricted).json()["data"]]
    assert names == [serving]
    everyone = {view["name"] for view in capacity(server, server.create_key(budget="1")["key"]).json()["data"]}
    assert {serving, elsewhere, "local"} <= everyone and disabled not in everyone
    assert requests.get(server.v1 + "/usage/account_capacity", timeout=10).status_code == 401


# ---------------------------------------------------------------- reading upstream rate-limit headers
def test_openai_rate_limit_headers_are_read_with_their_durations():
    parsed = parse_rate_limits({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
                                "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
                                "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1h2m3.5s",
                                "retry-after": "7"}, observed_at=1000.0)
    assert parsed == {"requests": {"limit": 500, "remaining": 499, "resets_at": 1000.12},
                      "tokens": {"limit": 30000, "remaining": 0, "resets_at": 1000 + 3723.5}}


def test_anthropic_rate_limit_headers_are_read_with_their_timestamps():
    parsed = parse_rate_limits({"anthropic-ratelimit-input-tokens-limit": "40000",
                                "anthropic-ratelimit-input-tokens-remaining": "39000",
                                "anthropic-ratelimit-input-tokens-reset": "2024-03-26T12:00:00Z",
                                "anthropic-ratelimit-requests-remaining": "not a number"}, observed_at=0.0)
    assert parsed == {"input_tokens": {"limit": 40000, "remaining": 39000, "resets_at": 1711454400.0}}
