"""A JSON body checked against a marshmallow schema's declared types and bounds, without marshmallow's `load`.

The gateway routes' schemas (api/gateway_schemas.py) are the one description of the fields every route
reads: the OpenAPI document is made from them, and `compile_checker` turns each into plain Python checks
once, at import. A check walks only the fields a schema declares (anything else passes through untouched,
as the gateway's passthrough needs), treats `null` as absent, and raises BodyTypeError naming the field.
marshmallow's own `load` builds a new dict of every value and costs several times as much per call
(bench/body_check.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import marshmallow as ma
from marshmallow import fields, validate

Check = Callable[[Any, Any], None]  # (value, path): a path is () for the body, else (parent path, key)


class BodyTypeError(ValueError):
    """A field of the body that is not what its schema says; `param` is its path (`messages[0].content`)."""

    def __init__(self, message: str, path):
        self.param = _format(path)
        self.message = message.replace("{path}", self.param)
        super().__init__(self.message)


def _format(path) -> str:
    """`messages[0].content` for ((((), "messages"), 0), "content"): paths are built as tuples, named on error."""
    keys = []
    while path:
        path, key = path
        keys.append(key)
    text = ""
    for key in reversed(keys):
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


class Either(fields.Field):
    """One of several shapes, told apart by their JSON type (a string, or a list of parts)."""

    def __init__(self, *choices: fields.Field, **kwargs):
        super().__init__(**kwargs)
        self.choices = choices


JSON_TYPES = {fields.String: (str,), fields.Boolean: (bool,), fields.List: (list,), fields.Nested: (dict,),
              fields.Dict: (dict,), fields.Integer: (int,), fields.Number: (int, float)}
TYPE_NAMES = {str: "a string", bool: "a boolean", list: "an array", dict: "an object", int: "an integer",
              float: "a number"}


def _bounds(field: fields.Field) -> tuple[Optional[float], Optional[float], Optional[int], Optional[tuple]]:
    """The field's Range (min, max), Length minimum and OneOf choices, from its validators."""
    low = high = min_length = choices = None
    for rule in field.validators:
        if isinstance(rule, validate.Range):
            low, high = rule.min, rule.max
        elif isinstance(rule, validate.Length):
            min_length = rule.min
        elif isinstance(rule, validate.OneOf):
            choices = tuple(rule.choices)
    return low, high, min_length, choices


def _kind(field: fields.Field) -> tuple:
    for cls in type(field).__mro__:
        if cls in JSON_TYPES:
            return JSON_TYPES[cls]
    return ()


def _described(kinds: tuple) -> str:
    return " or ".join(TYPE_NAMES[k] for k in kinds)


def compile_field(field: fields.Field, cache: dict) -> Check:
    """The check of one field's value (never None: absent and null values are not checked)."""
    if isinstance(field, Either):
        alternatives = [(_kind(choice), compile_field(choice, cache)) for choice in field.choices]
        wanted = _described(tuple(k for kinds, _ in alternatives for k in kinds))

        def check_either(value, path):
            for kinds, check in alternatives:
                if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
                    return check(value, path)
            raise BodyTypeError(f"`{{path}}` must be {wanted}.", path)
        return check_either
    kinds = _kind(field)
    if not kinds:  # Raw: anything goes
        return lambda value, path: None
    low, high, min_length, choices = _bounds(field)
    wanted = _described(kinds)
    inner: Optional[Check] = None
    if isinstance(field, fields.List):
        item_check = compile_field(field.inner, cache)
        min_items = min_length

        def inner(value, path):
            if min_items and len(value) < min_items:
                raise BodyTypeError(f"`{{path}}` must have at least {min_items} item(s).", path)
            for i, item in enumerate(value):
                if item is not None:
                    item_check(item, (path, i))
    elif isinstance(field, fields.Nested):
        inner = compile_schema_lazily(field, cache)
    elif isinstance(field, fields.Dict) and field.value_field is not None:
        value_check = compile_field(field.value_field, cache)

        def inner(value, path):
            for name, item in value.items():
                if item is not None:
                    value_check(item, (path, str(name)))
    elif isinstance(field, fields.Number):
        def inner(value, path):
            if isinstance(value, float) and not math.isfinite(value):
                raise BodyTypeError("`{path}` must be a finite number.", path)
            if (low is not None and value < low) or (high is not None and value > high):
                raise BodyTypeError(f"`{{path}}` must be between {low} and {high}.", path)
    elif isinstance(field, fields.String) and (min_length or choices):
        def inner(value, path):
            if min_length and len(value) < min_length:
                raise BodyTypeError("`{path}` must not be empty.", path)
            if choices and value not in choices:
                raise BodyTypeError(f"`{{path}}` must be one of {', '.join(choices)}.", path)
    strict_bool = bool not in kinds  # JSON true is a Python int: never an integer or a number here

    def check(value, path):
        if not isinstance(value, kinds) or (strict_bool and isinstance(value, bool)):
            raise BodyTypeError(f"`{{path}}` must be {wanted}.", path)
        if inner is not None:
            inner(value, path)
    return check


def compile_schema_lazily(field: fields.Nested, cache: dict) -> Check:
    """A nested schema's check, compiled once per schema class; a schema nested in itself (an Anthropic
    tool_result's content blocks) gets a check that looks its own up when it runs."""
    key = type(field.schema)
    if key in cache:
        return cache[key] or (lambda value, path: cache[key](value, path))
    cache[key] = None  # compiling
    cache[key] = _compile(field.schema, cache)
    return cache[key]


def _compile(schema: ma.Schema, cache: dict) -> Check:
    checks = {field.data_key or name: compile_field(field, cache)
              for name, field in schema.fields.items() if not field.dump_only}
    required = tuple(field.data_key or name for name, field in schema.fields.items() if field.required)

    def check(body, path):
        for name in required:
            if body.get(name) is None:
                raise BodyTypeError("`{path}` is required.", (path, name))
        for name, value in body.items():  # a body names fewer fields than its schema declares
            check_value = checks.get(name)
            if check_value is not None and value is not None:
                check_value(value, (path, name))
    return check


def compile_checker(schema_class: type) -> Callable[[dict], None]:
    """The check of a whole body against `schema_class` (raises BodyTypeError)."""
    check = _compile(schema_class(), {})
    return lambda body: check(body, ())
