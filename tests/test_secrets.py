"""The API key stays out of reprs, logs and exceptions, and is sent only to the API host."""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import spark_nb
from spark_nb import _config as config
from spark_nb import _logs, avatar
from spark_nb._client import ApiClient
from spark_nb._config import Secret

from .conftest import TEST_KEY, cloud_config


class Recorder(ThreadingHTTPServer):
    """A foreign host on loopback: records every request's Authorization header, answers uploads and files."""

    def __init__(self, stored: dict[str, str], video: bytes) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.stored, self.video = stored, video
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    @property
    def url(self) -> str:
        """Base URL of this host."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: bytes, content_type: str) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = next(url for suffix, url in self.server.stored.items() if f'{suffix}"'.encode() in body)
        self._answer(f'{{"data": {{"url": "{url}"}}}}'.encode(), "application/json")

    def do_GET(self) -> None:
        self._answer(self.server.video, "video/mp4")


@pytest.fixture
def recorder(server: Any, media: dict[str, Path]) -> Iterator[Recorder]:
    """A foreign upload/CDN host; its upload answers point at copies stored on the API server, by file type."""
    stored = {}
    for name in ("portrait", "speech"):
        with open(media[name], "rb") as fh:
            stored[media[name].suffix] = httpx.post(
                f"{server.url}/api/v1/storage/files", files={"file": (media[name].name, fh)},
                headers={"Authorization": f"Bearer {TEST_KEY}"}).json()["url"]
    host = Recorder(stored, media["driving"].read_bytes())
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield host
    host.shutdown()
    host.server_close()


def test_secret_hides_itself() -> None:
    """repr, str, format and pickle never give the value away."""
    secret = Secret(TEST_KEY)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret):  # noqa: UP031 - %-formatting is one of the ways tested
        assert TEST_KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == TEST_KEY


def test_no_repr_or_exception_shows_the_key(media: dict[str, Path], server: Any) -> None:
    """Settings, Task, Result, client and every error along the way keep the key out."""
    settings = config.resolve(**cloud_config(server))
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    result = task.wait(progress=False)
    texts = [repr(settings), str(settings), repr(task), repr(result), result._repr_html_(), repr(task.client)]
    with pytest.raises(spark_nb.AuthenticationError) as wrong_key:
        avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                        **{**cloud_config(server), "api_key": TEST_KEY + "-wrong"})
    texts += [str(wrong_key.value), repr(wrong_key.value)]
    with pytest.raises(spark_nb.NotFoundError) as missing:
        spark_nb.Task.from_id("nope", **cloud_config(server)).status()
    texts += [str(missing.value), repr(missing.value)]
    assert wrong_key.value.status_code == 401 and missing.value.status_code == 404
    for text in texts:
        assert TEST_KEY not in text


@pytest.mark.slow
def test_debug_logs_never_contain_the_key(media: dict[str, Path], server: Any, caplog: pytest.LogCaptureFixture,
                                          capsys: pytest.CaptureFixture) -> None:
    """With every logger at DEBUG (spark_nb, httpx, httpcore) and SPARK_NB_LOG_LEVEL's handler on, no key leaks."""
    _logs.set_log_level("DEBUG")
    try:
        with caplog.at_level(logging.DEBUG):
            avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    finally:
        logging.getLogger("spark_nb").setLevel(logging.NOTSET)
    logged = caplog.text + capsys.readouterr().err
    assert "POST" in logged and "/model/v1/generation" in logged  # the logs are really there
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert TEST_KEY not in logged


@pytest.mark.slow
def test_uploads_and_downloads_to_other_hosts_carry_no_authorization(media: dict[str, Path], server: Any,
                                                                     recorder: Recorder) -> None:
    """The key goes to the API host only: a foreign upload endpoint and a foreign CDN never see it."""
    result = avatar.generate(media["portrait"], media["speech"], progress=False,
                             **{**cloud_config(server), "uploader": f"{recorder.url}/upload"})
    assert result.status == "completed"
    client = ApiClient(server.url, Secret(TEST_KEY))
    try:
        size = client.download(f"{recorder.url}/cdn/video.mp4", Path("cdn.mp4"), deadline=time.monotonic() + 30)
        assert size == media["driving"].stat().st_size
        client.get_task(result.task_id)  # the API host does get the key (the server would 401 otherwise)
    finally:
        client.close()
    assert [(m, p) for m, p, _ in recorder.seen] == [("POST", "/upload"), ("POST", "/upload"),
                                                      ("GET", "/cdn/video.mp4")]
    assert all(auth is None for _, _, auth in recorder.seen)


