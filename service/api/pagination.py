"""Cursor pagination in the OpenAI list shape: `limit`, `after` (an id), `order`."""
from __future__ import annotations

from typing import Callable

import peewee as pw

from ..api_error import ApiError


def list_page(query: pw.ModelSelect, model: type, args: dict, view: Callable[[pw.Model], dict],
              order_field: pw.Field | None = None, key: pw.Field | None = None) -> dict:
    """One page of `query`, newest first unless `order=asc`, after the id `after` (`key`: the field clients
    know as the id, the primary key unless said).

    The cursor is looked for among the rows of `query` only: an id the caller may not list (another key's)
    is as unknown as one that never existed.
    """
    order_field = order_field or model.created_at
    key = key or model._meta.primary_key
    descending = args.get("order", "desc") == "desc"
    after = args.get("after")
    if after:
        anchor = query.where(key == after).first()
        if anchor is None:
            raise ApiError(400, f"Unknown cursor `after`: '{after}'.", param="after")
        value = getattr(anchor, order_field.name)
        if descending:
            query = query.where((order_field < value) | ((order_field == value) & (key < after)))
        else:
            query = query.where((order_field > value) | ((order_field == value) & (key > after)))
    ordering = (order_field.desc(), key.desc()) if descending else (order_field.asc(), key.asc())
    limit = args.get("limit", 20)
    rows = list(query.order_by(*ordering).limit(limit + 1))
    data = [view(row) for row in rows[:limit]]
    return {"object": "list", "data": data, "has_more": len(rows) > limit,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
