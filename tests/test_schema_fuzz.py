"""Schema fuzzing: schemathesis drives every operation of /openapi.json with a user key, the admin token and a
user's login JWT.

No answer may be a 5xx, and every answer (errors included) must match the published document: its status
documented, its content type declared, its body valid against the schema. Examples are bounded and
derandomized, shrinking is off: the run is the same on every machine and stays short.
"""
from __future__ import annotations

import time

import jwt
import requests
import schemathesis
from conftest import Server, start_server
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 25
ADMIN_PREFIX = "/v1/admin/"
# needs a mail server, and its 503 without one is by design (tests/test_login.py covers it)
NEEDS_MAIL = "/v1/auth/email/send"
SERVED_MODEL = "echo-1"
JWT_SECRET = "schema-fuzz-test-secret-0123456789abcdef"
JWT_PATHS = "^/v1/(keys|auth/verify|usage)"  # what a user's login token may call


def user_jwt(email: str) -> str:
    """A login token as /v1/auth/token issues it, signed with the test server's secret."""
    now = int(time.time())
    return jwt.encode({"sub": email, "email": email, "iat": now, "exp": now + 3600, "iss": "onekeyllm"},
                      JWT_SECRET, algorithm="HS256")


def published_schema(server: Server):
    """The server's own OpenAPI document, loaded by schemathesis."""
    config = schemathesis.Config.from_dict({"generation": {"database": "none", "with-security-parameters": False},
                                            "request-timeout": 20})
    return schemathesis.openapi.from_url(server.url + "/openapi.json", config=config)


def for_served_model(case):
    """The case, asking for the offline model when its body names one: random bodies reach the codecs too."""
    if isinstance(case.body, dict) and "model" in case.body:
        case.body = {**case.body, "model": SERVED_MODEL}
    return case


def fuzz(schema, token: str) -> list[str]:
    """Every operation of `schema`, valid and invalid inputs, `token` as the bearer: the failures found."""
    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        cases = st.one_of(positive, positive.map(for_served_model),
                          operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def exercise(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            exercise()
        except Exception as error:  # noqa: BLE001 - every operation's failure goes in the one report
            failures.append(f"{operation.label}: {error}")
    return failures


def test_every_user_operation_answers_as_published(gateway):
    key = gateway.create_key(budget="5", name="fuzz", models=[SERVED_MODEL])["key"]
    schema = published_schema(gateway).exclude(path_regex="^" + ADMIN_PREFIX).exclude(path=NEEDS_MAIL)
    failures = fuzz(schema, key)
    assert not failures, "\n\n".join(failures)
    assert requests.get(gateway.v1 + "/ping", timeout=10).status_code == 200  # the shared server is still up


def test_every_admin_and_user_jwt_operation_answers_as_published(tmp_path):
    # a server of its own: fuzzed deletes and patches must not touch the shared one, and a known JWT secret
    server = start_server(tmp_path, name="fuzzadmin", extra_env={"ONEKEYLLM_JWT_SECRET": JWT_SECRET})
    try:
        schema = published_schema(server)
        failures = fuzz(schema.include(path_regex="^" + ADMIN_PREFIX), server.admin_token)
        failures += fuzz(schema.include(path_regex=JWT_PATHS), user_jwt("fuzz@example.com"))
    finally:
        server.stop()
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in server.log_text()
