"""Our file ids in a request made inline content: what the upstream receives instead of an id it cannot read."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable, Optional

from ..api_error import ApiError
from ..config import Settings
from ..storage.files import get_file, media_type_of, open_content, store_for
from .canonical import FilePart, ImagePart, Request, ToolResultPart


@dataclass
class InlineFile:
    data: str  # base64
    media_type: str
    filename: str

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data}"


class _InlineFiles:
    """Loads the key's files by id, once each, for one request."""

    def __init__(self, key_id: Callable[[], str], settings: Settings):
        self._key_id: Callable[[], str] = key_id
        self._key: Optional[str] = None
        self.repository = store_for(settings)
        self.max_bytes = settings.max_body_bytes
        self.loaded: dict[str, InlineFile] = {}

    @property
    def key_id(self) -> str:
        if self._key is None:
            self._key = self._key_id()
        return self._key

    def load(self, file_id: str) -> InlineFile:
        if file_id not in self.loaded:
            row = get_file(file_id, self.key_id)
            if row.bytes > self.max_bytes:
                raise ApiError(413, f"The file '{file_id}' is too large to send inline ({row.bytes} bytes; "
                                    f"at most {self.max_bytes}).", param="file_id", code="file_too_large")
            with open_content(self.repository, row) as stream:
                content = stream.read(self.max_bytes + 1)
            name = row.filename.rsplit("/", 1)[-1]
            self.loaded[file_id] = InlineFile(base64.b64encode(content).decode("ascii"),
                                              media_type_of(content[:16], name, row.content_type), name)
        return self.loaded[file_id]

    def part(self, part) -> None:
        if isinstance(part, FilePart) and part.file_id and not part.data:
            inline = self.load(part.file_id)
            part.data, part.media_type, part.inlined_from = inline.data, inline.media_type, part.file_id
            part.file_id, part.filename = None, part.filename or inline.filename
        elif isinstance(part, ImagePart) and part.file_id:
            part.url, part.inlined_from, part.file_id = self.load(part.file_id).data_url, part.file_id, None
        elif isinstance(part, ToolResultPart) and isinstance(part.content, list):
            for inner in part.content:
                self.part(inner)

    def chat_body(self, body: dict) -> None:
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else []:
                file = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
                if isinstance(file, dict) and isinstance(file.get("file_id"), str) and not file.get("file_data"):
                    inline = self.load(file["file_id"])
                    part["file"] = {"file_data": inline.data_url, "filename": file.get("filename") or inline.filename}


def resolve_file_parts(request: Request, key_id: Callable[[], str], settings: Settings,
                       chat_body: Optional[dict] = None) -> None:
    """Make every file id of the key in the request inline content (404 for an id that is not the key's).

    `key_id` gives the key's id; it is asked only when the request names a file.

    `FilePart.file_id` becomes base64 `data` with its media type and name,
    `ImagePart.file_id` a data URL. `chat_body`, a Chat body that may be sent
    upstream as it is, gets its `file.file_id` parts replaced by `file_data`.
    """
    files = _InlineFiles(key_id, settings)
    for message in request.messages:
        for part in message.parts:
            files.part(part)
    if chat_body is not None:
        files.chat_body(chat_body)
