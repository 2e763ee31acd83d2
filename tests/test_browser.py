"""The quickstart form in a real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright.

Skips when Chromium or Playwright is missing here; CI (SPARK_NB_REQUIRE_BROWSER=1) turns that skip into
a failure. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import contextlib
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

from .test_cli import StudioRun, studio_env

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


def _run_all_cells(page: Any, jupyterlab: str, notebook: str) -> None:
    """Open notebook (a path under the server's root) in JupyterLab, wait for its kernel, and run every cell."""
    page.goto(f"{jupyterlab}/lab/tree/{notebook}?token={TOKEN}")
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def _generate_in_form(page: Any, origin: str, form: str, kinds: tuple[str, ...], shot: Path, *,
                      served: tuple[str, ...] | None = None) -> dict[str, Any]:
    """In the form with CSS class `form`, pick the samples, click Generate, wait for a playing result video.

    The video must come from the page's own origin (JupyterLab's /files/ handler, as on Binder; Voila's own
    file handler for the studio: `served` names the allowed prefixes of its src) or be embedded, never from the
    local generation server the kernel talks to.
    """
    served = served or (f"{origin}/files/", "data:video/")
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
    played = videos.first.evaluate(PLAY_VIDEO)
    assert played["src"].startswith(served), f"the result must be served by the page's own server: {played['src']}"
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
            _run_all_cells(page, jupyterlab, "notebooks/01_quickstart.ipynb")
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


@pytest.fixture
def studio_app(tmp_path: Path) -> Iterator[StudioRun]:
    """`spark-nb studio --no-browser` on a free loopback port (local backend: no key), its URL with its token.

    Afterwards it is stopped with SIGINT, as Ctrl-C does, and must take Voila and every kernel with it.
    """
    studio = StudioRun(tmp_path, _free_port(), studio_env(tmp_path))
    try:
        yield studio
        assert studio.voila.is_running(), "Voila should run as a child of spark-nb studio"
    finally:
        studio.stop()


def _tabs_show_whole_titles(page: Any, scope: str) -> list[dict[str, Any]]:
    """The tab bar's titles, each with whether its text fits its tab (not cut off by an ellipsis)."""
    return page.locator(f"{scope} .lm-TabBar-tabLabel").evaluate_all(
        "ls => ls.map(l => ({text: l.textContent, fits: l.scrollWidth <= l.clientWidth + 1}))")


def test_studio_serves_the_forms_without_code_and_plays_in_chromium(studio_app: StudioRun) -> None:
    """spark-nb studio in Chromium, opened at the URL it printed (its token): both forms and History in whole tabs,
    no code, no console errors; the samples generate in each form and the videos play with the right durations."""
    sync_playwright = _require_browser()
    url, folder, origin = studio_app.url, studio_app.folder, studio_app.base
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console_errors: list[str] = []
    failed_requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            # a player cancelling its own range request (ERR_ABORTED) is normal; anything else is not
            page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")
                    else failed_requests.append(f"{r.url}: {r.failure}"))
            page.goto(url)
            page.locator(".spark-studio").wait_for(timeout=120_000)
            tabs = _tabs_show_whole_titles(page, ".spark-studio")
            code_cells = page.locator(".jp-CodeCell .jp-InputArea:visible, .cm-editor:visible").count()
            shown_text = page.locator("body").inner_text()
            title = page.title()
            avatar = _generate_in_form(page, origin, "spark-avatar-form", ("image", "audio"),
                                       ARTIFACTS / "browser-studio.png", served=(f"{origin}/", "data:video/"))
            page.set_viewport_size({"width": 1400, "height": 1900})  # the whole avatar tab, its tab bar on top
            page.locator(".spark-studio .lm-TabBar").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser-studio.png"))
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.locator(".spark-studio .lm-TabBar-tab", has_text="Imitator").click()
            imitation = _generate_in_form(page, origin, "spark-imitator-form", ("image", "video"),
                                          ARTIFACTS / "browser-studio-imitator.png",
                                          served=(f"{origin}/", "data:video/"))
            page.locator(".spark-studio .lm-TabBar-tab", has_text="History").click()
            page.locator(".spark-history-refresh").click()
            page.wait_for_function("document.querySelector('.spark-history') && "
                                   "document.querySelector('.spark-history').innerText.includes('2 task(s)')",
                                   timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "browser-studio-history.png"), full_page=False)
            widget_errors = page.locator(".jupyter-widgets-error-widget").count()
            page_text = page.locator("body").inner_text()
        finally:
            browser.close()
    assert [t["text"] for t in tabs] == ["Avatar", "Imitator", "History"], tabs
    assert all(t["fits"] for t in tabs), f"a tab title is cut off: {tabs}"
    assert code_cells == 0 and "import spark_nb" not in shown_text, "the studio shows code"
    assert title == "spark-nb studio"
    for played in (avatar, imitation):
        assert played["error"] is None and played["currentTime"] > 0, played
        assert played["src"].startswith((f"{origin}/", "data:video/")), played
    assert abs(avatar["duration"] - 5.2) < 0.2, avatar
    assert abs(imitation["duration"] - 12.08) < 0.2, imitation
    assert widget_errors == 0 and "Error displaying widget" not in page_text
    assert not console_errors, console_errors
    assert not failed_requests, f"the studio asked for something it could not get: {failed_requests}"
    assert list((folder / "spark_outputs").glob("*.mp4")), "the videos land in the studio's folder"
    written = [folder / "spark_outputs", *(folder / "spark_outputs").rglob("*")]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        p.name: "0o700" if p.is_dir() else "0o600" for p in written}, "the studio's files are the user's alone"
    assert (ARTIFACTS / "browser-studio.png").stat().st_size > 10_000


