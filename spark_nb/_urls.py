"""What counts as a URL: the one http(s) test every module uses, and which hosts only this machine can reach."""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import TypeGuard
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_CHARS = 8000  # longer URLs are refused by most web servers (8 KB request lines)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters or more: "C:\x" is a Windows drive
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")  # scheme://user:pass@
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


def shown_url(url: str, limit: int = 200) -> str:
    """url as a message or report shows it: without its user name and password (user:pass@), cut to limit."""
    url = _USERINFO.sub(r"\1", url)
    return url if len(url) <= limit else f"{url[:limit]}…"


def canonical_url(url: str) -> str:
    """One spelling of a service's base URL, so that spellings of one service are one service (the journal's and
    the budget's identity): scheme and host in lower case, no default port, no trailing dot on a host name, no dot
    segments, no trailing slash ("HTTP://Cloud.Vtrix.ai:443/./" -> "https://cloud.vtrix.ai"), and no user name or
    password (`user:pass@`: never sent, as the API key authenticates every request, and so never kept in settings,
    messages or the journal). Names are not resolved: "localhost" and "127.0.0.1", or "127.1", stay apart. Text
    that is not an http(s) URL is only stripped of its trailing slashes (the client refuses it where it is used)."""
    text = url.strip()
    if not is_http_url(text):
        return text.rstrip("/")
    parts = urlsplit(text)
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets (urlsplit lower-cases it already)
    elif not _is_address(host):
        host = host.rstrip(".")
    netloc = host + (f":{port}" if port not in (None, _DEFAULT_PORTS[scheme]) else "")
    path = posixpath.normpath(parts.path) if parts.path not in ("", "/") else ""
    path = "" if path in ("/", ".", "//") else path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, parts.fragment))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


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


def is_literal_loopback(host: str | None) -> bool:
    """True when host names this machine without asking DNS: localhost, 127.0.0.0/8 or ::1 (a *.localhost name is
    not: glibc asks DNS for it, and DNS may answer any address)."""
    name = (host or "").strip().rstrip(".").lower()
    name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def direct_mounts(*urls: str) -> dict[str, None]:
    """httpx mounts that send localhost, 127.0.0.1, ::1 and each of urls' literal loopback hosts straight there, never
    through the environment's proxy (HTTP_PROXY would otherwise carry an http:// request, key and all, in clear)."""
    hosts = ["localhost", "127.0.0.1", "[::1]"]
    for url in urls:
        host = urlsplit(url).hostname or ""
        if is_literal_loopback(host):
            hosts.append(f"[{host}]" if ":" in host else host)
    return {f"all://{host}": None for host in hosts}


def in_clear_beyond_this_machine(url: str) -> bool:
    """True when what is sent to url travels unencrypted beyond this machine: http:// to a host that is not literally
    this machine (is_literal_loopback, no DNS), through a proxy or not. A literal loopback host is never sent through
    a proxy (direct_mounts, on every client spark-nb builds), so http:// to it stays on this machine."""
    try:
        url = url.strip()
        return url_scheme(url) == "http" and not is_literal_loopback(urlsplit(url).hostname)
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
