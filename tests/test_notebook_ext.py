"""SPEC §6: the notebook extension, driven in a real IPython InteractiveShell against the live gateway."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pandas as pd
import pytest
from conftest import free_port
from IPython.core.interactiveshell import InteractiveShell

from notebook_ext import Client, GatewayError
from notebook_ext.client import root_url
from notebook_ext.prompt import interpolate

MODEL = "nb-fake-1"  # served only by this module's fake-upstream account
SCENARIO = "notebook"  # labels that account's requests at the fake upstream
UTC_NS = "datetime64[ns, UTC]"


@pytest.fixture(scope="module")
def nb_model(gateway, upstream) -> str:
    gateway.create_model(MODEL, input_usd_per_mtok="1000", output_usd_per_mtok="2000")
    gateway.create_account(provider="openai", base_url=upstream.base_url("openai", SCENARIO), api_key="sk-fake",
                           models=[MODEL])
    return MODEL


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "notebook_ext")
    yield ip
    ip.run_line_magic("unload_ext", "notebook_ext")
    InteractiveShell.clear_instance()


@pytest.fixture()
def ip(shell, gateway, user_key, nb_model, capsys):
    """The shell configured for the live gateway with a fresh key and a fresh thread."""
    shell.run_line_magic("onekey", f"config --base-url {gateway.v1} --key {user_key} --model {nb_model}")
    shell.run_line_magic("onekey", "thread --new")
    capsys.readouterr()
    return shell


def run(shell, cell: str):
    """Run a cell as the user would (numbered, in history)."""
    return shell.run_cell(cell, store_history=True)


def upstream_messages(upstream) -> list[dict]:
    return upstream.last("/chat/completions", scenario=SCENARIO).body["messages"]


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


# ------------------------------------------------------------------------------------------ %%respond

def test_respond_interpolates_the_namespace_and_reaches_upstream(ip, upstream, capsys):
    run(ip, 'topic = "sea otters"')
    result = run(ip, "%%respond\nTell me about {topic}, in {n_words} words.")
    assert result.success, result.error_in_exec
    assert text_of(upstream_messages(upstream)[-1]) == "Tell me about sea otters, in {n_words} words."
    out = capsys.readouterr().out
    assert "Hello from fake chat: Tell me about sea otters, in {n_words} words." in out


def test_in_out_and_err_reach_upstream(ip, upstream, capsys):
    ip.user_ns["Err"].clear()
    source = run(ip, "6 * 7")
    failing = run(ip, 'raise ValueError("the csv has no header")')
    assert not failing.success
    n_in, n_err = source.execution_count, failing.execution_count
    result = run(ip, f"%%respond\nCode: {{In[{n_in}]}} gave {{Out[{n_in}]}}. Why this? {{Err[{n_err}]}}")
    assert result.success, result.error_in_exec
    prompt = text_of(upstream_messages(upstream)[-1])
    assert prompt.startswith("Code: 6 * 7 gave 42. Why this? Traceback (most recent call last):")
    assert 'raise ValueError("the csv has no header")' in prompt
    assert prompt.rstrip().endswith("ValueError: the csv has no header")
    assert "interactiveshell.py" not in prompt  # IPython's own frames are left out


def test_two_cells_thread_by_previous_response_id_until_new(ip, upstream, capsys):
    assert run(ip, "%%respond\nFirst question").success
    assert run(ip, "%%respond\nSecond question").success
    texts = [(m["role"], text_of(m)) for m in upstream_messages(upstream)]
    assert texts == [("user", "First question"), ("assistant", "Hello from fake chat: First question"),
                     ("user", "Second question")]
    thread = ip.run_line_magic("onekey", "thread")
    assert list(thread["prompt"]) == ["First question", "Second question"]
    assert thread["response_id"].str.startswith("resp_").all()
    assert run(ip, "%%respond --new\nThird question").success
    assert [text_of(m) for m in upstream_messages(upstream)] == ["Third question"]


def test_output_variable_stores_the_text_and_one_quiet_line_tells_the_cost(ip, gateway, user_key, capsys):
    assert run(ip, "%%respond -o answer\nSummarise the meeting").success
    assert ip.user_ns["answer"] == "Hello from fake chat: Summarise the meeting"
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "Hello from fake chat: Summarise the meeting"
    match = re.fullmatch(r"nb-fake-1 · (\d+) in / (\d+) out tokens · \$([0-9.]+)", lines[-1])
    assert match, lines[-1]
    rows = Client(gateway.url, user_key).request_log(limit=1)
    assert rows[0]["input_tokens"] == int(match.group(1)) and rows[0]["output_tokens"] == int(match.group(2))
    assert Decimal(match.group(3)) == Decimal(rows[0]["cost_usd"]) > 0


def test_system_model_and_no_stream_options(ip, upstream, capsys):
    assert run(ip, '%%respond --system "Answer like a pirate" --no-stream --json\nAhoy').success
    request = upstream.last("/chat/completions", scenario=SCENARIO).body
    assert request["messages"][0]["role"] == "system"
    assert text_of(request["messages"][0]) == "Answer like a pirate"
    assert not request.get("stream")
    out = capsys.readouterr().out
    raw = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert raw["object"] == "response" and raw["model"] == MODEL
    assert run(ip, "%%respond -m echo-1 --new\nplain echo").success
    assert "Echo: plain echo" in capsys.readouterr().out


def test_respond_help_comes_from_magic_arguments(ip):
    doc = ip.find_cell_magic("respond").__doc__
    for option in ("-m MODEL", "--system S", "--no-stream", "--new", "-o VAR", "--json", "markdown,text,code,json"):
        assert option in doc


# ------------------------------------------------------------------------------------------ errors

def one_line_error(shell, cell: str, capsys) -> str:
    result = run(shell, cell)
    assert isinstance(result.error_in_exec, GatewayError), result.error_in_exec
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_bad_key_is_one_clear_line(ip, gateway, capsys):
    ip.run_line_magic("onekey", "config --key sk-lazytech-not-a-key")
    capsys.readouterr()
    line = one_line_error(ip, "%%respond\nhello", capsys)
    assert line.startswith("OneKeyLLM error 401: ") and "ONEKEYLLM_API_KEY" in line
    assert "not-a-key" not in line


def test_a_spent_budget_is_one_clear_line(ip, gateway, capsys):
    ip.run_line_magic("onekey", f"config --key {gateway.create_key(budget='0')['key']}")
    capsys.readouterr()
    assert one_line_error(ip, "%%respond\nhello", capsys).startswith("OneKeyLLM error 402: Budget exhausted")


def test_an_unknown_model_is_one_clear_line(ip, capsys):
    line = one_line_error(ip, "%%respond -m no-such-model\nhello", capsys)
    assert line.startswith("OneKeyLLM error 400: ") and "no-such-model" in line


def test_a_gateway_that_is_down_is_one_clear_line(ip, capsys):
    down = f"http://127.0.0.1:{free_port()}"
    ip.run_line_magic("onekey", f"config --base-url {down}")
    capsys.readouterr()
    assert one_line_error(ip, "%%respond\nhello", capsys) == (
        f"OneKeyLLM error: cannot reach the gateway at {down} (is it running?)")
    assert one_line_error(ip, "%onekey usage", capsys).startswith("OneKeyLLM error: cannot reach")


# ------------------------------------------------------------------------------------------ %onekey data

def test_data_commands_return_frames_with_documented_columns_and_dtypes(ip, capsys):
    assert run(ip, "%%respond\nsomething to count").success
    assert run(ip, "%%respond -m echo-1\nand a free one").success

    models = ip.run_line_magic("onekey", "models")
    assert {"echo-1", MODEL} <= set(models["id"])
    assert str(models["created"].dtype) == UTC_NS

    usage = ip.run_line_magic("onekey", "usage")
    assert list(usage.columns) == ["id", "name", "redacted_value", "created_at", "last_used_at", "expires_at",
                                   "limit_usd", "used_usd", "remaining_usd"]
    assert usage.loc[0, "limit_usd"] == 100.0 and usage.loc[0, "used_usd"] > 0
    assert usage.loc[0, "remaining_usd"] == pytest.approx(100.0 - usage.loc[0, "used_usd"])
    assert {str(usage[c].dtype) for c in ("created_at", "last_used_at", "expires_at")} == {UTC_NS}
    assert {str(usage[c].dtype) for c in ("limit_usd", "used_usd", "remaining_usd")} == {"float64"}

    log = ip.run_line_magic("onekey", "requests")
    assert list(log.columns) == ["id", "created_at", "endpoint", "model", "account", "stream", "status_code",
                                 "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "cost_usd",
                                 "overage_usd", "latency_ms", "response_id", "request_id"]
    assert list(log["model"]) == ["echo-1", MODEL]  # newest first
    assert str(log["created_at"].dtype) == UTC_NS and str(log["cost_usd"].dtype) == "float64"
    for column in ("status_code", "input_tokens", "output_tokens", "cached_tokens", "latency_ms"):
        assert str(log[column].dtype) == "int64", column
    assert log["stream"].dtype == bool and log["stream"].all()
    assert list(ip.run_line_magic("onekey", f"requests --model {MODEL} --since 1h")["model"]) == [MODEL]

    by_day = ip.run_line_magic("onekey", "summary")
    assert list(by_day.columns) == ["day", "requests", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"]
    assert str(by_day["day"].dtype) == UTC_NS and by_day["requests"].sum() == 2
    assert by_day["cost_usd"].sum() == pytest.approx(log["cost_usd"].sum())
    by_model = ip.run_line_magic("onekey", "summary --by model")
    assert by_model.set_index("model").loc[MODEL, "requests"] == 1

    capacity = ip.run_line_magic("onekey", "capacity")
    assert {"account", "provider", "models", "healthy", "window", "limit_usd", "used_usd", "remaining_usd",
            "resets_at"} <= set(capacity.columns)
    assert str(capacity["resets_at"].dtype) == UTC_NS and str(capacity["used_usd"].dtype) == "float64"
    assert capacity["models"].str.contains(MODEL).any()


def test_config_shows_the_settings_with_the_key_redacted(ip, user_key, capsys):
    ip.run_line_magic("onekey", "config")
    line = capsys.readouterr().out.strip()
    assert "reachable" in line and f"model {MODEL}" in line
    assert user_key not in line and user_key[-4:] in line


def test_unload_removes_the_magics_and_load_brings_them_back(shell):
    shell.run_line_magic("unload_ext", "notebook_ext")
    assert shell.find_cell_magic("respond") is None and shell.find_line_magic("onekey") is None
    shell.run_line_magic("load_ext", "notebook_ext")
    assert shell.find_cell_magic("respond") is not None and shell.find_line_magic("onekey") is not None


# ------------------------------------------------------------------------------------------ Client

def test_client_streams_deltas_and_returns_the_text_and_the_response(gateway, user_key, nb_model):
    pieces: list[str] = []
    text, response = Client(gateway.url, user_key).respond("stream me", model=nb_model, on_delta=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == text == "Hello from fake chat: stream me"
    assert response["status"] == "completed" and response["usage"]["output_tokens"] > 0
    reply = Client(gateway.url, user_key).respond("again", model="echo-1", stream=False,
                                                  previous_response_id=response["id"])
    assert reply.text == "Echo: again" and reply.response["previous_response_id"] == response["id"]


def test_client_reads_its_settings_from_the_environment(gateway, user_key, monkeypatch):
    monkeypatch.setenv("ONEKEYLLM_BASE_URL", gateway.v1 + "/")
    monkeypatch.setenv("ONEKEYLLM_API_KEY", user_key)
    monkeypatch.setenv("ONEKEYLLM_MODEL", "echo-1")
    client = Client()
    assert client.base_url == gateway.url
    assert client.respond("from env").text == "Echo: from env"
    assert user_key not in repr(client)
    frame = client.requests_frame()
    assert len(frame) == 1 and frame.loc[0, "cost_usd"] > 0  # echo-1 is priced like a small real model


def test_an_empty_request_log_is_an_empty_frame_with_the_same_dtypes(gateway, user_key):
    frame = Client(gateway.url, user_key).requests_frame()
    assert frame.empty and str(frame["created_at"].dtype) == UTC_NS and str(frame["input_tokens"].dtype) == "int64"


# ------------------------------------------------------------------------------------------ pure parts

@pytest.mark.parametrize("url", ["http://gw:8000", "http://gw:8000/", "http://gw:8000/v1", "http://gw:8000/v1/"])
def test_a_trailing_v1_is_tolerated(url):
    assert root_url(url) == "http://gw:8000"


def test_interpolation_leaves_braces_it_cannot_fill_alone():
    namespace = {"name": "Ada", "In": ["", "df.head()"], "Out": {1: 3}, "Err": {}}
    assert interpolate("{name} ran {In[1]} -> {Out[1]}", namespace) == "Ada ran df.head() -> 3"
    assert interpolate('Return {"a": {"b": 1}} and {Err[9]}', namespace) == 'Return {"a": {"b": 1}} and {Err[9]}'
    assert interpolate("a lone } brace {name}", namespace) == "a lone } brace {name}"
    assert interpolate("{unknown} {name!r}", namespace) == "{unknown} 'Ada'"


def test_frames_keep_money_as_float_dollars_and_times_in_utc():
    from notebook_ext.frames import requests_frame

    frame = requests_frame([{"id": "req_1", "created_at": 1711471533, "cost_usd": "0.000001500", "stream": True,
                             "status_code": 200, "input_tokens": 3, "output_tokens": 4, "cached_tokens": 0,
                             "latency_ms": 12, "endpoint": "/v1/responses", "model": "m", "account": "a",
                             "response_id": None}])
    assert frame.loc[0, "created_at"] == pd.Timestamp("2024-03-26 16:45:33", tz="UTC")
    assert frame.loc[0, "cost_usd"] == 1.5e-6


# ------------------------------------------------------------------------------------------ widgets

def test_chat_panel_streams_threads_and_keeps_a_running_cost(ip, upstream):
    panel = ip.run_line_magic("onekey", "chat")
    assert {"echo-1", MODEL} <= set(panel.model.options) and panel.model.value == MODEL
    first = panel.ask("Plot the penguins")
    panel.prompt.value = "Now by island"
    panel.send.click()
    assert first.text == "Hello from fake chat: Plot the penguins"
    assert [text_of(m) for m in upstream_messages(upstream)] == [
        "Plot the penguins", "Hello from fake chat: Plot the penguins", "Now by island"]
    assert panel.transcript.outputs[-1]["data"]["text/markdown"] == "Hello from fake chat: Now by island"
    assert panel.calls == 2 and panel.spent > 0 and "2 call(s)" in panel.status.value
    panel.new_thread.click()
    assert panel.previous_response_id is None and panel.transcript.outputs == ()


def test_chat_panel_shows_an_error_in_place(ip, capsys):
    panel = ip.run_line_magic("onekey", "chat")
    panel.model.options = [*panel.model.options, "no-such-model"]
    panel.model.value = "no-such-model"
    assert panel.ask("hello") is None
    assert "OneKeyLLM error 400" in panel.transcript.outputs[-1]["data"]["text/html"]


def test_usage_dashboard_shows_the_budget_and_the_spend_charts(ip):
    assert run(ip, "%%respond\nspend a little").success
    dashboard = ip.run_line_magic("onekey", "dashboard")
    assert dashboard.budget.max == 100.0 and 0 < dashboard.budget.value < 1
    assert "used of <b>$100.00</b>" in dashboard.budget_line.value
    for chart in (dashboard.by_day, dashboard.by_model):
        assert chart.outputs[0]["data"]["image/png"]
    assert MODEL in dashboard.recent.value
