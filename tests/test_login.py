"""Email login against a real local SMTP server: codes, JWTs, forged tokens, and a user's own keys."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from email import message_from_bytes
from email.policy import default as default_policy

import jwt
import openai
import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import clear_of_window_boundary, free_port, start_server

JWT_SECRET = "test-jwt-secret-" + "x" * 32
SMTP_USER, SMTP_PASSWORD = "mailer@example.com", "p@ss:word/1"
SEND_WINDOW = 600  # the server counts sends in fixed ten-minute windows


class MailCollector:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.original_content, policy=default_policy))
        return "250 Message accepted"

    def code_for(self, address: str) -> str:
        """The code in the latest mail to `address`."""
        for message in reversed(self.messages):
            if message["To"] == address:
                return re.search(r"\b(\d{6})\b", message.get_content()).group(1)
        raise AssertionError(f"no mail to {address}")

    def all_codes(self) -> set:
        return {re.search(r"\b(\d{6})\b", m.get_content()).group(1) for m in self.messages}


def accept_only_our_login(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def mailbox():
    collector = MailCollector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port(),
                            authenticator=accept_only_our_login, auth_require_tls=False)
    controller.start()
    yield collector, controller.port
    controller.stop()


def smtp_url(port: int, user: str = SMTP_USER, password: str = SMTP_PASSWORD) -> str:
    quote = requests.utils.quote
    return f"smtp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}"


@pytest.fixture(scope="module")
def login_server(mailbox, tmp_path_factory):
    _, port = mailbox
    server = start_server(tmp_path_factory.mktemp("login"), name="login", extra_env={
        "ONEKEYLLM_SMTP_URL": smtp_url(port), "ONEKEYLLM_JWT_SECRET": JWT_SECRET,
        "ONEKEYLLM_MAIL_FROM": "login@onekeyllm.test", "ONEKEYLLM_LOGIN_SENDS_PER_IP": "1000",
        "ONEKEYLLM_LOGIN_GUESSES_PER_IP": "1000",
        "ONEKEYLLM_USER_MAX_KEYS": "3", "ONEKEYLLM_LOGIN_DOMAINS": "example.com",
        "ONEKEYLLM_SELF_SERVICE_BUDGET_USD": "20"})
    yield server
    server.stop()


def new_address(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def send_code(server, address: str) -> requests.Response:
    return requests.post(server.v1 + "/auth/email/send", json={"email": address}, timeout=30)


def ask_token(server, address: str, code: str) -> requests.Response:
    return requests.post(server.v1 + "/auth/token", json={"email": address, "code": code}, timeout=30)


def log_in(server, mailbox, address: str) -> str:
    """A JWT for `address`, through the mailed code."""
    collector, _ = mailbox
    assert send_code(server, address).status_code == 200
    answer = ask_token(server, address, collector.code_for(address))
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def verify(server, token: str) -> requests.Response:
    return requests.get(server.v1 + "/auth/verify", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def user_call(server, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.v1 + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=30, **kwargs)


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# ---------------------------------------------------------------- codes and tokens
def test_mailed_code_gives_a_jwt_that_verifies(login_server, mailbox):
    collector, _ = mailbox
    address = new_address()
    sent = send_code(login_server, "  " + address.upper() + " ")
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"object": "auth.email_sent", "email": address}

    mail = collector.messages[-1]
    assert mail["To"] == address and mail["From"] == "login@onekeyllm.test"
    code = collector.code_for(address)
    assert len(code) == 6

    answer = ask_token(login_server, address.upper(), code)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0

    claims = jwt.decode(body["token"], JWT_SECRET, algorithms=["HS256"], issuer="onekeyllm")
    assert claims["email"] == claims["sub"] == address
    assert jwt.get_unverified_header(body["token"])["alg"] == "HS256"

    checked = verify(login_server, body["token"])
    assert checked.status_code == 200, checked.text
    assert checked.json() == {"valid": True, "email": address, "expires_at": claims["exp"]}


def test_a_code_works_once(login_server, mailbox):
    collector, _ = mailbox
    address = new_address()
    assert send_code(login_server, address).status_code == 200
    code = collector.code_for(address)
    assert ask_token(login_server, address, code).status_code == 200
    again = ask_token(login_server, address, code)
    assert again.status_code == 401
    assert again.json()["error"]["type"] == "authentication_error"


def test_a_code_dies_after_five_wrong_tries(login_server, mailbox):
    collector, _ = mailbox
    address = new_address()
    assert send_code(login_server, address).status_code == 200
    code = collector.code_for(address)
    for _ in range(5):
        assert ask_token(login_server, address, wrong_code(code)).status_code == 401
    assert ask_token(login_server, address, code).status_code == 401


def test_the_right_code_on_the_fifth_try_still_works(login_server, mailbox):
    collector, _ = mailbox
    address = new_address()
    assert send_code(login_server, address).status_code == 200
    code = collector.code_for(address)
    for _ in range(4):
        assert ask_token(login_server, address, wrong_code(code)).status_code == 401
    assert ask_token(login_server, address, code).status_code == 200


def test_a_new_code_replaces_the_previous_one(login_server, mailbox):
    collector, _ = mailbox
    address = new_address()
    assert send_code(login_server, address).status_code == 200
    first = collector.code_for(address)
    assert send_code(login_server, address).status_code == 200
    second = collector.code_for(address)
    if first != second:
        assert ask_token(login_server, address, first).status_code == 401
    assert ask_token(login_server, address, second).status_code == 200


def test_a_code_is_bound_to_its_address(login_server, mailbox):
    collector, _ = mailbox
    alice, mallory = new_address("alice"), new_address("mallory")
    assert send_code(login_server, alice).status_code == 200
    assert send_code(login_server, mallory).status_code == 200
    alices_code, mallorys_code = collector.code_for(alice), collector.code_for(mallory)
    if alices_code != mallorys_code:
        assert ask_token(login_server, mallory, alices_code).status_code == 401
    assert ask_token(login_server, new_address("nobody"), alices_code).status_code == 401
    assert ask_token(login_server, alice, alices_code).status_code == 200


def test_an_expired_code_is_refused(mailbox, tmp_path):
    collector, port = mailbox
    server = start_server(tmp_path, name="short-codes", extra_env={
        "ONEKEYLLM_SMTP_URL": smtp_url(port), "ONEKEYLLM_LOGIN_CODE_TTL": "1"})
    try:
        address = new_address()
        assert send_code(server, address).status_code == 200
        time.sleep(1.2)
        answer = ask_token(server, address, collector.code_for(address))
        assert answer.status_code == 401, answer.text
    finally:
        server.stop()


@pytest.mark.parametrize("body", [
    {}, {"email": "someone@example.com"}, {"email": "not-an-address", "code": "123456"},
    {"email": "someone@example.com", "code": "12345"}, {"email": "someone@example.com", "code": 123456},
    {"email": "someone@example.com", "code": "12a456"}, {"email": ["a@b.co"], "code": "123456"},
])
def test_a_malformed_token_request_is_400(login_server, body):
    answer = requests.post(login_server.v1 + "/auth/token", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("address", ["", "plain", "a@b", "two@@example.com", "x@example.com\nBcc: y@example.com",
                                     "a" * 320 + "@example.com", None, 42])
def test_a_bad_address_is_400(login_server, address):
    answer = requests.post(login_server.v1 + "/auth/email/send", json={"email": address}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "email"


def test_the_send_answer_is_the_same_for_a_known_and_an_unknown_address(login_server, mailbox):
    tag = uuid.uuid4().hex[:10]
    known, unknown = f"known-{tag}@example.com", f"newbe-{tag}@example.com"
    login_server.create_key(name="known user's key", email=known)
    log_in(login_server, mailbox, known)

    answers = [send_code(login_server, address) for address in (known, unknown)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json() for a in answers] == [{"object": "auth.email_sent", "email": known},
                                          {"object": "auth.email_sent", "email": unknown}]
    assert len(answers[0].content) == len(answers[1].content)
    assert {k.lower() for k in answers[0].headers} == {k.lower() for k in answers[1].headers}


def test_sending_is_rate_limited_per_address_and_per_client(mailbox, tmp_path):
    _, port = mailbox
    server = start_server(tmp_path, name="default-limits", extra_env={"ONEKEYLLM_SMTP_URL": smtp_url(port)})
    try:
        clear_of_window_boundary(SEND_WINDOW, margin=15)
        address = new_address()
        assert [send_code(server, address).status_code for _ in range(3)] == [200, 200, 200]
        limited = send_code(server, address)
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(limited.headers["retry-after"]) <= SEND_WINDOW
        # the same limit applies however the address is spelled
        assert send_code(server, address.upper()).status_code == 429

        # five sends counted for this client so far; five more addresses reach its limit of ten
        assert [send_code(server, new_address()).status_code for _ in range(5)] == [200] * 5
        limited = send_code(server, new_address())
        assert limited.status_code == 429, limited.text
        assert "client" in limited.json()["error"]["message"]
        assert int(limited.headers["retry-after"]) >= 1
    finally:
        server.stop()


def test_behind_trusted_proxies_the_client_address_is_counted(mailbox, tmp_path):
    # one proxy in front (ONEKEYLLM_TRUSTED_PROXIES=1): the address it adds to X-Forwarded-For is the client's;
    # what the client wrote there itself is not believed
    _, port = mailbox
    server = start_server(tmp_path, name="proxied", extra_env={
        "ONEKEYLLM_SMTP_URL": smtp_url(port), "ONEKEYLLM_LOGIN_SENDS_PER_IP": "2", "ONEKEYLLM_TRUSTED_PROXIES": "1"})

    def send_from(client_ip: str, forged: str = "") -> int:
        forwarded = f"{forged}, {client_ip}" if forged else client_ip
        return requests.post(server.v1 + "/auth/email/send", json={"email": new_address()}, timeout=30,
                             headers={"X-Forwarded-For": forwarded}).status_code

    try:
        clear_of_window_boundary(SEND_WINDOW, margin=15)
        assert [send_from("203.0.113.7") for _ in range(3)] == [200, 200, 429]
        assert send_from("203.0.113.8") == 200  # another client behind the same proxy
        assert send_from("203.0.113.7", forged="198.51.100.1") == 429  # a forged entry changes nothing
    finally:
        server.stop()


def test_no_mail_server_configured_is_503(gateway):
    answer = send_code(gateway, new_address())
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["type"] == "service_unavailable"


def test_a_failing_mail_server_is_503_and_the_password_stays_out_of_the_log(mailbox, tmp_path):
    _, port = mailbox
    bad_password = "wrong-" + uuid.uuid4().hex
    server = start_server(tmp_path, name="bad-smtp", extra_env={
        "ONEKEYLLM_SMTP_URL": smtp_url(port, password=bad_password)})
    try:
        refused = send_code(server, new_address())
        assert refused.status_code == 503, refused.text
        assert bad_password not in refused.text
    finally:
        server.stop()
    assert bad_password not in server.log_text()

    dead = start_server(tmp_path, name="no-smtp-listener", extra_env={
        "ONEKEYLLM_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    try:
        assert send_code(dead, new_address()).status_code == 503
    finally:
        dead.stop()


# ---------------------------------------------------------------- forged tokens
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, key: bytes | None, digest=hashlib.sha256) -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = b64(hmac.new(key, signing_input.encode(), digest).digest()) if key is not None else ""
    return signing_input + "." + signature


def good_claims(**changes) -> dict:
    now = int(time.time())
    claims = {"sub": "forger@example.com", "email": "forger@example.com", "iat": now, "exp": now + 3600,
              "iss": "onekeyllm"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_hand_made_token_with_the_real_secret_verifies(login_server):
    """The control for the forgeries below: same construction, the one right key and algorithm."""
    token = hand_made({"alg": "HS256", "typ": "JWT"}, good_claims(), JWT_SECRET.encode())
    assert verify(login_server, token).status_code == 200


FORGERIES = {
    "alg none": lambda: hand_made({"alg": "none", "typ": "JWT"}, good_claims(), None),
    "alg None, signed anyway": lambda: hand_made({"alg": "None"}, good_claims(), JWT_SECRET.encode()),
    "wrong key": lambda: jwt.encode(good_claims(), "not-the-secret-" + "y" * 32, algorithm="HS256"),
    "expired": lambda: jwt.encode(good_claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
                                  JWT_SECRET, algorithm="HS256"),
    "RS256 header, HMAC signature": lambda: hand_made({"alg": "RS256", "typ": "JWT"}, good_claims(),
                                                       JWT_SECRET.encode()),
    "HS512 with the real secret": lambda: hand_made({"alg": "HS512"}, good_claims(), JWT_SECRET.encode(),
                                                     hashlib.sha512),
    "missing exp": lambda: jwt.encode(good_claims(exp=None), JWT_SECRET, algorithm="HS256"),
    "missing email": lambda: jwt.encode(good_claims(email=None), JWT_SECRET, algorithm="HS256"),
    "wrong issuer": lambda: jwt.encode(good_claims(iss="someone-else"), JWT_SECRET, algorithm="HS256"),
    "tampered claims": lambda: (lambda t: t.split(".")[0] + "." + b64(json.dumps(
        good_claims(email="admin@example.com")).encode()) + "." + t.split(".")[2])(
        jwt.encode(good_claims(), JWT_SECRET, algorithm="HS256")),
    "garbage": lambda: "not.a.token",
    "an API key": lambda: "sk-lazytech-" + "A" * 43,
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_token_is_401(login_server, forgery):
    token = FORGERIES[forgery]()
    answer = verify(login_server, token)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "authentication_error"
    assert user_call(login_server, token, "GET", "/keys").status_code == 401


def test_verify_without_a_token_is_401(login_server):
    assert requests.get(login_server.v1 + "/auth/verify", timeout=30).status_code == 401


# ---------------------------------------------------------------- a user's own keys
def test_a_user_manages_their_own_keys_and_uses_one(login_server, mailbox):
    alice = log_in(login_server, mailbox, new_address("alice"))
    created = user_call(login_server, alice, "POST", "/keys", json={"name": "laptop"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("sk-lazytech-") and key["budget_usd"] == "20.000000000"  # all the allowance has

    listed = user_call(login_server, alice, "GET", "/keys").json()
    assert [k["id"] for k in listed["data"]] == [key["id"]]
    assert "key" not in listed["data"][0]

    client = openai.OpenAI(base_url=login_server.v1, api_key=key["key"])
    completion = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hello"}])
    assert completion.choices[0].message.content

    revoked = user_call(login_server, alice, "DELETE", f"/keys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["deleted"] is True
    assert user_call(login_server, alice, "GET", "/keys").json()["data"] == []
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hello"}])


def test_a_user_cannot_touch_another_users_key(login_server, mailbox):
    alice = log_in(login_server, mailbox, new_address("alice"))
    bob = log_in(login_server, mailbox, new_address("bob"))
    alices_key = user_call(login_server, alice, "POST", "/keys", json={"name": "mine"}).json()
    admins_key = login_server.create_key(name="no owner")

    assert user_call(login_server, bob, "GET", "/keys").json()["data"] == []
    for key_id in (alices_key["id"], admins_key["id"]):
        assert user_call(login_server, bob, "GET", f"/keys/{key_id}").status_code == 404
        assert user_call(login_server, bob, "DELETE", f"/keys/{key_id}").status_code == 404
    assert user_call(login_server, alice, "GET", f"/keys/{alices_key['id']}").status_code == 200
    assert login_server.admin("GET", f"/keys/{alices_key['id']}").status_code == 200


def test_a_user_stays_within_the_limits_the_admin_set(login_server, mailbox):
    carol = log_in(login_server, mailbox, new_address("carol"))  # example.com: a $20 self-service allowance
    too_rich = user_call(login_server, carol, "POST", "/keys", json={"name": "big", "budget_usd": "20.01"})
    assert too_rich.status_code == 403 and too_rich.json()["error"]["param"] == "budget_usd"
    unlimited = user_call(login_server, carol, "POST", "/keys", json={"name": "big", "budget_usd": None})
    assert unlimited.status_code == 400
    extra_field = user_call(login_server, carol, "POST", "/keys", json={"name": "x", "rpm": 100000})
    assert extra_field.status_code == 400

    budgets = ["1", 2.5, "10"]
    for budget in budgets:  # the admin allows three keys
        made = user_call(login_server, carol, "POST", "/keys", json={"name": "k", "budget_usd": budget})
        assert made.status_code == 201, made.text
    one_more = user_call(login_server, carol, "POST", "/keys", json={"name": "k", "budget_usd": "1"})
    assert one_more.status_code == 403, one_more.text
    assert "revoke" in one_more.json()["error"]["message"]

    first = user_call(login_server, carol, "GET", "/keys").json()["data"][0]
    assert user_call(login_server, carol, "DELETE", f"/keys/{first['id']}").status_code == 200
    assert user_call(login_server, carol, "POST", "/keys", json={"name": "k"}).json()["budget_usd"] == "6.500000000"


def test_an_admin_gives_a_user_a_key(login_server, mailbox):
    address = new_address("dave")
    given = login_server.create_key(name="from the admin", email="  " + address.upper())
    assert given["email"] == address
    dave = log_in(login_server, mailbox, address)
    assert [k["id"] for k in user_call(login_server, dave, "GET", "/keys").json()["data"]] == [given["id"]]

    other = login_server.create_key(name="moved")
    moved = login_server.admin("PATCH", f"/keys/{other['id']}", json={"email": address})
    assert moved.status_code == 200 and moved.json()["email"] == address
    assert len(user_call(login_server, dave, "GET", "/keys").json()["data"]) == 2

    bad = login_server.admin("POST", "/keys", json={"name": "x", "email": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "email"


def test_user_tokens_are_not_admin_tokens(login_server, mailbox):
    token = log_in(login_server, mailbox, new_address("eve"))
    assert user_call(login_server, token, "GET", "/admin/keys").status_code == 401


# ---------------------------------------------------------------- secrets stay secret
def test_no_code_appears_in_the_server_log(login_server, mailbox):
    collector, _ = mailbox
    log_in(login_server, mailbox, new_address())  # at least one code, whatever ran before
    text = login_server.log_text()
    for code in collector.all_codes():
        assert not re.search(rf"(?<![\w.]){code}(?!\w)", text), f"code {code} in the server log"
    assert SMTP_PASSWORD not in text and JWT_SECRET not in text
