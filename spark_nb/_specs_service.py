"""The model spec service (VTRIX_MODELS_URL): each model's published spec, read within bounds, cached, never in the way.

`fetch` reads one spec (`GET {models}/api/v1/skill/models/{id}/spec`, no key) through the one bounded reader
(`_answers.read_answer`) and says what it is: published, missing (`status.code` 404 in the body, or an answer that
is not the service's envelope at all) or unreadable (down, slow, HTTP 500, garbage). It never raises.

`known` is what a create call consults: a cached answer younger than its lifetime, else one fetched in the
background and waited for at most WAIT_S; the call goes on without a spec when none arrives by then (the fetch
finishes for the next call). Answers are cached in memory and in SPARK_NB_HOME/specs (shared by kernels and batch
jobs): a spec for SPEC_TTL_S, a failure for RETRY_S. `guard` refuses, before the create is sent, a call whose
params the published spec no longer accepts (`_specs.differences`, `_specs.value_problems`).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from ._answers import Answer, install_deadlines, parse_json, read_answer
from ._config import spec_source
from ._files import remove_stale_parts, write_atomically
from ._specs import judge
from ._urls import direct_mounts
from ._version import __version__
from .errors import ValidationError, safe_text
from .models import MODELS

logger = logging.getLogger("spark_nb.specs")

# How long a spec read is trusted. Short enough that a parameter Vtrix renames is noticed within minutes, before
# a batch has sent many tasks the service would refuse; long enough that a batch of a thousand rows asks once,
# not a thousand times (one small free request per model every 15 minutes).
SPEC_TTL_S = 15 * 60.0
RETRY_S = 60.0  # a spec service that failed is asked again after this, not by every call in between
WAIT_S = 0.5  # the longest a create waits for a spec it does not have yet
FETCH_LIMIT_S = 15.0  # one spec request, as the official client's
MAX_CACHE_BYTES = 1024**2 + 4096
SpecState = Literal["published", "missing", "unreadable"]
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclasses.dataclass(frozen=True)
class SpecAnswer:
    """What the spec service said about one model: its state, the spec's data when published, and why (detail)."""

    model: str
    models_url: str
    state: SpecState
    data: dict[str, Any] | None
    detail: str
    fetched_at: float  # time.time() when it was read

    def fresh(self, now: float | None = None) -> bool:
        """Young enough to use: a spec or a missing one for SPEC_TTL_S, a failure for RETRY_S (a clock gone back:
        not fresh)."""
        age = (time.time() if now is None else now) - self.fetched_at
        return 0 <= age <= (RETRY_S if self.state == "unreadable" else SPEC_TTL_S)


def spec_url(models_url: str, model: str) -> str:
    """Where models_url publishes model's spec."""
    return f"{models_url.rstrip('/')}/api/v1/skill/models/{quote(model, safe='')}/spec"


_http_client: Any = None
_http_lock = threading.Lock()


def http() -> Any:
    """A keyless bounded httpx client (the spec service needs no key; this one never sends it anywhere)."""
    global _http_client
    with _http_lock:
        if _http_client is None:
            import httpx

            _http_client = install_deadlines(httpx.Client(
                follow_redirects=True, max_redirects=5, trust_env=True, mounts=direct_mounts(),
                headers={"User-Agent": f"spark-nb/{__version__}", "X-Source": "spark-nb",
                         "Accept-Encoding": "gzip, deflate"}))
            atexit.register(_http_client.close)
        return _http_client


def fetch(models_url: str, model: str, *, limit: float | None = None) -> SpecAnswer:
    """Read model's spec from models_url within limit seconds (FETCH_LIMIT_S); never raises (a failure is an
    unreadable answer)."""
    limit = FETCH_LIMIT_S if limit is None else limit
    try:
        answer = read_answer(http(), "GET", spec_url(models_url, model), deadline=time.monotonic() + limit)
    except Exception as exc:  # any failure to read is "unreadable", never the caller's problem
        return SpecAnswer(model, models_url, "unreadable", None, _failure(exc, limit), time.time())
    state, data, detail = interpret(answer)
    return SpecAnswer(model, models_url, state, data, detail, time.time())


def _failure(exc: Exception, limit: float) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {limit:g} s"
    return safe_text(f"no answer ({type(exc).__name__}: {exc})", newlines=False, limit=200)


def interpret(answer: Answer) -> tuple[SpecState, dict[str, Any] | None, str]:
    """The state of a spec answer: the envelope's status.code (0 or 200 with a spec: published; 404: missing),
    whatever the HTTP status; an HTTP 404 without the envelope is missing too (nothing publishes it there)."""
    data = answer.data
    status = data.get("status") if isinstance(data, dict) else None
    code = status.get("code") if isinstance(status, dict) else None
    message = safe_text(status.get("message", "") if isinstance(status, dict) else "", newlines=False, limit=120)
    if code is None:
        if answer.status == 404:
            return "missing", None, "HTTP 404 without the spec service's envelope"
        why = answer.problem or ("not the spec service's envelope" if answer.status < 300 else f"HTTP {answer.status}")
        return "unreadable", None, f"an unreadable answer: {why}"
    code_text = str(code).strip()
    if code_text == "404":
        return "missing", None, f"status 404{': ' + message if message else ''}"
    spec = data.get("data") if isinstance(data, dict) else None
    if code_text not in ("0", "200") or not isinstance(spec, dict):
        shown = safe_text(code_text, newlines=False, limit=20)
        return "unreadable", None, f"status {shown}{': ' + message if message else ''}"
    return "published", spec, "published"


