"""Security of what the gateway shows: upstream texts scrubbed of credentials, stored files served as downloads,
no existence oracle across keys, capacity refreshes limited, login limits per requester and address rules."""
from __future__ import annotations

import secrets

import anthropic
import openai
import pytest
import requests
from conftest import clear_of_window_boundary, start_server
from quoting_upstream import SOMEONE_ELSES_KEY, QuotingUpstream


# ---------------------------------------------------------------- credentials in upstream texts
@pytest.fixture(scope="module")
def quoting():
    fake = QuotingUpstream()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def scrubbing(quoting, tmp_path_factory):
    """A gateway whose accounts all answer with errors that quote their credentials."""
    server = start_server(tmp_path_factory.mktemp("scrub"), name="scrub")
    credentials = {}
    accounts = (("openai", "chat", True), ("openai", "responses", True), ("anthropic", "chat", False))
    for provider, api, is_openai in accounts:
        for scenario in ("e400", "e500", "stream"):
            # one credential of no known shape: only the exact match can find it
            credential = {"openai": "sk-proj-" + secrets.token_urlsafe(30),
                          "anthropic": "correct-horse-battery-" + secrets.token_hex(3)}[provider]
            model = f"q-{provider}-{api}-{scenario}"
            server.create_account(name=model, provider=provider, api=api, api_key=credential, models=[model],
                                  base_url=quoting.base_url(scenario, is_openai))
            credentials[model] = credential
    server.credentials = credentials
    server.key = server.create_key(budget="10")["key"]
    yield server
    server.stop()
    assert_clean(server.log_text(), server)  # nor was any of it logged


def assert_clean(text: str, server) -> None:
    for credential in [*server.credentials.values(), SOMEONE_ELSES_KEY]:
        assert credential not in text, f"{credential[:12]}… in {text[:400]!r}"
        assert credential[-16:] not in text


def openai_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=server.key, max_retries=0)


@pytest.mark.parametrize("model", ["q-openai-chat-e400", "q-anthropic-chat-e400", "q-openai-responses-e400"])
def test_a_400_body_quoting_the_credential_reaches_the_client_scrubbed(scrubbing, model):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(scrubbing).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    text = raised.value.response.text
    assert_clean(text, scrubbing)
    assert "Rejected" in text and "[redacted]" in text  # the upstream's reason is still told


