"""The shared path of every model: check inputs, upload local files, create the task, wait for the Result."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._backends import api_client
from ._budget import budget_rule, settle
from ._config import DEFAULT_LIMITS, InputLimits, Settings, hide_key, resolve
from ._deadline import until
from ._inputs import (
    RECOMMENDED_AUDIO_SECONDS,
    Media,
    apply_fix,
    check,
    ensure_output_dir,
    normalise,
    refusal,
    validate,
    with_url_face,
)
from ._inputs_url import check_urls
from ._journal import Claim, Entry, Journal, journal_at
from ._notices import begin
from ._results import Result
from ._reuse import describe_inputs, fingerprint, follow
from ._reuse_rule import Verdict, decide
from ._tasks import Task, checked_wait
from ._uploads import upload, uploader_for
from .errors import CostUnknown, DownloadError, SparkError, TaskFailed, TaskMayExist, warn
from .models import ModelSpec

if TYPE_CHECKING:
    from ._client import ApiClient

CLAIM_ATTEMPTS = 5  # an identical call in another kernel may claim and give up these inputs; then this one claims


def prepare(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True,
            limits: InputLimits = DEFAULT_LIMITS, faces: bool = True, strict: bool = False,
            advise: Callable[[str], None] | None = None, names: Mapping[str, str] | None = None,
            earlier: Entry | None = None) -> dict[str, Media]:
    """Normalise and check every input of spec (raising ValidationError) before anything is sent; URL inputs
    are checked too, all at once (reachable, of the right kind: see _inputs_url.check_urls) unless
    limits.urls_checked is off. This is the one place a URL is asked for on the way to a create: submit() calls it
    only once the journal said a new task is needed, so a task paid for earlier is resumed or reused however its
    URLs have expired since.

    Advice goes to advise(message) (a batch row's advice column), by default a warning, or with strict it is a
    ValidationError of the advice's reason (e.g. "no_face"); long audio is trimmed unless trim_audio is False (then
    strict refuses it); faces=False skips the face search (strict searches all the same, an image URL's too: it
    cannot refuse what it did not look for). names: field -> the input's name as its user knows it, for messages
    (see submit). This is the one place strict mode decides, on every path: earlier, the journal's attempt that
    answers the call (to be reused, or waited for), has the inputs judged all the same and refused in the same
    words, saying that take is returned without strict; nothing is trimmed or said then, and no URL is asked for
    but for strict's face search (one it cannot fetch passes: nothing is paid).
    """
    say = advise or warn
    media = {field.name: check(values.get(field.name), field, limits, faces=faces or strict,
                               name=(names or {}).get(field.name)) for field in spec.fields}
    if earlier is None:  # the URLs asked for at once (each within 15 s and the call's deadline), files first
        check_urls([(item.url, item.field) for item in media.values() if not item.is_local and item.url], limits)
    if strict:
        media = {name: with_url_face(item, unseen_refused=earlier is None) for name, item in media.items()}
    for name, item in media.items():
        for advice in item.advice:
            trims = advice.reason == "audio_too_long" and trim_audio and item.path is not None
            if strict and not trims:
                raise refusal(advice, None if earlier is None else _take(earlier))
            if earlier is not None:
                continue
            if trims:
                media[name] = _trimmed(item, say)
            elif advice.reason == "audio_too_long":
                say(f"{advice.message}; sent as it is (trim_audio=False)")
            else:
                say(advice.message)
    return media


def _take(entry: Entry) -> str:
    """An earlier attempt as a refusal names it: its task (or none yet) and where it stands."""
    state = {Verdict.REUSE: "completed", Verdict.ATTACH: "still running", Verdict.REFUSED: "failed"}.get(
        decide(entry).verdict, "its create's answer lost")
    task = f"task {entry.task_id}" if entry.task_id else "a task"
    return f"{task} from {entry.when}, {state}"


def _trimmed(item: Media, say: Callable[[str], None]) -> Media:
    assert item.path is not None and item.facts is not None
    trimmed = validate(Media(item.field, path=apply_fix("trim_audio", item.path), name=item.name))
    kept = trimmed.facts.duration if trimmed.facts and trimmed.facts.duration else 0.0
    say(f"the {item.field.label} is {item.facts.duration or 0:.1f} s, over the model's recommended "
         f"{RECOMMENDED_AUDIO_SECONDS:g} s limit; trimmed to {kept:.1f} s, cut in a pause near the limit with a "
         "short fade (pass trim_audio=False to send it whole)")
    return trimmed


def call_key(spec: ModelSpec, values: Mapping[str, Any], settings: Settings, *, trim_audio: bool = True) -> str:
    """The journal's fingerprint of a call: what submit() with the same arguments and settings looks up."""
    return _identify(spec, values, settings, trim_audio)[1]