FITS = "e => ({text: e.innerText.trim(), fits: e.scrollWidth <= e.clientWidth + 1, width: e.clientWidth})"


def test_the_forms_strict_box_trim_label_and_history_table_fit_in_chromium(studio_app: StudioRun,
                                                                          tmp_path: Path) -> None:
    """In the studio, as a person sees it in a 1000 px window: the "Trim to 15 s" button a 17 s clip offers shows
    its whole label; the strict checkbox is there, and ticked it turns a landscape's no-face advice into the form's
    error with nothing created; the History tab's table, with a long input name and a task, stays within the tab
    (no column cut off, nothing to scroll sideways) and plays its video from the studio's folder. The studio's
    terminal shows its URL only all along."""
    from PIL import Image

    from .conftest import ffmpeg

    sync_playwright = _require_browser()
    long_speech = tmp_path / "long_speech.wav"
    ffmpeg("-stream_loop", "5", "-i", str(samples.SPEECH), "-t", "17", str(long_speech))
    landscape = tmp_path / "landscape.jpg"
    Image.new("RGB", (480, 360), (90, 140, 200)).save(landscape, quality=90)
    portrait = tmp_path / f"{'a_portrait_with_a_rather_long_file_name_from_a_camera_' * 2}IMG_20261201_140307.jpg"
    portrait.write_bytes(samples.PORTRAIT.read_bytes())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1000})
            page.goto(studio_app.url)
            form = page.locator(".spark-avatar-form")
            form.wait_for(timeout=120_000)

            form.locator(".spark-url-audio input").fill(str(long_speech))
            form.locator(".spark-url-audio input").press("Enter")
            fix = form.locator(".spark-fix-audio")
            fix.wait_for(state="visible", timeout=60_000)
            trim = fix.evaluate(FITS)
            page.screenshot(path=str(ARTIFACTS / "browser-form-trim.png"))

            strict = form.locator(".spark-strict")
            strict_label = strict.evaluate(FITS)
            strict.locator("input[type=checkbox]").check()
            form.locator(".spark-url-image input").fill(str(landscape))
            form.locator(".spark-url-image input").press("Enter")
            form.locator(".spark-problem-image", has_text="no face found").wait_for(timeout=60_000)
            form.locator(".spark-generate").click()
            form.locator(".spark-error", has_text="no face found").wait_for(timeout=60_000)
            refused = form.locator(".spark-error").inner_text()

            strict.locator("input[type=checkbox]").uncheck()
            form.locator(".spark-url-image input").fill(str(portrait))
            form.locator(".spark-url-image input").press("Enter")
            form.locator(".spark-sample-audio").click()
            form.locator(".spark-preview-image img").wait_for(timeout=60_000)
            form.locator(".spark-generate").click()
            form.locator(".spark-result video").wait_for(timeout=GENERATION_TIMEOUT_MS)

            page.locator(".spark-studio .lm-TabBar-tab", has_text="History").click()
            page.locator(".spark-history-refresh").click()
            page.wait_for_function("document.querySelector('table.spark-history') && document.querySelector("
                                   "'table.spark-history').innerText.includes('1 task(s)')", timeout=30_000)
            table = page.locator(".spark-history-box").evaluate(
                """box => { const t = box.querySelector('table'), area = box.closest('.lm-TabPanel-stackedPanel')
                            || box.parentElement;
                            return {table: t.getBoundingClientRect().right, area: area.getBoundingClientRect().right,
                                    scroll: box.scrollWidth, box: box.clientWidth,
                                    cells: [...t.querySelectorAll('td')].filter(c => c.scrollWidth > c.clientWidth + 1)
                                           .map(c => c.innerText)}; }""")
            played = page.locator("table.spark-history tbody tr").first.evaluate(MEDIA_LOADED)
            page.screenshot(path=str(ARTIFACTS / "browser-studio-history-narrow.png"))
        finally:
            browser.close()
    terminal = studio_app.log.read_text().splitlines()  # its URL, and errors only: none here (a refusal is the page's)
    assert len(terminal) == 1 and terminal[0].startswith("spark-nb studio on "), terminal
    assert trim["text"] == "Trim to 15 s" and trim["fits"], f"the fix button's label is cut off: {trim}"
    assert "strict" in strict_label["text"].lower() and strict_label["fits"], strict_label
    assert "no face found" in refused and "untick Strict" in refused
    assert table["table"] <= table["area"] + 1 and table["scroll"] <= table["box"] + 1, table
    assert table["cells"] == [], f"cells cut off: {table['cells']}"
    [video] = played["media"]
    assert video["error"] is None and video["readyState"] >= 1 and not video["src"].startswith("data:"), video
    assert video["src"].startswith(f"{studio_app.base}/"), video


