"""Users' allowances (SPEC §4 users): an email creates keys of its own only within the allowance the admin set or
the self-service one its domain gets at first login; a lifetime total, revoked keys included, checked atomically."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from conftest import ROOT, drop_database, start_server
from test_concurrency_pg import start_gunicorn, stop_gunicorn
from test_login import log_in, mailbox, smtp_url, user_call  # noqa: F401  (mailbox: the SMTP server fixture)

SELF_SERVICE_DOMAIN = "corp.example.com"


@pytest.fixture(scope="module")
def server(mailbox, tmp_path_factory):  # noqa: F811
    _, port = mailbox
    gateway = start_server(tmp_path_factory.mktemp("allowances"), name="allowances", extra_env={
        "ONEKEYLLM_SMTP_URL": smtp_url(port), "ONEKEYLLM_LOGIN_SENDS_PER_IP": "1000",
        "ONEKEYLLM_LOGIN_GUESSES_PER_IP": "1000",
        "ONEKEYLLM_LOGIN_DOMAINS": f"{SELF_SERVICE_DOMAIN.upper()}, other.example.org",
        "ONEKEYLLM_SELF_SERVICE_BUDGET_USD": "5", "ONEKEYLLM_USER_MAX_KEYS": "3"})
    yield gateway
    gateway.stop()


def address(domain: str = "example.net") -> str:
    return f"user-{uuid.uuid4().hex[:10]}@{domain}"


def grant(server, email: str, **fields) -> requests.Response:
    return server.admin("POST", "/users", json={"email": email, **fields})


def new_key(server, token: str, budget=None, name: str = "k") -> requests.Response:
    body = {"name": name, **({"budget_usd": budget} if budget is not None else {})}
    return user_call(server, token, "POST", "/keys", json=body)


def error_code(answer: requests.Response) -> str:
    return answer.json()["error"]["code"]


# ---------------------------------------------------------------- no allowance, no key
def test_an_address_without_an_allowance_logs_in_but_creates_no_key(server, mailbox):  # noqa: F811
    token = log_in(server, mailbox, address())
    refused = new_key(server, token, "1")
    assert refused.status_code == 403, refused.text
    assert error_code(refused) == "no_allowance"
    assert user_call(server, token, "GET", "/keys").json()["data"] == []


def test_the_self_service_domain_gets_its_allowance_at_first_login(server, mailbox):  # noqa: F811
    email = address(SELF_SERVICE_DOMAIN)
    assert server.admin("GET", f"/users/{email}").status_code == 404
    token = log_in(server, mailbox, email)
    shown = server.admin("GET", f"/users/{email}")
    assert shown.status_code == 200, shown.text
    assert {k: shown.json()[k] for k in ("email", "budget_usd", "max_keys", "used_usd", "source")} == {
        "email": email, "budget_usd": "5.000000000", "max_keys": 3, "used_usd": "0.000000000",
        "source": "self_service"}

    made = new_key(server, token)  # no budget asked: what the allowance has left
    assert made.status_code == 201, made.text
    assert made.json()["budget_usd"] == "5.000000000"
    assert error_code(new_key(server, token, "0.01")) == "allowance_exceeded"
    # a key made within the allowance is an ordinary key
    client = openai.OpenAI(base_url=server.v1, api_key=made.json()["key"])
    assert client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}]).choices


def test_a_lookalike_domain_gets_nothing(server, mailbox):  # noqa: F811
    email = address("not" + SELF_SERVICE_DOMAIN)
    token = log_in(server, mailbox, email)
    assert server.admin("GET", f"/users/{email}").status_code == 404
    assert error_code(new_key(server, token, "1")) == "no_allowance"


# ---------------------------------------------------------------- a lifetime total
def test_revoking_a_key_never_gives_its_budget_back(server, mailbox):  # noqa: F811
    email = address()
    assert grant(server, email, budget_usd="3", max_keys=5).status_code == 201
    token = log_in(server, mailbox, email)
    first = new_key(server, token, "2")
    assert first.status_code == 201, first.text
    assert new_key(server, token, "1.5").status_code == 403
    # the cycle that minted $200 before: revoke, create again
    assert user_call(server, token, "DELETE", f"/keys/{first.json()['id']}").status_code == 200
    again = new_key(server, token, "1.5")
    assert again.status_code == 403, again.text
    assert error_code(again) == "allowance_exceeded"
    last = new_key(server, token, "1")
    assert last.status_code == 201, last.text
    assert error_code(new_key(server, token)) == "allowance_exceeded"
    shown = server.admin("GET", f"/users/{email}").json()
    assert (shown["used_usd"], shown["remaining_usd"], shown["live_keys"]) == ("3.000000000", "0.000000000", 1)


def test_at_most_max_keys_live_keys(server, mailbox):  # noqa: F811
    email = address()
    assert grant(server, email, budget_usd="100", max_keys=2).status_code == 201
    token = log_in(server, mailbox, email)
    made = [new_key(server, token, "1") for _ in range(2)]
    assert [m.status_code for m in made] == [201, 201]
    third = new_key(server, token, "1")
    assert third.status_code == 403 and error_code(third) == "too_many_keys"
    assert "revoke" in third.json()["error"]["message"]
    assert user_call(server, token, "DELETE", f"/keys/{made[0].json()['id']}").status_code == 200
    assert new_key(server, token, "1").status_code == 201


def test_removing_and_granting_again_keeps_the_spend(server, mailbox):  # noqa: F811
    email = address()
    assert grant(server, email, budget_usd="2").status_code == 201
    token = log_in(server, mailbox, email)
    key = new_key(server, token, "2").json()
    assert server.admin("DELETE", f"/users/{email}").json() == {"id": email, "object": "user", "deleted": True}
    assert error_code(new_key(server, token, "1")) == "no_allowance"
    # the removed allowance's live key keeps working
    client = openai.OpenAI(base_url=server.v1, api_key=key["key"])
    assert client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}]).choices
    again = grant(server, email, budget_usd="3").json()
    assert again["used_usd"] == "2.000000000"  # what the user's own keys were given, still counted
    assert error_code(new_key(server, token, "1.5")) == "allowance_exceeded"
    # the admin may give spend back explicitly
    patched = server.admin("PATCH", f"/users/{email}", json={"used_usd": 0})
    assert patched.status_code == 200 and patched.json()["remaining_usd"] == "3.000000000"
    assert new_key(server, token, "1.5").status_code == 201


def test_keys_the_admin_creates_keep_working_and_are_not_charged(server, mailbox):  # noqa: F811
    email = address()
    given = server.create_key(budget="50", name="from the admin", email=email)
    token = log_in(server, mailbox, email)
    assert [k["id"] for k in user_call(server, token, "GET", "/keys").json()["data"]] == [given["id"]]
    assert grant(server, email, budget_usd="10", max_keys=2).json()["used_usd"] == "0.000000000"
    assert new_key(server, token, "1").status_code == 201
    assert error_code(new_key(server, token, "1")) == "too_many_keys"  # the admin's key is one of the user's
    client = openai.OpenAI(base_url=server.v1, api_key=given["key"])
    assert client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}]).choices


# ---------------------------------------------------------------- the admin routes
def test_the_admin_routes_check_what_they_are_given(server):
    email = address()
    assert grant(server, email, budget_usd="1").status_code == 201
    assert grant(server, email, budget_usd="1").status_code == 409
    for body, param in (({"budget_usd": "1"}, "email"), ({"email": address()}, "budget_usd"),
                        ({"email": "x@localhost", "budget_usd": "1"}, "email"),
                        ({"email": address(), "budget_usd": "-1"}, "budget_usd"),
                        ({"email": address(), "budget_usd": "1", "max_keys": -1}, "max_keys"),
                        ({"email": address(), "budget_usd": "1", "extra": 1}, "extra")):
        answer = server.admin("POST", "/users", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["param"] == param
    assert server.admin("PATCH", f"/users/{address()}", json={"max_keys": 1}).status_code == 404
    listed = server.admin("GET", "/users", params={"limit": 1000}).json()
    assert email in [row["email"] for row in listed["data"]]
    assert requests.get(server.v1 + "/admin/users", timeout=10).status_code == 401


def test_a_user_token_cannot_grant_itself_an_allowance(server, mailbox):  # noqa: F811
    email = address()
    token = log_in(server, mailbox, email)
    answer = user_call(server, token, "POST", "/admin/users", json={"email": email, "budget_usd": "1000"})
    assert answer.status_code == 401
    assert server.admin("GET", f"/users/{email}").status_code == 404


def test_the_cli_sets_lists_and_removes_allowances(server):
    email = address()

    def cli(*args) -> subprocess.CompletedProcess:
        env = {**os.environ, "ONEKEYLLM_DATABASE_URL": server.database_url, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "service.cli", "users", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    made = cli("set", email.upper(), "--budget", "7.5", "--max-keys", "4")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["budget_usd"] == "7.500000000"
    assert server.admin("GET", f"/users/{email}").json()["max_keys"] == 4
    changed = cli("set", email, "--used", "2")
    assert changed.returncode == 0 and json.loads(changed.stdout)["remaining_usd"] == "5.500000000"
    assert email in [row["email"] for row in json.loads(cli("list").stdout)]
    assert cli("set", address(), "--max-keys", "1").returncode != 0  # a new allowance needs a budget
    assert cli("set", "x@[127.0.0.1]", "--budget", "1").returncode != 0
    assert cli("remove", email).returncode == 0
    assert server.admin("GET", f"/users/{email}").status_code == 404
    assert cli("remove", email).returncode == 1


# ---------------------------------------------------------------- concurrent creations
def test_concurrent_creations_cannot_pass_the_allowance(mailbox, tmp_path):  # noqa: F811
    """40 creations at once through three gunicorn workers (SQLite or PostgreSQL, as the suite runs)."""
    _, port = mailbox
    master = start_gunicorn(tmp_path, database_url=None, admin_token="sk-admin-" + uuid.uuid4().hex,
                            extra_env={"ONEKEYLLM_SMTP_URL": smtp_url(port), "ONEKEYLLM_LOGIN_SENDS_PER_IP": "1000"})
    try:
        by_budget, by_count = address(), address()
        assert grant(master, by_budget, budget_usd="5", max_keys=1000).status_code == 201
        assert grant(master, by_count, budget_usd="1000", max_keys=3).status_code == 201
        for email, allowed, reason in ((by_budget, 5, "allowance_exceeded"), (by_count, 3, "too_many_keys")):
            token = log_in(master, mailbox, email)
            with ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(lambda _, token=token: new_key(master, token, "1"), range(40)))
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [201] * allowed + [403] * (40 - allowed), [a.text for a in answers if a.status_code >= 500]
            assert {error_code(a) for a in answers if a.status_code == 403} == {reason}
            assert len(user_call(master, token, "GET", "/keys").json()["data"]) == allowed
            shown = master.admin("GET", f"/users/{email}").json()
            assert shown["used_usd"] == f"{allowed}.000000000" and shown["live_keys"] == allowed
    finally:
        stop_gunicorn(master)
        drop_database(master.database_url)


def test_another_users_key_id_as_a_cursor_is_an_unknown_id(server, mailbox):  # noqa: F811
    alice, bob = address(), address()
    alices = server.create_key(budget="1", email=alice)["id"]
    for _ in range(2):
        server.create_key(budget="1", email=bob)
    token = log_in(server, mailbox, bob)
    unknown = "key_" + uuid.uuid4().hex[:24]
    pages = [user_call(server, token, "GET", "/keys", params={"after": cursor}) for cursor in (alices, unknown)]
    assert pages[0].status_code == pages[1].status_code == 400
    assert pages[0].text.replace(alices, "ID") == pages[1].text.replace(unknown, "ID")


def test_a_user_token_refreshes_capacity_within_its_own_limit(server, mailbox):  # noqa: F811
    from conftest import clear_of_window_boundary

    email = "u" * 60 + uuid.uuid4().hex[:4] + "@" + ".".join(["long-domain-name"] * 10) + ".example.com"  # 250 long
    server.create_key(budget="1", email=email)
    token = log_in(server, mailbox, email)
    clear_of_window_boundary(60, margin=5)
    statuses = [user_call(server, token, "POST", "/usage/account_capacity/refresh").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
