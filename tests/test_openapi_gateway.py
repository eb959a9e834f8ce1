"""The gateway routes in the published OpenAPI document: their request and answer bodies are typed (main fields,
nested shapes, bounds), unknown fields still allowed. (tests/test_schema_fuzz.py drives every operation from
this document with schemathesis: no 5xx, no answer that contradicts it.)"""
from __future__ import annotations

import pytest
import requests

TYPED = {  # route, method: (request properties, 200 answer properties)
    ("/v1/chat/completions", "post"): ({"model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                                        "top_p", "stream", "stream_options", "tools", "tool_choice", "stop"},
                                       {"id", "object", "created", "model", "choices", "usage"}),
    ("/v1/responses", "post"): ({"model", "input", "instructions", "previous_response_id", "conversation", "store",
                                 "stream", "tools", "max_output_tokens", "temperature", "reasoning", "text"},
                                {"id", "object", "created_at", "status", "model", "output", "usage"}),
    ("/v1/messages", "post"): ({"model", "messages", "max_tokens", "system", "tools", "tool_choice", "stream",
                                "temperature", "thinking", "stop_sequences", "metadata"},
                               {"id", "type", "role", "model", "content", "stop_reason", "usage"}),
    ("/v1/messages/count_tokens", "post"): ({"model", "messages", "system", "tools"}, {"input_tokens"}),
    ("/v1/responses/{response_id}", "get"): (None, {"id", "object", "output", "usage", "status"}),
}


@pytest.fixture(scope="module")
def spec(gateway) -> dict:
    return requests.get(gateway.url + "/openapi.json", timeout=10).json()


def resolve(spec: dict, schema: dict) -> dict:
    """A schema with its `$ref` (or a nullable `anyOf` around one) followed."""
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if "$ref" in s)
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("path,method", list(TYPED))
def test_gateway_route_bodies_are_typed_objects_that_keep_unknown_fields(spec, path, method):
    operation = spec["paths"][path][method]
    wanted_request, wanted_answer = TYPED[(path, method)]
    if wanted_request is not None:
        body = resolve(spec, operation["requestBody"]["content"]["application/json"]["schema"])
        assert wanted_request <= set(body["properties"]), sorted(wanted_request - set(body["properties"]))
        assert body.get("additionalProperties") is True
        assert all(body["properties"][name] for name in wanted_request)  # each has a type or shape, none is {}
    answer = resolve(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert wanted_answer <= set(answer["properties"]), sorted(wanted_answer - set(answer["properties"]))
    assert answer.get("additionalProperties") is True


def test_nested_shapes_and_bounds_are_published(spec):
    schemas = spec["components"]["schemas"]
    chat = schemas["ChatRequest"]["properties"]
    assert chat["max_tokens"]["type"] == "integer" and chat["max_tokens"]["maximum"] == 2**31 - 1
    assert chat["temperature"] == {"type": "number", "minimum": 0.0, "maximum": 2.0, "nullable": True}
    message = resolve(spec, chat["messages"]["items"])
    assert "user" in message["properties"]["role"]["enum"]
    content = message["properties"]["content"]["oneOf"]
    assert content[0] == {"type": "string"} and content[1]["type"] == "array"
    usage = resolve(spec, schemas["ChatCompletion"]["properties"]["usage"])
    assert usage["properties"]["prompt_tokens"]["type"] == "integer"
    block = resolve(spec, resolve(spec, schemas["MessagesRequest"]["properties"]["messages"]["items"])
                    ["properties"]["content"]["oneOf"][1]["items"])
    assert block["properties"]["type"]["type"] == "string" and "tool_use_id" in block["properties"]
    part = resolve(spec, resolve(spec, schemas["ResponsesRequest"]["properties"]["input"]["oneOf"][1]["items"])
                   ["properties"]["content"]["oneOf"][1]["items"])
    assert part["properties"]["image_url"]["type"] == "string"