def test_a_refused_key_and_a_service_echoing_the_key_leave_it_in_no_file(
        tmp_path: Path, media: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """One run at DEBUG with a log file: malformed keys from api_key=, configure() and VTRIX_API_KEY are refused;
    then, with a good key, a service that echoes the Authorization header and the key into a refusal, an error
    answer and a failed task. Every file the run wrote (the journal and its WAL, outputs, the log) and the console
    hold no key, and no part of a refused one."""
    import os
    import socket as socket_module

    from .peers import Peer, Seen

    malformed = "sk-first-line-0123456789\nsecond-line-abcdefghij"

    def echo(p: Peer, conn: socket_module.socket, req: Seen) -> None:
        said = f"you sent {req.headers.get('authorization')} = {TEST_KEY}"
        if req.method == "POST" and req.path == "/model/v1/generation":
            if b'"refuse"' in req.body:
                return p.json(conn, 400, {"message": said, "error": {"code": "003016001", "error_message": said}})
            return p.json(conn, 200, {"id": "t-echo", "status": "pending"}, {"X-Request-Id": said})
        if "/task/" in req.path:
            return p.json(conn, 200, {"id": "t-echo", "status": "failed",
                                      "error": {"code": "003016097", "error_message": said}})
        if req.path == "/upload":
            return p.json(conn, 401, {"message": said}, {"X-Request-Id": said})
        p.json(conn, 404, {"message": said})

    api = Peer(echo)
    log = tmp_path / "spark.log"
    handler = logging.FileHandler(log)
    logging.getLogger("spark_nb").addHandler(handler)
    _logs.set_log_level("DEBUG")
    base = {"backend": "cloud", "base_url": api.url, "output_dir": tmp_path / "out", "progress": False}
    try:
        for source in ("explicit", "configure", "env"):
            with pytest.raises(spark_nb.SparkError, match="has a line break inside"):
                if source == "configure":
                    spark_nb.configure(api_key=malformed)
                os.environ["VTRIX_API_KEY"] = malformed if source == "env" else ""
                avatar.generate(media["portrait"], "https://inputs.example/a.wav",
                                **({"api_key": malformed} if source == "explicit" else {}), **base)
        os.environ.pop("VTRIX_API_KEY", None)
        with pytest.raises(spark_nb.AuthenticationError):  # the upload endpoint's 401 echoes it
            avatar.generate(media["portrait"], "https://inputs.example/a.wav", api_key=TEST_KEY,
                            uploader=f"{api.url}/upload", **base)
        with pytest.raises(spark_nb.TaskFailed):  # refused for its inputs: the journal keeps the refusal
            avatar.generate("https://inputs.example/refuse.jpg", "https://inputs.example/refuse.wav",
                            api_key=TEST_KEY, **base)
        with pytest.raises(spark_nb.TaskFailed):  # a task that failed: the journal keeps its error
            avatar.generate("https://inputs.example/f.jpg", "https://inputs.example/a.wav", api_key=TEST_KEY,
                            **base)
        history = spark_nb.history()
        assert {e.status for e in history} >= {"failed"} and any("you sent Bearer ********" in (e.error or "")
                                                                 for e in history)
    finally:
        logging.getLogger("spark_nb").removeHandler(handler)
        logging.getLogger("spark_nb").setLevel(logging.NOTSET)
        handler.close()
        api.stop()
    console = capsys.readouterr()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert log in written and any(p.name.startswith("journal") for p in written) and log.stat().st_size > 0
    for text in [console.out, console.err, *(p.read_bytes().decode("latin-1") for p in written)]:
        for secret in (TEST_KEY, "sk-first-line-0123456789", "second-line-abcdefghij"):
            assert secret not in text


def test_a_key_echoed_in_a_successful_answer_reaches_no_result_journal_or_file(tmp_path: Path) -> None:
    """The attack: a service whose completed task echoes the key (the result URL's `?token=`, percent-encoded in
    a second URL, `model`, `usage.extra_info`, a key of `usage`) had it written to the journal (`result_url`),
    `repr(Result)` and `Result.url` (only error answers were redacted). Now the bounded reader redacts every
    string of every answer: no Result field, no history entry, no `spark-nb history --json` and no file holds it."""
    import json
    import os
    import socket as socket_module
    import subprocess
    import sys
    from urllib.parse import quote

    from spark_nb import samples

    from .peers import Peer, Seen

    video = samples.DRIVING_VIDEO.read_bytes()

    def echo(p: Peer, conn: socket_module.socket, req: Seen) -> None:
        key = req.headers.get("authorization", "").split(" ", 1)[-1]
        if req.method == "POST" and req.path == "/model/v1/generation":
            return p.json(conn, 200, {"id": "t-echo", "status": "pending", "note": key})
        if "/task/" in req.path:
            content = {"type": "video", "url": f"{p.url}/video.mp4?token={key}", "size": len(video),
                       "poster": f"{p.url}/poster.jpg?k={quote(key, safe='')}"}
            return p.json(conn, 200, {"id": "t-echo", "status": "completed", "model": f"m {key}",
                                      "output": [{"content": [content]}],
                                      "usage": {"cost": "0.30", key: 1, "extra_info": {"billed_to": [key]}}})
        if req.path.startswith("/video.mp4"):
            return p.respond(conn, 200, video, {"Content-Type": "video/mp4"})
        p.json(conn, 404, {"message": "no"})

    api = Peer(echo)
    try:
        result = avatar.generate("https://inputs.example/f.jpg", "https://inputs.example/a.wav", api_key=TEST_KEY,
                                 backend="cloud", base_url=api.url, output_dir=tmp_path / "out", progress=False)
    finally:
        api.stop()
    assert result.url.endswith("/video.mp4?token=********") and result.cost == Decimal("0.30")
    shown = [repr(result), str(result), result.url, result.model, json.dumps(result.usage), json.dumps(result.raw),
             repr(spark_nb.history())]
    cli = subprocess.run([sys.executable, "-m", "spark_nb", "history", "--json"], capture_output=True, text=True,
                         timeout=60, env=os.environ.copy())
    assert cli.returncode == 0 and "t-echo" in cli.stdout
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.startswith("journal.sqlite") for p in written)
    for text in [*shown, cli.stdout, *(p.read_bytes().decode("latin-1") for p in written)]:
        assert TEST_KEY not in text and quote(TEST_KEY, safe="") not in text


