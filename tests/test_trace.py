"""SPARK_NB_TRACE=FILE: every exchange of the cloud path (create, poll, upload endpoint, spec service, downloads) is one
JSON line, appended safely from many threads, and the key is never in the file: no Authorization or cookie
header, every text redacted, signed URLs masked. A trace that cannot be written never fails a call. Over real HTTP
on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spark_nb import _specs_service, avatar
from spark_nb._client import ApiClient
from spark_nb._config import Secret

from .conftest import TEST_KEY, cloud_config, seed_firing_first
from .peers import Peer, Seen, peers

Handler = Callable[[Peer, socket.socket, Seen], None]
TASK = {"id": "t-1", "model": "spark_avatar_picture_omni_v2", "status": "in_progress", "progress": 0.5}


@pytest.fixture
def peer() -> Iterator[Callable[[Handler], Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SPARK_NB_TRACE pointed at a file of this test's own."""
    path = tmp_path / "trace.jsonl"
    monkeypatch.setenv("SPARK_NB_TRACE", str(path))
    return path


@contextlib.contextmanager
def client_of(api: Peer) -> Iterator[ApiClient]:
    """An ApiClient with the test key for a peer, closed afterwards."""
    client = ApiClient(api.url, Secret(TEST_KEY))
    try:
        yield client
    finally:
        client.close()


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of the trace, each one JSON object (json.loads fails the test on a torn line)."""
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def route(record: dict[str, Any]) -> str:
    """Which exchange a record is: create, poll, upload, spec or download."""
    url = record["url"]
    if record["kind"] == "download":
        return "download"
    if "/api/v1/skill/models/" in url:
        return "spec"
    if url.endswith("/api/v1/storage/files"):
        return "upload"
    return "poll" if "/task/" in url else "create"


@pytest.mark.slow
def test_a_full_generate_with_faults_is_traced_and_the_key_is_nowhere_in_it(
        make_server: Callable[..., Any], media: dict[str, Path], trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """generate() on the cloud path with 429s, 500s and 503s on every route and the spec service on the same server:
    each request a line with method, URL, status, time and headers (never Authorization), the failed attempts
    too; the create's body in it, an upload's file only by its size, the download by its URL, status and size;
    the file is 0600 and holds no byte of the key."""
    faults = "create:429:0.4,poll:500:0.4,upload:503:0.4,download:500:0.4,spec:500:0.4"
    server = make_server(api_key=TEST_KEY, faults=faults, fault_seed=seed_firing_first(0.4))  # each route's first
    monkeypatch.setenv("VTRIX_MODELS_URL", server.url)
    monkeypatch.setattr(_specs_service, "WAIT_S", 30.0)  # the spec's fetch in the trace however busy the machine
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    raw = trace.read_bytes()
    assert TEST_KEY.encode() not in raw and b"authorization" not in raw.lower()
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    seen = records(trace)
    assert {route(r) for r in seen} == {"create", "poll", "upload", "spec", "download"}
    fired = server.stats()["faults"]
    assert len(fired) == 5, fired
    for fault, count in fired.items():  # each injected fault is a line of its route with its status
        where, status = fault.split(":")
        assert sum(route(r) == where and r["status"] == int(status) for r in seen) == count, fault
    for r in seen:
        assert r["method"] in ("GET", "POST") and r["url"].startswith(server.url) and r["ms"] >= 0
        assert r["kind"] == "download" or "user-agent" in {k.lower() for k in r["request"]["headers"]}
    create = next(r for r in seen if route(r) == "create" and r["status"] == 200)
    assert json.loads(create["request"]["body"])["model"] == avatar.MODEL.id
    assert json.loads(create["answer"]["body"])["id"] == result.task_id
    upload = next(r for r in seen if route(r) == "upload")
    assert upload["request"]["body"] is None and "multipart/form-data" in upload["request"]["body_note"]
    download = [r for r in seen if route(r) == "download"][-1]
    assert download["status"] == 200 and download["bytes"] == result.path.stat().st_size


def test_what_a_peer_echoes_of_the_key_and_its_cookies_stay_out(peer: Callable[[Handler], Peer],
                                                                  trace: Path) -> None:
    """A service echoing the Authorization header in its body and setting a cookie: the trace keeps the answer with
    the key masked and without the Set-Cookie header."""
    def echo(p: Peer, conn: socket.socket, seen: Seen) -> None:
        p.json(conn, 200, {**TASK, "echo": seen.headers.get("authorization", "")},
               {"Set-Cookie": f"session={TEST_KEY}", "X-Request-Id": "r-1"})

    api = peer(echo)
    with client_of(api) as client:
        client.get_task("t-1")
    [record] = records(trace)
    assert TEST_KEY not in trace.read_text()
    assert json.loads(record["answer"]["body"])["echo"] == "Bearer ********"
    assert record["answer"]["headers"]["x-request-id"] == "r-1"
    assert not {"set-cookie", "authorization"} & {k.lower() for k in record["answer"]["headers"]}


def test_signed_input_urls_are_masked(peer: Callable[[Handler], Peer], trace: Path) -> None:
    """An input URL presigned by S3 (credential and signature in its query) is in the create's trace without them."""
    api = peer(lambda p, conn, seen: p.json(conn, 200, TASK))
    signed = "https://bucket.s3.amazonaws.com/face.jpg?X-Amz-Credential=AKIACRED&X-Amz-Signature=5ec7e751&x=1"
    with client_of(api) as client:
        client.create(avatar.MODEL.id, avatar.MODEL.build_params(
            {"image": signed, "audio": "https://bucket.s3.amazonaws.com/a.wav?token=tok3n"}))
    text = trace.read_text()
    assert "AKIACRED" not in text and "5ec7e751" not in text and "tok3n" not in text
    assert "X-Amz-Signature=********" in records(trace)[0]["request"]["body"]


def test_many_threads_append_whole_lines(peer: Callable[[Handler], Peer], trace: Path) -> None:
    """8 threads polling 25 times each through one client: 200 lines, each a whole JSON object."""
    api = peer(lambda p, conn, seen: p.json(conn, 200, {**TASK, "pad": "x" * 3000}))
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for _ in range(25):
                client.get_task("t-1")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with client_of(api) as client:
        threads = [threading.Thread(target=poll) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert errors == []
    seen = records(trace)
    assert len(seen) == 200 and {r["status"] for r in seen} == {200}
    assert all(json.loads(r["answer"]["body"])["pad"] == "x" * 3000 for r in seen)  # no line mixed with another


@pytest.mark.parametrize("kind", ["folder", "fifo", "no such folder"])
def test_a_trace_that_cannot_be_written_never_fails_a_call(kind: str, peer: Callable[[Handler], Peer],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPARK_NB_TRACE naming a folder, a FIFO nobody reads (never waited on) or a path in a missing folder: the
    calls answer, and one warning says the trace is not written."""
    path = tmp_path / "trace"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path = tmp_path / "missing" / "trace"
    monkeypatch.setenv("SPARK_NB_TRACE", str(path))
    api = peer(lambda p, conn, seen: p.json(conn, 200, TASK))
    with client_of(api) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [client.get_task("t-1")["id"] for _ in range(3)] == ["t-1"] * 3
    said = [str(w.message) for w in caught if "SPARK_NB_TRACE" in str(w.message)]
    assert len(said) == 1 and "cannot be written" in said[0]
