"""The checks that speak to the service: the key, the generation URL, the key accepted, the upload route.

Each request is one, bounded (Context.left), never retried, and creates nothing: reading a task id that cannot
exist, a GET of the upload endpoint. The key goes only where calls send it (the API's own host), and never
unencrypted beyond this machine: an http:// URL to another host is the key check's warning, and the key is not
sent there to check it. "Accepted" is said only on evidence: the gateway answers the keyless read otherwise (401)
than the read with the key (404).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from .._answers import Answer, read_answer
from .._api_errors import BALANCE_HINT, server_message
from .._client import path_segment
from .._config import DEFAULT_BASE_URL, KEY_SOURCES
from .._specs_service import http as keyless_http
from .._urls import in_clear_beyond_this_machine, is_http_url
from ..errors import safe_text
from ._context import PROBE_TASK, Context
from ._report import Verdict, fail, ok, warn

DNS_LIMIT_S = 5.0
KEY_FIX = "set VTRIX_API_KEY (or `vtrix auth set-key`) to a key from Vtrix's API Key Management page"
URL_FIX = f"check VTRIX_GENERATION_URL (Vtrix's is {DEFAULT_BASE_URL}) and this machine's network"


def key(ctx: Context) -> Verdict:
    """Found? From which source? Well-formed? (Never shown.)"""
    if ctx.settings is None:
        assert ctx.problem is not None
        return fail(ctx.problem.headline, ctx.problem.hint or KEY_FIX)
    settings = ctx.settings
    if settings.backend == "local":
        if settings.auto_backend:
            return warn("no Vtrix API key found: calls use the local backend (videos made on this machine)", KEY_FIX)
        return ok("local backend: the embedded server, with a random key of its own (no Vtrix key needed)")
    if settings.api_key is None:
        return fail("the cloud backend is chosen but no API key is set", KEY_FIX)
    told = "" if settings.key_source in KEY_SOURCES.values() else " (the vtrix CLI's store)"
    found = f"a well-formed key from {settings.key_source}{told}; never shown"
    clear = [f"{url} ({setting})" for url, setting in ((settings.base_url, "VTRIX_GENERATION_URL"),
                                                      (settings.uploader, "SPARK_NB_UPLOAD_URL"))
             if isinstance(url, str) and in_clear_beyond_this_machine(url)]
    if clear:
        return warn(f"{found}, but it would travel unencrypted to a host that is not this machine: "
                    f"{' and '.join(clear)} is http://", "use the https:// URL of each")
    return ok(found)


def generation_url(ctx: Context) -> Verdict:
    """DNS, TLS, connect, and an answer like a Vtrix gateway's (a task read without a key: 401 or 404 JSON)."""
    if ctx.settings is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    base = ctx.base_url()
    where = f"the embedded local server at {base}" if ctx.local else base
    if not is_http_url(base):
        return fail(f"{base} is not an http(s) URL", URL_FIX)
    if not ctx.local and (problem := _resolves(base)):
        return fail(f"{base}: {problem}", URL_FIX)
    limit = ctx.left()
    started = time.monotonic()
    try:
        answer = read_answer(keyless_http(), "GET", _task_url(base), deadline=time.monotonic() + limit,
                             follow_redirects=False)
    except Exception as exc:  # every way of not answering is the finding
        return fail(f"{where}: {_unreachable(exc, limit)}", URL_FIX)
    took = f"{(time.monotonic() - started) * 1000:.0f} ms"
    ctx.note("keyless status", answer.status)
    if 300 <= answer.status < 400:
        return warn(f"{where} redirects (HTTP {answer.status}) to {answer.headers.get('location', '?')}; a create "
                    "is never redirected", "set VTRIX_GENERATION_URL to where it redirects, if that is Vtrix")
    if answer.status in (401, 403, 404) and isinstance(answer.data, dict):
        return ok(f"{where} answers like a Vtrix gateway (HTTP {answer.status} to a task read without a key, {took})")
    kind = answer.headers.get("content-type", "no content type").split(";")[0]
    return warn(f"{where} answers HTTP {answer.status} ({kind}) to a task read, not like a Vtrix gateway", URL_FIX)


def key_accepted(ctx: Context) -> Verdict:
    """A free request with the key that creates nothing: a task id that cannot exist (404: accepted; 401: not)."""
    reached = ctx.verdict("generation URL")
    if ctx.settings is None or reached is None or reached.status == "fail":
        return warn("not checked: the generation URL does not answer", "fix the generation URL first")
    if not ctx.local and ctx.settings.api_key is None:
        return fail("not checked: there is no key", KEY_FIX)
    if ctx.local:
        return _local_key(ctx)
    if in_clear_beyond_this_machine(ctx.settings.base_url):
        return warn("not checked: the generation URL is http:// to a host that is not this machine, and the doctor "
                    "does not send the key unencrypted", "use its https:// URL in VTRIX_GENERATION_URL (or base_url=)")
    client = ctx.client()
    limit = ctx.left()
    try:
        answer = client.probe("GET", _task_url(client.base_url), limit=limit)
    except Exception as exc:
        return fail(f"no answer with the key: {_unreachable(exc, limit)}", URL_FIX)
    said = _message(answer)
    if answer.status == 404 and ctx.noted("keyless status") in (401, 403):
        return ok(f"accepted: reading a task id that cannot exist answered 404 with the key and "
                  f"{ctx.noted('keyless status')} without it")
    if answer.status == 404:
        return warn("could not tell: reading a task id that cannot exist answered 404 with the key and "
                    f"{ctx.noted('keyless status') or 'otherwise'} without it, so this gateway does not say "
                    "whether it knows the key", "nothing to do now: a refused key fails the first call with HTTP 401 "
                    "(before anything is paid); check VTRIX_GENERATION_URL if this is not Vtrix's gateway")
    if answer.status == 401:
        return fail(f"refused: HTTP 401 ({said})", KEY_FIX)
    if answer.status in (402, 403):
        return fail(f"the key is known but the account is refused: HTTP {answer.status} ({said})",
                    f"{BALANCE_HINT}, and check the key's permissions")
    if answer.status == 429:
        return warn("not known: the service answered 429 (too many requests)", "wait a minute and run it again")
    return warn(f"not known: a read of a task id that cannot exist answered HTTP {answer.status} ({said})", URL_FIX)