def test_a_key_echoed_in_encoded_forms_is_in_no_error(tmp_path: Path) -> None:
    """The attack: a 401 echoing the key as JSON encoders write it (PHP's `\\/`, Go's `\\u0026`) and URL-encoded:
    `str(exc)` was clean, but `APIError.body` kept each form, and each decodes back to the key. Now a key is masked
    in any of its spellings (HTML entities and mixed escapes too): nothing decoded from the error gives it back."""
    import html
    import json
    import socket as socket_module
    from urllib.parse import quote, unquote

    from .peers import Peer, Seen

    key = "sk-live/AbC+dEf&0123456789=="

    def echo(p: Peer, conn: socket_module.socket, req: Seen) -> None:
        got = req.headers.get("authorization", "").split(" ", 1)[-1]
        php = json.dumps({"message": "invalid key", "key": got}).replace("/", "\\/")
        go, mixed = got.replace("&", "\\u0026"), got.replace("/", "\\u002F").replace("+", "%2b")
        body = (php[:-1] + f', "go": "{go}", "url": "https://x/?k={quote(got, safe="")}", "query": "{quote(got)}"'
                f', "html": "{html.escape(got)}", "mixed": "{mixed}"}}')
        p.respond(conn, 401, body.encode(), {"Content-Type": "application/json", "X-Request-Id": quote(got)})

    api = Peer(echo)
    try:
        with pytest.raises(spark_nb.AuthenticationError) as info:
            avatar.generate("https://inputs.example/f.jpg", "https://inputs.example/a.wav", api_key=key,
                            backend="cloud", base_url=api.url, output_dir=tmp_path / "out", progress=False)
    finally:
        api.stop()
    error = info.value
    body = error.body or ""
    assert body.count("********") == 6, body  # every form was there, and each is masked
    decoded = [body, unquote(body), html.unescape(body), json.dumps(json.loads(body), ensure_ascii=False),
               *map(str, json.loads(body).values()), unquote(error.request_id or ""), str(error), repr(error)]
    for text in decoded:
        assert key not in text and key not in unquote(text) and key not in html.unescape(text)


