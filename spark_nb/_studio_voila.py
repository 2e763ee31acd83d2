"""The studio's Voila server (`python -m spark_nb._studio_voila`, started by `spark-nb studio`): closed as JupyterLab
is.

Voila 0.5 runs on jupyter_server, whose rules this uses rather than new ones: a token (from $JUPYTER_TOKEN, which
`spark-nb studio` sets for this process alone and this process removes before any kernel starts), a login cookie
once the token was shown, and the Host header limited to loopback names (`allow_remote_access` off: DNS
rebinding). Voila leaves three holes, closed here: its file handler (the studio's videos) asks for no login, every
page load starts a kernel with no cap, and a token in the URL would reach the kernel's environment (Voila hands
it the request's URL) and stay in the browser's history, so the page drops it once the cookie is set.

It serves on the socket `spark-nb studio` bound (and handed over as an inherited descriptor), never on a port it
binds itself, through `_studio_http.GuardedHTTPServer` (deadlines, a bounded number of connections); every log
line it writes is one inert line (`InertLine`), and a malformed template path is a 404, not a traceback.
"""

from __future__ import annotations

import html
import logging
import os
import socket
from typing import Any
from urllib.parse import urlencode

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.logout import LogoutHandler
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from tornado.ioloop import IOLoop
from traitlets import Bool, Float, Integer
from voila.app import Voila
from voila.static_file_handler import AllowListFileHandler, TemplateStaticFileHandler
from voila.tornado.handler import TornadoVoilaHandler

from ._studio import READY_ENV, SOCKET_ENV
from ._studio_http import GuardedHTTPServer, StudioLimits
from ._studio_log import PathOnlyLog, log_failure, one_inert_line_per_record
from ._urls import is_loopback_host

TOKEN_ENV = "JUPYTER_TOKEN"  # read by jupyter_server's identity provider


class CappedKernelManager(AsyncMappingKernelManager):
    """Kernels for studio pages, at most max_kernels at once (each page is a kernel of some 65 MB)."""

    max_kernels = Integer(4, config=True, help="kernels (open studio pages) running at once")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # jupyter_server's, unannotated
        self._starting = 0

    # jupyter_client declares the base's start_kernel synchronous; the async managers' is a coroutine, as this one
    async def start_kernel(self, *args: Any, kernel_id: str | None = None, **kwargs: Any  # type: ignore[override]
                           ) -> str:
        """Start a kernel for a new page, or refuse with 503 when max_kernels pages are open."""
        if kernel_id is None and len(self.list_kernel_ids()) + self._starting >= self.max_kernels:
            raise web.HTTPError(503, reason=f"the studio is open in {self.max_kernels} pages already; close one "
                                            "(or wait: a page left idle 15 minutes is closed)")
        self._starting += 1
        try:
            return await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
        finally:
            self._starting -= 1


class TokenFileHandler(JupyterHandler, AllowListFileHandler):  # type: ignore[misc]  # voila ships no types: its classes are Any
    """Voila's /voila/files/ (the studio's videos and inputs) for the token holder only, as JupyterLab's /files/."""

    @property
    def content_security_policy(self) -> str:
        # an HTML or SVG file opened directly runs no script in the studio's origin
        return super().content_security_policy + "; sandbox allow-scripts"

    @web.authenticated
    def head(self, path: str) -> Any:
        """The file's headers."""
        return super().head(path)

    @web.authenticated
    def get(self, path: str, include_body: bool = True) -> Any:
        """The file."""
        return super().get(path, include_body)


class TemplateFiles(TemplateStaticFileHandler):  # type: ignore[misc]  # voila ships no types: its classes are Any
    """Voila's template files (scripts, styles); a path that names no template's static file is a 404 (Voila's own
    raised on it: a traceback on the studio's terminal for every such request, from anyone)."""

    def parse_url_path(self, path: str) -> str:
        """Voila's resolution of path, or 404."""
        try:
            return str(super().parse_url_path(path))
        except (ValueError, AssertionError):
            raise web.HTTPError(404) from None


