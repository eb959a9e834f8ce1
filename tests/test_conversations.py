"""Conversations: the official openai SDK's `client.conversations.*` against the live server, and responses
created in a conversation — which carry the earlier turns upstream and append their own items.
"""
from __future__ import annotations

import openai
import pytest

# provider of the account → (public model, upstream path, fake upstream scenario, extra account fields)
UPSTREAMS = {
    "openai": ("conv-gpt", "/v1/chat/completions", "conv-openai", {"api": "chat"}),
    "openai-responses": ("conv-gpt-resp", "/v1/responses", "conv-openai-responses", {"api": "responses"}),
    "anthropic": ("conv-claude", "/v1/messages", "conv-anthropic", {}),
}
NAME_ITEMS = [{"type": "message", "role": "user", "content": "My name is Ada."},
              {"type": "message", "role": "assistant", "content": "Nice to meet you, Ada."}]


@pytest.fixture(scope="module")
def models(gateway, upstream) -> dict:
    upstream_models = {"openai": "gpt-fake-1", "openai-responses": "gpt-fake-mini", "anthropic": "claude-fake-1"}
    for kind, (model, _, scenario, extra) in UPSTREAMS.items():
        provider = "anthropic" if kind == "anthropic" else "openai"
        gateway.create_model(model, max_output_tokens=256)
        gateway.create_account(provider=provider, base_url=upstream.base_url(provider, scenario),
                               api_key="sk-upstream-conv", models=[model],
                               model_map={model: upstream_models[kind]}, **extra)
    return UPSTREAMS


@pytest.fixture(scope="module")
def client(gateway) -> openai.OpenAI:
    key = gateway.create_key(budget="100", name="conversations")["key"]
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)


def texts(content) -> str:
    """The text of a message's content, whatever the wire format (string, parts, blocks)."""
    if isinstance(content, str):
        return content
    return " ".join(p.get("text") or "" for p in content or [] if isinstance(p, dict))


def upstream_turns(record) -> list[tuple[str, str]]:
    """(role, text) of every message the upstream received, in order."""
    body = record.body
    if "messages" in body:
        return [(m["role"], texts(m.get("content"))) for m in body["messages"]]
    return [(i["role"], texts(i.get("content"))) for i in body["input"] if i.get("type", "message") == "message"]


def item_summary(items) -> list[tuple[str, str, str]]:
    return [(i.type, i.role, texts([c.model_dump() for c in i.content])) for i in items]


# ---------------------------------------------------------------- the Conversations API
def test_sdk_creates_retrieves_updates_and_deletes_a_conversation(client):
    conv = client.conversations.create(metadata={"topic": "names"}, items=NAME_ITEMS)
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "names"}

    assert client.conversations.retrieve(conv.id).model_dump() == conv.model_dump()
    updated = client.conversations.update(conv.id, metadata={"topic": "people", "lang": "en"})
    assert (updated.id, updated.metadata) == (conv.id, {"topic": "people", "lang": "en"})
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "people", "lang": "en"}

    deleted = client.conversations.delete(conv.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conv.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conv.id)


def test_sdk_creates_lists_retrieves_and_deletes_items(client):
    conv = client.conversations.create(items=NAME_ITEMS)
    newest_first = list(client.conversations.items.list(conv.id))
    assert item_summary(newest_first) == [("message", "assistant", "Nice to meet you, Ada."),
                                          ("message", "user", "My name is Ada.")]
    assert all(i.id.startswith("msg_") and i.status == "completed" for i in newest_first)

    added = client.conversations.items.create(conv.id, items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "I live in London."}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"}])
    assert [i.type for i in added.data] == ["message", "function_call", "function_call_output"]
    assert added.data[1].id.startswith("fc_") and added.first_id == added.data[0].id

    page = client.conversations.items.list(conv.id, order="asc", limit=2, include=["message.input_image.image_url"])
    assert page.has_more and len(page.data) == 2
    oldest_first = list(client.conversations.items.list(conv.id, order="asc", limit=2))  # the SDK pages on
    assert [i.id for i in oldest_first] == [i.id for i in reversed(newest_first)] + [i.id for i in added.data]

    message = client.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id)
    assert (message.id, message.role, message.content[0].text) == (added.data[0].id, "user", "I live in London.")
    after_delete = client.conversations.items.delete(added.data[0].id, conversation_id=conv.id)
    assert (after_delete.id, after_delete.object) == (conv.id, "conversation")
    assert added.data[0].id not in [i.id for i in client.conversations.items.list(conv.id)]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id)


