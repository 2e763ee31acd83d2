"""The input rules for URLs: checked from this machine before anything is paid (see check_url). Part of the input
rules, called by _inputs.validate; the network through _transfer.peek (the bounded fetcher)."""

from __future__ import annotations

import contextvars
import http
import math
import re
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._config import DEFAULT_LIMITS, InputLimits
from ._deadline import earliest, ran_out
from ._ffmpeg import ProbeError, read_header
from ._files import write_atomically
from ._inputs_images import check_image
from ._limits import IMAGE_BYTES, image_too_heavy, media_too_large
from ._scratch import scratch_dir
from ._urls import shown_url
from .errors import SparkError, ValidationError
from .models import MediaField

if TYPE_CHECKING:  # httpx loads with the first URL checked, so `import spark_nb` stays fast
    from ._transfer import Peeked

URL_CHECK_S = 15.0  # one URL's whole check: name lookup, connection, redirects, the answer and its first bytes
# (or less: what is left of the call's timeout, see _deadline; a call's URLs are checked at once, check_urls)
PEEK_BYTES = 256 * 1024  # an image's header, and the headers of most audio and video files
URL_ANSWER_KEPT_S = 600.0  # a URL's verdict (passed, or refused) is not asked again for this long
SILENT_HOST_KEPT_S = 60.0  # a host that gave no answer by the deadline: its other URLs refused at once this long
_Key = tuple[str, str, int]  # (url, the kind of input, the size limit in force)
_verdicts: dict[_Key, tuple[float, ValidationError | None, str]] = {}  # -> (when, the refusal or None, its label)
_silent: dict[str, float] = {}  # scheme://host:port of a host that gave no answer -> when
_lock = threading.Lock()


def check_url(url: str, field: MediaField, limits: InputLimits = DEFAULT_LIMITS) -> None:
    """A URL input checked before anything is paid: it answers with a file (else ValidationError "url_unreachable"
    naming the input, the URL and the status or the network's error), of its field's kind (its first bytes
    sniffed: a web page or a video where an image should be is refused), within the size its server announces.

    Asked once: a small ranged GET through the bounded fetcher (whole deadline, name lookup included, size cap,
    redirects within limits), a GET without a range if the range is refused, a HEAD if GET is, one retry after a
    busy answer. What cannot be decided from here passes: bytes that no decoder recognises from their start (an MP4
    with its index at the end, a JPEG whose metadata fills the first bytes, a compressed answer) are left to the
    service. A URL's verdict, passed or refused, is kept for 10 minutes (for the same input and size limit: a
    batch's manifest check, then its row loop, then the row's submission ask once); a host that gave no answer
    at all is not asked for its other URLs for a minute. limits.urls_checked False (check_urls=False,
    SPARK_NB_CHECK_URLS=0) skips it all: for URLs only the service's network can reach.
    """
    if not limits.urls_checked:
        return
    key = (url, field.kind, limits.max_bytes if field.kind != "image" else 0)
    with _lock:
        when, refusal, label = _verdicts.get(key, (-math.inf, None, ""))
    if time.monotonic() - when < URL_ANSWER_KEPT_S:
        if refusal is not None:  # made for an input of the same kind: said of this one (messages start with it)
            said = refusal.message
            said = field.label + said[len(label):] if said.startswith(label) else said
            raise ValidationError(said, reason=refusal.reason, field=field.name, hint=refusal.hint)
        return
    try:
        _judge(_ask(url, field), url, field, limits)
    except ValidationError as exc:
        _keep(key, exc, field.label)
        raise
    _keep(key, None, field.label)


def check_urls(inputs: Sequence[tuple[str, MediaField]], limits: InputLimits = DEFAULT_LIMITS) -> None:
    """check_url for each (url, field) at once, not one after the other: the call waits for the slowest, not for
    their sum (each within its own URL_CHECK_S and the call's deadline, carried into each thread). The first
    refusal in the order given is raised; the others are kept as verdicts, as check_url keeps them."""
    if len(inputs) < 2 or not limits.urls_checked:
        for url, field in inputs:
            check_url(url, field, limits)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(inputs), thread_name_prefix="spark-nb-url-check") as pool:
        asked = [pool.submit(contextvars.copy_context().run, check_url, url, field, limits) for url, field in inputs]
    for one in asked:
        one.result()


