"""Where the API key is found: api_key=, configure(), VTRIX_API_KEY, the vtrix CLI's keychain entry and config file,
Colab's secret; each in a sandboxed HOME, in order, never shown, and never a crash or a hang."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _config as config
from spark_nb import _keys, _notices
from spark_nb._config import Secret
from spark_nb.local import LocalServer

from .conftest import TEST_KEY

keyring = pytest.importorskip("keyring")
from keyring.backend import KeyringBackend  # noqa: E402 - after the importorskip

KEYS = {name: f"sk-{name}-0123456789abcdef" for name in ("explicit", "configure", "env", "keychain", "file", "colab")}


class MemoryKeyring(KeyringBackend):
    """An in-memory keychain for tests: entries by (service, account), and how often it was asked."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, entries: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__()
        self.entries = dict(entries or {})
        self.asked = 0

    def get_password(self, service: str, username: str) -> str | None:
        """The stored password, or None."""
        self.asked += 1
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        """Store a password."""
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        """Forget a password."""
        self.entries.pop((service, username), None)


class RaisingKeyring(MemoryKeyring):
    """A keychain that fails as a locked or broken one does."""

    def get_password(self, service: str, username: str) -> str | None:
        """Always raises."""
        self.asked += 1
        raise RuntimeError("the collection is locked")


