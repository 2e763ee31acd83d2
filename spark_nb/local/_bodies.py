"""What a request to the local server may send, read within bounds: a body capped before it is parsed, an upload's
multipart form counted as it arrives against its Content-Length; the counter of every request (and its
x-request-id); the one shape of an error answer."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse

from ._records import Stats


class Counted:
    """Outermost ASGI wrapper: counts every HTTP request and gives every answer an x-request-id."""

    def __init__(self, app: Any, stats: Stats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.stats.add("requests")
        request_id = uuid.uuid4().hex[:16].encode()

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class TooLarge(Exception):
    """An upload is over its limit or the room left in the upload store."""


async def read_form(request: Request, length: int) -> Any:
    """The multipart form of an upload whose Content-Length (within the limit, and the room the store reserved for
    it) was length: its bytes are counted as they arrive, and a body longer than that is cut off, whatever way it
    is framed."""
    async def counted() -> Any:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > length:
                raise TooLarge(f"the upload sent more than its Content-Length of {length} bytes")
            yield chunk

    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise MultiPartException("send the file as multipart field 'file'")
    return await MultiPartParser(request.headers, counted(), max_files=1, max_fields=4).parse()


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it (or its Content-Length) passes limit bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def error_answer(text: str, status: int) -> JSONResponse:
    """An error as the local server answers it: {"message": text}, with its status."""
    return JSONResponse({"message": text}, status_code=status)