# -- the cache: memory, then SPARK_NB_HOME/specs -----------------------------------------------------------------

_memory: dict[tuple[str, str], SpecAnswer] = {}
_inflight: dict[tuple[str, str], threading.Event] = {}
_lock = threading.Lock()


def forget() -> None:
    """Forget the answers this process keeps in memory (the cache files stay)."""
    with _lock:
        _memory.clear()


def _cache_file(folder: Path, models_url: str, model: str) -> Path:
    tag = hashlib.sha256(models_url.encode()).hexdigest()[:16]
    name = model if _SAFE_ID.match(model) else hashlib.sha256(model.encode()).hexdigest()[:32]
    return folder / f"{tag}-{name}.json"


def cached(folder: Path, models_url: str, model: str) -> SpecAnswer | None:
    """The newest answer known here for model, fresh or not: this process's, or a newer one in the cache file
    (another process's); None when there is none (a cache file this module did not write is none)."""
    with _lock:
        mine = _memory.get((models_url, model))
    if mine is not None and mine.fresh():
        return mine
    found = [a for a in (mine, _read_cache(_cache_file(folder, models_url, model), models_url, model)) if a]
    return max(found, key=lambda a: a.fetched_at) if found else None


def _read_cache(path: Path, models_url: str, model: str) -> SpecAnswer | None:
    """The answer in a cache file, or None when it is missing, damaged, not a regular file, too large, or cannot be
    taken whole for any other reason (a file other processes and versions share: never an error of the call)."""
    try:
        return _cache_answer(path, models_url, model)
    except Exception as exc:  # e.g. a 400-digit fetched_at: OverflowError
        logger.debug("the spec cache file %s is not used: %r", path, exc)
        return None


def _cache_answer(path: Path, models_url: str, model: str) -> SpecAnswer | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CACHE_BYTES:
                return None
            raw, problem = parse_json(fh.read(MAX_CACHE_BYTES))
    except OSError:
        return None
    answer = SpecAnswer(model, models_url, raw["state"], raw["data"], str(raw["detail"]), float(raw["fetched_at"]))
    if problem or raw.get("model") != model or raw.get("models_url") != models_url \
            or answer.state not in ("published", "missing", "unreadable") \
            or (answer.state == "published") != isinstance(answer.data, dict) \
            or not 0 < answer.fetched_at <= time.time() + SPEC_TTL_S:  # NaN, infinite or absurd: not a time
        return None
    return answer


def remember(folder: Path, answer: SpecAnswer) -> None:
    """Keep answer in memory and in its cache file, as UTF-8 (a spec of any script is cached at its own size, so
    what the reader took is what the cache can hold); a file that cannot be written, or would be over
    MAX_CACHE_BYTES, is only a cache miss later. The part files of writers that died are swept first."""
    with _lock:
        _memory[(answer.models_url, answer.model)] = answer
    encoded = json.dumps(dataclasses.asdict(answer), ensure_ascii=False, separators=(",", ":")).encode()
    if len(encoded) > MAX_CACHE_BYTES:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(folder)
        write_atomically(_cache_file(folder, answer.models_url, answer.model), encoded)
    except OSError:
        pass


def known(folder: Path, models_url: str, model: str, *, wait: float = WAIT_S) -> SpecAnswer | None:
    """A fresh answer for model: cached, else fetched in the background and waited for at most wait seconds;
    None when none is fresh by then (one fetch per model is in flight at a time, in this process)."""
    found = cached(folder, models_url, model)
    if found is not None and found.fresh():
        return found
    key = (models_url, model)
    with _lock:
        done = _inflight.get(key)
        if done is None:
            done = _inflight[key] = threading.Event()
            threading.Thread(target=_refresh, args=(folder, models_url, model, done), daemon=True,
                             name=f"spark-nb-spec-{model}").start()
    if wait > 0:
        done.wait(wait)
    with _lock:
        found = _memory.get(key)
    return found if found is not None and found.fresh() else None


def _refresh(folder: Path, models_url: str, model: str, done: threading.Event) -> None:
    try:
        remember(folder, fetch(models_url, model))
    finally:
        with _lock:
            _inflight.pop((models_url, model), None)
        done.set()


def guard(model: str, params: dict[str, Any] | None, base_url: str) -> None:
    """Refuse (ValidationError, reason "service_changed") a create of model whose params the published spec no
    longer accepts (params None: its parameters' names and structure only, before anything is uploaded); do
    nothing when no spec applies, none is known within WAIT_S, or it cannot be judged (see _specs.judge)."""
    source, spec = spec_source(base_url), MODELS.get(model)
    if source is None or spec is None:
        return
    models_url, folder = source
    try:
        answer = known(folder, models_url, model, wait=WAIT_S)
        if answer is None or answer.state != "published":
            return
        problems = judge(spec, answer.data, params).refusals
    except Exception as exc:  # SpecUnreadable, or any failure to read the spec: no spec, never an error
        logger.debug("the published spec of %s is not used: %r", model, exc)
        return
    if problems:
        raise ValidationError(
            f"{model}: Vtrix's published spec for this model no longer accepts what spark-nb {__version__} sends: "
            f"{'; '.join(problems)}. Nothing was created", reason="service_changed",
            hint="upgrade spark-nb (pip install -U spark-nb); `spark-nb doctor` shows the difference. If the service "
                 "does accept these calls, set SPARK_NB_SPEC_CHECK=off")