class HangingKeyring(MemoryKeyring):
    """A keychain that answers only when released (a prompt nobody has clicked yet)."""

    def __init__(self, entries: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__(entries)
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        """Waits for release, then answers."""
        self.asked += 1
        self.release.wait(30)
        return super().get_password(service, username)


@pytest.fixture(autouse=True)
def sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A HOME of the test's own, no XDG_CONFIG_HOME or VTRIX_NO_KEYCHAIN, an empty test keychain, no Colab."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "VTRIX_NO_KEYCHAIN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("google", "google.colab", "google.colab.userdata"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(_keys, "in_colab", lambda: "google.colab" in sys.modules)
    monkeypatch.setattr(_notices, "_shown", set())
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    _keys.forget()
    yield home
    keyring.set_keyring(previous)
    _keys.forget()


def write_config(home: Path, text: str | bytes) -> Path:
    """~/.config/vtrix/config.yml with text."""
    path = home / ".config" / "vtrix" / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def use_keychain(entries: dict[tuple[str, str], str] | None = None, cls: type = MemoryKeyring) -> Any:
    """Install a test keychain holding entries; returns it."""
    backend = cls(entries)
    keyring.set_keyring(backend)
    _keys.forget()
    return backend


def stub_colab(monkeypatch: pytest.MonkeyPatch, get: Callable[[str], Any]) -> list[str]:
    """A google.colab.userdata module whose get() is get; returns the names asked for."""
    asked: list[str] = []

    def recording_get(name: str) -> Any:
        asked.append(name)
        return get(name)

    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    userdata = types.ModuleType("google.colab.userdata")
    userdata.get = recording_get  # type: ignore[attr-defined]
    colab.userdata = userdata  # type: ignore[attr-defined]
    google.colab = colab  # type: ignore[attr-defined]
    for name, module in (("google", google), ("google.colab", colab), ("google.colab.userdata", userdata)):
        monkeypatch.setitem(sys.modules, name, module)
    return asked


class SecretNotFoundError(Exception):
    """As google.colab.userdata raises for a secret that does not exist."""


class NotebookAccessError(Exception):
    """As google.colab.userdata raises when the notebook may not read the secret."""


def colab_secret(value: str) -> Callable[[str], str]:
    """A userdata.get that knows one secret, VTRIX_API_KEY."""

    def get(name: str) -> str:
        if name != "VTRIX_API_KEY":
            raise SecretNotFoundError(name)
        return value

    return get


# -- each source on its own --------------------------------------------------------------------------------


def test_no_source_means_the_local_backend(capsys: pytest.CaptureFixture) -> None:
    """Nothing anywhere: no key, the local backend, its one-line notice (where a call starts)."""
    settings = _notices.begin(config.resolve())
    assert settings.api_key is None and settings.backend == "local"
    assert "local backend" in capsys.readouterr().err


def test_the_notice_of_a_stores_key_shows_the_gateway_without_its_password(sandbox: Path, capsys: pytest.CaptureFixture,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A generation URL with user:password@ (a gateway's basic auth): the notice naming the store's key shows the
    URL without them (the third attack: the password reached the terminal)."""
    write_config(sandbox, f"api_key: {KEYS['file']}\n")
    monkeypatch.setenv("VTRIX_GENERATION_URL", "https://alice:gateway-pw@gw.example/v1")
    _notices.begin(config.resolve())
    err = capsys.readouterr().err
    assert "using Vtrix (https://gw.example/v1) with the API key from" in err and "gateway-pw" not in err


def test_the_vtrix_cli_config_file(sandbox: Path, capsys: pytest.CaptureFixture) -> None:
    """api_key in ~/.config/vtrix/config.yml selects the cloud; the notice (where a call starts, not where settings
    are read) names the file, never the key."""
    write_config(sandbox, f"api_key: {KEYS['file']}\nauth_token: tok-1\nrefresh_token: tok-2\n")
    settings = config.resolve()
    assert settings.backend == "cloud" and settings.api_key == Secret(KEYS["file"])
    assert capsys.readouterr().err == ""
    _notices.begin(settings)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "API key from ~/.config/vtrix/config.yml" in err
    assert KEYS["file"] not in err
    _notices.begin(config.resolve())
    assert capsys.readouterr().err == ""  # once per process


def test_xdg_config_home_is_read_first(sandbox: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$XDG_CONFIG_HOME/vtrix/config.yml, when set, before ~/.config."""
    write_config(sandbox, "api_key: sk-home-config\n")
    xdg = tmp_path / "xdg"
    (xdg / "vtrix").mkdir(parents=True)
    (xdg / "vtrix" / "config.yml").write_text(f"api_key: '{KEYS['file']}'\n", encoding="utf-8")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert config.resolve().api_key == Secret(KEYS["file"])


@pytest.mark.parametrize("yaml", [True, False], ids=["pyyaml", "line-scan"])
@pytest.mark.parametrize("text, expected", [
    ("api_key: sk-plain\n", "sk-plain"),
    ("api_key: 'sk-single'  # set by vtrix\n", "sk-single"),
    ('api_key: "sk-double"\n', "sk-double"),
    ("auth_token: t\napi_key:    sk-spaced   \n", "sk-spaced"),
    ("auth_token: tok-only\nrefresh_token: r\n", None),
    ("nested:\n  api_key: sk-not-top-level\n", None),
    ("api_key:\n", None),
    ("api_key: ''\n", None),
    ("# api_key: sk-commented\n", None),
    ("", None),
])
def test_config_file_forms(sandbox: Path, monkeypatch: pytest.MonkeyPatch, yaml: bool, text: str,
                           expected: str | None) -> None:
    """Only a top-level api_key string is a key, read by PyYAML or, without it, by the line scan alike."""
    monkeypatch.setattr(_keys, "yaml_available", lambda: yaml)
    write_config(sandbox, text)
    found = _keys.find()
    assert (found.value if found else None) == expected


@pytest.mark.parametrize("yaml", [True, False], ids=["pyyaml", "line-scan"])
@pytest.mark.parametrize("content", [
    b"\xff\xfe\x00garbage\x00\x9c",
    f'api_key: "{KEYS["file"]}\n  broken: [unclosed\n'.encode(),
    b"- a list\n- not a mapping\n",
    b"api_key: [sk-in-a-list]\n",
    b"api_key: " + b"x" * (_keys.MAX_FILE_BYTES + 10) + b"\n",
])
def test_a_garbage_config_file_is_no_key(sandbox: Path, monkeypatch: pytest.MonkeyPatch, yaml: bool, content: bytes,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Bytes that are not UTF-8, broken YAML, another shape, an oversized file: no key, no crash, the key unlogged."""
    monkeypatch.setattr(_keys, "yaml_available", lambda: yaml)
    write_config(sandbox, content)
    with caplog.at_level(logging.DEBUG, logger="spark_nb"):
        settings = config.resolve()
    assert settings.api_key is None and settings.backend == "local"
    assert KEYS["file"] not in caplog.text


def test_an_unreadable_config_path_is_no_key(sandbox: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder where the file should be, or a file this user may not read: no key, a debug line, no crash."""
    (sandbox / ".config" / "vtrix" / "config.yml").mkdir(parents=True)
    with caplog.at_level(logging.DEBUG, logger="spark_nb"):
        assert config.resolve().api_key is None
    assert "cannot read an API key from ~/.config/vtrix/config.yml" in caplog.text
    if os.geteuid() != 0:  # root reads any file
        (sandbox / ".config" / "vtrix" / "config.yml").rmdir()
        path = write_config(sandbox, f"api_key: {KEYS['file']}\n")
        path.chmod(0)
        _keys.forget()
        assert config.resolve().api_key is None


def test_the_file_is_read_again_only_when_it_changes(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolve() runs on every call: the file is parsed once per version (mtime and size), not each time."""
    path = write_config(sandbox, "api_key: sk-first\n")
    parsed: list[str] = []
    real = _keys._api_key_in
    monkeypatch.setattr(_keys, "_api_key_in", lambda text: parsed.append(text) or real(text))
    for _ in range(5):
        assert config.resolve().api_key == Secret("sk-first")
    assert len(parsed) == 1
    path.write_text("api_key: sk-second\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert config.resolve().api_key == Secret("sk-second")
    assert len(parsed) == 2


def test_the_os_keychain_through_keyring(capsys: pytest.CaptureFixture) -> None:
    """The entry service vtrix-cli, account api_key: the cloud, and a notice naming the keychain."""
    backend = use_keychain({("vtrix-cli", "api_key"): KEYS["keychain"], ("vtrix-cli", "auth_token"): "tok"})
    settings = _notices.begin(config.resolve())
    assert settings.backend == "cloud" and settings.api_key == Secret(KEYS["keychain"])
    err = capsys.readouterr().err
    assert "API key from the OS keychain (vtrix-cli)" in err and KEYS["keychain"] not in err
    for _ in range(5):
        config.resolve()
    assert backend.asked == 1  # cached, not asked on every call


def test_vtrix_no_keychain_skips_the_keychain(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VTRIX_NO_KEYCHAIN=1, as for the vtrix CLI: the keychain is not asked; the file still is."""
    backend = use_keychain({("vtrix-cli", "api_key"): KEYS["keychain"]})
    write_config(sandbox, f"api_key: {KEYS['file']}\n")
    monkeypatch.setenv("VTRIX_NO_KEYCHAIN", "1")
    assert config.resolve().api_key == Secret(KEYS["file"])
    assert backend.asked == 0


def test_a_raising_keychain_is_no_key(caplog: pytest.LogCaptureFixture) -> None:
    """A keychain that raises: no key, no exception to the user, a debug line."""
    use_keychain({("vtrix-cli", "api_key"): KEYS["keychain"]}, cls=RaisingKeyring)
    with caplog.at_level(logging.DEBUG, logger="spark_nb"):
        settings = config.resolve()
    assert settings.api_key is None and settings.backend == "local"
    assert "no API key from the OS keychain (RuntimeError" in caplog.text


def test_the_fail_safe_keyring_backend_is_no_key() -> None:
    """keyring's own fail backend (no keychain on this machine) raises inside; we see no key."""
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    _keys.forget()
    assert config.resolve().api_key is None


def test_a_hanging_keychain_never_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keychain that does not answer (a prompt): resolve() goes on without it at once, and its late answer is used."""
    monkeypatch.setattr(_keys, "KEYCHAIN_TIMEOUT_S", 0.2)
    backend = use_keychain({("vtrix-cli", "api_key"): KEYS["keychain"]}, cls=HangingKeyring)
    started = time.monotonic()
    assert config.resolve().api_key is None
    assert config.resolve().api_key is None  # still pending: not asked twice, not waited on again
    assert time.monotonic() - started < 2 and backend.asked == 1
    backend.release.set()
    deadline = time.monotonic() + 10
    while config.resolve().api_key is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert config.resolve().api_key == Secret(KEYS["keychain"])


def test_colab_secret(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """In Colab (google.colab importable), userdata.get('VTRIX_API_KEY') is the key."""
    asked = stub_colab(monkeypatch, colab_secret(KEYS["colab"]))
    settings = _notices.begin(config.resolve())
    assert settings.backend == "cloud" and settings.api_key == Secret(KEYS["colab"]) and asked == ["VTRIX_API_KEY"]
    err = capsys.readouterr().err
    assert "API key from Colab's secret VTRIX_API_KEY" in err and KEYS["colab"] not in err


@pytest.mark.parametrize("error", [SecretNotFoundError, NotebookAccessError, RuntimeError])
def test_colab_errors_mean_no_key(monkeypatch: pytest.MonkeyPatch, error: type,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """SecretNotFoundError, NotebookAccessError (or anything else) from userdata.get: no key, no exception."""
    def get(name: str) -> str:
        raise error(f"no {name}")

    stub_colab(monkeypatch, get)
    with caplog.at_level(logging.DEBUG, logger="spark_nb"):
        assert config.resolve().api_key is None
    assert f"no API key from Colab's secrets ({error.__name__})" in caplog.text


def test_colab_is_not_asked_outside_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without google.colab, nothing is imported or asked."""
    monkeypatch.setattr(_keys, "in_colab", _real_in_colab)
    assert _keys.in_colab() is False
    assert config.resolve().api_key is None


_real_in_colab = _keys.in_colab


def test_a_local_backend_reads_no_store(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPARK_NB_BACKEND=local: the keychain is not asked (no prompt for a key that would not be used)."""
    backend = use_keychain({("vtrix-cli", "api_key"): KEYS["keychain"]})
    monkeypatch.setenv("SPARK_NB_BACKEND", "local")
    settings = config.resolve()
    assert settings.backend == "local" and settings.api_key is None and backend.asked == 0


# -- the order -----------------------------------------------------------------------------------------------

ORDER = ["explicit", "configure", "env", "keychain", "file", "colab"]


def provide(source: str, home: Path, monkeypatch: pytest.MonkeyPatch, explicit: dict[str, Any]) -> None:
    """Make source hold its own key."""
    key = KEYS[source]
    if source == "explicit":
        explicit["api_key"] = key
    elif source == "configure":
        spark_nb.configure(api_key=key)
    elif source == "env":
        monkeypatch.setenv("VTRIX_API_KEY", key)
    elif source == "keychain":
        use_keychain({("vtrix-cli", "api_key"): key})
    elif source == "file":
        write_config(home, f"api_key: {key}\n")
    elif source == "colab":
        stub_colab(monkeypatch, colab_secret(key))


@pytest.mark.parametrize("higher, lower", list(itertools.combinations(ORDER, 2)))
def test_precedence_between_every_pair(sandbox: Path, monkeypatch: pytest.MonkeyPatch, higher: str,
                                       lower: str) -> None:
    """With two sources holding different keys, the one earlier in the order wins."""
    explicit: dict[str, Any] = {}
    provide(lower, sandbox, monkeypatch, explicit)
    provide(higher, sandbox, monkeypatch, explicit)
    settings = config.resolve(**explicit)
    assert settings.api_key == Secret(KEYS[higher]) and settings.backend == "cloud"


# -- never shown -------------------------------------------------------------------------------------------


def test_the_key_is_never_shown(sandbox: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                capsys: pytest.CaptureFixture) -> None:
    """Through every store, at DEBUG: no repr, log line, notice or exception holds the key."""
    seen = []
    with caplog.at_level(logging.DEBUG, logger="spark_nb"):
        for source in ("keychain", "file", "colab"):
            _keys.forget()
            keyring.set_keyring(MemoryKeyring())
            for name in ("google", "google.colab", "google.colab.userdata"):
                monkeypatch.delitem(sys.modules, name, raising=False)
            (sandbox / ".config" / "vtrix" / "config.yml").unlink(missing_ok=True)
            provide(source, sandbox, monkeypatch, {})
            settings = _notices.begin(config.resolve())
            found = _keys.find()
            assert found is not None and settings.api_key == Secret(KEYS[source])
            seen += [repr(settings), str(settings), repr(found), repr(settings.api_key), f"{settings.api_key}"]
            with pytest.raises(TypeError) as raised:
                import pickle

                pickle.dumps(found)
            seen.append(str(raised.value))
    seen += [caplog.text, capsys.readouterr().err]
    for text in seen:
        for key in KEYS.values():
            assert key not in text


def test_the_cli_uses_the_vtrix_cli_file(tmp_path: Path, make_server: Callable[..., LocalServer]) -> None:
    """`spark-nb status` in a process whose HOME has the vtrix CLI's file: authenticated with it, the source named."""
    server = make_server(api_key=TEST_KEY)
    home = tmp_path / "cli_home"
    write_config(home, f"api_key: {TEST_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "XDG_CONFIG"))}
    env.update(HOME=str(home), VTRIX_GENERATION_URL=server.url, VTRIX_NO_KEYCHAIN="1")
    proc = subprocess.run([sys.executable, "-m", "spark_nb", "status", "0" * 32], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "404" in proc.stderr and "401" not in proc.stderr  # the key from the file was accepted
    assert f"using Vtrix ({server.url}) with the API key from ~/.config/vtrix/config.yml" in proc.stderr
    assert TEST_KEY not in proc.stdout + proc.stderr


# -- a malformed key, from any source: refused where it enters, naming the source, never shown -----------------

FIRST, SECOND = "sk-first-line-0123456789", "second-line-abcdefghij"  # each long enough to be found if leaked
MALFORMED = {
    "a line break": f"{FIRST}\n{SECOND}",  # $(cat key.txt) of a two-line file
    "CR LF": f"{FIRST}\r\n{SECOND}",
    "a space": f"{FIRST} {SECOND}",
    "a tab": f"{FIRST}\t{SECOND}",
    "NUL": f"{FIRST}\x00{SECOND}",
    "an escape sequence": f"{FIRST}\x1b[2K{SECOND}",
    "curly quotes": f"\u201c{FIRST}{SECOND}\u201d",
}
SOURCES = {
    "explicit": "api_key=", "configure": "configure(api_key=)", "env": "VTRIX_API_KEY",
    "keychain": "the OS keychain (vtrix-cli)", "file": "~/.config/vtrix/config.yml",
    "colab": "Colab's secret VTRIX_API_KEY",
}


def assert_refused_unseen(exc: BaseException, source: str) -> None:
    """exc refuses the key naming source, and no text of it (nor any frame of its traceback) holds a part of it."""
    assert isinstance(exc, spark_nb.SparkError) and f"the API key from {SOURCES[source]} has " in str(exc)
    texts = [str(exc), repr(exc), repr(exc.args), exc.hint or ""]
    tb = exc.__traceback__
    while tb is not None:
        if "spark_nb" in tb.tb_frame.f_code.co_filename:
            texts.append(repr(tb.tb_frame.f_locals))
        tb = tb.tb_next
    for text in texts:
        assert FIRST not in text and SECOND not in text


@pytest.mark.parametrize("what", list(MALFORMED))
@pytest.mark.parametrize("source", list(SOURCES))
def test_a_malformed_key_is_refused_naming_its_source_and_never_shown(
        source: str, what: str, sandbox: Path, monkeypatch: pytest.MonkeyPatch,
        make_server: Callable[..., LocalServer]) -> None:
    """A key with a line break, CR LF, a space, a tab, NUL, an escape sequence or curly quotes inside, from each
    source: a SparkError naming the source, before anything is sent (the server saw no request); the key is in no
    message, repr or traceback frame. (The attack: such a key was sent as a header, h11 refused it, and the
    refusal's text, key included, became a TaskMayExist in the journal and every report.)"""
    if source == "env" and what == "NUL":
        pytest.skip("an environment variable cannot hold NUL")
    server = make_server(api_key=TEST_KEY)
    key = MALFORMED[what]
    with pytest.raises(spark_nb.SparkError) as info:
        explicit: dict[str, Any] = {}
        if source == "explicit":
            explicit["api_key"] = key
        elif source == "configure":
            spark_nb.configure(api_key=key)
        elif source == "env":
            monkeypatch.setenv("VTRIX_API_KEY", key)
        elif source == "keychain":
            use_keychain({("vtrix-cli", "api_key"): key})
        elif source == "file":
            write_config(sandbox, f'api_key: "{json_escaped(key)}"\n')
        elif source == "colab":
            stub_colab(monkeypatch, colab_secret(key))
        spark_nb.avatar.submit("https://inputs.example/f.jpg", "https://inputs.example/a.wav", base_url=server.url,
                               **explicit)
    assert_refused_unseen(info.value, source)
    assert server.stats()["created"] == 0 and server.stats().get("requests", 0) == 0


@pytest.mark.parametrize("source", ["explicit", "configure", "env"])
def test_a_key_too_short_to_be_one_is_refused_naming_its_source(source: str, monkeypatch: pytest.MonkeyPatch,
                                                                 make_server: Callable[..., LocalServer]) -> None:
    """Noticed by the second attack: a key shorter than 8 characters was sent, and never redacted (the redaction
    masks only values of 8 characters or more: shorter ones would garble messages). No Vtrix key is that short:
    it is refused where it enters, naming its source and its length, never itself; nothing is sent."""
    server = make_server(api_key=TEST_KEY)
    key = "sk-z7Qw"  # 7 characters
    with pytest.raises(spark_nb.SparkError) as info:
        explicit: dict[str, Any] = {}
        if source == "explicit":
            explicit["api_key"] = key
        elif source == "configure":
            spark_nb.configure(api_key=key)
        else:
            monkeypatch.setenv("VTRIX_API_KEY", key)
        spark_nb.avatar.submit("https://inputs.example/f.jpg", "https://inputs.example/a.wav", base_url=server.url,
                               backend="cloud", **explicit)
    said = str(info.value)
    assert f"the API key from {SOURCES[source]} is 7 characters long, too short to be a key" in said
    assert key not in said + repr(info.value) and server.stats().get("requests", 0) == 0


def json_escaped(text: str) -> str:
    """text as the inside of a YAML double-quoted scalar (YAML's escapes are JSON's)."""
    import json

    return json.dumps(text)[1:-1]


@pytest.mark.parametrize("text", [
    f"api_key: {FIRST}\r\n  {SECOND}\r\n",  # a plain scalar continued on the next line, CR LF line ends
    f'api_key: "{FIRST}\r\n  {SECOND}"\r\n',  # a double-quoted one folded over a CR LF
    f"api_key: |\n  {FIRST}\n  {SECOND}\n",  # a block scalar: the line break kept
])
def test_a_config_file_with_crlf_or_an_embedded_newline_is_refused(sandbox: Path, text: str) -> None:
    """Variants of the file source the attack used: the key folded or kept over two lines is refused where a call
    starts, not sent; reading the settings refuses nothing (a call that needs no key goes on)."""
    write_config(sandbox, text)
    settings = config.resolve()
    assert settings.backend == "cloud" and settings.api_key is None and settings.key_source == SOURCES["file"]
    with pytest.raises(spark_nb.SparkError) as info:
        _notices.begin(settings)
    assert_refused_unseen(info.value, "file")


def test_a_call_that_needs_no_key_works_whatever_a_key_store_holds(sandbox: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """A malformed key in ~/.config/vtrix/config.yml: history(), spend() and the doctor's journal and budget checks
    work (none needs a key); the doctor's key check, Task.from_id and a submit refuse the key, naming the file and
    never showing it. (Before, resolve() raised, so history() and spend() failed and the doctor checked no journal.)"""
    write_config(sandbox, f'api_key: "{json_escaped(MALFORMED["a line break"])}"\n')
    assert spark_nb.history() == [] and spark_nb.spend() == 0
    checks = {check.name: check for check in spark_nb.doctor()}
    assert checks["journal"].status == "ok" and checks["budget"].status == "ok", checks
    assert checks["key"].status == "fail" and SOURCES["file"] in checks["key"].detail
    assert "not checked" in checks["generation URL"].detail  # the service is not asked with a key it cannot use
    for call in (lambda: spark_nb.Task.from_id("0" * 32),
                 lambda: spark_nb.avatar.submit("https://inputs.example/f.jpg", "https://inputs.example/a.wav")):
        with pytest.raises(spark_nb.SparkError) as info:
            call()
        assert_refused_unseen(info.value, "file")
    shown = capsys.readouterr()
    assert FIRST not in shown.out + shown.err and SECOND not in shown.out + shown.err


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "symlink loop", "huge", "not utf-8"])
def test_no_config_file_can_hang_or_crash_a_key_lookup(kind: str, sandbox: Path, tmp_path: Path) -> None:
    """A FIFO (the attack: it hung every key lookup and `spark-nb history`), a device, a directory, a symlink loop,
    a 10 MB file, bytes that are not UTF-8 at ~/.config/vtrix/config.yml: no key, within a second."""
    path = sandbox / ".config" / "vtrix" / "config.yml"
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink loop":
        path.symlink_to(path.parent / "other.yml")
        (path.parent / "other.yml").symlink_to(path)
    elif kind == "huge":
        path.write_bytes(b"api_key: " + b"k" * (10 << 20) + b"\n")
    else:
        path.write_bytes(b"api_key: sk-\xff\xfe-0123456789\n")
    answers: list[Any] = []
    lookup = threading.Thread(target=lambda: answers.append(_keys.find()), daemon=True)
    lookup.start()
    lookup.join(timeout=1)
    try:
        assert not lookup.is_alive(), f"the key lookup hangs on a {kind}"
        assert answers == [None]
    finally:
        if kind == "fifo" and lookup.is_alive():  # release the hung open, so the thread ends with the test
            with open(os.open(path, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass


@pytest.mark.slow
def test_spark_nb_history_returns_with_a_fifo_config(tmp_path: Path) -> None:
    """`spark-nb history` in a process whose ~/.config/vtrix/config.yml is a FIFO: it answers (the attack hung it)."""
    home = tmp_path / "fifo_home"
    (home / ".config" / "vtrix").mkdir(parents=True)
    os.mkfifo(home / ".config" / "vtrix" / "config.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "XDG_CONFIG"))}
    env.update(HOME=str(home), VTRIX_NO_KEYCHAIN="1", SPARK_NB_HOME=str(tmp_path / "spark_home"))
    proc = subprocess.run([sys.executable, "-m", "spark_nb", "history"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "0 task(s)" in proc.stdout


@pytest.mark.parametrize("stored", ["base64", "hex"])
def test_a_keychain_value_written_by_go_keyring_is_decoded(stored: str, server: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The attack: the vtrix CLI's go-keyring stores a value as `go-keyring-base64:<base64>` (newer versions; the
    protocol page says to decode it), and spark_nb sent `Bearer go-keyring-base64:c2st...` as it was. Now the key
    inside is used: a status read of a real server that requires it answers (401 before); a value so marked that
    does not decode (not base64, not UTF-8) is no key, said at DEBUG without quoting it."""
    import base64

    encoded = (f"go-keyring-base64:{base64.b64encode(TEST_KEY.encode()).decode()}" if stored == "base64"
               else f"go-keyring-encoded:{TEST_KEY.encode().hex()}")
    use_keychain({("vtrix-cli", "api_key"): encoded})
    settings = config.resolve(base_url=server.url)
    assert settings.backend == "cloud" and settings.api_key == Secret(TEST_KEY)
    with pytest.raises(spark_nb.NotFoundError):  # past the key check: the server knows no such task
        spark_nb.Task.from_id("t-none", base_url=server.url).status()
    for broken in ("go-keyring-base64:not*base64!", "go-keyring-base64:" + base64.b64encode(b"\xff\xfe").decode(),
                   "go-keyring-encoded:zz"):
        use_keychain({("vtrix-cli", "api_key"): broken})
        with caplog.at_level(logging.DEBUG, logger="spark_nb"):
            assert config.resolve().api_key is None
        assert "does not decode: no key there" in caplog.text and broken not in caplog.text


def test_a_base_url_with_a_password_keeps_it_nowhere(make_server: Callable[..., LocalServer],
                                                     media: dict[str, Path], tmp_path: Path) -> None:
    """The attack (fourth round): `http://alice:PASSWORD@host` as the base URL put the password in a connection
    error, a CostUnknown, repr(ApiClient) and the journal. It is never sent (the API key authenticates), so the
    one spelling of a base URL leaves it out, and every message masks any URL's password."""
    from spark_nb import _client, avatar
    from spark_nb.errors import SparkError

    password = "GW-PASSWORD-1234"
    server = make_server(api_key=TEST_KEY)
    with_password = server.url.replace("http://", f"http://alice:{password}@")
    assert spark_nb.settings(base_url=with_password, backend="cloud").base_url == server.url
    result = avatar.generate(media["portrait"], media["speech"], progress=False, backend="cloud",
                             base_url=with_password, api_key=TEST_KEY, output_dir=tmp_path / "out",
                             uploader=f"{server.url}/api/v1/storage/files")
    assert result.status == "completed" and password not in repr(result)
    assert password not in repr(_client.client_for(with_password, Secret(TEST_KEY)))
    home = Path(os.environ["SPARK_NB_HOME"])
    assert not [p for p in home.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]

    closed = LocalServer(api_key=TEST_KEY).start()
    gone = closed.url.replace("http://", f"http://alice:{password}@")
    closed.stop()  # nothing listens there now
    with pytest.raises(SparkError) as refused:
        avatar.generate("https://inputs.example/p.jpg", "https://inputs.example/a.wav", backend="cloud", timeout=3,
                        base_url=gone, api_key=TEST_KEY, progress=False)
    assert "Connection refused" in str(refused.value) and password not in str(refused.value), refused.value
    upload_url = f"http://bob:{password}@127.0.0.1:1/upload"  # any URL a message names: its password masked
    assert password not in str(SparkError(f"the upload to {upload_url} failed"))


def test_no_url_settings_password_shows_in_a_repr_or_a_message() -> None:
    """The attack (fifth round): the upload URL's, the S3 endpoint's and the spec service's `user:password@` showed
    whole in repr(Settings) (what a notebook prints for spark_nb.settings()) and the uploaders' reprs, and a
    password holding an "@" showed its tail in messages (masked only to its first "@"); the sixth: a token alone
    (`http://TOKEN@host`) showed whole."""
    from spark_nb._uploads import HTTPUploader, S3Uploader
    from spark_nb.errors import SparkError

    secrets = ("UPLOADPW-9876", "S3PW-4321", "MODELSPW-55")
    settings = spark_nb.settings(backend="cloud", upload_url=f"http://bob:p@ss-{secrets[0]}@127.0.0.1:9/upload",
                                 s3_endpoint_url=f"http://k:{secrets[1]}@127.0.0.1:9",
                                 models_url=f"http://m:{secrets[2]}@127.0.0.1:9")
    shown = [repr(settings), str(settings), repr(HTTPUploader(str(settings.uploader), None)),  # type: ignore[arg-type]
             repr(S3Uploader("bucket", endpoint_url=settings.s3_endpoint_url)),
             str(SparkError(f"the upload endpoint {settings.uploader}: cannot connect"))]
    assert "http://********@127.0.0.1:9/upload" in shown[0]
    token = spark_nb.settings(upload_url="http://ghp_TOKENONLY1234567890@127.0.0.1:9/upload")  # a token alone
    assert "TOKENONLY" not in repr(token) and "TOKENONLY" not in str(SparkError(f"upload to {token.uploader}"))
    assert not [text for text in shown for secret in secrets if secret in text], shown
