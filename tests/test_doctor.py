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

NAMES = ["key", "settings", "generation URL", "key accepted", *(f"spec {m}" for m in MODELS), "uploads", "ffmpeg",
         "journal", "budget", "versions"]
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
    # the attack on issue 26: a spec is read without authentication, so the fix never says to point the key at it
    assert "set VTRIX_GENERATION_URL" not in imitator_check.fix and "never point" in imitator_check.fix
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
    server's (which serves the specs too), and "key accepted" says whose key that is (the attack on issue 26: it
    said a key was accepted when none was set); nothing is created there."""
    report = spark_nb.doctor()
    checks = by_name(report)
    assert checks["key"].status == "warn" and "local backend" in checks["key"].detail
    assert checks["generation URL"].status == "ok" and "embedded local server" in checks["generation URL"].detail
    assert {checks[name].status for name in NAMES[1:]} == {"ok"}, str(report)
    assert "embedded server accepts its own key" in checks["key accepted"].detail
    assert "no Vtrix key is involved" in checks["key accepted"].detail
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


# -- the attack on issue 26 ----------------------------------------------------------------------------------------


def test_a_damaged_journal_is_reported_and_left_where_it_is(tmp_path: Path) -> None:
    """The attack: the journal check said a damaged journal "is moved aside by the next call", while the budget
    check, at the same time, opened it the normal way and moved it aside itself (then reported a spend of $0.00).
    Now the doctor reads the journal once, read-only, for both: the file stays as it was, nothing is made beside
    it, and the budget says the spend is not known."""
    home = Path(os.environ["SPARK_NB_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    damaged = b"SQLite format 3\x00" + bytes(range(256)) * 32
    (home / "journal.sqlite").write_bytes(damaged)
    checks = by_name(spark_nb.doctor())
    assert checks["journal"].status == "warn" and "damaged" in checks["journal"].detail
    assert checks["budget"].status == "warn" and "not known" in checks["budget"].detail
    assert (home / "journal.sqlite").read_bytes() == damaged
    assert not [p.name for p in home.iterdir() if p.name.startswith("journal.sqlite") and p.name != "journal.sqlite"]


HOLD_JOURNAL = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":  # a connection that keeps the whole file to itself, readers included
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
db.execute("UPDATE tasks SET state = state")
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.parametrize("hold", ["a write transaction", "exclusive"])
def test_a_journal_another_process_is_writing_is_busy_not_a_network_problem(hold: str) -> None:
    """The attack: with another process holding the journal's write lock, the journal and budget checks both
    waited the doctor's whole 25 s and then said to "check the network". Now they read it read-only with a short
    busy timeout: a write transaction does not stop a reader (the checks are ok), and a connection that keeps the
    file to itself makes the journal "busy: another process is writing it" within seconds."""
    import subprocess

    from spark_nb._journal import journal_at

    home = Path(os.environ["SPARK_NB_HOME"])
    journal_at(home).entries()  # made, as a first call would
    holder = subprocess.Popen([sys.executable, "-c", HOLD_JOURNAL, str(home / "journal.sqlite"),
                               "exclusive" if hold == "exclusive" else "transaction"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        checks = by_name(spark_nb.doctor())
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert took < 15, f"the doctor took {took:.1f} s"
    if hold == "exclusive":
        assert checks["journal"].status == "warn" and "busy: another process is writing it" in checks["journal"].detail
        assert checks["budget"].status == "warn" and "network" not in checks["budget"].fix
    else:
        assert checks["journal"].status == "ok" and checks["budget"].status == "ok", (checks["journal"],
                                                                                      checks["budget"])


def spec_with(data: dict[str, Any]) -> Callable[[Peer, socket.socket, Seen], None]:
    """A spec service answering data (in its envelope) for every model."""
    return lambda p, conn, seen: p.json(conn, 200, {"status": {"code": 200, "message": "ok"}, "data": data})


def test_the_doctor_judges_the_values_calls_send_as_the_guard_does(server: Any, peer: Callable[..., Peer],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a spec allowing `image_url` 10 characters refused every call before paying, while the doctor
    said the spec matched. Now the doctor runs the guard's value checks on what spark-nb sends (its constants, and
    URLs of the shortest and of a presigned upload's length): a constraint refusing both fails, one refusing long
    URLs only warns."""
    from spark_nb._specs import published

    verdicts = {}
    for most in (10, 200):
        data = published(AVATAR, "")
        data["parameters"][0]["constraints"] = {"max_length": most}
        point_at(monkeypatch, server.url, models=peer(spec_with(data)).url)
        verdicts[most] = by_name(spark_nb.doctor())[f"spec {AVATAR.id}"]
    assert verdicts[10].status == "fail" and "every call" in verdicts[10].detail
    assert "over the service's 10" in verdicts[10].detail and "SPARK_NB_SPEC_CHECK=off" in verdicts[10].fix
    assert verdicts[200].status == "warn" and "presigned upload URLs" in verdicts[200].detail
    assert server.stats()["created"] == 0