def test_malformed_items_and_metadata_are_400(client):
    with pytest.raises(openai.BadRequestError):
        client.conversations.create(items=[{"type": "message", "role": "wizard", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.conversations.create(metadata={"k": "v" * 600})
    conv = client.conversations.create()
    with pytest.raises(openai.BadRequestError):
        client.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": 42}])


def test_another_keys_conversation_is_404(gateway, client, models):
    conv = client.conversations.create(items=NAME_ITEMS)
    other = openai.OpenAI(base_url=gateway.v1, api_key=gateway.create_key(name="other")["key"], max_retries=0)
    for call in (lambda: other.conversations.retrieve(conv.id),
                 lambda: other.conversations.update(conv.id, metadata={"x": "y"}),
                 lambda: other.conversations.delete(conv.id),
                 lambda: other.conversations.items.list(conv.id),
                 lambda: other.conversations.items.create(conv.id, items=NAME_ITEMS),
                 lambda: other.responses.create(model=models["openai"][0], input="hi", conversation=conv.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert len(client.conversations.items.list(conv.id).data) == 2


# ---------------------------------------------------------------- responses in a conversation
@pytest.mark.parametrize("kind", list(UPSTREAMS))
def test_response_in_a_conversation_carries_the_earlier_turns_upstream(client, upstream, models, kind):
    model, path, scenario, _ = models[kind]
    conv = client.conversations.create(items=NAME_ITEMS)

    first = client.responses.create(model=model, input="What is my name?", conversation=conv.id)
    assert first.conversation is not None and first.conversation.id == conv.id
    assert upstream_turns(upstream.last(path, scenario))[-3:] == [
        ("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."), ("user", "What is my name?")]

    second = client.responses.create(model=model, input="And where do I live?", conversation={"id": conv.id})
    assert second.conversation.id == conv.id
    assert upstream_turns(upstream.last(path, scenario))[-5:] == [
        ("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."), ("user", "What is my name?"),
        ("assistant", first.output_text), ("user", "And where do I live?")]

    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert item_summary(items) == [
        ("message", "user", "My name is Ada."), ("message", "assistant", "Nice to meet you, Ada."),
        ("message", "user", "What is my name?"), ("message", "assistant", first.output_text),
        ("message", "user", "And where do I live?"), ("message", "assistant", second.output_text)]
    assert items[3].id == first.output[0].id and items[5].id == second.output[0].id
    assert all(i.status == "completed" for i in items)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_streamed_response_appends_its_items_to_the_conversation(client, upstream, models, kind):
    model, path, scenario, _ = models[kind]
    conv = client.conversations.create(items=NAME_ITEMS[:1])
    with client.responses.stream(model=model, input="Say hello", conversation=conv.id) as stream:
        final = stream.get_final_response()
    assert final.conversation.id == conv.id
    sent = upstream_turns(upstream.last(path, scenario))  # Anthropic gets the two user turns merged into one
    assert " ".join(text for _, text in sent).endswith("My name is Ada. Say hello")
    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert item_summary(items) == [("message", "user", "My name is Ada."), ("message", "user", "Say hello"),
                                   ("message", "assistant", final.output_text)]


def test_tool_calls_in_a_conversation_are_kept_as_items(client, upstream, models):
    model, path, scenario, _ = models["openai"]
    conv = client.conversations.create()
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    asked = client.responses.create(model=model, input="Weather in Paris?", tools=[tool], conversation=conv.id)
    call = next(o for o in asked.output if o.type == "function_call")
    answered = client.responses.create(model=model, tools=[tool], conversation=conv.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}])
    assert "Sunny" in answered.output_text
    sent = upstream.last(path, scenario).body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"]
    kinds = [i.type for i in client.conversations.items.list(conv.id, order="asc")]
    assert kinds == ["message", "function_call", "function_call_output", "message"]


def test_previous_response_id_with_conversation_is_400(client, models):
    model = models["openai"][0]
    conv = client.conversations.create()
    first = client.responses.create(model=model, input="hi")
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model=model, input="again", conversation=conv.id, previous_response_id=first.id)
    assert error.value.body["param"] == "conversation"
    assert client.conversations.items.list(conv.id).data == []


def test_unknown_conversation_is_404(client, models):
    with pytest.raises(openai.NotFoundError) as error:
        client.responses.create(model=models["openai"][0], input="hi", conversation="conv_doesnotexist")
    assert error.value.body["param"] == "conversation"
