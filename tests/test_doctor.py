"""`spark-nb doctor` and spark_nb.doctor() against real local servers on loopback: a healthy setup, a wrong key, an
unreachable URL (a closed port, and one that accepts and never answers: failed within 30 s), a drifted spec
served by another server, a missing spec, the local backend, service text made inert; `--json` prints only JSON
and the exit code says whether a check failed. Nothing is ever created, and the key is never shown."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _specs_service, avatar
from spark_nb._doctor import Report
from spark_nb.errors import ValidationError
from spark_nb.local import embedded_server
from spark_nb.models import AVATAR, IMITATOR, MODELS

from .conftest import TEST_KEY
from .peers import Peer, Seen, peers

NAMES = ["key", "generation URL", "key accepted", *(f"spec {m}" for m in MODELS), "uploads", "ffmpeg", "journal",
         "budget", "versions"]
CLI_LIMIT_S = 120  # a guard against a hung doctor, not the bound under test


@pytest.fixture
def peer() -> Iterator[Callable[..., Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


def point_at(monkeypatch: pytest.MonkeyPatch, url: str, *, key: str = TEST_KEY, models: str | None = None) -> None:
    """The environment of a user of the cloud path whose generation URL, spec service and uploads are url's."""
    monkeypatch.setenv("SPARK_NB_BACKEND", "cloud")
    monkeypatch.setenv("VTRIX_API_KEY", key)
    monkeypatch.setenv("VTRIX_GENERATION_URL", url)
    monkeypatch.setenv("VTRIX_MODELS_URL", models or url)
    monkeypatch.setenv("SPARK_NB_UPLOAD_URL", f"{url}/api/v1/storage/files")


def by_name(report: Report) -> dict[str, Any]:
    """The report's checks by name."""
    return {check.name: check for check in report}


def statuses(report: Report) -> dict[str, str]:
    """name -> status."""
    return {check.name: check.status for check in report}


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`spark-nb doctor ARGS` in a child process with this test's environment; its result and how long it took."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "spark_nb", "doctor", *args], capture_output=True, text=True,
                          timeout=CLI_LIMIT_S, env=dict(os.environ))
    return done, time.monotonic() - started


def shown(report: Report) -> str:
    """Everything the report shows: its text, its JSON and its HTML."""
    return "\n".join([str(report), report.to_json(), report._repr_html_()])


