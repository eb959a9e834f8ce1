"""Responses' client-side calls other than functions, as canonical tool calls and back.

Custom tools, `local_shell`, `shell`, `apply_patch` and MCP approval requests are calls the client must
execute (or answer). Another format has only function-style tools, so each becomes a tool of a fixed name
with a JSON-object input (`{"input": …}` for a custom tool's free text, the action or operation itself
otherwise); `kind` on the canonical part remembers the Responses item type, and a tool of one of those
names in a Responses request says which item type an answer's call must take.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from ..canonical import ToolCallPart, ToolResultPart, ToolSpec

# Responses call item type -> (the field holding its input, the Responses tool type that makes it)
CALLS = {"custom_tool_call": ("input", "custom"), "local_shell_call": ("action", "local_shell"),
         "shell_call": ("action", "shell"), "apply_patch_call": ("operation", "apply_patch"),
         "mcp_approval_request": (None, "mcp")}
OUTPUTS = {"custom_tool_call_output": "custom_tool_call", "local_shell_call_output": "local_shell_call",
           "shell_call_output": "shell_call", "apply_patch_call_output": "apply_patch_call",
           "mcp_approval_response": "mcp_approval_request"}
ID_PREFIXES = {"custom_tool_call": "ctc_", "custom_tool_call_output": "ctco_", "local_shell_call": "lsh_",
               "local_shell_call_output": "lsho_", "shell_call": "sh_", "shell_call_output": "sho_",
               "apply_patch_call": "apc_", "apply_patch_call_output": "apco_", "mcp_approval_request": "mcpr_",
               "mcp_approval_response": "mcpa_"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
# Responses tool type -> (its tool name in other formats, the input schema the model is shown there)
BUILT_IN_TOOLS = {
    "local_shell": ("local_shell", {"type": "object", "required": ["command"], "properties": {
        "type": {"type": "string", "enum": ["exec"]}, "command": _STRINGS, "working_directory": {"type": "string"},
        "timeout_ms": {"type": "integer"}, "env": {"type": "object"}}}),
    "shell": ("shell", {"type": "object", "required": ["commands"], "properties": {
        "commands": _STRINGS, "timeout_ms": {"type": "integer"}, "max_output_length": {"type": "integer"}}}),
    "apply_patch": ("apply_patch", {"type": "object", "required": ["type", "path"], "properties": {
        "type": {"type": "string", "enum": ["create_file", "update_file", "delete_file"]},
        "path": {"type": "string"}, "diff": {"type": "string"}}}),
}
CALL_OF_TOOL = {tool: call for call, (_, tool) in CALLS.items()}
_FREE_TEXT = {"type": "object", "required": ["input"], "properties": {"input": {"type": "string"}}}
MCP_APPROVAL = "mcp_approval_request"


def tool_spec(tool: dict) -> Optional[ToolSpec]:
    """A Responses custom or built-in client tool as a function-style tool; None for any other type."""
    kind = tool.get("type")
    if kind == "custom" and isinstance(tool.get("name"), str) and tool["name"]:
        description = tool.get("description") or ""
        fmt = tool.get("format") if isinstance(tool.get("format"), dict) else {}
        if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
            description += f"\n\nThe input follows this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}"
        return ToolSpec(name=tool["name"], description=description.strip() or None, parameters=_FREE_TEXT,
                        kind="custom")
    if kind in BUILT_IN_TOOLS:
        name, schema = BUILT_IN_TOOLS[kind]
        return ToolSpec(name=name, description=f"The client's {name} tool.", parameters=schema, kind=kind)
    return None


def tool_kinds(tools: Any) -> dict:
    """Tool name -> Responses call item type, for the client tools of a Responses request that are not functions."""
    kinds = {}
    for tool in tools if isinstance(tools, list) else []:
        spec = tool_spec(tool) if isinstance(tool, dict) else None
        if spec is not None:
            kinds[spec.name] = CALL_OF_TOOL[spec.kind]
    return kinds


def call_part(item: dict) -> Optional[ToolCallPart]:
    """A Responses client-call item as a canonical tool call (None for other items)."""
    kind = item.get("type")
    if kind not in CALLS:
        return None
    field, tool = CALLS[kind]
    if kind == MCP_APPROVAL:
        arguments = {k: item.get(k) for k in ("server_label", "name", "arguments")}
        return ToolCallPart(id=str(item.get("id") or ""), name=MCP_APPROVAL, arguments=json.dumps(arguments),
                            kind=kind)
    value = item.get(field)
    arguments = {"input": value if isinstance(value, str) else ""} if kind == "custom_tool_call" else value
    name = item.get("name") if kind == "custom_tool_call" else BUILT_IN_TOOLS[tool][0]
    return ToolCallPart(id=str(item.get("call_id") or item.get("id") or ""), name=str(name or ""),
                        arguments=json.dumps(arguments if isinstance(arguments, dict) else {}), kind=kind)


def result_part(item: dict, names: dict) -> Optional[ToolResultPart]:
    """A Responses client-call output item as a canonical tool result (None for other items)."""
    kind = item.get("type")
    if kind not in OUTPUTS:
        return None
    if kind == "mcp_approval_response":
        call_id, output = item.get("approval_request_id"), "approve" if item.get("approve") else "deny"
    else:  # local_shell_call_output names its call by `id`
        call_id, output = item.get("call_id") or item.get("id"), item.get("output")
    if not isinstance(output, str):
        output = json.dumps(output) if output is not None else ""
    return ToolResultPart(call_id=str(call_id or ""), content=output, name=names.get(call_id), kind=OUTPUTS[kind])


def call_item(part: ToolCallPart, kind: str, item_id: str, status: str = "completed") -> dict:
    """A canonical tool call as the Responses item of `kind` (a client-call type)."""
    arguments = part.arguments_object()
    if kind == MCP_APPROVAL:
        return {"id": part.id or item_id, "type": kind, "server_label": str(arguments.get("server_label") or ""),
                "name": str(arguments.get("name") or ""), "arguments": str(arguments.get("arguments") or "")}
    item = {"id": item_id, "type": kind, "call_id": part.id, "status": status}
    if kind == "custom_tool_call":
        item.update(name=part.name, input=str(arguments.get("input") or ""))
    elif kind == "local_shell_call":
        item["action"] = {"type": "exec", "env": {}, **arguments, "command": list(arguments.get("command") or [])}
    else:
        item[CALLS[kind][0]] = arguments
    return item


def result_item(part: ToolResultPart, kind: str) -> dict:
    """A canonical tool result as the Responses output item answering a call of `kind`."""
    text = part.text()
    if kind == MCP_APPROVAL:
        return {"type": "mcp_approval_response", "approval_request_id": part.call_id,
                "approve": text.strip().lower() in ("approve", "approved", "true", "yes")}
    output_type = next(out for out, call in OUTPUTS.items() if call == kind)
    item: dict = {"type": output_type, "call_id": part.call_id}
    if kind == "local_shell_call":
        item = {"type": output_type, "id": part.call_id, "output": text}
    elif kind == "shell_call":
        item["output"] = [{"stdout": text, "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]
    elif kind == "apply_patch_call":
        item.update(status="failed" if part.is_error else "completed", output=text)
    else:
        item["output"] = text
    return item