def fetch_image(url: str, field: MediaField) -> Path:
    """The image url gives, whole, in a new scratch file (strict mode searches it for a face; the caller removes
    it): through the bounded fetcher, within URL_CHECK_S (name lookup included) and under 5 MB, else
    ValidationError "url_unreachable" saying why. Asked even with check_urls=False: strict cannot judge a face
    it has not seen."""
    from ._transfer import TransferError, fetch_to_file

    suffix = Path(urlsplit(url).path).suffix
    path = scratch_dir() / f".strict-{uuid.uuid4().hex}{suffix if re.fullmatch(r'.[A-Za-z0-9]{1,8}', suffix) else ''}"
    own = time.monotonic() + URL_CHECK_S
    try:
        fetch_to_file(url, path, deadline=earliest(own) or own, max_bytes=IMAGE_BYTES, what=f"the {field.label}")
    except TransferError as exc:
        path.unlink(missing_ok=True)
        raise _cut_short(url, field, str(exc)) or _unreachable(url, field, str(exc)) from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _keep(key: _Key, refusal: ValidationError | None, label: str) -> None:
    with _lock:
        if len(_verdicts) >= 4096:
            _verdicts.clear()
        _verdicts[key] = (time.monotonic(), refusal, label)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2].lower()}"


def _ask(url: str, field: MediaField) -> Peeked:
    """The URL's answer to a small GET (or a HEAD); url_unreachable when there is none, or not a 2xx one."""
    from ._retry import RETRYABLE_STATUS
    from ._transfer import TransferError, peek

    with _lock:
        silent_since = _silent.get(_host(url), -math.inf)
    if time.monotonic() - silent_since < SILENT_HOST_KEPT_S:
        raise _unreachable(url, field, f"its host gave no answer within {URL_CHECK_S:.0f} s "
                                       f"{time.monotonic() - silent_since:.0f} s ago")
    own = time.monotonic() + URL_CHECK_S
    deadline = earliest(own) or own  # the check's own limit, or the call's deadline if that comes first
    answer: Peeked | None = None
    for attempt in range(2):
        try:
            answer = peek(url, deadline=deadline, max_bytes=PEEK_BYTES)
            if answer.status == 416:  # a range the server cannot give (an empty file?): the whole answer's start
                answer = peek(url, deadline=deadline, max_bytes=PEEK_BYTES, ranged=False)
            if answer.status in (405, 501):  # GET refused: a HEAD says at least whether the file is there
                answer = peek(url, deadline=deadline, max_bytes=0, method="HEAD")
        except TransferError as exc:
            if exc.retryable and attempt == 0 and deadline - time.monotonic() > 2:
                time.sleep(0.5)
                continue
            if (cut := _cut_short(url, field, str(exc))) is not None:
                raise cut from exc  # the call's timeout ended the check: no verdict on the URL or its host
            if time.monotonic() >= deadline:  # silent until the end (or its name never looked up)
                with _lock:
                    if len(_silent) >= 4096:
                        _silent.clear()
                    _silent[_host(url)] = time.monotonic()
            raise _unreachable(url, field, str(exc)) from exc
        if answer.status not in RETRYABLE_STATUS or attempt or deadline - time.monotonic() <= 2:
            break
        time.sleep(1.0)  # busy (429, 503...): once more, a moment later
    assert answer is not None
    if not 200 <= answer.status < 300:
        raise _unreachable(url, field, f"HTTP {answer.status} {_phrase(answer.status)}".strip())
    return answer


def _cut_short(url: str, field: MediaField, why: str) -> SparkError | None:
    """The error when the call's timeout (not the URL's own limit) ended its check, else None. Not a
    ValidationError: nothing is known against the URL, so no verdict is kept and its host is not called silent."""
    timeout = ran_out()
    if timeout is None:
        return None
    return SparkError(f"{timeout} ran out while checking the {field.label} URL ({why[:200]}): nothing was created: "
                      f"{shown_url(url)}", hint="pass a longer timeout= (a URL's check takes up to "
                                                f"{URL_CHECK_S:.0f} s), or check_urls=False to send URLs unchecked")


def _unreachable(url: str, field: MediaField, why: str) -> ValidationError:
    return ValidationError(
        f"{field.label}: the URL does not give the file ({why[:200]}): {shown_url(url)}", reason="url_unreachable",
        field=field.name,
        hint="check the URL: opened in a browser it must give the file itself, without a login. If only the "
             "service can reach it (a private network, an allow-list), pass check_urls=False (or set "
             "SPARK_NB_CHECK_URLS=0) to send it unchecked")


