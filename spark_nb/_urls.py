"""What counts as a URL: the one http(s) test every module uses, and which hosts only this machine can reach."""

from __future__ import annotations

import ipaddress
import re
from typing import TypeGuard
from urllib.parse import urlsplit

MAX_URL_CHARS = 8000  # longer URLs are refused by most web servers (8 KB request lines)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters or more: "C:\x" is a Windows drive
_HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")


def url_scheme(text: str) -> str | None:
    """The lower-cased scheme when text starts like a URL ("HTTPS://…" -> "https"), else None (a path)."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def is_http_url(text: object) -> TypeGuard[str]:
    """True for an http(s) URL a server can fetch: scheme in any case, a valid host, a numeric port, no spaces."""
    if not isinstance(text, str) or url_scheme(text) not in ("http", "https"):
        return False
    if len(text) > MAX_URL_CHARS or any(c.isspace() or not c.isprintable() for c in text):
        return False
    try:
        parts = urlsplit(text)
        host, _ = parts.hostname, parts.port  # .port raises ValueError unless it is a number in 0-65535
    except ValueError:  # e.g. "http://[", or a netloc that changes under NFKC normalisation
        return False
    if not host or not parts.netloc or text[len(parts.scheme):len(parts.scheme) + 3] != "://":
        return False
    return _valid_host(host)


def _valid_host(host: str) -> bool:
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]").split("%")[0])
            return True
        except ValueError:
            return False
    return host.isascii() and len(host) <= 253 and bool(_HOST.match(host))


def is_loopback_url(url: str) -> bool:
    """True when url points at this machine (127.0.0.0/8, ::1, localhost, 0.0.0.0): a remote browser can't reach it."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in ("", "localhost", "0.0.0.0") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def in_clear_beyond_this_machine(url: str) -> bool:
    """True when what is sent to url travels unencrypted beyond this machine: http:// to a host that is not loopback."""
    try:
        return url_scheme(url.strip()) == "http" and not is_loopback_url(url.strip())
    except ValueError:  # not a URL at all: the URL checks say so
        return False


def is_loopback_host(host: str) -> bool:
    """True when a Host header (with or without its port) names this machine: localhost or a loopback address. A
    name that merely resolves to one (DNS rebinding) is not."""
    name = re.sub(r":\d+$", "", host.strip().lower())
    name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