CROSS_SITE = frozenset({"same-site", "cross-site"})  # Sec-Fetch-Site values of a request another page made


def started_elsewhere(headers: Any) -> str | None:
    """Why a page request was made by another page (and must start no kernel), or None for the owner's own: typed
    or opened from outside the browser (Sec-Fetch-Site `none`) or from the studio itself (`same-origin`), a top-level
    navigation to a document. Browsers send these headers on every request (Chromium 76, Firefox 90, Safari 16.4);
    one that sends none is let through. Every port of 127.0.0.1 is the same site, so a page another local user
    serves there sends the owner's login cookie, SameSite=Strict or not: only these headers tell it apart."""
    site, mode, dest = (headers.get(f"Sec-Fetch-{name}") for name in ("Site", "Mode", "Dest"))
    if site in CROSS_SITE:
        return f"another page ({site}) asked for the studio"
    if mode is not None and mode != "navigate":
        return f"a page's script or element ({mode}) asked for the studio"
    if dest is not None and dest != "document":
        return f"the studio cannot be shown inside another page ({dest})"
    return None


class StudioPageHandler(TornadoVoilaHandler):  # type: ignore[misc]  # voila ships no types: its classes are Any
    """The studio page, for the owner's own page loads only (never another page's frame, image or fetch); a request
    that brought the token is sent on without it (its login cookie is set); any other path is Voila's redirect to
    the file (a video the page shows)."""

    @web.authenticated
    async def get(self, path: str | None = None) -> None:
        """The page (a new kernel), or a redirect to the same URL without the token; a page load another page made
        is refused (403) before its kernel starts."""
        if self.get_argument("token", None) is not None:
            rest = {k: v[-1].decode() for k, v in self.request.query_arguments.items() if k != "token"}
            here = "/" + self.request.path.lstrip("/")  # never "//host/...": that would leave the studio
            self.redirect(here + (f"?{urlencode(rest)}" if rest else ""))
            return
        why = None if path else started_elsewhere(self.request.headers)
        if why is not None:
            raise web.HTTPError(403, reason=f"{why}; open the address spark-nb studio printed in a tab of its own")
        await super().get(path)


class StudioLogout(JupyterHandler):
    """/logout: clears the login cookie and says so in plain text (jupyter_server's renders a template Voila does
    not have: a 500 for everyone). Another page's request is refused, so a page cannot log the owner out."""

    @allow_unauthenticated
    def get(self) -> None:
        """Clear the login cookie."""
        why = started_elsewhere(self.request.headers)
        if why is not None:
            raise web.HTTPError(403, reason=why)
        self.identity_provider.clear_login_cookie(self)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("logged out of spark-nb studio; open the address it printed to come back\n")