def _local_key(ctx: Context) -> Verdict:
    """On the local backend: the embedded server's own random key, which spark-nb made; no Vtrix key is involved."""
    client = ctx.client()
    limit = ctx.left()
    try:
        answer = client.probe("GET", _task_url(client.base_url), limit=limit)
    except Exception as exc:
        return fail(f"the embedded server did not answer: {_unreachable(exc, limit)}",
                    "run it again; if it persists, report it to the spark-nb project")
    if answer.status == 404:
        return ok("the embedded server accepts its own key (made by spark-nb for this machine; no Vtrix key is "
                  "involved)")
    return fail(f"the embedded server refused its own key: HTTP {answer.status} ({_message(answer)})",
                "this is a bug in spark-nb: please report it with this line")


def uploads(ctx: Context) -> Verdict:
    """Where local files go on the cloud path, and whether that endpoint answers (nothing is uploaded)."""
    if ctx.settings is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    settings = ctx.settings
    fix = ("set SPARK_NB_UPLOAD_URL to an HTTP upload endpoint, or SPARK_NB_S3_BUCKET, or pass uploader=; "
           "http(s) URLs as inputs need none")
    if ctx.local:
        return ok("the embedded server stores local files itself")
    if callable(settings.uploader):
        return ok(f"a callable uploader ({getattr(settings.uploader, '__name__', 'a callable')}), not called")
    if settings.uploader is not None:
        return _upload_endpoint(ctx, str(settings.uploader), fix)
    if settings.s3_bucket:
        import importlib.util

        if importlib.util.find_spec("boto3") is None:
            return fail(f"S3 bucket {settings.s3_bucket} is set, but boto3 is not installed",
                        "pip install 'spark-nb[s3]'")
        return ok(f"S3 bucket {settings.s3_bucket} (not contacted: nothing is uploaded)")
    return warn("no uploader: local files cannot be sent on the cloud path (http(s) URLs can)", fix)


def _upload_endpoint(ctx: Context, endpoint: str, fix: str) -> Verdict:
    if not is_http_url(endpoint):
        return fail(f"the uploader {endpoint!r} is neither an http(s) URL nor a callable", fix)
    limit = ctx.left()
    try:  # a GET: an upload endpoint takes POSTs, so it answers without storing anything; the key as uploads send it
        keyed = ctx.settings is not None and ctx.settings.api_key is not None
        if keyed and not in_clear_beyond_this_machine(endpoint):
            answer = ctx.client().probe("GET", endpoint, limit=limit)
        else:
            answer = read_answer(keyless_http(), "GET", endpoint, deadline=time.monotonic() + limit,
                                 follow_redirects=False)
    except Exception as exc:
        return fail(f"the upload endpoint {endpoint}: {_unreachable(exc, limit)}", fix)
    if answer.status in (405, 400) or answer.status < 300:
        return ok(f"the upload endpoint {endpoint} answers (HTTP {answer.status} to a GET; nothing was uploaded)")
    return warn(f"the upload endpoint {endpoint} answers HTTP {answer.status} to a GET ({_message(answer)})",
                "check SPARK_NB_UPLOAD_URL: the path, and whether it needs credentials spark-nb does not send")


# -- helpers ------------------------------------------------------------------------------------------------------


def _task_url(base: str) -> str:
    return f"{base.rstrip('/')}/model/v1/generation/task/{path_segment(PROBE_TASK)}"


def _resolves(url: str) -> str | None:
    """Why url's host name does not resolve (within DNS_LIMIT_S), or None when it does (or is an address)."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    found: dict[str, Any] = {}

    def lookup() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name="spark-nb-doctor-dns")
    thread.start()
    thread.join(DNS_LIMIT_S)
    if "addresses" in found:
        return None
    if "error" in found:
        return f"the host name {host} does not resolve (DNS: {found['error']})"
    return f"the host name {host} did not resolve within {DNS_LIMIT_S:g} s (DNS)"


def _unreachable(exc: Exception, limit: float) -> str:
    import httpx

    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {limit:.0f} s (it accepts connections but does not answer)" \
            if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)) else f"no connection within {limit:.0f} s"
    if any(word in text for word in ("SSL", "TLS", "CERTIFICATE", "certificate")):
        return f"TLS failed ({text})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({text})"
    return f"{type(exc).__name__}: {text}"


def _message(answer: Answer) -> str:
    return safe_text(server_message(answer.data, answer), newlines=False, limit=200)