STRANGER_PAGE = """<!doctype html><title>any web page</title>
<img src="{base}/"><img src="{base}/?token=guess"><img src="{base}/voila/files/spark_outputs/made.mp4">
<iframe src="{base}/"></iframe><iframe src="{base}/voila/files/spark_outputs/made.mp4"></iframe>
"""


def test_the_studio_refuses_other_hosts_and_pages_without_its_token_in_chromium(studio_app: StudioRun) -> None:
    """Chromium as an attacker would drive it: a rebinding name resolving to 127.0.0.1 (even with the token in the
    URL), the studio's address without the token, and another page embedding the studio and a video of the user's
    as images and frames, and posting to it: a 403, the login page, nothing shown. No kernel starts and nothing
    is created. Then the printed URL opens the studio as before."""
    sync_playwright = _require_browser()
    studio = studio_app
    (studio.folder / "spark_outputs").mkdir()
    (studio.folder / "spark_outputs" / "made.mp4").write_bytes(samples.DRIVING_VIDEO.read_bytes())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--host-resolver-rules=MAP rebind.example 127.0.0.1"])
        try:
            page = browser.new_page()
            rebound = page.goto(f"http://rebind.example:{studio.port}/?token={studio.token}")
            assert rebound is not None and rebound.status == 403
            rebound_text = page.locator("body").inner_text()
            video = page.goto(f"http://rebind.example:{studio.port}/voila/files/spark_outputs/made.mp4")
            assert video is not None and video.status == 403
            page.goto(f"{studio.base}/")
            assert "/login" in page.url and page.locator(".spark-studio").count() == 0
            page.goto(f"{studio.base}/voila/files/spark_outputs/made.mp4")
            assert "/login" in page.url
            stranger = browser.new_page()  # a fresh profile's page: no cookie of the studio
            stranger.set_content(STRANGER_PAGE.format(base=studio.base), wait_until="load")
            posted = stranger.evaluate("""async (base) => {
              try { await fetch(base + '/voila/api/shutdown/x', {method: 'POST', mode: 'no-cors'}); return 'sent'; }
              catch (e) { return 'blocked: ' + e; }
            }""", studio.base)
            assert studio.kernels() == [], "a page without the token started a kernel"
            page.goto(studio.url)
            page.locator(".spark-studio").wait_for(timeout=120_000)
            opened_at = page.url
        finally:
            browser.close()
    assert "spark-nb studio" not in rebound_text and "403" in rebound_text
    assert posted.startswith(("sent", "blocked")), posted
    assert opened_at == f"{studio.base}/", "the token leaves the address bar once the login cookie is set"
    assert len(studio.kernels()) == 1
    journal = Path(studio_env(studio.folder.parent)["SPARK_NB_HOME"], "journal.sqlite")
    if journal.exists():  # the page with the token opened it for its History tab
        import sqlite3

        with contextlib.closing(sqlite3.connect(journal)) as db:
            assert db.execute("SELECT count(*) FROM tasks").fetchone() == (0,), "a task was created"
    assert [p.name for p in (studio.folder / "spark_outputs").iterdir()] == ["made.mp4"]


