"""ipywidgets for the gateway: a chat panel and a usage dashboard (JupyterLab, Notebook, Voilà)."""
from __future__ import annotations

import base64
import html
import io
import math
from decimal import Decimal
from typing import Optional

import ipywidgets as widgets
import pandas as pd

from .client import Client, Reply, redact
from .errors import GatewayError
from .render import money

_BOX = widgets.Layout(border="1px solid #ddd", padding="4px 10px", width="100%")


def _html(text: str, style: str = "") -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": f'<div style="{style}">{text}</div>', "text/plain": html.unescape(text)}}


def _markdown(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": text, "text/plain": text}}


class ChatPanel(widgets.VBox):
    """Model picker, transcript with the streamed answer, prompt box, send button and a running cost line."""

    def __init__(self, client: Optional[Client] = None, model: Optional[str] = None):
        self.client = client or Client()
        self.previous_response_id: Optional[str] = None
        self.calls, self.input_tokens, self.output_tokens = 0, 0, 0
        self.spent = Decimal(0)
        self._entries: list[dict] = []
        self.model = widgets.Dropdown(description="Model", layout=widgets.Layout(width="320px"))
        self.transcript = widgets.Output(layout=widgets.Layout(
            border="1px solid #ddd", padding="4px 10px", min_height="80px", max_height="420px", overflow="auto"))
        self.prompt = widgets.Textarea(placeholder="Ask anything… (Send, or New thread to start over)",
                                       layout=widgets.Layout(width="100%", height="70px"))
        self.send = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.new_thread = widgets.Button(description="New thread", icon="refresh")
        self.status = widgets.HTML()
        self.send.on_click(lambda _: self.ask())
        self.new_thread.on_click(lambda _: self.start_new_thread())
        super().__init__([widgets.HTML("<b>OneKeyLLM chat</b>"), self.model, self.transcript, self.prompt,
                          widgets.HBox([self.send, self.new_thread]), self.status],
                         layout=widgets.Layout(width="100%", max_width="760px"))
        self.add_class("onekey-chat")
        self._load_models(model or self.client.model)
        self._show_status()

    def _load_models(self, preferred: Optional[str]) -> None:
        try:
            ids = [m["id"] for m in self.client.models()]
        except GatewayError as error:
            ids = [preferred] if preferred else []
            self._entries.append(_html(html.escape(str(error)), "color:#b00020"))
            self.transcript.outputs = tuple(self._entries)
        self.model.options = ids
        if ids:
            self.model.value = preferred if preferred in ids else ids[0]

    def start_new_thread(self) -> None:
        """Forget the thread; the next question starts a new one."""
        self.previous_response_id = None
        self._entries = []
        self.transcript.outputs = ()
        self._show_status()

    def ask(self, text: Optional[str] = None) -> Optional[Reply]:
        """Send the prompt box (or `text`), stream the answer into the transcript, update the cost line."""
        text = (self.prompt.value if text is None else text).strip()
        if not text:
            return None
        self.prompt.value = ""
        self.send.disabled = True
        self._entries.append(_html(f"<b>You</b> · {html.escape(text)}", "margin:6px 0;color:#333"))
        self._entries.append(_markdown("…"))
        pieces: list[str] = []

        def show(delta: str) -> None:
            pieces.append(delta)
            self._entries[-1] = _markdown("".join(pieces))
            self.transcript.outputs = tuple(self._entries)

        self.transcript.outputs = tuple(self._entries)
        try:
            reply = self.client.respond(text, model=self.model.value or None,
                                        previous_response_id=self.previous_response_id, on_delta=show)
        except GatewayError as error:
            self._entries[-1] = _html(html.escape(str(error)), "color:#b00020")
            self.transcript.outputs = tuple(self._entries)
            return None
        finally:
            self.send.disabled = False
        self._entries[-1] = _markdown(reply.text)
        self.transcript.outputs = tuple(self._entries)
        self._count(reply)
        return reply

    def _count(self, reply: Reply) -> None:
        response = reply.response
        usage = response.get("usage") or {}
        self.previous_response_id = response.get("id")
        self.calls += 1
        self.input_tokens += int(usage.get("input_tokens") or 0)
        self.output_tokens += int(usage.get("output_tokens") or 0)
        try:
            self.spent += self.client.cost_of(response.get("id", ""), response.get("model")) or 0
        except GatewayError:
            pass
        self._show_status()

    def _show_status(self) -> None:
        line = (f"{self.calls} call(s) · {self.input_tokens} in / {self.output_tokens} out tokens · "
                f"{money(self.spent)} spent here")
        if self.previous_response_id:
            line += f" · thread {self.previous_response_id}"
        self.status.value = f'<span style="color:#888;font-size:85%">{html.escape(line)}</span>'


def spend_figure(frame: pd.DataFrame, label: str, title: str):
    """A bar chart of `cost_usd` per `label` (a matplotlib Figure, drawn without pyplot state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6, 2.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=11)
    if frame.empty:
        axes.text(0.5, 0.5, "no requests yet", ha="center", va="center", color="#888", transform=axes.transAxes)
        axes.set_axis_off()
    else:
        names = frame[label].dt.strftime("%b %d") if label == "day" else frame[label].astype(str)
        axes.bar(names, frame["cost_usd"], color="#4c72b0")
        axes.set_ylabel("USD")
        axes.set_ylim(bottom=0)  # spend is never negative (matplotlib centres an all-zero axis on 0)
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
        axes.grid(axis="y", alpha=0.3)
    return figure


def spend_chart(frame: pd.DataFrame, label: str, title: str) -> dict:
    """The spend chart as a PNG display output."""
    buffer = io.BytesIO()
    spend_figure(frame, label, title).savefig(buffer, format="png")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": title}}


class UsageDashboard(widgets.VBox):
    """Budget bar, spend by day and by model, and the last requests of the key."""

    def __init__(self, client: Optional[Client] = None, recent: int = 8):
        self.client = client or Client()
        self.recent_rows = recent
        self.title = widgets.HTML()
        self.budget = widgets.FloatProgress(min=0.0, max=1.0, value=0.0, layout=widgets.Layout(width="100%"))
        self.budget_line = widgets.HTML()
        self.by_day = widgets.Output()
        self.by_model = widgets.Output()
        self.recent = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__([self.title, self.budget, self.budget_line, widgets.HBox([self.by_day, self.by_model]),
                          self.recent, self.refresh_button], layout=widgets.Layout(width="100%", max_width="980px"))
        self.add_class("onekey-dashboard")
        self.refresh()

    def refresh(self) -> None:
        """Fetch usage, the summaries and the last requests, and redraw."""
        try:
            usage = self.client.usage_frame().iloc[0]
            by_day = self.client.summary_frame("day")
            by_model = self.client.summary_frame("model")
            recent = self.client.requests_frame(limit=self.recent_rows)
        except GatewayError as error:
            self.title.value = f'<b style="color:#b00020">{html.escape(str(error))}</b>'
            return
        self.title.value = (f"<b>Usage of key {html.escape(str(usage['name'] or ''))}</b> "
                            f"<code>{html.escape(str(usage['redacted_value'] or redact(self.client.api_key)))}</code>")
        self._show_budget(usage)
        self.by_day.outputs = (spend_chart(by_day.sort_values("day"), "day", "Spend by day"),)
        self.by_model.outputs = (spend_chart(by_model.sort_values("cost_usd", ascending=False), "model",
                                             "Spend by model"),)
        self.recent.value = self._recent_table(recent)

    def _show_budget(self, usage: pd.Series) -> None:
        limit, used, remaining = usage["limit_usd"], usage["used_usd"], usage["remaining_usd"]
        if limit is None or math.isnan(limit):
            self.budget.max, self.budget.value, self.budget.bar_style = 1.0, 0.0, "info"
            self.budget_line.value = f"{money(used)} used · no budget limit"
            return
        share = used / limit if limit else 1.0
        self.budget.max = max(float(limit), 1e-9)
        self.budget.value = min(float(used), self.budget.max)
        self.budget.bar_style = "danger" if share >= 0.95 else "warning" if share >= 0.8 else "success"
        self.budget_line.value = (f"<b>{money(used)}</b> used of <b>{money(limit)}</b>"
                                  f" · <b>{money(remaining)}</b> remaining ({share:.1%} used)")

    @staticmethod
    def _recent_table(recent: pd.DataFrame) -> str:
        if recent.empty:
            return "<i>No requests yet.</i>"
        cell = "padding:3px 10px;border-bottom:1px solid #eee;"
        heads = [("time", "left"), ("model", "left"), ("status", "right"), ("tokens in", "right"),
                 ("tokens out", "right"), ("cost", "right"), ("latency", "right")]
        head = "".join(f'<th style="{cell}text-align:{align};color:#666">{name}</th>' for name, align in heads)
        rows = []
        for row in recent.itertuples():
            values = [row.created_at.strftime("%Y-%m-%d %H:%M:%S"), html.escape(str(row.model)), row.status_code,
                      f"{row.input_tokens:,}", f"{row.output_tokens:,}", money(row.cost_usd), f"{row.latency_ms:,} ms"]
            rows.append("<tr>" + "".join(f'<td style="{cell}text-align:{align}">{value}</td>'
                                         for value, (_, align) in zip(values, heads, strict=True)) + "</tr>")
        return ('<b>Last requests</b><table style="border-collapse:collapse;font-size:90%;'
                f'font-variant-numeric:tabular-nums"><tr>{head}</tr>{"".join(rows)}</table>')
