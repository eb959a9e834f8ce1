"""`%%respond` and `%onekey`: the gateway from notebook cells."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

import pandas as pd
import requests
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .attachments import compose
from .client import Client, redact
from .errors import GatewayError
from .prompt import interpolate, traceback_text
from .render import FORMATS, LiveAnswer, call_line, session_line, show_quiet, show_spend

ONEKEY_COMMANDS = ("config", "models", "usage", "requests", "summary", "spend", "session", "capacity", "thread", "chat",
                   "dashboard")


@dataclass
class Turn:
    """One answered cell of the thread."""

    response_id: str
    model: str
    prompt: str
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: Optional[Decimal]


@dataclass
class Thread:
    """The cells chained by `previous_response_id` in this session, until `--new`."""

    turns: list[Turn] = field(default_factory=list)

    @property
    def last_id(self) -> Optional[str]:
        """The response id the next cell continues from."""
        return self.turns[-1].response_id if self.turns else None

    def frame(self) -> pd.DataFrame:
        """The turns as a table."""
        rows = [{"response_id": t.response_id, "model": t.model, "input_tokens": t.input_tokens,
                 "output_tokens": t.output_tokens,
                 "cost_usd": float(t.cost_usd) if t.cost_usd is not None else float("nan"),
                 "prompt": t.prompt, "answer": t.text} for t in self.turns]
        frame = pd.DataFrame(rows, columns=["response_id", "model", "input_tokens", "output_tokens", "cost_usd",
                                            "prompt", "answer"])
        return frame.astype({"input_tokens": "int64", "output_tokens": "int64", "cost_usd": "float64"})


def _unquote(text: str) -> str:
    """magic_arguments keeps the quotes of `--system "two words"`; drop one matching pair."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _usage_counts(response: dict) -> tuple[int, int]:
    usage = response.get("usage") or {}
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