def _identify(spec: ModelSpec, values: Mapping[str, Any], settings: Settings, trim_audio: bool,
              names: Mapping[str, str] | None = None) -> tuple[list[dict[str, Any]], str]:
    """What the journal keeps of the inputs (each under the name its user knows it by: an upload's own file name,
    not the scratch file it was written to; names= overrides, e.g. a form's), and the call's fingerprint."""
    media = {field.name: normalise(values.get(field.name), field) for field in spec.fields}
    inputs = describe_inputs(media)
    for item in inputs:
        known = (names or {}).get(item["field"]) or media[item["field"]].name
        if known and item.get("url") is None:
            item["name"] = known[:120]
    return inputs, fingerprint(spec, settings, inputs, trim_audio=trim_audio)


def submit(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True, reuse: bool = True,
           strict: bool = False, when_uploaded: Callable[[], None] | None = None,
           before_create: Callable[[], None] | None = None, source: str = "submit", face_advice: bool = True,
           advise: Callable[[str], None] | None = None, names: Mapping[str, str] | None = None,
           deadline: float | None = None, **config: Any) -> Task:
    """Check, upload and create one task of spec, journaled; returns its Task without waiting.

    With reuse (the default) an identical earlier call answers instead when it can (see _reuse): its finished
    video, or its task still running; nothing is created or paid twice. The call is claimed in the journal
    (identity and budget in one transaction) before anything is uploaded; when_uploaded runs once the inputs
    are uploaded (a batch row waits there for its turn at the service); before_create runs just before the
    create call. face_advice=False leaves out the search for a face in the images (a batch reports it with the
    row instead, off the path to the create); advise receives the advice on the inputs instead of a warning.
    strict=True refuses, before any upload, inputs that would only be advised on (ValidationError "no_face";
    "audio_too_long" with trim_audio=False); a call answered from the journal uploads and pays nothing, so it is
    answered as usual. names: field -> the name the journal (history) and the messages give that input, when the
    value itself does not carry it (a form's upload, written to a scratch file). URL inputs are checked
    (reachable, of the right kind) before anything is created: check_urls=False skips it. deadline
    (time.monotonic()): every wait of the submission ends by it: the journal's, an identical call's, the uploads
    and the create (see _deadline).
    """
    with until(deadline):
        return _submit(spec, values, trim_audio=trim_audio, reuse=reuse, strict=strict, when_uploaded=when_uploaded,
                       before_create=before_create, source=source, face_advice=face_advice, advise=advise,
                       names=names, **config)


