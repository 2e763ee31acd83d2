"""Configuration: explicit arguments win over configure(), which wins over the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import spark_nb
from spark_nb import _config as config


def test_defaults_without_anything_set(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key: the local backend with a one-line notice; the cloud URL and output folder defaults."""
    monkeypatch.setattr(config, "_notice_shown", False)
    settings = config.resolve()
    assert settings.backend == "local" and settings.api_key is None
    assert settings.base_url == "https://cloud.vtrix.ai"
    assert settings.output_dir == Path("spark_outputs")
    config.resolve()
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
