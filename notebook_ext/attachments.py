"""Data in a prompt: DataFrames and Series as compact Markdown tables, figures and files as input parts.

`{df}` in a prompt becomes the frame's shape, dtypes and a Markdown table (its head and tail when it has
more rows than MAX_ROWS); `{fig}` of a matplotlib Figure attaches the figure as a PNG `input_image`;
files are uploaded through `/v1/files` and attached as `input_file` parts.
"""
from __future__ import annotations

import base64
import io
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import pandas as pd

from .errors import GatewayError
from .prompt import interpolate

MAX_ROWS = 20  # beyond it: the first and last MAX_ROWS // 2 rows
MAX_COLUMNS = 30  # beyond it: the first and last MAX_COLUMNS // 2 columns
MAX_CELL_CHARS = 60
FIGURE_DPI = 100


def _clip(value: Any) -> Any:
    """A cell as the table shows it: floats to 6 significant digits, long texts cut."""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = value if isinstance(value, str) else None
    return text[:MAX_CELL_CHARS - 1] + "…" if text is not None and len(text) > MAX_CELL_CHARS else value


def _shortened(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The frame's head and tail with a row of `…` between them, when it is longer than max_rows."""
    if frame.shape[1] > MAX_COLUMNS:
        half = MAX_COLUMNS // 2
        frame = pd.concat([frame.iloc[:, :half], pd.DataFrame({"…": ["…"] * len(frame)}, index=frame.index),
                           frame.iloc[:, -half:]], axis=1)
    if len(frame) <= max_rows:
        return frame
    half = max(1, max_rows // 2)
    gap = pd.DataFrame([["…"] * frame.shape[1]], columns=frame.columns, index=["…"])
    return pd.concat([frame.head(half).astype(object), gap, frame.tail(half).astype(object)])


def frame_markdown(frame: pd.DataFrame, max_rows: int = MAX_ROWS) -> str:
    """A DataFrame for a prompt: its shape, its dtypes and a Markdown table (head and tail when long)."""
    rows, columns = frame.shape
    dtypes = ", ".join(f"{name}: {dtype}" for name, dtype in frame.dtypes.items())
    shown = _shortened(frame, max_rows).map(_clip)
    note = f" (first and last {max(1, max_rows // 2)} shown)" if rows > max_rows else ""
    table = shown.to_markdown()
    return f"DataFrame of {rows:,} rows × {columns:,} columns{note}; dtypes: {dtypes}\n\n{table}"


def series_markdown(series: pd.Series, max_rows: int = MAX_ROWS) -> str:
    """A Series for a prompt, like a one-column DataFrame."""
    name = series.name if series.name is not None else "value"
    shown = _shortened(series.to_frame(name=name), max_rows).map(_clip)
    note = f" (first and last {max(1, max_rows // 2)} shown)" if len(series) > max_rows else ""
    return f"Series {name!s} of {len(series):,} values{note}; dtype: {series.dtype}\n\n{shown.to_markdown()}"


def is_figure(value: Any) -> bool:
    """A matplotlib Figure (or anything else that can `savefig` a PNG), without importing matplotlib."""
    return callable(getattr(value, "savefig", None)) and type(value).__module__.startswith("matplotlib")


def image_part(value: Union[bytes, str, os.PathLike, Any]) -> dict:
    """An `input_image` part from a matplotlib Figure, PNG/JPEG bytes or an image file's path."""
    if is_figure(value):
        buffer = io.BytesIO()
        value.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
        data, media_type = buffer.getvalue(), "image/png"
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        media_type = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    elif isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise GatewayError(f"cannot read the image {path}: {error.strerror}") from None
        media_type = "image/jpeg" if path.lower().endswith((".jpg", ".jpeg")) else "image/png"
    else:
        raise GatewayError(f"cannot attach a {type(value).__name__} as an image (a matplotlib Figure, "
                           f"PNG bytes or a file path)")
    return {"type": "input_image", "image_url": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}


class Attachments:
    """What a prompt carries besides its text: the image and file parts, in order."""

    def __init__(self, upload: Optional[Callable[[str], dict]] = None):
        self.upload = upload
        self.parts: list[dict] = []

    def render(self, value: Any) -> Optional[str]:
        """The prompt text for an interpolated value: tables for data, a marker for an attached figure."""
        if isinstance(value, pd.DataFrame):
            return frame_markdown(value)
        if isinstance(value, pd.Series):
            return series_markdown(value)
        if is_figure(value):
            self.parts.append(image_part(value))
            return f"[figure {self._count('input_image')}, attached as an image]"
        return None

    def add_image(self, value: Any) -> None:
        self.parts.append(image_part(value))

    def add_file(self, path: Union[str, os.PathLike]) -> None:
        """Upload the file through /v1/files and attach it as an `input_file`."""
        if self.upload is None:
            raise GatewayError("files need a client to upload them")
        self.parts.append({"type": "input_file", "file_id": self.upload(os.fspath(path))["id"]})

    def _count(self, kind: str) -> int:
        return sum(1 for part in self.parts if part["type"] == kind)

    def message(self, text: str) -> Union[str, list]:
        """The Responses `input`: the bare text, or one user message with the text and the parts."""
        if not self.parts:
            return text
        return [{"role": "user", "content": [{"type": "input_text", "text": text}, *self.parts]}]


def compose(text: str, namespace: Optional[Mapping[str, Any]], *, images: Iterable[Any] = (),
            files: Iterable[Union[str, os.PathLike]] = (),
            upload: Optional[Callable[[str], dict]] = None) -> tuple[str, Union[str, list]]:
    """(the prompt's text, the `input` to send): `{name}` filled from namespace, images and files attached."""
    attachments = Attachments(upload)
    prompt = interpolate(text, namespace, attachments.render) if namespace is not None else text
    for image in images:
        attachments.add_image(image)
    for path in files:
        attachments.add_file(path)
    return prompt, attachments.message(prompt)
