"""The Vtrix generation protocol on loopback (Starlette): tasks, storage, stats and injected faults.

Nothing a peer sends is trusted: request bodies are capped before they are parsed, every value is type-checked,
task records and files are bounded in number, age and size, input media are fetched within a size cap and a
whole-transfer deadline, and every render has a time limit and stops when the server does. With a key, every
route but /files/ and the model specs needs it (the stats too); /files/ names are unguessable, and handed out only
to key holders; the specs are public, as Vtrix's.
LocalServer (`_listen`) puts this service on a socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .._limits import FORM_BYTES, MEDIA_BYTES, MEDIA_SECONDS, media_too_large
from .._procs import pid_alive
from .._transfer import TransferError, fetch_to_file
from .._urls import MAX_URL_CHARS, is_http_url
from ..models import MODELS, ModelSpec, ParamsError
from ._bodies import Counted, TooLarge, error_answer, read_capped, read_form
from ._connections import ConnectionLimits
from ._engine import RenderError, render
from ._faults import FaultInjector, FaultPlan
from ._gate import Gate
from ._pool import RenderPool
from ._records import Stats, TaskRecord, TaskStore
from ._shelf import TaskShelf
from ._spec_route import SpecRoute
from ._styles import ANSWER_STYLES, answer_styles, restyle
from ._upload_store import SAFE_NAME, UploadStore, upload_name

# what /files/ may say a file is: media only (an upload named .html, .svg or .xhtml is bytes, not a page), never
# sniffed, and sandboxed if a browser opens it anyway
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
               ".bmp": "image/bmp", ".gif": "image/gif", ".wav": "audio/wav", ".mp3": "audio/mpeg",
               ".m4a": "audio/mp4", ".aac": "audio/aac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
               ".opus": "audio/opus", ".flac": "audio/flac", ".mp4": "video/mp4", ".m4v": "video/mp4",
               ".mov": "video/quicktime", ".webm": "video/webm", ".mkv": "video/x-matroska"}
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}
MAX_UPLOAD_BYTES = MEDIA_BYTES  # the client's limit on an input (_limits): the largest input it sends
MAX_STORED_UPLOAD_BYTES = 2 * 1024**3  # all uploads together, like the videos (local/_shelf.KEEP_BYTES)
MAX_FETCH_BYTES = MEDIA_BYTES
MAX_CREATE_BYTES = 256 * 1024  # a create is a model id and a few URLs
FETCH_TIMEOUT_S = 30.0
STORAGE_PREFIX = "spark_nb_server_"


@dataclasses.dataclass
class ServerOptions:
    """How the local server behaves: latency, faults, key, storage, workers, and the bounds on what it accepts.

    Attributes:
        latency: seconds added to every answer.
        faults: the faults to inject.
        api_key: the bearer key every route but /files/ requires (a random one for the embedded server: only the
            process that started it knows it); None: any non-empty key on the protocol's routes, none for the stats.
        storage: the folder for uploads, videos and task records (None: a temporary one).
        render_workers: renders at once.
        longest_side: the rendered video's longest side, in pixels.
        cost_per_second: what a task reports it cost, per second of video (0: free).
        max_upload_bytes: the largest upload.
        max_fetch_bytes: the largest input fetched from a URL.
        fetch_timeout: seconds for a whole input download, headers included.
        max_seconds: the longest input medium rendered; longer ones fail the task at once.
        render_timeout: a render running longer fails its task.
        max_tasks: task records kept; the oldest finished ones go first.
        max_pending: tasks not yet rendered; more are refused with 429.
        task_ttl: finished records (and their videos) older than this, in seconds, go.
        persistent: tasks on disk in storage, shared with other processes' servers (the embedded one).
        answer_style: a comma list of ANSWER_STYLES: which variant of the task object to answer.
        max_stored_upload_bytes: all uploads together; the oldest go first.
        connections: header, body and stall deadlines, and how many connections may be open.
        spec_drift: publish changed model specs, to test a client against a service that changed.
    """

    latency: float = 0.0
    faults: FaultPlan = dataclasses.field(default_factory=FaultPlan)
    api_key: str | None = dataclasses.field(default=None, repr=False)
    storage: Path | None = None
    render_workers: int = 2
    longest_side: int = 512
    cost_per_second: float = 0.0
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_fetch_bytes: int = MAX_FETCH_BYTES
    fetch_timeout: float = FETCH_TIMEOUT_S  # for a whole input download, headers included
    max_seconds: float = MEDIA_SECONDS  # longest input medium rendered; longer ones fail the task at once
    render_timeout: float = 900.0  # a render running longer fails its task
    max_tasks: int = 10_000  # records kept; the oldest finished ones go first
    max_pending: int = 1_000  # tasks not yet rendered; more are refused with 429
    task_ttl: float = 24 * 3600.0  # finished records (and their videos) older than this go
    persistent: bool = False  # tasks on disk in storage, shared with other processes' servers (the embedded one)
    answer_style: str = "seed"  # comma list of ANSWER_STYLES: which variant of the task object to answer
    max_stored_upload_bytes: int = MAX_STORED_UPLOAD_BYTES  # all uploads together; the oldest go first
    connections: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)
    spec_drift: str | None = None  # publish changed model specs (see local/_spec_route), to test against


class _Stopping(Exception):
    """The server is stopping: the render in progress ends here."""


class _Failure(Exception):
    """A forced service failure with the code suffix it should carry (095..099)."""

    def __init__(self, suffix: str) -> None:
        super().__init__(suffix)
        self.suffix = suffix


class LocalService:
    """The server's state and routes: tasks in memory (bounded), files on disk, renders in a RenderPool."""

    def __init__(self, options: ServerOptions) -> None:
        self.styles = answer_styles(options.answer_style)  # first: a bad style or drift leaves nothing behind
        self.spec_route = SpecRoute(options.spec_drift)
        self.options = options
        self.stats = Stats()
        self._owns_storage = options.storage is None
        if options.storage is None:
            remove_stale_storage()
            self.storage = Path(tempfile.mkdtemp(prefix=f"{STORAGE_PREFIX}{os.getpid()}_"))
        else:
            self.storage = Path(options.storage)
        for sub in ("uploads", "results", "work"):
            (self.storage / sub).mkdir(parents=True, exist_ok=True)
        self.shelf = TaskShelf(self.storage / "tasks") if options.persistent else None
        if self.shelf is not None:
            self.shelf.prune(self.storage / "results")
        self.tasks = TaskStore(options.max_tasks, options.task_ttl, self._forget)
        self.uploads = UploadStore(self.storage / "uploads", max_age=options.task_ttl,
                                   max_bytes=options.max_stored_upload_bytes, keep=self._inputs_still_needed)
        self._pool = RenderPool(options.render_workers)

    def app(self) -> Any:
        """The ASGI app: routes, wrapped in the fault injector, wrapped in the request counter."""
        routes = [
            Route("/model/v1/generation", self.create, methods=["POST"]),
            Route("/model/v1/generation/task/{task_id}", self.get_task, methods=["GET"]),
            Route("/api/v1/storage/files", self.upload, methods=["POST"]),
            Route("/files/{kind}/{name}", self.serve_file, methods=["GET", "HEAD"]),
            Route("/_spark_nb/stats", self.get_stats, methods=["GET"]),
            Route("/api/v1/skill/models/{model_id}/spec", self.spec_route.answer, methods=["GET"]),  # no key
        ]
        injector = FaultInjector(Starlette(routes=routes), self.options.faults, self.stats.add_fault)
        return Counted(Gate(injector), self.stats)

    def close(self) -> None:
        """Stop rendering (within a few seconds) and remove storage the server created itself."""
        self._pool.close()
        if self._owns_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    # -- routes ------------------------------------------------------------------------------------

    def _unauthorized(self, request: Request, *, keyless: bool = False) -> Response | None:
        """A 401 unless the request carries the server's key (any key when it has none; none at all for a keyless
        route of a server without a key)."""
        expected = self.options.api_key
        if expected is None and keyless:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token or (expected is not None and not hmac.compare_digest(token.encode(), expected.encode())):
            return JSONResponse({"message": "missing or invalid API key"}, status_code=401)
        return None

    async def create(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        try:
            raw = await read_capped(request, MAX_CREATE_BYTES)
        except ClientDisconnect:  # the client left before sending its body: nothing to create
            return Response(status_code=400)
        if raw is None:
            return error_answer(f"a create request is at most {MAX_CREATE_BYTES} bytes", 413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any parser should follow
            return error_answer("the request body is not JSON", 400)
        model = body.get("model") if isinstance(body, dict) else None
        spec = MODELS.get(model) if isinstance(model, str) else None
        if spec is None:
            return error_answer(f"unknown model; known: {', '.join(MODELS)}", 400)
        inputs = body.get("input")
        first = inputs[0] if isinstance(inputs, list) and inputs else None
        params = first.get("params") if isinstance(first, dict) else None
        try:
            urls = spec.parse_params(params)
        except ParamsError as exc:
            refusal = {"status": "failed", "error": {"code": exc.code, "error_message": exc.text}}
            return JSONResponse(restyle(refusal, self.styles), status_code=400)
        if too_long := [name for name, url in urls.items() if len(url) > MAX_URL_CHARS]:
            return error_answer(f"input URLs are at most {MAX_URL_CHARS} characters ({', '.join(too_long)})", 400)
        if self.tasks.pending() >= self.options.max_pending:
            return JSONResponse({"message": "too many tasks in flight; try again shortly"}, status_code=429,
                                headers={"Retry-After": "5"})
        # the video under a random name, never its task's id: a task id is no secret (people print it and type it
        # into `spark-nb status ID`, where every user's process list shows it), a result URL must be one
        record = TaskRecord(id=uuid.uuid4().hex, model=spec.id, urls=urls, created_at=time.time(),
                            latency=self.options.latency, cost_per_second=self.options.cost_per_second,
                            video=f"{secrets.token_hex(16)}.mp4")
        self.tasks.add(record)
        self._save(record)
        self.stats.add("created")
        self._pool.submit(self._run, record, spec)
        return JSONResponse(restyle(record.to_json(str(request.base_url), time.time()), self.styles, record))

    async def get_task(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        self.stats.add("polls")
        record = self._record(request.path_params["task_id"])
        if record is None:
            where = f"; this server's tasks live in {self.storage / 'tasks'}" if self.shelf is not None else ""
            return error_answer(f"task not found on this local server{where}", 404)
        now = time.time()
        answer = record.to_json(str(request.base_url), now)
        record.polls += 1
        if answer["status"] == "completed" and record.noticed_at is None:
            record.noticed_at = now
        return JSONResponse(restyle(answer, self.styles, record))

    async def upload(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        length = request.headers.get("content-length")
        limit = self.options.max_upload_bytes
        # the request carries the file in a multipart envelope: the file itself is held to the limit once written
        if length is None or not length.isdigit() or media_too_large(int(length), limit + FORM_BYTES):
            return error_answer(f"uploads need a Content-Length of at most {limit + FORM_BYTES} bytes (a file of "
                                f"at most {limit} bytes and its form)", 413)
        try:
            with self.uploads.reserve(int(length)) as room:
                if not room:
                    raise TooLarge("the server's upload storage is full; try again once earlier uploads are used")
                form = await read_form(request, int(length))
                try:
                    upload = form.get("file")
                    if upload is None or isinstance(upload, str):
                        return error_answer("send the file as multipart field 'file'", 400)
                    path = self.uploads.new_path(upload.filename)
                    try:
                        with open(path, "xb") as fh:
                            shutil.copyfileobj(upload.file, fh)
                        if media_too_large(path.stat().st_size, limit):
                            raise TooLarge(f"the file is over the upload limit of {limit} bytes")
                    except BaseException:  # a full disk, a stop, a file over the limit: no file is kept
                        path.unlink(missing_ok=True)
                        raise
                finally:
                    await form.close()
        except ClientDisconnect:  # the client left mid-upload: nothing is kept
            return Response(status_code=400)
        except TooLarge as exc:
            return error_answer(str(exc), 413)
        except MultiPartException as exc:
            return error_answer(f"the upload is not a readable multipart form: {exc.message}", 400)
        self.uploads.added(path.stat().st_size)
        self.stats.add("uploads")
        return JSONResponse({"url": f"{request.base_url}files/uploads/{path.name}"})

    async def serve_file(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        if kind not in ("uploads", "results") or not SAFE_NAME.match(name) or ".." in name:
            return error_answer("not found", 404)
        path = self.storage / kind / name
        if not path.is_file():
            return error_answer("not found", 404)
        if kind == "results" and request.method == "GET":
            self.stats.add("downloads")
        # a media type from a short list, else bytes: an upload named .html or .svg is never a page of this origin
        media_type = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=media_type, headers=FILE_HEADERS)

    async def get_stats(self, request: Request) -> Response:
        if denied := self._unauthorized(request, keyless=True):
            return denied
        return JSONResponse(self.stats.snapshot())

    # -- rendering -----------------------------------------------------------------------------------

    def _record(self, task_id: str) -> TaskRecord | None:
        """A task this process renders (or rendered), else one on the shelf: another process's, read afresh, or
        one whose renderer died, which this process then finishes."""
        record = self.tasks.get(task_id)
        if record is not None or self.shelf is None:
            return record
        record = self.shelf.load(task_id)
        if record is not None and not record.finished and (spec := MODELS.get(record.model)) is not None \
                and self.shelf.orphaned(task_id):
            record.started, record.rendered = False, 0.0
            self.tasks.add(record)
            self._pool.submit(self._run, record, spec)
        return record

    def _save(self, record: TaskRecord) -> None:
        if self.shelf is not None:
            self.shelf.save(record)

    def _run(self, record: TaskRecord, spec: ModelSpec) -> None:
        with self.shelf.claim(record.id) if self.shelf is not None else contextlib.nullcontext(True) as held:
            if not held:  # another process took it first: its copy on disk is the one to read
                self.tasks.discard(record.id)
                return
            if self._render(record, spec):
                self._save(record)

    def _render(self, record: TaskRecord, spec: ModelSpec) -> bool:
        """Render record's task; False when the server stopped first (a persistent task is then left for the next
        process to finish, so it is not failed)."""
        record.started = True
        self._save(record)
        saved_at = time.monotonic()
        work = self.storage / "work" / record.id
        work.mkdir(exist_ok=True)
        out = self.storage / "results" / record.video_name
        deadline = time.monotonic() + self.options.render_timeout

        def progress(fraction: float) -> None:  # called every frame: where a render notices its limits
            if self._pool.stopping.is_set():
                raise _Stopping()
            if time.monotonic() > deadline:
                raise RenderError(f"the render took longer than this server's {self.options.render_timeout:g} s")
            record.rendered = fraction
            nonlocal saved_at
            if time.monotonic() - saved_at > 0.5:  # other processes read progress from the shelf
                saved_at = time.monotonic()
                self._save(record)

        try:
            if forced := self.options.faults.draw("render"):
                self.stats.add_fault(f"render:{forced}")
                raise _Failure(forced)
            inputs = {field.kind: self._fetch_input(record.urls[field.name], work / field.name, field.wire)
                      for field in spec.fields}
            record.seconds = render(spec.renderer, inputs, out, longest_side=self.options.longest_side,
                                    max_seconds=self.options.max_seconds, on_progress=progress)
            record.size = out.stat().st_size
            record.rendered, record.rendered_at = 1.0, time.time()
        except _Stopping:
            if self.shelf is not None:
                return False
            record.error = self._failure(spec, work, "the server stopped during the render")
        except _Failure as exc:
            code = f"{spec.code_prefix}{exc.suffix}"
            record.error = {"code": code, "error_message": f"{spec.errors[code]} (injected fault)"}
        except RenderError as exc:
            wire = next((f.wire for f in spec.fields if f.kind == exc.kind), None)
            record.error = self._failure(spec, work, f"{wire}: {exc}" if wire else str(exc))
        except Exception as exc:  # a bug in the renderer must fail the task, not leave it running forever
            record.error = self._failure(spec, work, repr(exc))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return True

    def _failure(self, spec: ModelSpec, work: Path, text: str) -> dict[str, str]:
        """A failed task's error, as the service's 095 says it, without a path of this server's: a render error
        quotes the files it read (PIL: "cannot identify image file '<storage>/work/<id>/image'"), and an answer
        goes to whoever asked. Each input's work file is named by its wire name, any other path of the storage
        as "the server's storage"."""
        for field in spec.fields:
            for path in {str(work / field.name), os.path.realpath(work / field.name)}:
                text = text.replace(path, field.wire)
        for root in sorted({str(self.storage), os.path.realpath(self.storage)}, key=len, reverse=True):
            text = text.replace(root, "<the server's storage>")
        return {"code": f"{spec.code_prefix}095", "error_message": f"Internal generation error: {text}"}

    def _fetch_input(self, url: str, dest: Path, field: str) -> Path:
        if not is_http_url(url):
            raise RenderError(f"{field} must be an http(s) URL, got {url[:60]!r}")
        if (stored := self.uploads.find(url)) is not None:  # ours (or a sibling server's): no need for HTTP
            if media_too_large(stored.stat().st_size, self.options.max_fetch_bytes):
                raise RenderError(f"{field} could not be fetched: {field} is larger than the "
                                  f"{self.options.max_fetch_bytes}-byte limit")
            shutil.copyfile(stored, dest)
            return dest
        try:
            fetch_to_file(url, dest, deadline=time.monotonic() + self.options.fetch_timeout,
                          max_bytes=self.options.max_fetch_bytes, what=field)
        except TransferError as exc:
            raise RenderError(f"{field} could not be fetched: {exc}") from exc
        return dest

    # -- bounds on disk --------------------------------------------------------------------------------

    def _forget(self, record: TaskRecord) -> None:
        if self.shelf is None:  # on a shelf, other processes may still want it: the shelf prunes by age and size
            (self.storage / "results" / record.video_name).unlink(missing_ok=True)

    def _inputs_still_needed(self) -> set[str]:
        """The uploads that tasks not yet rendered will read."""
        return {name for record in self.tasks.unfinished() for url in record.urls.values()
                if (name := upload_name(url)) is not None}


def remove_stale_storage(folder: Path | None = None) -> None:
    """Delete the storage of local servers whose process is gone (a server killed with SIGKILL cannot clean up)."""
    root = Path(folder or tempfile.gettempdir())
    for path in root.glob(f"{STORAGE_PREFIX}*_*"):
        pid = path.name[len(STORAGE_PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


__all__ = ["ANSWER_STYLES", "LocalService", "ServerOptions", "answer_styles", "remove_stale_storage", "restyle"]
