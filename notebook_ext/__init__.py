"""OneKeyLLM in Jupyter: `%load_ext notebook_ext` for `%%respond` and `%onekey`, or `Client` from Python."""
from __future__ import annotations

from typing import Any

from .client import Client, Reply
from .errors import GatewayError

__all__ = ["Client", "Reply", "GatewayError", "load_ipython_extension", "unload_ipython_extension",
           "chat_panel", "usage_dashboard"]

_loaded: dict[int, Any] = {}  # id(shell) -> the OneKeyMagics registered on it


def load_ipython_extension(ipython: Any) -> None:
    """Register `%%respond`, `%onekey` and the traceback capture for `{Err[n]}`."""
    from .magics import OneKeyMagics

    if id(ipython) in _loaded:
        return
    magics = OneKeyMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("post_run_cell", magics.record_error)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Remove what `load_ipython_extension` registered."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    ipython.events.unregister("post_run_cell", magics.record_error)
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(type(magics).__name__, None)


def chat_panel(client: Client | None = None) -> Any:
    """The chat widget (model picker, prompt, streamed answer, running cost)."""
    from .widgets import ChatPanel

    return ChatPanel(client or _session_client())


def usage_dashboard(client: Client | None = None) -> Any:
    """The usage widget (budget bar, spend by day and by model, recent requests)."""
    from .widgets import UsageDashboard

    return UsageDashboard(client or _session_client())


def _session_client() -> Client:
    """The client of the loaded extension (so `%onekey config` applies), or a new one from the environment."""
    from IPython import get_ipython

    magics = _loaded.get(id(get_ipython()))
    return magics.client if magics is not None else Client()
