"""The Vtrix generation protocol on loopback (Starlette + uvicorn): tasks, storage, stats and injected faults."""

from __future__ import annotations

import dataclasses
import hmac
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .._config import Secret
from .._urls import is_http_url
from ..models import MODELS, ModelSpec, ParamsError
from ._engine import RenderError, render
from ._faults import FaultInjector, FaultPlan

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
MAX_FETCH_BYTES = 100 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


@dataclasses.dataclass
class ServerOptions:
    """How the local server behaves: minimum task latency, faults, required key, storage, render workers."""

    latency: float = 0.0
    faults: FaultPlan = dataclasses.field(default_factory=FaultPlan)
    api_key: str | None = dataclasses.field(default=None, repr=False)
    storage: Path | None = None
    render_workers: int = 2
    longest_side: int = 512
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_fetch_bytes: int = MAX_FETCH_BYTES
    fetch_timeout: float = FETCH_TIMEOUT_S  # for a whole input download, not per read


@dataclasses.dataclass
class TaskRecord:
    """One task's life on the server; status is derived on read, so the latency needs no timers."""

    id: str
    model: str
    urls: dict[str, str]  # input field name -> URL
    created_at: float
    latency: float
    started: bool = False
    rendered: float = 0.0
    rendered_at: float | None = None
    size: int = 0
    error: dict[str, str] | None = None
    polls: int = 0
    noticed_at: float | None = None  # when a poll first answered "completed": how late clients notice

    @property
    def ready_at(self) -> float | None:
        """Wall time at which the task counts as completed, once rendered."""
        return None if self.rendered_at is None else max(self.rendered_at, self.created_at + self.latency)

    def to_json(self, base_url: str, now: float) -> dict[str, Any]:
        """The task object as the protocol page describes it."""
        obj: dict[str, Any] = {"id": self.id, "model": self.model, "created_at": int(self.created_at), "metadata": {}}
        if self.error:
            obj.update(status="failed", error=self.error)
        elif self.ready_at is not None and now >= self.ready_at:
            url = f"{base_url}files/results/{self.id}.mp4"
            obj.update(
                status="completed",
                output=[{"content": [{"type": "video", "url": url, "size": self.size, "jobId": f"local-{self.id}"}]}],
                usage={"cost": "0.00", "discount": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                       "generated_videos": 1},
                metadata={"completed_at": self.ready_at},
            )
        else:
            progress = self.rendered
            if self.latency > 0:
                progress = min(progress, (now - self.created_at) / self.latency)
            obj.update(status="in_progress" if self.started else "pending", progress=round(min(progress, 0.99), 3))
        return obj


