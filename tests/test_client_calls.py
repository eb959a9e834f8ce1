"""Responses' client-side calls other than functions (custom tools, local_shell, shell, apply_patch) across formats.

A Codex-like Responses client declares them and sends their calls and outputs back; another upstream sees
them as function-style tools, tool calls and tool results, and its calls come back as the item types the
client declared. Driven through the official openai SDK against the live server (echo and the fake upstream).
"""
from __future__ import annotations

import openai
import pytest
from openai.types.responses import Response
from schema_check import assert_conforms

TOOLS = [{"type": "custom", "name": "apply_patch", "description": "Apply a patch to the repository"},
         {"type": "local_shell"}]
HISTORY = [
    {"role": "user", "content": "fix the bug"},
    {"type": "custom_tool_call", "call_id": "call_patch1", "name": "apply_patch", "input": "*** Begin Patch"},
    {"type": "custom_tool_call_output", "call_id": "call_patch1", "output": "Done!"},
    {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_shell1", "status": "completed",
     "action": {"type": "exec", "command": ["pytest", "-q"], "env": {}}},
    {"type": "local_shell_call_output", "id": "call_shell1", "output": "3 passed"},
    {"role": "user", "content": "now the docs"},
]


@pytest.fixture(scope="module")
def setup(gateway, upstream) -> dict:
    gateway.create_model("cc-anth", max_output_tokens=512)
    gateway.create_account(provider="anthropic", base_url=upstream.base_url("anthropic", "client-calls"),
                           api_key="sk-upstream-client-calls", models=["cc-anth"])
    key = gateway.create_key(budget="10", name="client-calls")["key"]
    return {"client": openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)}


def test_client_tools_and_their_calls_reach_an_anthropic_upstream_as_tools(setup, upstream):
    setup["client"].responses.create(model="cc-anth", input=HISTORY, tools=TOOLS)
    body = upstream.last("/v1/messages", scenario="client-calls").body
    assert [t["name"] for t in body["tools"]] == ["apply_patch", "local_shell"]
    assert body["tools"][0]["input_schema"]["properties"] == {"input": {"type": "string"}}
    blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    calls = {b["name"]: b["input"] for b in blocks if b["type"] == "tool_use"}
    assert calls == {"apply_patch": {"input": "*** Begin Patch"},
                     "local_shell": {"type": "exec", "command": ["pytest", "-q"], "env": {}}}
    results = [b["content"] for b in blocks if b["type"] == "tool_result"]
    assert results == ["Done!", "3 passed"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_call_of_a_custom_tool_comes_back_as_a_custom_tool_call(setup, stream):
    kwargs = {"model": "echo-1", "input": "print hello", "tools": TOOLS}
    if stream:
        with setup["client"].responses.stream(**kwargs) as events:
            kinds = [e.type for e in events]
            response = events.get_final_response()
        assert "response.custom_tool_call_input.done" in kinds
        assert "response.function_call_arguments.delta" not in kinds
    else:
        response = setup["client"].responses.create(**kwargs)
    [call] = response.output
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.input == "print hello"
    assert call.call_id.startswith("call_")
    assert_conforms(Response, response.model_dump(mode="json", exclude_unset=True))


def test_a_local_shell_call_comes_back_as_a_local_shell_call(setup):
    response = setup["client"].responses.create(model="echo-1", input="ls", tools=[{"type": "local_shell"}])
    [call] = response.output
    assert call.type == "local_shell_call" and call.action.type == "exec"
    assert_conforms(Response, response.model_dump(mode="json", exclude_unset=True))