# A page another local user serves on another port of 127.0.0.1 (the same site as the studio: the browser sends the
# owner's login cookie with its requests): frames, an image and credentialed fetches of the studio's page.
SAME_SITE_PAGE = """<!doctype html><title>cats</title>
<iframe src="{base}/"></iframe><iframe src="{base}/?x=2"></iframe><img src="{base}/?x=3">
<script>
window.fetched = Promise.all([4, 5].map((i) => fetch('{base}/?x=' + i, {{mode: 'no-cors', credentials: 'include'}})
  .then(() => 'sent', (e) => 'blocked: ' + e)));
</script>
"""
SAME_SITE_NAVIGATION = "<!doctype html><script>location.href = '{base}/?x=6';</script>"


@contextlib.contextmanager
def _page_server(pages: dict[str, str]) -> Iterator[str]:
    """An HTTP server on another loopback port serving pages (path: HTML) from a thread; yields its base URL."""
    import http.server
    import threading

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the standard library's name
            body = pages.get(self.path, "").encode()
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_page_on_another_loopback_port_starts_no_studio_kernel_with_the_owners_cookie_in_chromium(
        studio_app: StudioRun) -> None:
    """The owner opens the studio in Chromium (one kernel); in the same browser, a page on another port of
    127.0.0.1 frames the studio twice, shows it as an image, fetches it twice with credentials, and another such
    page navigates its tab to it: every request carries the owner's login cookie (same site), and none starts a
    kernel (before: each started one, and at four the owner's next page load was a 503 for 15 minutes). The login
    cookie is SameSite=Strict, and the owner's own next page load still opens the studio."""
    sync_playwright = _require_browser()
    studio = studio_app
    base = studio.base
    pages = {"/": SAME_SITE_PAGE.format(base=base), "/go": SAME_SITE_NAVIGATION.format(base=base)}
    with _page_server(pages) as elsewhere, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            owner = context.new_page()
            owner.goto(studio.url)
            owner.locator(".spark-studio").wait_for(timeout=120_000)
            cookies = context.cookies(base)
            kernels_before = len(studio.kernels())
            stranger = context.new_page()
            stranger.goto(f"{elsewhere}/", wait_until="load")  # after the frames and the image answered
            fetched = stranger.evaluate("window.fetched")
            navigated = context.new_page()
            with navigated.expect_navigation(url=f"{base}/?x=6", timeout=60_000):
                navigated.goto(f"{elsewhere}/go")
            navigated_text = navigated.locator("body").inner_text()
            kernels_after_attack = len(studio.kernels())
            again = context.new_page()
            again.goto(f"{base}/")
            again.locator(".spark-studio").wait_for(timeout=120_000)
        finally:
            browser.close()
    login = [c for c in cookies if c["name"].startswith("username-")]
    assert login and login[0]["sameSite"] == "Strict" and login[0]["httpOnly"], cookies
    assert kernels_before == 1
    assert fetched == ["sent", "sent"], fetched
    assert "403" in navigated_text and "another page" in navigated_text, navigated_text
    assert kernels_after_attack == 1, "a page on another loopback port started a studio kernel"
    assert len(studio.kernels()) == 2


