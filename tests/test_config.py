"""Configuration: explicit arguments win over configure(), which wins over the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _config as config
from spark_nb import _keys, _notices


@pytest.fixture(autouse=True)
def no_key_stores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No vtrix CLI file or keychain of the machine's own: a HOME of the test's, VTRIX_NO_KEYCHAIN=1."""
    (tmp_path / "home").mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("VTRIX_NO_KEYCHAIN", "1")
    monkeypatch.setattr(_notices, "_shown", set())
    _keys.forget()


def test_defaults_without_anything_set(capsys: pytest.CaptureFixture) -> None:
    """No key: the local backend, whose one-line notice a call shows where it starts (once per process), never
    resolve() itself; the cloud URL and output folder defaults."""
    settings = config.resolve()
    assert settings.backend == "local" and settings.api_key is None
    assert settings.base_url == "https://cloud.vtrix.ai"
    assert settings.output_dir == Path("spark_outputs")
    assert config.resolve() == settings and capsys.readouterr().err == ""  # reading settings says nothing
    _notices.begin(settings)
    _notices.begin(config.resolve())
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "local backend" in notice and "VTRIX_API_KEY" in notice


def test_a_key_in_the_environment_selects_the_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """VTRIX_API_KEY set and no backend chosen: cloud, with VTRIX_GENERATION_URL as the base."""
    monkeypatch.setenv("VTRIX_API_KEY", "k-env")
    monkeypatch.setenv("VTRIX_GENERATION_URL", "http://127.0.0.1:9/")
    settings = config.resolve()
    assert settings.backend == "cloud" and settings.api_key == config.Secret("k-env")
    assert settings.base_url == "http://127.0.0.1:9"


def test_precedence_explicit_then_configure_then_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each layer overrides the one below it, field by field."""
    monkeypatch.setenv("SPARK_NB_OUTPUT_DIR", "env_out")
    monkeypatch.setenv("SPARK_NB_BACKEND", "local")
    monkeypatch.setenv("SPARK_NB_UPLOAD_URL", "http://127.0.0.1:1/env")
    assert config.resolve().output_dir == Path("env_out")
    spark_nb.configure(output_dir=tmp_path / "configured", upload_url="http://127.0.0.1:1/conf")
    settings = config.resolve()
    assert settings.output_dir == tmp_path / "configured" and settings.uploader == "http://127.0.0.1:1/conf"
    assert settings.backend == "local"
    settings = config.resolve(output_dir="explicit", backend="cloud", api_key="k")
    assert settings.output_dir == Path("explicit") and settings.backend == "cloud"
    spark_nb.configure(output_dir=None)
    assert config.resolve().output_dir == Path("env_out")


def test_mistakes_are_named() -> None:
    """An unknown backend or option says what is allowed."""
    with pytest.raises(spark_nb.SparkError, match="'cloud' or 'local'"):
        config.resolve(backend="gpu")
    with pytest.raises(TypeError, match="unknown option"):
        spark_nb.configure(api_kee="x")
    with pytest.raises(TypeError, match="unknown option"):
        spark_nb.avatar.generate("a.jpg", "b.wav", colour="red")


def test_cloud_without_a_key_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """backend='cloud' and no key: AuthenticationError naming VTRIX_API_KEY."""
    from .conftest import draw_portrait

    with pytest.raises(spark_nb.AuthenticationError, match="VTRIX_API_KEY"):
        spark_nb.avatar.submit(draw_portrait(tmp_path / "p.jpg"), Path(__file__).parent / "media" / "speech.wav",
                               backend="cloud", base_url="http://127.0.0.1:9")


def test_log_level_from_the_environment() -> None:
    """SPARK_NB_LOG_LEVEL sets the spark_nb logger's level at import, with a handler that shows it."""
    code = "import logging, spark_nb; l = logging.getLogger('spark_nb'); print(l.level, len(l.handlers))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"SPARK_NB_LOG_LEVEL": "debug", "PATH": ""}, check=True).stdout.split()
    assert out == [str(10), "1"]


def test_a_generation_url_without_a_key_is_named_in_the_notice(capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """VTRIX_GENERATION_URL set, no key: the local backend, and one line saying the URL is not used and why."""
    monkeypatch.setenv("VTRIX_GENERATION_URL", "http://127.0.0.1:9")
    assert _notices.begin(config.resolve()).backend == "local"
    err = capsys.readouterr().err
    assert err == ("spark_nb: VTRIX_GENERATION_URL is set but there is no API key: using the local backend; "
                   "set VTRIX_API_KEY to use it.\n")


def test_a_base_url_argument_without_a_key_is_named_too(capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url= with no key: the notice names base_url, not the environment variable."""
    assert _notices.begin(config.resolve(base_url="http://127.0.0.1:9")).backend == "local"
    assert capsys.readouterr().err.startswith("spark_nb: base_url is set but there is no API key")


def test_notices_are_one_plain_line_in_a_terminal(capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a Jupyter kernel a notice is one line on stderr, and nothing is displayed."""
    shown: list[Any] = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a))
    monkeypatch.setattr(_notices, "in_jupyter_kernel", lambda: False)
    _notices.notify("spark_nb: hello")
    assert capsys.readouterr().err == "spark_nb: hello\n" and shown == []


def test_notices_are_a_small_grey_line_in_a_notebook(capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """In a Jupyter kernel a notice is a grey info line (HTML, escaped, with a text fallback), not stderr."""
    shown: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setattr(_notices, "in_jupyter_kernel", lambda: True)
    _notices.begin(config.resolve())
    assert capsys.readouterr().err == ""
    [(args, kwargs)] = shown
    bundle = args[0]
    assert kwargs == {"raw": True} and "local backend" in bundle["text/plain"] and "\n" not in bundle["text/plain"]
    assert "color: #777" in bundle["text/html"] and "<div" in bundle["text/html"]
    _notices.notify("a <b> & c")
    assert "a &lt;b&gt; &amp; c" in shown[-1][0][0]["text/html"]


def test_the_kernel_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel is an IPython shell with a kernel: a terminal IPython or plain Python is not one."""
    fake = types.ModuleType("IPython")
    shell: Any = None
    fake.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert _notices.in_jupyter_kernel() is False
    shell = types.SimpleNamespace()  # terminal IPython: no kernel
    assert _notices.in_jupyter_kernel() is False
    shell = types.SimpleNamespace(kernel=object())
    assert _notices.in_jupyter_kernel() is True
    monkeypatch.delitem(sys.modules, "IPython")
    assert _notices.in_jupyter_kernel() is False


def test_notices_in_a_real_kernel_are_display_data(tmp_path: Path) -> None:
    """In a real ipykernel, the no-key notice of a call (Task.from_id, which sends nothing) arrives as display_data
    with text/html, and not on stderr."""
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "SPARK_NB_BACKEND"))}
    env.update(HOME=str(tmp_path), VTRIX_NO_KEYCHAIN="1")
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        msgs: list[dict[str, Any]] = []
        client.execute_interactive("import spark_nb; spark_nb.Task.from_id('0' * 32)", timeout=120,
                                   output_hook=msgs.append)
        kinds = {(m["msg_type"], m["content"].get("name")) for m in msgs}
        shown = [m["content"]["data"] for m in msgs if m["msg_type"] == "display_data"]
        assert any("local backend" in d.get("text/plain", "") and "text/html" in d for d in shown), msgs
        assert ("stream", "stderr") not in kinds, msgs
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
