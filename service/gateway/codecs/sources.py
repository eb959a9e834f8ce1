"""Where an answer's text came from: citations, annotations and web searches, between the formats.

Canonical annotations are Responses' `url_citation` shape with indexes into one text part
(`end_index` None: to the part's end, as an Anthropic citation covers its whole text block).
"""
from __future__ import annotations

from typing import Any, Optional

from ..canonical import ServerToolPart, TextPart


def from_anthropic_citation(citation: Any) -> Optional[dict]:
    """An Anthropic citation of a web page as a canonical annotation (None for document citations)."""
    if not isinstance(citation, dict) or not isinstance(citation.get("url"), str):
        return None
    found = {"type": "url_citation", "url": citation["url"], "title": str(citation.get("title") or ""),
             "start_index": 0, "end_index": None}
    if isinstance(citation.get("cited_text"), str):
        found["cited_text"] = citation["cited_text"]
    return found


def from_url_citation(annotation: Any, offset: int = 0) -> Optional[dict]:
    """A Responses (or Chat, unwrapped) `url_citation` as a canonical annotation, its indexes moved by `offset`."""
    if not isinstance(annotation, dict) or annotation.get("type") != "url_citation":
        return None
    inner = annotation.get("url_citation") if isinstance(annotation.get("url_citation"), dict) else annotation
    if not isinstance(inner.get("url"), str):
        return None
    start, end = inner.get("start_index"), inner.get("end_index")
    return {"type": "url_citation", "url": inner["url"], "title": str(inner.get("title") or ""),
            "start_index": (start if isinstance(start, int) else 0) - offset,
            "end_index": end - offset if isinstance(end, int) else None}


def url_citations(part: TextPart, offset: int = 0) -> list:
    """A text part's annotations as Responses `url_citation`s, indexes into a text where the part starts at `offset`."""
    return [{"type": "url_citation", "url": a["url"], "title": a.get("title") or "",
             "start_index": offset + (a.get("start_index") or 0),
             "end_index": offset + (len(part.text) if a.get("end_index") is None else a["end_index"])}
            for a in part.annotations]


def chat_annotations(parts: list) -> list:
    """The annotations of a Chat message whose content is these text parts joined."""
    found, offset = [], 0
    for part in parts:
        found += [{"type": "url_citation", "url_citation": {k: v for k, v in a.items() if k != "type"}}
                  for a in url_citations(part, offset)]
        offset += len(part.text)
    return found


def web_search_part(item: dict) -> ServerToolPart:
    """A Responses `web_search_call` item as a server tool part."""
    action = item.get("action") if isinstance(item.get("action"), dict) else {}
    sources = [{"url": s["url"], "title": s.get("title") or ""} for s in action.get("sources") or []
               if isinstance(s, dict) and isinstance(s.get("url"), str)]
    query = action.get("query")
    return ServerToolPart(id=str(item.get("id") or ""), name="web_search",
                          input={"query": query} if isinstance(query, str) else {}, sources=sources)


def anthropic_search_results(block: dict) -> list:
    """The pages an Anthropic `web_search_tool_result` block found (none for an error result)."""
    content = block.get("content")
    return [{"url": r["url"], "title": r.get("title") or ""} for r in content if isinstance(r, dict)
            and isinstance(r.get("url"), str)] if isinstance(content, list) else []


def web_search_item(part: ServerToolPart, item_id: str) -> Optional[dict]:
    """A server web search as a Responses `web_search_call` item (None for other server tools)."""
    if part.name != "web_search":
        return None
    action: dict = {"type": "search", "sources": [{"type": "url", "url": s["url"]} for s in part.sources]}
    if isinstance(part.input.get("query"), str):
        action["query"] = part.input["query"]
    return {"id": item_id, "type": "web_search_call", "status": "completed", "action": action}