# What a page on a rebinding name (its origin is evil.test:PORT, the name resolving to 127.0.0.1) tries against
# `spark-nb serve` there: its fetches are same-origin, so it may read the answers, if the server answers them.
REBINDING_PAGE_TRIES = """
async () => {
  const out = {};
  const form = new FormData();
  form.append('file', new Blob(['x'.repeat(1000)], {type: 'image/jpeg'}), 'x.jpg');
  const auth = {'Authorization': 'Bearer anything'};
  const tries = {
    upload: () => fetch('/api/v1/storage/files', {method: 'POST', headers: auth, body: form}),
    create: () => fetch('/model/v1/generation', {method: 'POST', headers: {...auth, 'Content-Type': 'application/json'},
      body: JSON.stringify({model: 'spark_avatar_picture_omni_v2', input: [{params: {
        image_url: 'http://127.0.0.1:9/a.jpg', audio_url: 'http://127.0.0.1:9/a.wav'}}]})}),
    stats: () => fetch('/_spark_nb/stats'),
  };
  for (const [name, send] of Object.entries(tries)) {
    try { const r = await send(); out[name] = [r.status, await r.text()]; } catch (e) { out[name] = String(e); }
  }
  return out;
}
"""


def test_a_rebinding_page_can_neither_drive_nor_read_spark_nb_serve_in_chromium(serve_process: Any) -> None:
    """`spark-nb serve` on loopback without a key, and Chromium with Private Network Access off (an older or
    differently configured browser): a page at evil.test:PORT, a name resolving to 127.0.0.1, uploads, creates and
    reads the stats: each a 403, nothing created or stored. An upload named .html opened in Chromium runs no script
    on the loopback site. Before: 200s (a task created, the stats read) and the page's script ran."""
    sync_playwright = _require_browser()
    server = serve_process()
    port = server.url.rsplit(":", 1)[1]
    page_url = httpx.post(f"{server.url}/api/v1/storage/files", headers={"Authorization": "Bearer x"},
                          files={"file": ("evil.html", b"<script>document.title = 'ran'</script>")},
                          timeout=30).json()["url"]
    before = httpx.get(f"{server.url}/_spark_nb/stats", timeout=10).json()
    pna_off = ("--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
               "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--host-resolver-rules=MAP evil.test 127.0.0.1", pna_off])
        try:
            page = browser.new_page()
            # the attacker's own page, delivered before the name is rebound to 127.0.0.1
            page.route(f"http://evil.test:{port}/", lambda route: route.fulfill(
                status=200, content_type="text/html", body="<h1>cats</h1>"))
            page.goto(f"http://evil.test:{port}/")
            tried = page.evaluate(REBINDING_PAGE_TRIES)
            opened = browser.new_page()
            with contextlib.suppress(Exception):  # served as bytes: Chromium downloads it instead of showing it
                opened.goto(page_url)
            title = opened.title()
        finally:
            browser.close()
    assert {name: answer[0] for name, answer in tried.items()} == {"upload": 403, "create": 403, "stats": 403}, tried
    assert title != "ran", "an uploaded page ran its script on the loopback site"
    after = httpx.get(f"{server.url}/_spark_nb/stats", timeout=10).json()
    assert (after["created"], after["uploads"]) == (before["created"], before["uploads"]) == (0, 1)


MEDIA_LOADED = """
async (root) => {
  const media = [...root.querySelectorAll('video, audio')];
  const images = [...root.querySelectorAll('img')];
  const loaded = (m) => m.readyState >= 1 ? Promise.resolve() : new Promise((resolve) => {
    m.addEventListener('loadedmetadata', resolve, {once: true});
    m.addEventListener('error', resolve, {once: true});
    if (m.preload === 'none') { m.preload = 'metadata'; }
    m.load();
    setTimeout(resolve, 30000);
  });
  const shown = (i) => i.complete ? Promise.resolve() : new Promise((resolve) => {
    i.addEventListener('load', resolve, {once: true});
    i.addEventListener('error', resolve, {once: true});
    setTimeout(resolve, 30000);
  });
  await Promise.all([...media.map(loaded), ...images.map(shown)]);
  return {
    media: media.map((m) => ({tag: m.tagName, src: m.currentSrc, readyState: m.readyState,
                              duration: m.duration, error: m.error && m.error.code})),
    images: images.map((i) => ({src: i.currentSrc, naturalWidth: i.naturalWidth})),
  };
}
"""