def _submit(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool, reuse: bool, strict: bool,
            when_uploaded: Callable[[], None] | None, before_create: Callable[[], None] | None, source: str,
            face_advice: bool, advise: Callable[[str], None] | None, names: Mapping[str, str] | None,
            **config: Any) -> Task:
    settings = begin(resolve(**hide_key(config)))  # once per call: its notices, a key it cannot use refused
    journal = journal_at(settings.home)
    inputs, key = _identify(spec, values, settings, trim_audio, names)
    decision = decide(journal.latest(key) if reuse else None, reuse=reuse)
    if not decision.creates and decision.entry is not None:
        if strict:  # refused as a new task's inputs would be: strict means the same whatever answers the call
            prepare(spec, values, trim_audio=trim_audio, limits=settings.limits, strict=True, earlier=decision.entry)
        if (task := follow(decision, journal, spec, settings)) is not None:
            return task
    media = prepare(spec, values, trim_audio=trim_audio, limits=settings.limits, faces=face_advice, strict=strict,
                    advise=advise, names=names)
    ensure_output_dir(settings.output_dir)  # found unusable now, not after the task is paid for
    seconds = max((m.facts.duration or 0 for m in media.values() if m.facts and m.field.kind != "image"), default=None)
    settled = False
    for _ in range(CLAIM_ATTEMPTS):
        try:
            claim, other = journal.reserve(
                fingerprint=key, model=spec.id, backend=settings.backend, input_seconds=seconds or None,
                source=source, base_url=settings.base_url if settings.backend == "cloud" else None, inputs=inputs,
                follow=lambda latest: not decide(latest, reuse=reuse).creates,
                admit=budget_rule(settings, spec, seconds or None))
        except CostUnknown as exc:  # the task it waits for may have ended with nobody waiting: asked once
            if settled or not (settled := settle(exc, journal, settings)):
                raise
            continue
        if other is None:
            break
        if (task := follow(decide(other), journal, spec, settings)) is not None:  # another kernel claimed this call
            return task
    else:
        raise SparkError(f"identical {spec.id} calls kept claiming these inputs and giving them up; nothing was sent",
                         hint="try again, or pass reuse=False for a separate take")
    assert claim is not None
    try:  # nothing is sent until the create: a failure (or Ctrl-C) up to there releases the claim
        client = api_client(settings)
        client.check_spec(spec.id)  # the spec's structure needs no URL: a changed one refused before any upload
        urls = _upload(media, settings, client)
        if when_uploaded is not None:
            when_uploaded()
        if before_create is not None:
            before_create()
        client.check_spec(spec.id, spec.build_params(urls))  # a refusal here releases the claim: nothing was sent
        journal.sending(claim)  # on disk before the call: from here a task may exist
    except BaseException:
        journal.release(claim)
        raise
    return _create(spec, urls, claim, journal, settings, client)


def _upload(media: Mapping[str, Media], settings: Settings, client: ApiClient) -> dict[str, str]:
    """Each input's URL: its own, or the one its upload gives."""
    urls: dict[str, str] = {}
    uploader = None
    for name, item in media.items():
        if item.url is not None:
            urls[name] = item.url
        else:
            assert item.path is not None
            uploader = uploader or uploader_for(settings, client)
            urls[name] = upload(item.path, uploader)
    return urls


def _create(spec: ModelSpec, urls: dict[str, str], claim: Claim, journal: Journal, settings: Settings,
            client: ApiClient) -> Task:
    """Send the create call once and record what came of it; the task id before anything else."""
    try:
        raw = client.create(spec.id, spec.build_params(urls))
    except TaskMayExist as exc:
        journal.uncertain(claim, str(exc))
        raise
    except TaskFailed as exc:  # refused before a task existed
        journal.refused(claim, error=exc.message, code=exc.code, retryable=exc.retryable)
        raise
    except SparkError as exc:  # 401, 403, a connection never made…: no task
        journal.refused(claim, error=exc.headline, code=None, retryable=False)
        raise
    except BaseException:  # Ctrl-C during the call: it may have reached the service
        journal.uncertain(claim, "interrupted during the create call")
        raise
    journal.created(claim, str(raw["id"]))  # JournalError with the id and its resume line if it cannot be written
    return Task(id=str(raw["id"]), model=spec.id, settings=settings, initial=raw)


def generate(
    spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
    timeout: float = 600, progress: bool = True, cancel: threading.Event | None = None, **config: Any,
) -> Result:
    """submit() then wait(): the whole generation, returning the downloaded, checked Result (its origin says
    whether an earlier identical call's video was reused).

    timeout covers all of it, from this call on (the uploads and the create too): one deadline, computed here."""
    seconds = checked_wait(timeout, cancel, positive=True)  # before anything is sent, let alone paid for
    deadline = time.monotonic() + seconds
    task = submit(spec, values, trim_audio=trim_audio, reuse=reuse, strict=strict, source="generate",
                  deadline=deadline, **hide_key(config))
    try:
        return task._wait_until(deadline, seconds, progress=progress, cancel=cancel)
    except DownloadError as exc:
        if task.origin == "reused":  # only a task reused from the journal finished earlier
            raise DownloadError(f"task {task.id} finished earlier, but its video is gone from disk and could not "
                                f"be fetched again ({exc.headline})", task_id=task.id,
                                hint="pass reuse=False to create a new task (it is billed again)") from exc
        raise
