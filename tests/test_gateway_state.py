"""Responses state held by the gateway: previous_response_id across accounts and formats, retrieval, ownership."""
from __future__ import annotations

import json

import openai
import pytest

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def models(gateway, upstream) -> dict:
    """Three public models: on an openai chat account, an anthropic account and an openai responses account."""
    for model in ("st-chat", "st-anth", "st-resp"):
        gateway.create_model(model, max_output_tokens=512)
    gateway.create_account(provider="openai", api="chat", base_url=upstream.base_url("openai", "state-chat"),
                           api_key="sk-upstream-state", models=["st-chat"], model_map={"st-chat": "gpt-fake-1"})
    gateway.create_account(provider="anthropic", base_url=upstream.base_url("anthropic", "state-anth"),
                           api_key="sk-upstream-state", models=["st-anth"], model_map={"st-anth": "claude-fake-1"})
    gateway.create_account(provider="openai", api="responses", base_url=upstream.base_url("openai", "state-resp"),
                           api_key="sk-upstream-state", models=["st-resp"], model_map={"st-resp": "gpt-fake-1"})
    return {"chat": "st-chat", "anthropic": "st-anth", "responses": "st-resp"}


def client_for(gateway, name: str) -> openai.OpenAI:
    key = gateway.create_key(budget="10", name=name)["key"]
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(gateway) -> openai.OpenAI:
    return client_for(gateway, "state")


@pytest.fixture(scope="module")
def stranger(gateway) -> openai.OpenAI:
    return client_for(gateway, "stranger")


def anthropic_request(upstream) -> dict:
    return upstream.last("/v1/messages", scenario="state-anth").body


@pytest.mark.parametrize("stream_first", [False, True], ids=["plain", "streamed"])
def test_previous_response_id_crosses_formats(stream_first, models, client, upstream):
    kwargs = dict(model=models["chat"], instructions="Talk like a pirate.", input="My name is Ada.")
    if stream_first:
        with client.responses.stream(**kwargs) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(**kwargs)
    assert upstream.last("/v1/chat/completions", scenario="state-chat").body["messages"][0] == {
        "role": "system", "content": "Talk like a pirate."}

    second = client.responses.create(model=models["anthropic"], previous_response_id=first.id,
                                     input="What is my name?")
    assert second.previous_response_id == first.id
    assert "What is my name?" in second.output_text
    body = anthropic_request(upstream)
    assert body["model"] == "claude-fake-1"
    texts = [(m["role"], m["content"] if isinstance(m["content"], str) else "".join(
        b.get("text", "") for b in m["content"])) for m in body["messages"]]
    assert texts == [("user", "My name is Ada."), ("assistant", first.output_text), ("user", "What is my name?")]
    assert "pirate" not in json.dumps(body.get("system") or ""), "instructions do not carry over"

    third = client.responses.create(model=models["responses"], previous_response_id=second.id, input="Once more.")
    assert third.id not in (first.id, second.id) and third.previous_response_id == second.id
    body = upstream.last("/v1/responses", scenario="state-resp").body
    assert body["model"] == "gpt-fake-1" and "previous_response_id" not in body
    assert [item["role"] for item in body["input"]] == ["user", "assistant", "user", "assistant", "user"]
    assert "My name is Ada." in json.dumps(body["input"][0]) and first.output_text in json.dumps(body["input"][1])
    assert second.output_text in json.dumps(body["input"][3]) and "Once more." in json.dumps(body["input"][4])
    assert "pirate" not in json.dumps(body)


def test_new_instructions_replace_the_earlier_ones(models, client, upstream):
    first = client.responses.create(model=models["anthropic"], instructions="Be terse.", input="Hello there")
    client.responses.create(model=models["chat"], previous_response_id=first.id, instructions="Be verbose.",
                            input="And again")
    body = upstream.last("/v1/chat/completions", scenario="state-chat").body
    system = [m for m in body["messages"] if m["role"] in ("system", "developer")]
    assert json.dumps(system).count("Be verbose.") == 1 and "Be terse." not in json.dumps(body)
    assert [m["role"] for m in body["messages"] if m["role"] not in ("system", "developer")] == [
        "user", "assistant", "user"]


def test_tool_loop_crosses_formats_with_previous_response_id(models, client, upstream):
    first = client.responses.create(model=models["chat"], input="Weather in Paris?", tools=[WEATHER_TOOL])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.call_id.startswith("call_") and json.loads(call.arguments) == {"city": "Paris"}

    second = client.responses.create(model=models["anthropic"], previous_response_id=first.id, tools=[WEATHER_TOOL],
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "Sunny"}])
    assert "Sunny" in second.output_text
    messages = anthropic_request(upstream)["messages"]
    tool_use = [b for b in messages[1]["content"] if b["type"] == "tool_use"]
    assert messages[1]["role"] == "assistant" and tool_use[0]["name"] == "get_weather"
    assert messages[2]["role"] == "user"
    assert messages[2]["content"][0]["type"] == "tool_result"
    assert messages[2]["content"][0]["tool_use_id"] == tool_use[0]["id"]