# -- a cut before the redaction (the attack on issue 26) ------------------------------------------------------------

CUT_KEY = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def longest_piece(text: str, key: str = CUT_KEY) -> str:
    """The longest run of key's characters (anywhere in it) that text holds."""
    best = ""
    for start in range(len(key)):
        for end in range(len(key), start + len(best), -1):
            if key[start:end] in text:
                best = key[start:end]
                break
    return best


def test_any_start_of_a_key_that_a_cut_leaves_is_masked_in_any_spelling() -> None:
    """The attack: text cut to a length before it was redacted (a message at 200 characters, a trace body at 4 KB)
    kept all but the last characters of a key echoed across the cut, which no longer matched the whole key. Now
    every start of a remembered value of 12 characters or more is masked, as it is, JSON-escaped or percent-encoded:
    whatever a cut leaves of a key, at most 11 of its characters."""
    from urllib.parse import quote

    from spark_nb import _secrets

    Secret(CUT_KEY)
    for cut in range(_secrets.PIECE_CHARS, len(CUT_KEY) + 1):
        piece = CUT_KEY[:cut]
        for spelled in (piece, piece.replace("-", "\\u002d"), quote(piece, safe="").replace("-", "%2D")):
            shown = _secrets.redact(f"refused: {spelled}…")
            assert "********" in shown and len(longest_piece(shown.replace("\\u002d", "-").replace("%2D", "-"))) \
                < _secrets.PIECE_CHARS, (cut, shown)
    long_key = "k" + "0123456789abcdef" * 40  # longer than a block of the pattern: every block's starts masked
    Secret(long_key)
    for cut in (100, 256, 300, 600):
        shown = _secrets.redact(f"[{long_key[:cut]}")
        assert not any(long_key[i:i + _secrets.PIECE_CHARS] in shown for i in range(len(long_key))), cut


def test_every_cut_of_outside_text_leaves_no_piece_of_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each place that cut text before redacting it, given the key across its cut: the doctor's finding (600),
    a task's failure message (500), an API error's body (4000), the spec service's status message (120), the
    trace's body (4 KB). None keeps 12 characters of the key (before: all but the last few)."""
    import httpx

    from spark_nb import _trace
    from spark_nb._answers import Answer
    from spark_nb._client import api_error
    from spark_nb._doctor import Check
    from spark_nb._specs_service import interpret
    from spark_nb.models import task_failure

    Secret(CUT_KEY)

    def across(cut: int) -> str:  # the key starting 30 characters before the cut
        return "x" * (cut - 30) + CUT_KEY + " and more"

    shown = {
        "doctor": str(Check("key accepted", "fail", across(600), "fix")),
        "task failure": str(task_failure({"code": 1001, "message": across(500)}, "t-1", None)),
        "api error": api_error(Answer(401, "", httpx.Headers(), across(4000).encode()), "creating the task").body or "",
        "spec status": interpret(Answer(500, "", httpx.Headers(), b"", {"status": {"code": 500,
                                                                            "message": across(120)}}))[2],
    }
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(_trace, "write", lambda path, record: written.append(record))  # the record, as written
    _trace.exchange("unused", method="POST", url="http://127.0.0.1:9/x", started=time.monotonic(),
                    request=httpx.Request("POST", "http://127.0.0.1:9/x", content=across(4096).encode()),
                    status=200, body=b"{}")
    shown["trace"] = written[0]["request"]["body"]
    for where, text in shown.items():
        assert len(longest_piece(text)) < 12, (where, longest_piece(text))