def _judge(answer: Peeked, url: str, field: MediaField, limits: InputLimits) -> None:
    """The answer's file against the field's rules, as far as its announced size and first bytes tell."""
    shown, total = shown_url(url), answer.total
    if field.kind == "image" and total is not None and image_too_heavy(total):
        raise ValidationError(f"{field.label} is {total / 1e6:.1f} MB (as its server says); the model takes images "
                              f"under {IMAGE_BYTES // 1024**2} MB: {shown}", reason="image_too_large", field=field.name,
                              hint="pass a smaller image (e.g. shrink it with spark_nb.media.shrink_image and pass "
                                   "the file)")
    if field.kind != "image" and total is not None and media_too_large(total, limits.max_bytes):
        raise ValidationError(f"{field.label} is {total / 1024**2:.0f} MB (as its server says); inputs are limited to "
                              f"{limits.max_bytes / 1024**2:.0f} MB: {shown}", reason="media_too_large",
                              field=field.name, hint="pass a shorter file, or raise configure(max_input_mb=...)")
    if answer.method == "GET" and not answer.head and total == 0:
        raise ValidationError(f"{field.label}: the URL gives an empty file: {shown}", reason="empty",
                              field=field.name, hint="check the URL: the file it names has no content")
    if answer.head and answer.content_encoding in ("", "identity"):  # compressed bytes tell nothing: passed
        _sniff(answer, shown, field)


def _sniff(answer: Peeked, shown: str, field: MediaField) -> None:
    """Refuse the first bytes when they are plainly not the field's kind (a page, a video for an image...)."""
    what = "an image" if field.kind == "image" else "audio" if field.kind == "audio" else "a video"
    if _is_text(answer.head):
        kind = answer.content_type.split(";")[0].strip() or "text"
        raise ValidationError(
            f"{field.label}: the URL gives a web page or other text ({kind[:40]}), not {what}: {shown}",
            reason="not_decodable", field=field.name,
            hint="use the address of the file itself (a direct link), not of a page that shows it")
    suffix = Path(urlsplit(answer.url).path).suffix
    head = scratch_dir() / f".peek-{uuid.uuid4().hex}{suffix if re.fullmatch(r'.[A-Za-z0-9]{1,8}', suffix) else ''}"
    write_atomically(head, answer.head)
    try:
        if field.kind == "image":
            try:
                check_image(head, field, whole=False)
                return
            except ValidationError as exc:  # not one PIL knows: the header reader may say what it is
                if exc.reason != "not_decodable":
                    raise ValidationError(f"{exc.message}: {shown}", reason=exc.reason, field=field.name,
                                          hint=exc.hint) from None
        problem = _other_kind(head, field)
    finally:
        head.unlink(missing_ok=True)
    if problem is not None:
        raise ValidationError(f"{field.label}: the URL gives {problem[0]}, not {what}: {shown}", reason=problem[1],
                              field=field.name, hint=f"check the URL: it must give {what} file")


def _other_kind(head: Path, field: MediaField) -> tuple[str, str] | None:
    """What the file's header says it is when that is not the field's kind: (what, reason), else None."""
    try:
        facts = read_header(head)
    except ProbeError:
        return None  # nothing this reader knows from the first bytes alone: left to the service
    if not facts.has_audio and not facts.has_video:  # e.g. the image2 demuxer's guess of a cut JPEG: no evidence
        return None
    if field.kind == "image" and not facts.is_still_image and facts.duration:
        return ("a video" if facts.has_video else "audio"), "not_decodable"
    if field.kind == "audio" and facts.is_still_image:
        return "an image", "not_decodable"
    if field.kind == "audio" and not facts.has_audio and facts.has_video:
        return "a video without sound", "no_audio"
    if field.kind == "video" and facts.is_still_image:
        return "a still image", "still_video"
    if field.kind == "video" and not facts.has_video and facts.has_audio:
        return "audio without a picture", "no_video"
    return None


def _is_text(head: bytes) -> bool:
    """True when the bytes start like text (a page, JSON, an error message): media formats have binary headers."""
    sample = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:  # binary, unless only a character cut by the 512-byte sample is
        if exc.start < len(sample) - 3:
            return False
        text = sample[:exc.start].decode("utf-8", errors="replace")
    return sample[:1] in (b"<", b"{", b"[") or all(c.isprintable() or c in "\t\r\n" for c in text)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