class StudioVoila(Voila):  # type: ignore[misc]  # voila ships no types: its classes are Any
    """Voila with the studio's rules: a token always, loopback Host names only, capped kernels, files behind login."""

    auto_token = Bool(True, config=True, help="take the token from $JUPYTER_TOKEN, else make one (never none)")
    header_timeout = Float(10.0, config=True, help="seconds a connection has to send a request's headers")
    body_timeout = Float(60.0, config=True, help="seconds a request has to send its body once its headers came")
    max_connections = Integer(1000, config=True, help="connections open at once (fewer under a low ulimit -n)")

    def initialize(self, argv: Any = None) -> None:
        """Voila's, then every log line of this process made one inert line."""
        super().initialize(argv)
        one_inert_line_per_record(self.log)

    def init_settings(self) -> dict[str, Any]:
        """jupyter_server's settings for a server that refuses remote Host names, with the capped kernel manager."""
        self.voila_configuration.multi_kernel_manager_class = CappedKernelManager
        settings: dict[str, Any] = super().init_settings()
        if not self.identity_provider.token:
            raise SystemExit("spark-nb studio: no token was given; start the studio with `spark-nb studio`")
        os.environ.pop(TOKEN_ENV, None)  # read; kernels started from here do not inherit it
        # a page on another site (another host name) never sends the login cookie, not even in a top-level visit
        self.identity_provider.cookie_options = {**self.identity_provider.cookie_options, "samesite": "Strict"}
        settings.update(allow_remote_access=False, local_hostnames=["localhost"], log_function=log_failure)
        logging.getLogger("tornado.general").setLevel(logging.ERROR)  # refusals (a missing _xsrf) are not news
        return settings

    def init_handlers(self) -> list[Any]:
        """Voila's handlers, its file and page handlers replaced by the ones that ask for the token, and every one
        answering loopback Host names only, its refusals in plain words."""
        swap = {AllowListFileHandler: TokenFileHandler, TornadoVoilaHandler: StudioPageHandler,
                TemplateStaticFileHandler: TemplateFiles, LogoutHandler: StudioLogout}
        return [(route[0], _guarded(swap.get(route[1], route[1])), *route[2:]) for route in super().init_handlers()]


    def listen(self) -> None:
        """Serve on the socket `spark-nb studio` bound and handed over, through the guarded HTTP server, until
        stopped. The studio never binds a port itself: another process could take it between a check and a bind,
        and receive the browser (and its token)."""
        descriptor = os.environ.pop(SOCKET_ENV, None)
        if descriptor is None or not descriptor.isdigit():
            raise SystemExit("spark-nb studio: no socket was handed over; start the studio with `spark-nb studio`")
        listening = socket.socket(fileno=int(descriptor))
        os.set_inheritable(listening.fileno(), False)  # kernels started from here do not hold it
        listening.setblocking(False)
        self.port = listening.getsockname()[1]
        limits = StudioLimits(self.header_timeout, self.body_timeout, self.max_connections)
        GuardedHTTPServer(self.app, limits=limits, xheaders=False).add_sockets([listening])
        _say_ready()
        self.ioloop = IOLoop.current()
        try:
            self.ioloop.start()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def _say_ready() -> None:
    """One byte on the pipe `spark-nb studio` waits on: the studio serves (only now may it print the URL)."""
    ready = os.environ.pop(READY_ENV, None)
    if ready is not None and ready.isdigit():
        try:
            os.write(int(ready), b"1")
        finally:
            os.close(int(ready))


def _guarded(handler: type[web.RequestHandler]) -> type[web.RequestHandler]:
    """handler, its log lines naming a request by path only (`PathOnlyLog`), refusing (403) a Host header that
    names no loopback address, and saying why in a plain page.

    A JupyterHandler checks the Host already (`allow_remote_access` off), but renders its error pages with
    jupyter_server's templates, which fail under Voila (no static_path): a plain page instead. Static files
    (scripts, styles, themes) get the Host check here. API handlers answer JSON, as they do.
    """
    if issubclass(handler, APIHandler):

        class Api(PathOnlyLog, handler):  # type: ignore[valid-type, misc]  # a base given at run time
            pass

        return _named(Api, handler)
    if issubclass(handler, JupyterHandler):

        class Plain(PathOnlyLog, handler):  # type: ignore[valid-type, misc]  # a base given at run time
            def write_error(self, status_code: int, **kwargs: Any) -> None:
                exc = kwargs.get("exc_info", (None, None, None))[1]
                reason = getattr(exc, "reason", None) or self._reason
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.finish(f"<!doctype html><title>spark-nb studio</title><p>{status_code}: "
                            f"{html.escape(str(reason))}</p>")

        return _named(Plain, handler)

    class LoopbackOnly(PathOnlyLog, handler):  # type: ignore[valid-type, misc]  # a base given at run time
        def prepare(self) -> Any:
            if not is_loopback_host(self.request.host):
                raise web.HTTPError(403)
            return super().prepare()

    return _named(LoopbackOnly, handler)


def _named(guarded: type[web.RequestHandler], handler: type[web.RequestHandler]) -> type[web.RequestHandler]:
    guarded.__name__ = guarded.__qualname__ = f"Guarded{handler.__name__}"
    return guarded


if __name__ == "__main__":
    StudioVoila.launch_instance()
