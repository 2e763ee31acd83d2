"""Inline players: relative src under the working directory, data: for small files elsewhere, never loopback."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from spark_nb import display
from spark_nb._results import Result

LOOPBACK = re.compile(r"127\.0\.0\.1|localhost|\[::1\]|0\.0\.0\.0")


def srcs(markup: str) -> list[str]:
    """Every src attribute in markup."""
    return re.findall(r'src="([^"]*)"', markup)


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the working directory (the test's tmp_path)."""
    return tmp_path_factory.mktemp("elsewhere")


def test_file_under_cwd_gets_a_relative_src(media: dict[str, Path]) -> None:
    """A video under the working directory is linked by a relative, URL-quoted path, not embedded."""
    target = Path("spark outputs") / "clip #1.mp4"
    target.parent.mkdir()
    shutil.copy(media["driving"], target)
    markup = display.video_html(target.resolve())
    assert srcs(markup) == ["spark%20outputs/clip%20%231.mp4"]
    assert "<video" in markup and "data:" not in markup


def test_relative_src_even_over_the_embed_limit(media: dict[str, Path]) -> None:
    """Linking costs nothing in the notebook, so size does not matter under the working directory."""
    shutil.copy(media["driving"], "big.mp4")
    assert srcs(display.video_html(Path("big.mp4"), embed_limit=10)) == ["big.mp4"]


def test_small_file_outside_cwd_is_embedded(media: dict[str, Path], elsewhere: Path) -> None:
    """Outside the working directory a small file becomes a data: URI of its exact bytes with the right type."""
    video = shutil.copy(media["driving"], elsewhere / "d.mp4")
    (src,) = srcs(display.video_html(Path(video)))
    assert src.startswith("data:video/mp4;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == Path(video).read_bytes()
    (audio,) = srcs(display.audio_html(media["speech"]))
    assert audio.startswith("data:audio/wav;base64,")


def test_large_file_outside_cwd_is_not_embedded(elsewhere: Path) -> None:
    """Over EMBED_LIMIT_BYTES nothing is embedded: the HTML says where the file is saved."""
    big = elsewhere / "big.mp4"
    big.write_bytes(b"\0" * (display.EMBED_LIMIT_BYTES + 1))
    markup = display.video_html(big)
    assert "data:" not in markup and srcs(markup) == []
    assert str(big) in markup and "saved at" in markup
    assert "data:" not in display.audio_html(big.rename(elsewhere / "big.wav"))


def test_default_limit_keeps_notebooks_small() -> None:
    """The default limit is a few MB at most."""
    assert 100_000 <= display.EMBED_LIMIT_BYTES <= 2_000_000


def test_hidden_folder_under_cwd_is_not_linked(media: dict[str, Path]) -> None:
    """Jupyter's /files/ refuses hidden paths, so a file in .cache/ is embedded instead of linked."""
    Path(".cache").mkdir()
    shutil.copy(media["driving"], ".cache/d.mp4")
    (src,) = srcs(display.video_html(Path(".cache/d.mp4")))
    assert src.startswith("data:video/mp4;base64,")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8123/files/results/t.mp4", "http://localhost:80/x.mp4",
                                 "http://[::1]:9/x.mp4", "http://127.1.2.3/x.mp4", "http://0.0.0.0:5/x.mp4"])
def test_loopback_urls_are_never_used(url: str) -> None:
    """The kernel's loopback server is unreachable from a remote browser: named, never put in a src."""
    for fn in (display.video_html, display.audio_html, display.image_html, display.media_html):
        markup = fn(url)
        assert srcs(markup) == [] and "href" not in markup
    assert display.is_loopback_url(url)


def test_public_url_is_used_as_is() -> None:
    """A public http(s) URL is something the browser can fetch itself."""
    url = "https://example.com/media/face.jpg"
    assert srcs(display.image_html(url)) == [url]
    assert "<img" in display.media_html(url)
    assert not display.is_loopback_url(url)


def test_result_uses_its_file_never_its_loopback_url(media: dict[str, Path]) -> None:
    """A Result from the local server shows its downloaded file, never the server's 127.0.0.1 URL."""
    Path("spark_outputs").mkdir()
    path = Path(shutil.copy(media["driving"], "spark_outputs/t1.mp4"))
    result = Result(task_id="t1", model="m", status="completed", url="http://127.0.0.1:45678/files/results/t1.mp4",
                    path=path, size=path.stat().st_size, duration=2.0, usage={"cost": "0.12"}, raw={})
    for markup in (result._repr_html_(), display.result_html(result), display.show(result).data):
        assert not LOOPBACK.search(markup)
        assert srcs(markup) == ["spark_outputs/t1.mp4"]
        assert "t1" in markup
    assert "$0.12" in display.result_html(result) and "2.0 s" in display.result_html(result)


def test_show_picks_the_player_by_type(media: dict[str, Path]) -> None:
    """show() returns an IPython HTML object with <img>, <audio> or <video> by the file's type."""
    from IPython.display import HTML

    for key, tag in [("portrait", "<img"), ("png", "<img"), ("speech", "<audio"), ("speech_mp3", "<audio"),
                     ("driving", "<video")]:
        shown = display.show(media[key])
        assert isinstance(shown, HTML) and tag in shown.data, key
    assert "<audio" in display.show(media["driving"], kind="audio").data


def test_type_is_sniffed_without_a_suffix(media: dict[str, Path], elsewhere: Path) -> None:
    """Files spilled without a suffix (from bytes) are recognised by their first bytes."""
    for key, mime in [("portrait", "image/jpeg"), ("png", "image/png"), ("speech", "audio/wav"),
                      ("driving", "video/mp4")]:
        bare = elsewhere / f"{key}-bare"
        shutil.copy(media[key], bare)
        assert display.mime_type(bare) == mime, key
    assert display.kind_of(elsewhere / "portrait-bare") == "image"


def test_large_image_outside_cwd_is_previewed_as_a_thumbnail(elsewhere: Path) -> None:
    """An image too big to embed shows as a small JPEG thumbnail instead of nothing."""
    big = elsewhere / "big.png"
    Image.effect_noise((1400, 1400), 80).convert("RGB").save(big)
    assert big.stat().st_size > display.EMBED_LIMIT_BYTES
    (src,) = srcs(display.image_html(big))
    assert src.startswith("data:image/jpeg;base64,")
    assert len(src) < display.EMBED_LIMIT_BYTES


def test_caption_and_paths_are_escaped(elsewhere: Path) -> None:
    """Captions and file names can't inject markup."""
    markup = display.video_html(elsewhere / "missing.mp4", caption="<script>x</script>")
    assert "<script>" not in markup and "&lt;script&gt;" in markup