def test_batch_gallery_plays_inside_jupyterlab(jupyterlab: str, tmp_path: Path) -> None:
    """A batch on the bundled samples (outside JupyterLab's root) run under the root; a notebook there shows its
    gallery inline: every video's and audio's metadata loads and every image has a natural size."""
    sync_playwright = _require_browser()
    import csv
    import json

    from spark_nb.batch import run_batch

    root = tmp_path / "root"
    work = root / "gallery_run"
    work.mkdir()
    manifest = work / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "model", "image", "audio", "driving_video"])
        writer.writeheader()
        writer.writerow({"name": "talks", "model": "avatar", "image": samples.PORTRAIT, "audio": samples.SPEECH,
                         "driving_video": ""})
        writer.writerow({"name": "moves", "model": "imitator", "image": samples.PORTRAIT, "audio": "",
                         "driving_video": samples.DRIVING_VIDEO})
    outcomes = run_batch(manifest, work / "batch", concurrency=2, progress=False)
    assert [o.status for o in outcomes] == ["completed", "completed"], [o.error for o in outcomes]
    page_html = (work / "batch" / "index.html").read_text()
    assert str(samples.FOLDER) not in page_html and str(root) not in page_html
    # the notebook runs the same batch (every row reused from the journal) and shows the gallery inline
    source = ("from IPython.display import HTML\nfrom spark_nb.batch import run_batch\n"
              "from spark_nb.batch._report import gallery_html\n\n"
              "outcomes = run_batch('manifest.csv', 'batch', progress=False)\nHTML(gallery_html('batch', outcomes))")
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "gallery", "metadata": {},
                           "outputs": [], "source": source}],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    (work / "gallery.ipynb").write_text(json.dumps(notebook))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    redirected: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("response", lambda r: redirected.append(f"{r.status} {r.url}")
                    if "/files/" in r.url and r.status >= 300 else None)
            _run_all_cells(page, jupyterlab, "gallery_run/gallery.ipynb")
            gallery = page.locator(".jp-OutputArea .spark-gallery")
            gallery.wait_for(timeout=GENERATION_TIMEOUT_MS)
            found = gallery.evaluate(MEDIA_LOADED)
            gallery.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser-gallery.png"))
        finally:
            browser.close()
    # two results, the speech and the driving video; the portrait in each row
    assert len(found["media"]) == 4 and len(found["images"]) == 2, (found, redirected)
    for item in [*found["media"], *found["images"]]:
        assert item["src"].startswith(f"{jupyterlab}/files/gallery_run/batch/"), item
    for item in found["media"]:
        assert item["readyState"] >= 1 and item["error"] is None and item["duration"] > 0, item
    for item in found["images"]:
        assert item["naturalWidth"] > 0, item
    assert not redirected, redirected


MEDIA_READY = """
async (root) => {
  const videos = [...root.querySelectorAll('video')];
  const images = [...root.querySelectorAll('img')];
  const ready = (v) => v.readyState >= 2 ? Promise.resolve() : new Promise((resolve) => {
    v.addEventListener('loadeddata', resolve, {once: true});
    v.addEventListener('error', resolve, {once: true});
    setTimeout(resolve, 30000);
  });
  const shown = (i) => i.complete ? Promise.resolve() : new Promise((resolve) => {
    i.addEventListener('load', resolve, {once: true});
    i.addEventListener('error', resolve, {once: true});
    setTimeout(resolve, 30000);
  });
  await Promise.all([...videos.map(ready), ...images.map(shown)]);
  return {
    videos: videos.map((v) => ({src: v.currentSrc, readyState: v.readyState, duration: v.duration,
                                error: v.error && v.error.code})),
    images: images.map((i) => ({src: i.currentSrc, naturalWidth: i.naturalWidth})),
  };
}
"""


