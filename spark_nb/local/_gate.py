"""What every request to a local server must be before any route sees it, in one ASGI wrapper.

- Addressed to this machine: a request that reached a loopback address must name a loopback host (`localhost`,
  127.x, ::1) in its Host header. A web page on a name that resolves to 127.0.0.1 (DNS rebinding) is its own
  origin for the browser, so it may read what it sends; the Host header is what shows where it came from. A
  request that came in over the network (a server bound beyond loopback, which needs a key) may name any host.
- Never a smuggling shape: Content-Length and Transfer-Encoding together are refused (no client of ours sends
  both; h11 would follow the chunks and ignore the length a route checked).
- The URLs a server hands out (uploads, result videos) point at the address the connection reached, never at
  the Host header: the gate puts that address in the Host header every route reads.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from .._urls import is_loopback_host


class Gate:
    """ASGI wrapper: refuse foreign Host names on loopback and CL+TE requests; Host := the address reached."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(name.lower(), value) for name, value in scope.get("headers", [])]
        names = [name for name, _ in headers]
        host = next((value.decode("latin-1") for name, value in headers if name == b"host"), None)
        reached = scope.get("server")
        if names.count(b"host") > 1 or (host is not None and _over_loopback(reached) and not is_loopback_host(host)):
            await _refuse(send, 403, "this server answers only requests addressed to localhost or a loopback "
                                     "address (the Host header named another host)")
            return
        if b"transfer-encoding" in names and b"content-length" in names:
            await _refuse(send, 400, "a request may not carry both Content-Length and Transfer-Encoding")
            return
        if reached:
            address = _netloc(reached[0], reached[1])
            headers = [(name, value) for name, value in headers if name != b"host"] + [(b"host", address.encode())]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _over_loopback(reached: Any) -> bool:
    """True when the connection reached a loopback address of this machine (or the address is unknown)."""
    if not reached:
        return True
    try:
        return ipaddress.ip_address(str(reached[0]).split("%")[0]).is_loopback
    except ValueError:
        return True


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
