"""The input rules for URLs: checked from this machine before anything is paid (see check_url). Part of the input
rules, called by _inputs.validate; the network through _transfer.peek (the bounded fetcher)."""

from __future__ import annotations

import http
import math
import re
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._config import DEFAULT_LIMITS, InputLimits
from ._ffmpeg import ProbeError, read_header
from ._files import write_atomically
from ._inputs_images import MAX_IMAGE_BYTES, check_image
from ._scratch import scratch_dir
from .errors import ValidationError
from .models import MediaField

if TYPE_CHECKING:  # httpx loads with the first URL checked, so `import spark_nb` stays fast
    from ._transfer import Peeked

URL_CHECK_S = 15.0  # one URL's whole check: connection, redirects, the answer and its first bytes
PEEK_BYTES = 256 * 1024  # an image's header, and the headers of most audio and video files
URL_PASS_KEPT_S = 600.0  # a URL that passed is not asked again for this long
_passed: dict[tuple[str, str], float] = {}  # (url, kind) -> when it passed
_passed_lock = threading.Lock()


def check_url(url: str, field: MediaField, limits: InputLimits = DEFAULT_LIMITS) -> None:
    """A URL input checked before anything is paid: it answers with a file (else ValidationError "url_unreachable"
    naming the input, the URL and the status or the network's error), of its field's kind (its first bytes
    sniffed: a web page or a video where an image should be is refused), within the size its server announces.

    Asked once: a small ranged GET through the bounded fetcher (whole deadline, size cap, redirects within
    limits), a GET without a range if the range is refused, a HEAD if GET is, one retry after a busy answer. What
    cannot be decided from here passes: bytes that no decoder recognises from their start (an MP4 with its index
    at the end) are left to the service. A URL that passed is not asked again for 10 minutes (a batch's manifest
    check, then its row). limits.urls_checked False (check_urls=False, SPARK_NB_CHECK_URLS=0) skips it all: for
    URLs only the service's network can reach.
    """
    if not limits.urls_checked:
        return
    key = (url, field.kind)
    with _passed_lock:
        if time.monotonic() - _passed.get(key, -math.inf) < URL_PASS_KEPT_S:
            return
    answer = _ask(url, field)
    _judge(answer, url, field, limits)
    with _passed_lock:
        if len(_passed) >= 4096:
            _passed.clear()
        _passed[key] = time.monotonic()


def _ask(url: str, field: MediaField) -> Peeked:
    """The URL's answer to a small GET (or a HEAD); url_unreachable when there is none, or not a 2xx one."""
    from ._retry import RETRYABLE_STATUS
    from ._transfer import TransferError, peek

    deadline = time.monotonic() + URL_CHECK_S
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
            raise _unreachable(url, field, str(exc)) from exc
        if answer.status not in RETRYABLE_STATUS or attempt or deadline - time.monotonic() <= 2:
            break
        time.sleep(1.0)  # busy (429, 503...): once more, a moment later
    assert answer is not None
    if not 200 <= answer.status < 300:
        raise _unreachable(url, field, f"HTTP {answer.status} {_phrase(answer.status)}".strip())
    return answer


def _unreachable(url: str, field: MediaField, why: str) -> ValidationError:
    return ValidationError(
        f"{field.label}: the URL does not give the file ({why[:200]}): {_shown_url(url)}", reason="url_unreachable",
        field=field.name,
        hint="check the URL: opened in a browser it must give the file itself, without a login. If only the "
             "service can reach it (a private network, an allow-list), pass check_urls=False (or set "
             "SPARK_NB_CHECK_URLS=0) to send it unchecked")


def _judge(answer: Peeked, url: str, field: MediaField, limits: InputLimits) -> None:
    """The answer's file against the field's rules, as far as its announced size and first bytes tell."""
    shown, total = _shown_url(url), answer.total
    if field.kind == "image" and total is not None and total >= MAX_IMAGE_BYTES:
        raise ValidationError(f"{field.label} is {total / 1e6:.1f} MB (as its server says); the model takes images "
                              f"under 5 MB: {shown}", reason="image_too_large", field=field.name,
                              hint="pass a smaller image (e.g. shrink it with spark_nb.media.shrink_image and pass "
                                   "the file)")
    if field.kind != "image" and total is not None and total > limits.max_bytes:
        raise ValidationError(f"{field.label} is {total / 1024**2:.0f} MB (as its server says); inputs are limited to "
                              f"{limits.max_bytes / 1024**2:.0f} MB: {shown}", reason="media_too_large",
                              field=field.name, hint="pass a shorter file, or raise configure(max_input_mb=...)")
    if answer.method == "GET" and not answer.head and total == 0:
        raise ValidationError(f"{field.label}: the URL gives an empty file: {shown}", reason="empty",
                              field=field.name, hint="check the URL: the file it names has no content")
    if answer.head:
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
    if field.kind == "image" and not facts.is_still_image and (facts.has_audio or facts.duration):
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


def _shown_url(url: str) -> str:
    return url if len(url) <= 200 else f"{url[:200]}…"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
