"""The quickstart form in a real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright.

Skips when Chromium or Playwright is missing here; CI (SPARK_NB_REQUIRE_BROWSER=1) turns that skip into
a failure. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spark_nb import samples

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("SPARK_NB_TEST_ARTIFACTS", REPO / "test-artifacts"))
TOKEN = "browser-test-token"
GENERATION_TIMEOUT_MS = 120_000

pytestmark = pytest.mark.slow


def _require_browser() -> Any:
    """Playwright's sync API, or a skip (a failure when CI requires the browser test)."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "the playwright package is missing (pip install playwright; no browser download needed)"
    if problem:
        if os.environ.get("SPARK_NB_REQUIRE_BROWSER"):
            pytest.fail(f"browser test required but cannot run: {problem}")
        pytest.skip(problem)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 serving a temporary root with the notebooks and the samples; yields its URL."""
    root = tmp_path / "root"
    shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("spark_outputs", "scratch"))
    shutil.copytree(samples.FOLDER, root / "samples", ignore=shutil.ignore_patterns("__*"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VTRIX_", "SPARK_NB_", "JUPYTER_")) or k == "SPARK_NB_HOME"}
    env.update(HOME=str(tmp_path / "home"), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"), SPARK_NB_BACKEND="local")
    log = (tmp_path / "jupyterlab.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--ServerApp.allow_root=True"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "JupyterLab did not start within 90 s"
            try:
                if httpx.get(f"{url}/api/status", params={"token": TOKEN}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


PLAY_VIDEO = """
async (video) => {
  if (video.readyState < 1) {
    await new Promise((resolve, reject) => {
      video.addEventListener('loadedmetadata', resolve, {once: true});
      video.addEventListener('error', () => reject(new Error('media error ' + (video.error && video.error.code))),
                             {once: true});
      setTimeout(() => reject(new Error('no metadata within 30 s')), 30000);
    });
  }
  video.muted = true;
  await video.play();
  const started = performance.now();
  while (video.currentTime < 0.3 && performance.now() - started < 10000) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  video.pause();
  return {duration: video.duration, currentTime: video.currentTime, error: video.error && video.error.code,
          src: video.currentSrc};
}
"""


def _generate_in_form(page: Any, origin: str, form: str, kinds: tuple[str, ...], shot: Path) -> dict[str, Any]:
    """In the form with CSS class `form`, pick the samples, click Generate, wait for a playing result video.

    The video must come from the page's own origin (JupyterLab's /files/ handler, as on Binder) or be embedded,
    never from the local generation server the kernel talks to.
    """
    scope = page.locator(f".{form}")
    before = scope.locator(".spark-result video").evaluate_all("vs => vs.map(v => v.getAttribute('src'))")
    for kind in kinds:
        scope.locator(f".spark-sample-{kind}").click()
        scope.locator(f".spark-preview-{kind} img, .spark-preview-{kind} audio, .spark-preview-{kind} video") \
            .first.wait_for(timeout=30_000)
    generate = scope.locator(".spark-generate")
    generate.click()
    videos = scope.locator(".spark-result video")
    deadline = time.monotonic() + GENERATION_TIMEOUT_MS / 1000
    src = None
    while time.monotonic() < deadline:
        srcs = videos.evaluate_all("vs => vs.map(v => v.getAttribute('src'))")
        if srcs and srcs != before:
            src = srcs[0]
            break
        assert not scope.locator(".spark-error").inner_text().strip(), scope.locator(".spark-error").inner_text()
        page.wait_for_timeout(250)
    assert src, f"no new result video within {GENERATION_TIMEOUT_MS / 1000:.0f} s; status: " \
                f"{scope.locator('.spark-status').inner_text()}"
    assert generate.is_enabled()
    assert "completed" in scope.locator(".spark-status").inner_text()
    assert src.startswith((f"{origin}/files/", "data:video/")), f"the result must be served by JupyterLab: {src}"
    played = videos.first.evaluate(PLAY_VIDEO)
    videos.first.scroll_into_view_if_needed()
    page.screenshot(path=str(shot), full_page=False)
    return played


def test_quickstart_form_generates_and_plays_in_chromium(jupyterlab: str) -> None:
    """Run all cells of 01_quickstart, then in each tab pick the samples, Generate, and play the result."""
    sync_playwright = _require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(f"{jupyterlab}/lab/tree/notebooks/01_quickstart.ipynb?token={TOKEN}")
            page.locator(".jp-Notebook").wait_for(timeout=60_000)
            page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.locator(".spark-studio").wait_for(timeout=60_000)
            # the notebook's last cell generates without a click; let it finish before clicking ourselves
            page.locator(".spark-avatar-form .spark-result video").wait_for(timeout=GENERATION_TIMEOUT_MS)

            avatar = _generate_in_form(page, jupyterlab, "spark-avatar-form", ("image", "audio"),
                                       ARTIFACTS / "browser-avatar.png")
            page.locator(".spark-studio .lm-TabBar-tab", has_text="Imitator").click()
            imitation = _generate_in_form(page, jupyterlab, "spark-imitator-form", ("image", "video"),
                                          ARTIFACTS / "browser-imitator.png")

            widget_errors = page.locator(".jupyter-widgets-error-widget").count()
            page_text = page.locator(".jp-Notebook").inner_text()
        finally:
            browser.close()
    for played in (avatar, imitation):
        assert played["error"] is None, played
        assert played["duration"] > 0, played
        assert played["currentTime"] > 0, f"the video did not play: {played}"
        assert played["src"].startswith((f"{jupyterlab}/files/", "data:video/")), played
    assert abs(avatar["duration"] - 5.2) < 0.5
    assert abs(imitation["duration"] - 12.08) < 0.5
    assert widget_errors == 0
    assert "Error displaying widget" not in page_text and "Failed to load model" not in page_text
    assert not [e for e in console_errors if "widget" in e.lower()], console_errors
    assert (ARTIFACTS / "browser-avatar.png").stat().st_size > 10_000
    assert (ARTIFACTS / "browser-imitator.png").stat().st_size > 10_000