# the modules that handle text from a service (answers, messages, specs, traces, the doctor's findings)
SERVICE_TEXT_MODULES = ["_answers", "_client", "_trace", "_specs", "_specs_service", "_tasks", "models",
                        "_doctor/_checks", "_doctor/_report", "_doctor/_service_checks", "_doctor/_spec_checks",
                        "_doctor/_machine_checks"]
# slices there that cut no text from elsewhere: a hash, a list of allowed values, ffmpeg's first line
NOT_TEXT_SLICES = {"hexdigest()[:16]", "hexdigest()[:32]", "hexdigest()[:24]", "theirs.enum[:10]", "param.enum[:10]",
                   "splitlines()[:1]", "split()[:3]", "items())[:AMBIGUOUS_SHOWN]", "iter(self.errors))[:6]",
                   "parents[: depth + 1]"}


def test_text_from_elsewhere_is_cut_only_by_safe_text() -> None:
    """No module handling a service's text cuts it raw (`text[:200]`) or with `inert(limit=)` (which cuts before it
    redacts): every cut goes through errors.safe_text(limit=), which redacts first."""
    import ast

    package = Path(spark_nb.__file__).parent
    found = []
    for name in SERVICE_TEXT_MODULES:
        source = (package / f"{name}.py").read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            cut_by_inert = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "inert" \
                and any(k.arg == "limit" for k in node.keywords)
            sliced = isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice) \
                and node.slice.lower is None and node.slice.upper is not None
            if cut_by_inert or sliced:
                line = " ".join((ast.get_source_segment(source, node) or "").split())
                if cut_by_inert or not any(ok in line for ok in NOT_TEXT_SLICES):
                    found.append(f"{name}: {line}")
    assert found == [], found


def _chain_with(where: str) -> BaseException:
    """An error whose chain holds TEST_KEY where a printed traceback shows it (not in its own text)."""
    if where == "text":
        inner: BaseException = OSError(f"echoed {TEST_KEY}")
    elif where == "notes":
        inner = ValueError("nothing here")
        inner.add_note(f"but a note: {TEST_KEY}")
    elif where == "syntax line":
        inner = SyntaxError("bad", ("x.py", 1, 1, f"key = {TEST_KEY!r}", 1, 2))
    elif where == "group member":
        inner = ExceptionGroup("several", [ValueError("fine"), OSError(TEST_KEY)])  # noqa: F821  # Python 3.11+
    else:  # "past 64 links"
        inner = OSError(TEST_KEY)
        for n in range(100):
            outer = ValueError(f"link {n}")
            outer.__cause__ = inner
            inner = outer
    top = spark_nb.SparkError("what the user sees")
    top.__cause__ = inner
    return top


@pytest.mark.parametrize("where", ["text", "syntax line", "past 64 links", *(
    pytest.param(w, marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="notes and groups: Python 3.11+"))
    for w in ("notes", "group member"))])
def test_no_secret_of_an_errors_chain_is_printed_by_any_traceback(where: str) -> None:
    """The seventh attack: a cause quoting the key printed it in every traceback; its retest put the key in a note,
    a SyntaxError's line, a group's member, a link past 64, and frames' locals (a verbose traceback). The chain is
    now replaced by one RedactedError holding its printed form redacted, with no frames."""
    import traceback

    from spark_nb._secrets import RedactedError, remember, scrub_chain

    remember(TEST_KEY)
    top = _chain_with(where)
    assert TEST_KEY in "".join(traceback.format_exception(top))  # the attack is real
    scrub_chain(top)
    stand_in = top.__cause__
    assert isinstance(stand_in, RedactedError) and stand_in.__traceback__ is None
    for printed in ("".join(traceback.format_exception(top)),
                    "".join(traceback.TracebackException.from_exception(top, capture_locals=True).format())):
        assert TEST_KEY[:12] not in printed and "********" in printed, printed


def test_a_chain_without_secrets_is_kept_as_raised() -> None:
    """Nothing to mask: the causes stay the objects raised, and `raise ... from` still hides the context."""
    from spark_nb._secrets import scrub_chain

    cause, context = ValueError("plain"), KeyError("other")
    top = spark_nb.SparkError("what the user sees")
    top.__context__, top.__cause__ = context, cause
    scrub_chain(top)
    assert top.__cause__ is cause and top.__context__ is context and top.__suppress_context__