class Stats:
    """Counters: tasks created, task polls, uploads, result downloads, and each injected fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {"created": 0, "polls": 0, "uploads": 0, "downloads": 0}
        self.faults: dict[str, int] = {}

    def add(self, name: str) -> None:
        """Count one event."""
        with self._lock:
            self.counts[name] += 1

    def add_fault(self, name: str) -> None:
        """Count one injected fault, e.g. 'poll:500'."""
        with self._lock:
            self.faults[name] = self.faults.get(name, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """All counters as a JSON-ready dict."""
        with self._lock:
            return {**self.counts, "faults": dict(self.faults)}


class LocalService:
    """The server's state and routes: tasks in memory, files on disk, renders in a small thread pool."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.stats = Stats()
        self.tasks: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()
        self._owns_storage = options.storage is None
        self.storage = Path(options.storage or tempfile.mkdtemp(prefix="spark_nb_server_"))
        for sub in ("uploads", "results", "work"):
            (self.storage / sub).mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=options.render_workers, thread_name_prefix="spark-nb-render")
        self._fetch = httpx.Client(timeout=options.fetch_timeout, follow_redirects=True)

    def app(self) -> FaultInjector:
        """The ASGI app: routes wrapped in the fault injector."""
        routes = [
            Route("/model/v1/generation", self.create, methods=["POST"]),
            Route("/model/v1/generation/task/{task_id}", self.get_task, methods=["GET"]),
            Route("/api/v1/storage/files", self.upload, methods=["POST"]),
            Route("/files/{kind}/{name}", self.serve_file, methods=["GET", "HEAD"]),
            Route("/_spark_nb/stats", self.get_stats, methods=["GET"]),
        ]
        return FaultInjector(Starlette(routes=routes), self.options.faults, self.stats.add_fault)

    def close(self) -> None:
        """Stop rendering and remove storage the server created itself."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._fetch.close()
        if self._owns_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    # -- routes ------------------------------------------------------------------------------------

    def _unauthorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        expected = self.options.api_key
        if not token or (expected is not None and not hmac.compare_digest(token.encode(), expected.encode())):
            return JSONResponse({"message": "missing or invalid API key"}, status_code=401)
        return None

    async def create(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"message": "the request body is not JSON"}, status_code=400)
        spec = MODELS.get(body.get("model")) if isinstance(body, dict) else None
        if spec is None:
            return JSONResponse({"message": f"unknown model; known: {', '.join(MODELS)}"}, status_code=400)
        inputs = body.get("input")
        first = inputs[0] if isinstance(inputs, list) and inputs else None
        params = first.get("params") if isinstance(first, dict) else None
        try:
            urls = spec.parse_params(params)
        except ParamsError as exc:
            return JSONResponse({"status": "failed", "error": {"code": exc.code, "error_message": exc.text}},
                                status_code=400)
        record = TaskRecord(id=uuid.uuid4().hex, model=spec.id, urls=urls, created_at=time.time(),
                            latency=self.options.latency)
        with self._lock:
            self.tasks[record.id] = record
        self.stats.add("created")
        self._pool.submit(self._run, record, spec)
        return JSONResponse(record.to_json(str(request.base_url), time.time()))

    async def get_task(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        self.stats.add("polls")
        record = self.tasks.get(request.path_params["task_id"])
        if record is None:
            return JSONResponse({"message": "task not found"}, status_code=404)
        now = time.time()
        answer = record.to_json(str(request.base_url), now)
        record.polls += 1
        if answer["status"] == "completed" and record.noticed_at is None:
            record.noticed_at = now
        return JSONResponse(answer)

    async def upload(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        length = request.headers.get("content-length")
        limit = self.options.max_upload_bytes
        if length is None or not length.isdigit() or int(length) > limit:
            return JSONResponse({"message": f"uploads need a Content-Length of at most {limit} bytes"},
                                status_code=413)
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return JSONResponse({"message": "send the file as multipart field 'file'"}, status_code=400)
            suffix = Path(upload.filename or "").suffix.lower()
            suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
            name = f"{uuid.uuid4().hex}{suffix}"
            with open(self.storage / "uploads" / name, "wb") as fh:
                shutil.copyfileobj(upload.file, fh)
        self.stats.add("uploads")
        return JSONResponse({"url": f"{request.base_url}files/uploads/{name}"})

    async def serve_file(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        if kind not in ("uploads", "results") or not _SAFE_NAME.match(name) or ".." in name:
            return JSONResponse({"message": "not found"}, status_code=404)
        path = self.storage / kind / name
        if not path.is_file():
            return JSONResponse({"message": "not found"}, status_code=404)
        if kind == "results" and request.method == "GET":
            self.stats.add("downloads")
        return FileResponse(path, media_type="video/mp4" if kind == "results" else None)

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.snapshot())

    # -- rendering -----------------------------------------------------------------------------------

    def _run(self, record: TaskRecord, spec: ModelSpec) -> None:
        record.started = True
        work = self.storage / "work" / record.id
        work.mkdir(exist_ok=True)
        out = self.storage / "results" / f"{record.id}.mp4"

        def progress(fraction: float) -> None:
            record.rendered = fraction

        try:
            if forced := self.options.faults.draw("render"):
                self.stats.add_fault(f"render:{forced}")
                raise _Failure(forced)
            inputs = {field.kind: self._fetch_input(record.urls[field.name], work / field.name, field.wire)
                      for field in spec.fields}
            render(spec.renderer, inputs, out, longest_side=self.options.longest_side, on_progress=progress)
            record.size = out.stat().st_size
            record.rendered, record.rendered_at = 1.0, time.time()
        except _Failure as exc:
            code = f"{spec.code_prefix}{exc.suffix}"
            record.error = {"code": code, "error_message": f"{spec.errors[code]} (injected fault)"}
        except RenderError as exc:
            wire = next((f.wire for f in spec.fields if f.kind == exc.kind), None)
            where = f"{wire}: " if wire else ""
            record.error = {"code": f"{spec.code_prefix}095",
                            "error_message": f"Internal generation error: {where}{exc}"}
        except Exception as exc:  # a bug in the renderer must fail the task, not leave it running forever
            record.error = {"code": f"{spec.code_prefix}095", "error_message": f"Internal generation error: {exc!r}"}
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _fetch_input(self, url: str, dest: Path, field: str) -> Path:
        if not is_http_url(url):
            raise RenderError(f"{field} must be an http(s) URL, got {url[:60]!r}")
        limit, deadline = self.options.max_fetch_bytes, time.monotonic() + self.options.fetch_timeout
        try:
            with self._fetch.stream("GET", url) as response:
                if response.status_code != 200:
                    raise RenderError(f"{field} could not be fetched: HTTP {response.status_code}")
                written = 0
                with open(dest, "wb") as fh:
                    for chunk in response.iter_bytes():  # as received: a re-chunking size would wait to fill
                        written += len(chunk)
                        if written > limit:
                            raise RenderError(f"{field} is larger than the {limit}-byte limit")
                        if time.monotonic() > deadline:  # a trickling server must not hold a render worker
                            raise RenderError(f"{field} took longer than {self.options.fetch_timeout:g}s to fetch")
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise RenderError(f"{field} could not be fetched: {exc}") from exc
        return dest


class _Failure(Exception):
    """A forced service failure with the code suffix it should carry (095..099)."""

    def __init__(self, suffix: str) -> None:
        super().__init__(suffix)
        self.suffix = suffix


class LocalServer:
    """The local server in a background thread: `with LocalServer() as server: server.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0, faults: str | None = None,
                 fault_seed: int | None = None, api_key: str | None = None, storage: Path | None = None,
                 render_workers: int = 2, **limits: Any) -> None:
        self.host = host
        self.options = ServerOptions(latency=latency, faults=FaultPlan.parse(faults, fault_seed), api_key=api_key,
                                     storage=storage, render_workers=render_workers, **limits)
        self.token = Secret(api_key or f"local-{secrets.token_hex(8)}")  # what our own clients send
        self.service = LocalService(self.options)
        self._requested_port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LocalServer({self.url if self._server else 'not started'})"

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8765."""
        sock = self._server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    @property
    def running(self) -> bool:
        """True while the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """The server's counters (as GET /_spark_nb/stats answers)."""
        return self.service.stats.snapshot()

    def start(self, timeout: float = 10.0) -> "LocalServer":
        """Start serving in a daemon thread; returns once the socket is listening."""
        import uvicorn

        config = uvicorn.Config(self.service.app(), host=self.host, port=self._requested_port, http="h11",
                                lifespan="off", log_level="warning", access_log=False, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="spark-nb-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the local server did not start on {self.host}:{self._requested_port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and clean up."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.service.close()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