def _batch_elsewhere(folder: Path) -> Path:
    """A finished batch on the bundled samples (two rows and one identical to the first) in folder/batch."""
    import csv

    from spark_nb.batch import run_batch

    folder.mkdir(parents=True)
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "model", "image", "audio", "driving_video"])
        writer.writeheader()
        for name in ("talks", "talks_again"):
            writer.writerow({"name": name, "model": "avatar", "image": samples.PORTRAIT, "audio": samples.SPEECH,
                             "driving_video": ""})
        writer.writerow({"name": "moves", "model": "imitator", "image": samples.PORTRAIT, "audio": "",
                         "driving_video": samples.DRIVING_VIDEO})
    outcomes = run_batch(manifest, folder / "batch", concurrency=2, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3, [o.error for o in outcomes]
    return folder / "batch"


def test_a_batch_folders_gallery_notebook_plays_when_opened_from_jupyterlabs_file_browser(
        jupyterlab: str, tmp_path: Path) -> None:
    """The attack: double-clicking a batch's index.html in JupyterLab opened its HTML viewer, where every video
    stayed at 0:00 and every picture was broken (its sandbox sends no session; 'Trust HTML' got a 403). Every
    batch now writes gallery.ipynb. The batch ran outside JupyterLab's root, its folder was zipped and unzipped
    into the root; gallery.ipynb, double-clicked in the file browser, shows every row with no cell run and the
    notebook not trusted (its saved output, through JupyterLab's sanitizer) and, once its kernel is connected, not
    modified (it carries the metadata JupyterLab would write): every <video> reaches readyState >= 2
    and every <img> has a natural width, all served by JupyterLab's /files/. index.html, opened from disk, says
    at its top that gallery.ipynb is the one to open in JupyterLab, and plays too."""
    import shutil

    sync_playwright = _require_browser()
    batch = _batch_elsewhere(tmp_path / "elsewhere")
    archive = shutil.make_archive(str(tmp_path / "batch"), "zip", batch.parent, "batch")
    shutil.rmtree(batch)
    shutil.unpack_archive(archive, tmp_path / "root" / "shared")
    shared = tmp_path / "root" / "shared" / "batch"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{jupyterlab}/lab/tree/shared/batch?token={TOKEN}")
            page.locator(".jp-DirListing-item", has_text="gallery.ipynb").dblclick(timeout=60_000)
            gallery = page.locator(".jp-Notebook .jp-OutputArea .spark-gallery")
            gallery.wait_for(timeout=60_000)
            found = gallery.evaluate(MEDIA_READY)
            # JupyterLab writes the kernel's metadata into the notebook once the kernel is connected and idle
            # (its handler awaits the kernel's info and spec, then writes: awaited here after it, it has written)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel",
                                   timeout=60_000)
            page.evaluate("""async () => {
              const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
              await kernel.info;
              await kernel.spec;
              await new Promise((done) => setTimeout(done, 0));
            }""")
            state = page.evaluate("""() => {
              const widget = window.jupyterapp.shell.currentWidget;
              return {path: widget.context.path, dirty: widget.context.model.dirty,
                      trusted: widget.content.widgets.map((cell) => cell.model.trusted),
                      counts: widget.content.widgets.map((cell) => cell.model.executionCount ?? null)};
            }""")
            page.screenshot(path=str(ARTIFACTS / "browser-gallery-notebook.png"))
            disk = browser.new_page(viewport={"width": 1400, "height": 1000})
            disk.goto((shared / "index.html").as_uri())
            note = disk.locator(".jupyterlab-note")
            note_box, first_card = note.bounding_box(), disk.locator(".card").first.bounding_box()
            note_text = note.inner_text()
            from_disk = disk.locator("body").evaluate(MEDIA_READY)
        finally:
            browser.close()
    assert state["path"] == "shared/batch/gallery.ipynb" and not state["dirty"], state
    assert state["trusted"] == [False, False] and state["counts"] == [None, None], state  # nothing ran, not trusted
    # three rows' videos and the driving video; the portrait on each card
    assert len(found["videos"]) == 4 and len(found["images"]) == 3, found
    for item in [*found["videos"], *found["images"]]:
        assert item["src"].startswith(f"{jupyterlab}/files/shared/batch/"), item
    for video in found["videos"]:
        assert video["readyState"] >= 2 and video["error"] is None and video["duration"] > 1, video
    assert all(image["naturalWidth"] > 0 for image in found["images"]), found["images"]
    assert "gallery.ipynb" in note_text and "JupyterLab" in note_text
    assert note_box is not None and first_card is not None and note_box["y"] + note_box["height"] <= first_card["y"]
    assert note_box["y"] < 1000  # visible without scrolling
    assert len(from_disk["videos"]) == 4 and all(v["readyState"] >= 2 for v in from_disk["videos"]), from_disk
    assert all(image["naturalWidth"] > 0 for image in from_disk["images"]), from_disk
