"""Filling a cell's `{var}`, `{In[3]}`, `{Out[2]}` and `{Err[4]}` from the user namespace."""
from __future__ import annotations

import os
import traceback
from string import Formatter
from types import TracebackType
from typing import Any, Callable, Mapping, Optional

import IPython

_IPYTHON_DIR = os.path.dirname(IPython.__file__)
_formatter = Formatter()


def interpolate(template: str, namespace: Mapping[str, Any],
                render: Optional[Callable[[Any], Optional[str]]] = None) -> str:
    """Replace each `{field}` that resolves in `namespace`; anything else (JSON, code, typos) stays as written.

    `render` may give the text of a value itself (a DataFrame's table, say); None: the usual formatting.
    """
    try:
        parsed = list(_formatter.parse(template))
    except ValueError:  # unbalanced braces: the cell is not a template
        return template
    out: list[str] = []
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        if field is None:
            continue
        original = "{" + field + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        if not field or field.isdigit():
            out.append(original)
            continue
        try:
            value, _ = _formatter.get_field(field, (), namespace)
            rendered = render(value) if render is not None and not conversion and not spec else None
            if rendered is not None:
                out.append(rendered)
                continue
            value = _formatter.convert_field(value, conversion)
            out.append(_formatter.format_field(value, spec or ""))
        except Exception:  # an unknown name or index: keep the text the user wrote
            out.append(original)
    return "".join(out)


def _user_frames(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """Skip IPython's own frames at the top of a traceback, as IPython does when it shows one."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_IPYTHON_DIR):
        tb = tb.tb_next
    return tb


def traceback_text(error: BaseException) -> str:
    """The plain-text traceback of an error raised in a cell."""
    render = getattr(error, "_render_traceback_", None)
    if callable(render):
        try:
            return "\n".join(render())
        except Exception:
            pass
    if isinstance(error, SyntaxError):
        return "".join(traceback.format_exception_only(type(error), error))
    return "".join(traceback.format_exception(type(error), error, _user_frames(error.__traceback__)))