def test_a_gateway_answering_404_with_or_without_the_key_is_not_said_to_accept_it(
        peer: Callable[..., Peer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a gateway (a proxy, a catch-all) answering 404 to a task read whether or not a key is sent was
    reported "key accepted", and the first call was refused with 401. Now "accepted" needs the keyless read to have
    been refused: otherwise "could not tell", a warning."""
    gateway = peer(lambda p, conn, seen: p.json(conn, 404, {"message": "not found"}))
    point_at(monkeypatch, gateway.url)
    check = by_name(spark_nb.doctor())["key accepted"]
    assert check.status == "warn" and check.detail.startswith("could not tell") and "accepted" not in check.detail


def test_each_setting_that_cannot_be_read_is_reported_by_its_own_check(server: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a bad SPARK_NB_BUDGET_USD (or SPARK_NB_BACKEND) was reported under "key", and every other check
    said "fix the key first". Now each is its own check's failure (the budget's; the settings'), the key is ok and
    the rest is checked."""
    point_at(monkeypatch, server.url)
    monkeypatch.setenv("SPARK_NB_BUDGET_USD", "five dollars")
    checks = by_name(spark_nb.doctor())
    assert checks["budget"].status == "fail" and "budget_usd" in checks["budget"].detail
    assert "SPARK_NB_BUDGET_USD" in checks["budget"].fix
    assert checks["key"].status == "ok" and checks["key accepted"].status == "ok" and checks["settings"].status == "ok"
    monkeypatch.delenv("SPARK_NB_BUDGET_USD")
    monkeypatch.setenv("SPARK_NB_BACKEND", "clowd")
    checks = by_name(spark_nb.doctor())
    assert checks["settings"].status == "fail" and "unknown backend 'clowd'" in checks["settings"].detail
    assert "SPARK_NB_BACKEND" in checks["settings"].fix
    assert checks["key"].status == "ok" and checks["budget"].status == "ok"
    assert checks["generation URL"].status == "ok" and checks["key accepted"].status == "ok"


def test_a_key_that_would_travel_unencrypted_beyond_this_machine_is_a_warning_and_not_sent() -> None:
    """An http:// generation URL (or upload URL) to a host that is not this machine would carry the key in clear
    text: the key check warns with the fix, and the key accepted check does not send it there (nothing is
    contacted here: the checks are run on their own)."""
    from spark_nb._doctor import Context, checks
    from spark_nb._doctor import ok as ok_verdict

    by = dict(checks())
    ctx = Context.make({"backend": "cloud", "api_key": TEST_KEY, "base_url": "http://gateway.example",
                        "upload_url": "http://uploads.example/files"})
    verdict = by["key"](ctx)
    assert verdict.status == "warn" and "unencrypted" in verdict.detail and "https://" in verdict.fix
    assert "http://gateway.example (VTRIX_GENERATION_URL)" in verdict.detail and "uploads.example" in verdict.detail
    ctx.expect("generation URL")
    ctx.finished("generation URL", ok_verdict("answers"))
    verdict = by["key accepted"](ctx)
    assert verdict.status == "warn" and "does not send the key unencrypted" in verdict.detail
    local = Context.make({"backend": "cloud", "api_key": TEST_KEY, "base_url": "http://127.0.0.1:9"})
    assert by["key"](local).status == "ok"


def test_an_http_loopback_gateway_is_checked_straight_and_never_through_the_environments_proxy(
        server: Any, peer: Callable[..., Peer], monkeypatch: pytest.MonkeyPatch) -> None:
    """http://localhost:PORT (a local tunnel or gateway) with HTTP_PROXY naming a proxy (a recording peer standing in
    for proxy.corp:3128): every probe, keyed or not, goes straight to the gateway, so the proxy never sees the key
    in clear, and the key checks are ok because it truly stays on this machine. A *.localhost name is asked of DNS:
    the key check warns that the key would travel unencrypted."""
    proxy = peer(lambda p, conn, req: p.json(conn, 404, {"message": "the proxy answered"}))
    point_at(monkeypatch, server.url.replace("127.0.0.1", "localhost"))
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    checks = by_name(spark_nb.doctor())
    assert proxy.seen == [], [seen.path for seen in proxy.seen]
    assert checks["key"].status == "ok" and checks["key accepted"].status == "ok", str(checks["key accepted"])
    assert checks["uploads"].status == "ok" and checks["generation URL"].status == "ok"
    from spark_nb._doctor import Context
    from spark_nb._doctor import checks as all_checks

    named = Context.make({"backend": "cloud", "api_key": TEST_KEY, "base_url": "http://gateway.localhost:9"})
    verdict = dict(all_checks())["key"](named)
    assert verdict.status == "warn" and "unencrypted" in verdict.detail and "gateway.localhost" in verdict.detail