def test_the_anthropic_sdk_sees_a_scrubbed_400_too(scrubbing):
    client = anthropic.Anthropic(base_url=scrubbing.url, api_key=scrubbing.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model="q-anthropic-chat-e400", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert_clean(raised.value.response.text, scrubbing)


@pytest.mark.parametrize("model", ["q-openai-chat-e500", "q-anthropic-chat-e500", "q-openai-responses-e500"])
def test_a_500_body_quoting_the_credential_is_shown_stored_and_listed_scrubbed(scrubbing, model):
    answer = requests.post(scrubbing.v1 + "/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {scrubbing.key}"},
                           json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code >= 500
    assert_clean(answer.text, scrubbing)
    assert "[redacted]" in answer.text
    listed = scrubbing.admin("GET", "/accounts", params={"limit": 100})
    stored = [a["last_error"] for a in listed.json()["data"] if a["name"] == model]
    assert stored and stored[0] and "internal failure" in stored[0]  # the account's last_error holds the reason
    assert_clean(listed.text, scrubbing)
    capacity = requests.get(scrubbing.v1 + "/usage/account_capacity", timeout=30,
                            headers={"Authorization": f"Bearer {scrubbing.key}"})
    assert capacity.status_code == 200
    assert_clean(capacity.text, scrubbing)


@pytest.mark.parametrize("route, model", [
    ("/chat/completions", "q-openai-chat-stream"),  # passthrough: the upstream's own events
    ("/chat/completions", "q-anthropic-chat-stream"),  # translated: its error rendered by the gateway
    ("/messages", "q-anthropic-chat-stream"),
    ("/responses", "q-openai-responses-stream"),
    ("/messages", "q-openai-chat-stream"),
])
def test_a_stream_error_event_quoting_the_credential_is_scrubbed(scrubbing, route, model):
    text = [{"role": "user", "content": "hi"}]
    body = {"model": model, "stream": True, **({"input": "hi"} if route == "/responses" else {"messages": text}),
            **({"max_tokens": 20} if route == "/messages" else {})}
    with requests.post(scrubbing.v1 + route, json=body, stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {scrubbing.key}"}) as answer:
        raw = answer.content.decode()
    assert answer.status_code == 200, raw
    assert "error" in raw and "Stream broke" in raw, raw
    assert_clean(raw, scrubbing)


def test_a_failed_probe_is_stored_and_shown_scrubbed(scrubbing):
    refreshed = requests.post(scrubbing.v1 + "/usage/account_capacity/refresh", timeout=60,
                              headers={"Authorization": f"Bearer {scrubbing.key}"})
    assert refreshed.status_code == 200, refreshed.text
    errors = [a["last_error"] for a in refreshed.json()["data"] if a["provider"] != "echo"]
    assert errors and all(e and "Rejected" in e for e in errors), errors
    assert_clean(refreshed.text, scrubbing)
    assert_clean(scrubbing.admin("GET", "/accounts", params={"limit": 100}).text, scrubbing)


# ---------------------------------------------------------------- stored files are downloads
LIVE_CONTENT = [("page.html", None, b"<script>alert(document.domain)</script>"),
                ("picture.svg", None, b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
                ("doc.xhtml", None, b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>'),
                ("notes", "text/html", b"<script>alert(2)</script>"),
                ('na\u00efve "quoted" \\ name\u2603.html', "text/html", b"<b>x</b>")]


def assert_download(answer: requests.Response, name: str, content: bytes) -> None:
    from werkzeug.http import parse_options_header

    assert answer.status_code == 200, answer.text
    assert answer.content == content
    disposition, options = parse_options_header(answer.headers["Content-Disposition"])
    assert disposition == "attachment"
    assert options["filename"] == name.rpartition("/")[2]  # filename* where the name is not plain ASCII
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize("name, declared, content", LIVE_CONTENT)
def test_an_uploaded_file_is_served_as_a_sandboxed_download(gateway, user_key, name, declared, content):
    auth = {"Authorization": f"Bearer {user_key}"}
    uploaded = requests.post(gateway.v1 + "/files", headers=auth, timeout=30, data={"purpose": "user_data"},
                             files={"file": (name, content, declared or "application/octet-stream")})
    assert uploaded.status_code == 200, uploaded.text
    served = requests.get(gateway.v1 + f"/files/{uploaded.json()['id']}/content", headers=auth, timeout=30)
    assert_download(served, uploaded.json()["filename"], content)  # the name as stored (multipart drops `\\`)
    assert uploaded.json()["filename"].startswith(name[:5])


def test_a_file_put_at_a_path_is_served_as_a_download_too(gateway, user_key):
    auth = {"Authorization": f"Bearer {user_key}"}
    stored = requests.put(gateway.v1 + "/files/site/index.html", data=b"<script>alert(3)</script>", timeout=30,
                          headers={**auth, "Content-Type": "text/html"})
    assert stored.status_code == 200, stored.text
    served = requests.get(gateway.v1 + f"/files/{stored.json()['id']}/content", headers=auth, timeout=30)
    assert_download(served, "index.html", b"<script>alert(3)</script>")


# ---------------------------------------------------------------- no existence oracle across keys
def same_answer(first: requests.Response, second: requests.Response, first_id: str, second_id: str) -> None:
    """Two answers that tell nothing apart: same status, same body once each names its own id."""
    assert first.status_code == second.status_code, (first.text, second.text)
    assert first.text.replace(first_id, "ID") == second.text.replace(second_id, "ID")


def test_another_keys_file_id_as_a_cursor_is_an_unknown_id(gateway):
    mine, theirs = (gateway.create_key(budget="1")["key"] for _ in range(2))
    auth = {"Authorization": f"Bearer {mine}"}
    for n in range(2):
        requests.post(gateway.v1 + "/files", headers=auth, data={"purpose": "user_data"}, timeout=30,
                      files={"file": (f"mine-{n}.txt", b"x")})
    foreign = requests.post(gateway.v1 + "/files", headers={"Authorization": f"Bearer {theirs}"}, timeout=30,
                            data={"purpose": "user_data"}, files={"file": ("theirs.txt", b"y")}).json()["id"]
    unknown = "file-" + secrets.token_hex(13)
    pages = [requests.get(gateway.v1 + "/files", headers=auth, params={"after": cursor}, timeout=30)
             for cursor in (foreign, unknown)]
    same_answer(*pages, foreign, unknown)
    assert pages[0].status_code == 400


def conversation_with(server, key: str, items: list) -> requests.Response:
    return requests.post(server.v1 + "/conversations", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                         json={"items": items})


def items_of(server, key: str, conversation_id: str, **params) -> requests.Response:
    return requests.get(server.v1 + f"/conversations/{conversation_id}/items", params=params, timeout=30,
                        headers={"Authorization": f"Bearer {key}"})


def message(text: str, item_id: str | None = None) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}],
            **({"id": item_id} if item_id else {})}


def test_another_keys_item_id_as_a_cursor_is_an_unknown_id(gateway):
    mine, theirs = (gateway.create_key(budget="1")["key"] for _ in range(2))
    own = conversation_with(gateway, mine, [message("a"), message("b")]).json()["id"]
    foreign_conversation = conversation_with(gateway, theirs, [message("secret")]).json()["id"]
    foreign = items_of(gateway, theirs, foreign_conversation).json()["data"][0]["id"]
    unknown = "msg_" + secrets.token_hex(24)
    same_answer(items_of(gateway, mine, own, after=foreign), items_of(gateway, mine, own, after=unknown),
                foreign, unknown)


def test_an_item_id_another_key_chose_is_as_free_as_any(gateway):
    mine, theirs = (gateway.create_key(budget="1")["key"] for _ in range(2))
    taken, free = "msg_" + secrets.token_hex(8), "msg_" + secrets.token_hex(8)
    theirs_made = conversation_with(gateway, theirs, [message("theirs", taken)]).json()["id"]
    answers = {}
    for chosen in (taken, free):
        made = conversation_with(gateway, mine, [message("mine", chosen)])
        assert made.status_code == 200, made.text
        answers[chosen] = items_of(gateway, mine, made.json()["id"]).json()["data"]
        assert [item["id"] for item in answers[chosen]] == [chosen]  # kept, as a free id is
        one = requests.get(gateway.v1 + f"/conversations/{made.json()['id']}/items/{chosen}", timeout=30,
                           headers={"Authorization": f"Bearer {mine}"})
        assert one.status_code == 200 and one.json()["content"][0]["text"] == "mine"
    # the other key's item is untouched
    kept = items_of(gateway, theirs, theirs_made).json()["data"]
    assert [(i["id"], i["content"][0]["text"]) for i in kept] == [(taken, "theirs")]
    # appending to an existing conversation behaves the same
    own = conversation_with(gateway, mine, []).json()["id"]
    added = requests.post(gateway.v1 + f"/conversations/{own}/items", timeout=30, json={
        "items": [message("x", taken)]}, headers={"Authorization": f"Bearer {mine}"})
    assert [i["id"] for i in added.json()["data"]] == [taken]


# ---------------------------------------------------------------- capacity refreshes
@pytest.fixture()
def probing(quoting, tmp_path):
    """A gateway with two accounts serving one model: one whose probe fails (503), one ordinary."""
    server = start_server(tmp_path, name="probing")
    server.model = "q-probe"
    server.names = []
    for scenario in ("probe503", "probe503"):
        name = server.create_account(provider="openai", api_key="sk-probe-" + secrets.token_hex(12),
                                     models=[server.model], base_url=quoting.base_url(scenario, True))["name"]
        server.names.append(name)
    yield server
    server.stop()


def refresh(server, key: str) -> requests.Response:
    return requests.post(server.v1 + "/usage/account_capacity/refresh", headers={"Authorization": f"Bearer {key}"},
                         timeout=60)


def test_capacity_refreshes_are_limited_per_key_and_per_account(probing, quoting):
    clear_of_window_boundary(30, margin=10)  # the per-minute and the per-account windows stay the same throughout
    mine, theirs = (probing.create_key(budget="0.01", models=[probing.model])["key"] for _ in range(2))
    before = len(quoting.calls)
    statuses = [refresh(probing, mine).status_code for _ in range(10)]
    assert statuses == [200, 200] + [429] * 8
    limited = refresh(probing, mine)
    assert limited.json()["error"]["type"] == "rate_limit_error" and int(limited.headers["retry-after"]) >= 1
    assert refresh(probing, theirs).status_code == 200  # another key has its own allowance of refreshes...
    probes = [path for _, path in quoting.calls[before:] if path.endswith("/models")]
    assert len(probes) == 2  # ...but each account was probed once in all, whoever asked


def test_a_failed_probe_cools_nobody_down(probing, quoting):
    key = probing.create_key(budget="1", models=[probing.model])["key"]
    shown = refresh(probing, key)
    assert shown.status_code == 200
    mine = [a for a in shown.json()["data"] if a["name"] in probing.names]
    assert len(mine) == 2 and all(a["healthy"] is False and a["last_error"] for a in mine)  # recorded, and shown
    assert all(a["cooldown_until"] is None for a in mine)
    assert all(a["cooldown_until"] is None for a in probing.admin("GET", "/accounts").json()["data"])
    # both accounts still serve: the failed probe steered nothing
    client = openai.OpenAI(base_url=probing.v1, api_key=key, max_retries=0)
    for _ in range(24):
        client.chat.completions.create(model=probing.model, messages=[{"role": "user", "content": "hi"}])
    rows = requests.get(probing.v1 + "/usage/requests", params={"limit": 100}, timeout=30,
                        headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert {row["account"] for row in rows} == set(probing.names)


# ---------------------------------------------------------------- login: limits per requester, ordinary addresses
from test_login import SEND_WINDOW, mailbox, new_address, smtp_url, wrong_code  # noqa: E402,F401


@pytest.fixture()
def proxied_login(mailbox, tmp_path):  # noqa: F811
    """A login server behind one trusted proxy, so each test can speak from several client addresses."""
    _, port = mailbox
    server = start_server(tmp_path, name="login-limits", extra_env={
        "ONEKEYLLM_SMTP_URL": smtp_url(port), "ONEKEYLLM_TRUSTED_PROXIES": "1"})
    clear_of_window_boundary(SEND_WINDOW, margin=30)
    yield server
    server.stop()


VICTIM, ATTACKER, OTHERS = "198.51.100.7", "203.0.113.66", [f"192.0.2.{n}" for n in range(1, 20)]


def send_from(server, client_ip: str, email: str) -> requests.Response:
    return requests.post(server.v1 + "/auth/email/send", json={"email": email}, timeout=30,
                         headers={"X-Forwarded-For": client_ip})


def guess_from(server, client_ip: str, email: str, code: str) -> requests.Response:
    return requests.post(server.v1 + "/auth/token", json={"email": email, "code": code}, timeout=30,
                         headers={"X-Forwarded-For": client_ip})


def test_wrong_guesses_from_elsewhere_do_not_kill_a_users_code(proxied_login, mailbox):  # noqa: F811
    collector, _ = mailbox
    email = new_address("victim")
    assert send_from(proxied_login, VICTIM, email).status_code == 200
    code = collector.code_for(email)
    answers = [guess_from(proxied_login, ATTACKER, email, wrong_code(code)).status_code for _ in range(39)]
    assert answers[:10] == [401] * 10 and set(answers[10:]) == {429}  # the attacker is stopped, not the code
    for other in OTHERS[:3]:  # more attackers: the email's budget for guesses from elsewhere runs out, quietly
        assert {guess_from(proxied_login, other, email, wrong_code(code)).status_code for _ in range(10)} <= {401, 429}
    answer = guess_from(proxied_login, VICTIM, email, code)
    assert answer.status_code == 200, answer.text


def test_a_code_asked_for_elsewhere_does_not_replace_a_users_code(proxied_login, mailbox):  # noqa: F811
    collector, _ = mailbox
    email = new_address("victim")
    assert send_from(proxied_login, VICTIM, email).status_code == 200
    own = collector.code_for(email)
    assert send_from(proxied_login, ATTACKER, email).status_code == 200  # mailed to the victim, too
    if collector.code_for(email) != own:
        assert guess_from(proxied_login, VICTIM, email, own).status_code == 200
    # once redeemed, every code of the address is spent
    assert guess_from(proxied_login, VICTIM, email, collector.code_for(email)).status_code == 401


def test_sends_from_elsewhere_do_not_use_up_a_users_sends(proxied_login, mailbox):  # noqa: F811
    collector, _ = mailbox
    email = new_address("victim")
    assert [send_from(proxied_login, ATTACKER, email).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert send_from(proxied_login, VICTIM, email).status_code == 200
    assert guess_from(proxied_login, VICTIM, email, collector.code_for(email)).status_code == 200


def test_guesses_are_limited_per_client_and_email_and_per_client(proxied_login):
    email = new_address()
    pair = [guess_from(proxied_login, ATTACKER, email, "123456").status_code for _ in range(11)]
    assert pair == [401] * 10 + [429]
    limited = guess_from(proxied_login, ATTACKER, email, "123456")
    assert int(limited.headers["retry-after"]) >= 1 and limited.json()["error"]["type"] == "rate_limit_error"
    spread = [guess_from(proxied_login, OTHERS[-1], new_address(), "123456").status_code for _ in range(31)]
    assert spread == [401] * 30 + [429]  # one client, thirty addresses
    assert guess_from(proxied_login, OTHERS[-2], new_address(), "123456").status_code == 401  # another is not held


REFUSED_ADDRESSES = ["x@[127.0.0.1]", "x@[IPv6:::1]", "x@localhost", '"x"@example.com', "a" * 65 + "@example.com",
                     "x@example.test", "\u00fc@example.com", "x@" + ".".join(["d" * 50] * 5) + ".com"]  # 260 long
ORDINARY_ADDRESSES = ["first.last+tag@example.com", "a" * 64 + "@sub.example.co.uk", "X_Y-z@Example.ORG"]


def test_only_ordinary_deliverable_addresses_get_a_code(proxied_login, mailbox):  # noqa: F811
    collector, _ = mailbox
    before = len(collector.messages)
    for email in REFUSED_ADDRESSES:
        answer = send_from(proxied_login, VICTIM, email)
        assert answer.status_code == 400, (email, answer.text)
        assert answer.json()["error"]["param"] == "email"
    assert len(collector.messages) == before
    for email in ORDINARY_ADDRESSES:
        answer = send_from(proxied_login, OTHERS[0], email)
        assert answer.status_code == 200, answer.text
        assert answer.json()["email"] == email.lower()