def test_a_stored_response_can_be_retrieved_listed_and_deleted(models, client):
    created = client.responses.create(model=models["chat"], input="Remember this.")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert fetched.status == "completed" and fetched.usage.output_tokens > 0

    items = client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    assert items.data[0].role == "user" and items.data[0].content[0].text == "Remember this."

    assert client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_a_streamed_response_is_stored_as_the_stream_ended(models, client):
    with client.responses.stream(model=models["anthropic"], input="Stream and keep.") as events:
        final = events.get_final_response()
    fetched = client.responses.retrieve(final.id)
    assert fetched.output_text == final.output_text
    assert fetched.usage.total_tokens == final.usage.total_tokens


def test_another_keys_response_is_not_found(models, client, stranger):
    created = client.responses.create(model=models["chat"], input="Mine only.")
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as error:
        stranger.responses.create(model=models["chat"], previous_response_id=created.id, input="Let me in.")
    assert error.value.body["param"] == "previous_response_id"
    assert client.responses.retrieve(created.id).id == created.id


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_store_false_responses_are_not_retrievable(stream, models, client):
    kwargs = dict(model=models["anthropic"], input="Forget this.", store=False)
    if stream:
        with client.responses.stream(**kwargs) as events:
            created = events.get_final_response()
    else:
        created = client.responses.create(**kwargs)
    assert created.store is False and created.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=models["chat"], previous_response_id=created.id, input="Again?")


def test_previous_response_id_on_the_echo_account(client):
    first = client.responses.create(model="echo-1", input="alpha")
    second = client.responses.create(model="echo-1", previous_response_id=first.id, input="beta")
    assert second.output_text == "Echo: beta"
    assert second.usage.input_tokens > first.usage.input_tokens


def test_unknown_previous_response_id_is_not_found(models, client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=models["chat"], previous_response_id="resp_doesnotexist", input="Hi")


# ---------------------------------------------------------------- item_reference
def chat_texts(upstream) -> list:
    body = upstream.last("/v1/chat/completions", scenario="state-chat").body
    return [(m["role"], m["content"] if isinstance(m["content"], str) else "".join(
        p.get("text", "") for p in m["content"])) for m in body["messages"]]


def test_an_item_reference_brings_the_stored_item_it_names(models, client, upstream):
    first = client.responses.create(model=models["chat"], input="Remember the word zebra.")
    reply = first.output[0]
    second = client.responses.create(model=models["chat"], input=[
        {"type": "message", "role": "user", "content": "Remember the word zebra."},
        {"type": "item_reference", "id": reply.id},
        {"type": "message", "role": "user", "content": "Which word?"}])
    assert second.status == "completed"
    assert chat_texts(upstream) == [("user", "Remember the word zebra."), ("assistant", first.output_text),
                                    ("user", "Which word?")]
    # the same through the passthrough to a Responses upstream, `type` left out as the API allows
    client.responses.create(model=models["responses"], input=[{"id": reply.id}, {"role": "user", "content": "And?"}])
    sent = upstream.last("/v1/responses", scenario="state-resp").body["input"]
    assert sent[0]["role"] == "assistant" and first.output_text in json.dumps(sent[0])
    assert all(item.get("type") != "item_reference" for item in sent)


def test_an_item_reference_already_in_the_context_adds_nothing(models, client, upstream):
    first = client.responses.create(model=models["chat"], input="My name is Ada.")
    client.responses.create(model=models["chat"], previous_response_id=first.id, input=[
        {"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "My name?"}])
    assert chat_texts(upstream) == [("user", "My name is Ada."), ("assistant", first.output_text),
                                    ("user", "My name?")]


def test_an_unknown_or_anothers_item_reference_is_400(models, client, stranger):
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model=models["chat"], input=[{"type": "item_reference", "id": "msg_nope"}])
    assert unknown.value.body["code"] == "item_not_found" and unknown.value.body["param"] == "input"
    theirs = stranger.responses.create(model=models["chat"], input="A secret of mine.")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=models["chat"], input=[{"type": "item_reference", "id": theirs.output[0].id}])


def test_an_item_reference_names_a_conversation_item_too(models, client, upstream):
    conversation = client.conversations.create(items=[{"type": "message", "role": "user",
                                                       "content": "The code word is heron."}])
    [item] = client.conversations.items.list(conversation.id).data
    client.responses.create(model=models["chat"], input=[{"type": "item_reference", "id": item.id},
                                                         {"role": "user", "content": "Say it."}])
    assert chat_texts(upstream) == [("user", "The code word is heron."), ("user", "Say it.")]
    # within that conversation the item is already in the context
    client.responses.create(model=models["chat"], conversation=conversation.id,
                            input=[{"type": "item_reference", "id": item.id}, {"role": "user", "content": "Again."}])
    assert chat_texts(upstream) == [("user", "The code word is heron."), ("user", "Again.")]