def test_a_healthy_setup_is_all_ok_and_nothing_is_created(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check ok, in the documented order, one spec check per model naming its id; the server created nothing
    and stored nothing; the key is in no rendering."""
    point_at(monkeypatch, server.url)
    report = spark_nb.doctor()
    assert [c.name for c in report] == NAMES
    assert statuses(report) == dict.fromkeys(NAMES, "ok"), str(report)
    assert report.ok and report.failed == []
    for model in MODELS:
        assert model in by_name(report)[f"spec {model}"].detail
    assert "VTRIX_API_KEY" in by_name(report)["key"].detail
    assert "404" in by_name(report)["key accepted"].detail
    stats = server.stats()
    assert stats["created"] == 0 and stats.get("uploads", 0) == 0
    assert TEST_KEY not in shown(report)
    assert "<table class='spark-doctor'>" in report._repr_html_()


@pytest.mark.slow
def test_the_cli_prints_only_json_and_exits_non_zero_when_a_check_fails(make_server: Callable[..., Any],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--json`: stdout is one JSON document {"checks": [{"name", "status", "detail", "fix"}...]}, exit 0; with a
    key the server refuses, "key accepted" fails with its 401 and the exit code is 1, still JSON; the text form
    says FAIL and the fix. Neither key is in any output."""
    server = make_server(api_key=TEST_KEY)
    point_at(monkeypatch, server.url)
    done, _ = run_cli("--json")
    assert done.returncode == 0, done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert list(json.loads(done.stdout)) == ["checks"]
    assert all(list(c) == ["name", "status", "detail", "fix"] and c["status"] in ("ok", "warn", "fail")
               for c in checks)
    specs = [c for c in checks if "spec" in c["name"]]
    assert len(specs) == len(MODELS) and all(any(m in c["detail"] for c in specs) for m in MODELS)
    wrong = "sk-wrong-0123456789abcdef"
    point_at(monkeypatch, server.url, key=wrong)
    done, _ = run_cli("--json")
    assert done.returncode == 1
    failed = {c["name"]: c for c in json.loads(done.stdout)["checks"] if c["status"] == "fail"}
    assert list(failed) == ["key accepted"] and "HTTP 401" in failed["key accepted"]["detail"]
    assert "VTRIX_API_KEY" in failed["key accepted"]["fix"]
    text, _ = run_cli()
    assert text.returncode == 1 and "FAIL  key accepted" in text.stdout and "-> set VTRIX_API_KEY" in text.stdout
    for output in (done.stdout, done.stderr, text.stdout, text.stderr):
        assert wrong not in output and TEST_KEY not in output
    assert server.stats()["created"] == 0


def unreachable(kind: str) -> tuple[str, socket.socket | None]:
    """A URL on a closed loopback port, or on a port that accepts connections and never answers (its listener,
    to be closed after the test)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    if kind == "closed port":
        listener.close()
        return url, None
    return url, listener  # the kernel completes the handshakes; nobody ever reads


@pytest.mark.parametrize("kind", ["closed port", pytest.param("never answers", marks=pytest.mark.slow)])
def test_an_unreachable_url_fails_within_30_s_and_still_prints_the_json(kind: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation URL, spec service and upload endpoint all unreachable: the generation URL fails saying how, the
    key is not tried, the specs and uploads say what they met; the JSON is printed, exit 1, all within 30 s (the
    checks run at once, each request bounded)."""
    url, listener = unreachable(kind)
    try:
        point_at(monkeypatch, url)
        done, took = run_cli("--json")
    finally:
        if listener is not None:
            listener.close()
    assert took < 30, f"the doctor took {took:.1f} s"
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    expected = "cannot connect" if kind == "closed port" else "does not answer"
    assert checks["generation URL"]["status"] == "fail" and expected in checks["generation URL"]["detail"]
    assert checks["key accepted"]["status"] == "warn" and "not checked" in checks["key accepted"]["detail"]
    assert checks["uploads"]["status"] == "fail"
    for model in MODELS:
        assert checks[f"spec {model}"]["status"] == "warn" and model in checks[f"spec {model}"]["detail"]
    assert checks["ffmpeg"]["status"] == "ok" and checks["journal"]["status"] == "ok"


def test_a_certificate_this_machine_does_not_trust_is_a_tls_failure(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An https generation URL whose certificate is self-signed: the URL check fails saying TLS, with the fix."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        point_at(monkeypatch, f"https://127.0.0.1:{httpd.server_address[1]}")
        check = by_name(spark_nb.doctor())["generation URL"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert check.status == "fail" and "TLS failed" in check.detail and "VTRIX_GENERATION_URL" in check.fix


def test_a_drifted_spec_fails_its_model_by_name_and_primes_the_calls(make_server: Callable[..., Any],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec service (another server) whose avatar spec renamed audio_url: that model's spec check fails naming
    the model and the difference, the fix says to upgrade; the imitator's matches but its create URL is on another
    host, which is reported, not followed; the doctor's read is what the next create consults (no wait)."""
    service, specs = make_server(api_key=TEST_KEY), make_server(spec_drift="audio_url=audio")
    point_at(monkeypatch, service.url, models=specs.url)
    report = spark_nb.doctor()
    avatar_check, imitator_check = by_name(report)[f"spec {AVATAR.id}"], by_name(report)[f"spec {IMITATOR.id}"]
    assert avatar_check.status == "fail" and AVATAR.id in avatar_check.detail
    assert "the service now names `audio` what spark-nb sends as `audio_url`" in avatar_check.detail
    assert "upgrade spark-nb" in avatar_check.fix
    assert imitator_check.status == "warn" and "another host" in imitator_check.detail
    assert not report.ok and [c.name for c in report.failed] == [f"spec {AVATAR.id}"]
    monkeypatch.setattr(_specs_service, "WAIT_S", 0.0)
    with pytest.raises(ValidationError, match="now names `audio`"):
        _specs_service.guard(AVATAR.id, AVATAR.build_params({"image": "https://a/b.jpg", "audio": "https://a/b.wav"}),
                             service.url)


@pytest.mark.slow
def test_a_missing_spec_is_a_warning_and_the_key_never_goes_to_the_spec_host(
        make_server: Callable[..., Any], media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The imitator unpublished (status.code 404 in the body): its check warns naming it, nothing fails; a generate
    then creates at the configured URL, and the spec host (whose spec names itself as the create URL) sees
    nothing but spec reads."""
    service, specs = make_server(api_key=TEST_KEY), make_server(spec_drift=f"-{IMITATOR.id}")
    point_at(monkeypatch, service.url, models=specs.url)
    report = spark_nb.doctor()
    check = by_name(report)[f"spec {IMITATOR.id}"]
    assert check.status == "warn" and IMITATOR.id in check.detail and "no published spec" in check.detail
    assert report.ok
    result = avatar.generate(media["portrait"], media["speech"], progress=False)
    assert result.path.is_file() and service.stats()["created"] == 1
    spec_stats = specs.stats()
    assert spec_stats["created"] == 0 and spec_stats.get("polls", 0) == 0 and spec_stats.get("uploads", 0) == 0


def test_on_the_local_backend_the_checks_speak_of_the_embedded_server() -> None:
    """No key: the key check warns that the local backend is used; the URL and key checks are the embedded
    server's (which serves the specs too); nothing is created there."""
    report = spark_nb.doctor()
    checks = by_name(report)
    assert checks["key"].status == "warn" and "local backend" in checks["key"].detail
    assert checks["generation URL"].status == "ok" and "embedded local server" in checks["generation URL"].detail
    assert {checks[name].status for name in NAMES[2:]} == {"ok"}, str(report)
    assert embedded_server(spark_nb.settings().home).stats()["created"] == 0


def test_a_malformed_key_fails_naming_its_source_and_the_rest_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key with a line break inside from VTRIX_API_KEY: the key check fails naming the variable, never the key;
    the service checks say they were not run; the machine checks still are."""
    monkeypatch.setenv("VTRIX_API_KEY", "sk-first-half0123\nsecond-half4567")
    report = spark_nb.doctor()
    checks = by_name(report)
    assert checks["key"].status == "fail" and "VTRIX_API_KEY" in checks["key"].detail
    assert "line break" in checks["key"].detail
    assert "not checked" in checks["generation URL"].detail and checks["ffmpeg"].status == "ok"
    assert "first-half" not in shown(report) and "second-half" not in shown(report)


def test_the_cloud_backend_without_a_key_fails_the_key_and_checks_the_rest(server: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """SPARK_NB_BACKEND=cloud and no key anywhere: the key check fails with the fix, the key is not tried, and the
    URL, the specs and the upload endpoint are still checked (without a key)."""
    point_at(monkeypatch, server.url)
    monkeypatch.delenv("VTRIX_API_KEY")
    checks = by_name(spark_nb.doctor())
    assert checks["key"].status == "fail" and "VTRIX_API_KEY" in checks["key"].fix
    assert checks["key accepted"].status == "fail" and "no key" in checks["key accepted"].detail
    assert checks["generation URL"].status == "ok" and checks["uploads"].status == "ok"
    assert {checks[f"spec {m}"].status for m in MODELS} == {"ok"}


def test_service_text_is_inert_in_every_rendering(peer: Callable[..., Peer], monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway whose 401 carries markup and terminal escapes: the key check's failure quotes it without the
    escapes, and the Jupyter table escapes the markup."""
    said = "<img src=x onerror=alert(1)>\x1b]52;c;aGk=\x07\x1b[2J refused"

    def refuse(p: Peer, conn: socket.socket, seen: Seen) -> None:
        p.json(conn, 401, {"message": said})

    gateway = peer(refuse)
    point_at(monkeypatch, gateway.url)
    report = spark_nb.doctor()
    check = by_name(report)["key accepted"]
    assert check.status == "fail" and "refused" in check.detail
    assert "\x1b" not in shown(report) and "\x07" not in shown(report)
    assert "<img" not in report._repr_html_() and "&lt;img src=x" in report._repr_html_()
