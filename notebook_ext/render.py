"""How an answer is shown: streamed into one display area updated in place, rendered at the end."""
from __future__ import annotations

import html
import json
import re
import sys
import time
from decimal import Decimal
from typing import Any, Optional, Union

from IPython.display import display

FORMATS = ("markdown", "text", "code", "json")
UPDATE_EVERY_SECONDS = 0.08  # enough for a live feel without flooding the frontend with updates
_FENCE = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.S)


def _strip_fence(text: str) -> tuple[str, str]:
    """The code inside the first fenced block (and its language), or the whole text."""
    match = _FENCE.search(text)
    return (match.group(2).rstrip("\n"), match.group(1)) if match else (text.strip("\n"), "")


def bundle(text: str, fmt: str = "markdown") -> dict:
    """A MIME bundle for the answer text in the chosen format."""
    if fmt == "markdown":
        return {"text/markdown": text, "text/plain": text}
    if fmt == "code":
        code, language = _strip_fence(text)
        return {"text/markdown": f"```{language or 'python'}\n{code}\n```", "text/plain": code}
    if fmt == "json":
        try:
            value = json.loads(_strip_fence(text)[0])
        except ValueError:
            return {"text/plain": text}
        return {"application/json": value if isinstance(value, (dict, list)) else {"value": value},
                "text/plain": json.dumps(value, indent=2)}
    return {"text/plain": text}


def json_bundle(value: Any) -> dict:
    """A raw JSON object for display."""
    return {"application/json": value, "text/plain": json.dumps(value, indent=2)}


def money(value: Union[Decimal, float, None]) -> str:
    """Dollars for humans: `$0`, `$0.000123`, `$0.1234`, `$12.35`."""
    value = None if value is None else Decimal(str(value))
    if value is None or not value.is_finite():
        return "$?"
    if value == 0:
        return "$0"
    if abs(value) < Decimal("0.01"):
        return "$" + f"{value:.6f}".rstrip("0").rstrip(".")
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def call_line(model: str, input_tokens: int, output_tokens: int, cost: Optional[Decimal]) -> str:
    """The one quiet line after an answer."""
    line = f"{model} · {input_tokens} in / {output_tokens} out tokens"
    return line + (f" · {money(cost)}" if cost is not None else "")


def show_quiet(line: str) -> None:
    """A small grey line (plain text outside a notebook)."""
    display({"text/plain": line,
             "text/html": f'<div style="color:#888;font-size:85%;margin-top:2px">{html.escape(line)}</div>'},
            raw=True)


class LiveAnswer:
    """One display area that shows the answer as it streams, then its final rendering.

    In a kernel it is a display handle updated in place; in a terminal the pieces are printed.
    """

    def __init__(self, fmt: str = "markdown", in_kernel: bool = True):
        self.fmt = fmt
        self.in_kernel = in_kernel
        self.text = ""
        self._handle = None
        self._shown_at = 0.0

    def feed(self, delta: str) -> None:
        """Add a piece of the answer."""
        self.text += delta
        if not self.in_kernel:
            sys.stdout.write(delta)
            sys.stdout.flush()
            return
        now = time.monotonic()
        if now - self._shown_at >= UPDATE_EVERY_SECONDS:
            self._show(bundle(self.text, "markdown" if self.fmt == "markdown" else "text"))
            self._shown_at = now

    def finish(self, text: str, raw_response: Optional[dict] = None) -> None:
        """Show the final answer (or the raw response object)."""
        if not self.in_kernel:
            if not self.text and text:
                sys.stdout.write(text)
            sys.stdout.write("\n")
            if raw_response is not None:
                print(json.dumps(raw_response, indent=2))
            sys.stdout.flush()
            return
        self.text = text
        self._show(json_bundle(raw_response) if raw_response is not None else bundle(text, self.fmt))

    def _show(self, data: dict) -> None:
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)


def session_line(log: Any, started_at: float) -> str:
    """What this notebook has spent: calls, tokens and cost of the responses it created."""
    since = time.strftime("%H:%M UTC", time.gmtime(started_at))
    if log is None or len(log) == 0:
        return f"This notebook: no calls yet (since {since})"
    cost = Decimal(str(round(float(log["cost_usd"].sum()), 9)))
    return (f"This notebook: {len(log)} call(s) · {int(log['input_tokens'].sum())} in / "
            f"{int(log['output_tokens'].sum())} out tokens · {money(cost)} since {since}")



def show_spend(frame: Any, by: str) -> None:
    """Draw the spend (cost_usd) per day, model or key as a bar chart, under the cell."""
    from .widgets import spend_chart

    chart = spend_chart(frame, "key_id" if by == "key" else by, f"Spend by {by}")
    display(chart["data"], raw=True)