@magics_class
class OneKeyMagics(Magics):
    """The extension's magics, with the session's client, thread and captured tracebacks."""

    def __init__(self, shell: Any, client: Optional[Client] = None):
        super().__init__(shell)
        self.client = client or Client()
        self.thread = Thread()
        shell.user_ns_hidden.setdefault("Err", self.errors)

    @property
    def errors(self) -> dict[int, str]:
        """`Err` in the user namespace: cell number -> traceback text (made again after a `%reset`)."""
        return self.shell.user_ns.setdefault("Err", {})

    @property
    def in_kernel(self) -> bool:
        """True in a Jupyter kernel (rich, updatable displays), False in a terminal shell."""
        return getattr(self.shell, "kernel", None) is not None

    def record_error(self, result: Any) -> None:
        """post_run_cell hook: keep the traceback text of a failed cell for `{Err[n]}`."""
        error = result.error_in_exec or result.error_before_exec
        if error is not None and result.execution_count:
            self.errors[result.execution_count] = traceback_text(error)

    # -------------------------------------------------------------------------------------- %%respond

    @magic_arguments()
    @argument("-m", "--model", help="model to use (default: %%onekey config --model, or ONEKEYLLM_MODEL)")
    @argument("--system", metavar="S", help="system instructions for this call")
    @argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming it")
    @argument("--new", action="store_true", help="start a new thread instead of continuing the last answer")
    @argument("-o", "--output", metavar="VAR", help="store the answer text in the variable VAR")
    @argument("-f", "--format", choices=FORMATS, default="markdown", help="how to render the answer")
    @argument("--json", action="store_true", help="show the raw response object")
    @argument("--image", metavar="VAR", action="append", default=[],
              help="attach the matplotlib Figure (or PNG bytes, or image path) in variable VAR; repeatable")
    @argument("--file", metavar="PATH", action="append", default=[],
              help="upload the file through /v1/files and attach it as an input_file; repeatable")
    @cell_magic
    def respond(self, line: str, cell: str) -> None:
        """Send the cell to /v1/responses and stream the answer; cells form one thread until --new.

        The cell may use {var} from the namespace, {In[3]}, {Out[2]} and {Err[4]} (the traceback of cell 4);
        {df} of a DataFrame or Series becomes a compact Markdown table, {fig} of a Figure an attached image.
        """
        args = parse_argstring(self.respond, line)
        if args.output and not args.output.isidentifier():
            raise UsageError(f"-o needs a variable name, not {args.output!r}")
        namespace = self.shell.user_ns
        missing = [name for name in args.image if name not in namespace]
        if missing:
            raise UsageError(f"--image needs a variable of this notebook: no {missing[0]!r}")
        prompt, content = compose(cell.strip(), namespace, images=[namespace[name] for name in args.image],
                                  files=[_unquote(path) for path in args.file], upload=self.client.upload_file)
        prompt = prompt.strip()
        if not prompt:
            raise UsageError("the cell is empty: write the prompt below %%respond")
        if args.new:
            self.thread = Thread()
        system = interpolate(_unquote(args.system), namespace) if args.system else None
        live = LiveAnswer(args.format, self.in_kernel)
        reply = self.client.respond(content if isinstance(content, list) else prompt, model=args.model,
                                    instructions=system,
                                    previous_response_id=self.thread.last_id, stream=not args.no_stream,
                                    on_delta=live.feed)
        live.finish(reply.text, reply.response if args.json else None)
        response = reply.response
        model = response.get("model") or args.model or self.client.model or "?"
        input_tokens, output_tokens = _usage_counts(response)
        cost = self._cost(response.get("id"), model)
        self.thread.turns.append(Turn(response.get("id", ""), model, prompt, reply.text, input_tokens,
                                      output_tokens, cost))
        if args.output:
            namespace[args.output] = reply.text
        show_quiet(call_line(model, input_tokens, output_tokens, cost))

    def _cost(self, response_id: Optional[str], model: str) -> Optional[Decimal]:
        """The call's cost from its request-log row; unknown rather than an error."""
        if not response_id:
            return None
        try:
            return self.client.cost_of(response_id, model)
        except GatewayError:
            return None

    # -------------------------------------------------------------------------------------- %onekey

    @magic_arguments()
    @argument("command", choices=ONEKEY_COMMANDS,
              help="config: show or change settings; models, usage, requests, summary, capacity: DataFrames; "
                   "spend: the spend as a DataFrame and a chart; session: what this notebook spent so far; "
                   "thread: this session's thread; chat, dashboard: widgets")
    @argument("--base-url", metavar="U", help="config: the gateway's root URL")
    @argument("--key", metavar="K", help="config: the API key")
    @argument("--model", metavar="M", help="config: the default model; requests: only this model")
    @argument("--since", help="requests: from (unix seconds, ISO date, or a look-back like 7d, 12h)")
    @argument("--until", help="requests: until (same forms as --since)")
    @argument("--limit", type=int, default=1000, help="requests: at most this many rows")
    @argument("--by", choices=("day", "model", "key"), default="day",
              help="summary: group by day or model; spend: by day, model or key")
    @argument("--refresh", action="store_true", help="capacity: re-probe the upstream accounts first")
    @argument("--new", action="store_true", help="thread: forget the thread, the next cell starts a new one")
    @line_magic
    def onekey(self, line: str) -> Any:
        """Configure the gateway client and fetch usage as DataFrames."""
        args = parse_argstring(self.onekey, line)
        client = self.client
        if args.command == "config":
            client.configure(args.base_url, args.key, args.model)
            print(self._config_line())
            return None
        if args.command == "models":
            return client.models_frame()
        if args.command == "usage":
            return client.usage_frame()
        if args.command == "requests":
            return client.requests_frame(since=args.since, until=args.until, model=args.model, limit=args.limit)
        if args.command == "summary":
            if args.by == "key":
                raise UsageError("summary groups by day or model; %onekey spend --by key groups by key")
            return client.summary_frame(args.by)
        if args.command == "spend":
            frame = client.spend_frame(args.by)
            show_spend(frame, args.by)
            return frame
        if args.command == "session":
            frame = client.session_frame()
            print(session_line(frame, client.started_at))
            return frame
        if args.command == "capacity":
            return client.capacity_frame(args.refresh)
        if args.command in ("chat", "dashboard"):
            from .widgets import ChatPanel, UsageDashboard

            return ChatPanel(client) if args.command == "chat" else UsageDashboard(client)
        return self._thread_command(args.new)

    def _config_line(self) -> str:
        client = self.client
        try:
            answer = client.session.get(client.base_url + "/v1/ping", timeout=5)
            state = f"reachable, version {answer.json().get('version')}" if answer.ok else f"HTTP {answer.status_code}"
        except (requests.RequestException, ValueError):
            state = "not reachable"
        return (f"OneKeyLLM gateway {client.base_url} ({state}) · key {redact(client.api_key)}"
                f" · model {client.model or '(none)'}")

    def _thread_command(self, new: bool) -> Optional[pd.DataFrame]:
        if new:
            self.thread = Thread()
        if not self.thread.turns:
            print("No thread yet: the next %%respond starts one.")
            return None
        turns = self.thread.turns
        print(f"Thread of {len(turns)} turn(s); the next %%respond continues from {self.thread.last_id}.")
        return self.thread.frame()
