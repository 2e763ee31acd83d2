"""What an earlier identical call means for this one: reuse its video, wait for its task, or refuse to pay twice.

A call is identified by its fingerprint: the model, the backend (and base URL), each input's content hash (or
URL), and the options that change the output (trimming). The journal's newest attempt for that fingerprint
decides, through the one rule _reuse_rule.decide: completed → its Result at once; running → wait for that task;
create answer lost → TaskMayExist; refused for its inputs → the same TaskFailed; failed on the service's side → a
new task. "Newest" is the journal's insertion order, never a clock. This module acts on the decision (follow).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import Settings
from ._deadline import within
from ._files import link_atomically
from ._inputs import Media
from ._journal import Entry, JobState, Journal
from ._money import format_usd, usd_text
from ._notices import notify
from ._reuse_rule import Decision, Verdict, decide
from ._tasks import Task, result_path
from .errors import SparkError, TaskFailed, TaskMayExist
from .models import ModelSpec, hint_for

WAIT_FOR_CREATOR_S = 120.0  # another kernel is creating this very task: how long to wait for its id
NEW_TAKE = "pass reuse=False for a new take"
logger = logging.getLogger("spark_nb.reuse")


def describe_inputs(media: Mapping[str, Media]) -> list[dict[str, Any]]:
    """What the journal keeps of each input: its field, a name for people, and a content hash or its URL."""
    described = []
    for name, item in media.items():
        if item.url is not None:
            described.append({"field": name, "name": item.url.rsplit("/", 1)[-1][:120] or item.url[:120],
                              "url": item.url})
        else:
            assert item.path is not None
            described.append({"field": name, "name": item.path.name, "path": str(item.path),
                              "sha256": file_digest(item.path)})
    return described


def file_digest(path: Path) -> str:
    """sha256 of a file's content (remembered per file version: inputs are hashed again when a call repeats)."""
    stat = os.stat(path)
    return _digest(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(spec: ModelSpec, settings: Settings, inputs: list[dict[str, Any]], *, trim_audio: bool) -> str:
    """The identity of a call: model, backend (and URL), each input's hash or URL, and trimming if it applies."""
    parts = {
        "model": spec.id, "backend": settings.backend,
        "base_url": settings.base_url if settings.backend == "cloud" else None,
        "inputs": sorted((item["field"], item.get("sha256") or item["url"]) for item in inputs),
        "trim_audio": trim_audio if any(f.kind == "audio" for f in spec.fields) else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def follow(decision: Decision, journal: Journal, spec: ModelSpec, settings: Settings) -> Task | None:
    """The Task that answers this call from the earlier attempt decision rests on (see _reuse_rule.decide), said
    in one line; raises where that is the answer; None when the decision is to create a task, or the attempt it
    waited for went away without a task (its uploads failed): create one after all.

    A damaged row is not skipped (it may be a paid task): what can be read of it decides, and a row whose state
    or task id cannot be read is a task that may exist (TaskMayExist), as a create whose answer was lost.
    """
    waited = time.monotonic()
    deadline = time.monotonic() + within(WAIT_FOR_CREATOR_S)  # or what is left of the call's timeout
    while decision.verdict == Verdict.WAIT and decision.entry is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # another kernel (or thread) is uploading for, or sending, this very create right now
        decision = decide(journal.latest(decision.entry.fingerprint))
    entry = decision.entry
    if decision.creates or entry is None:
        return None
    if decision.verdict == Verdict.REUSE:
        assert entry.task_id is not None
        cost = f"cost {format_usd(entry.cost)}" if entry.cost is not None else "cost unknown"
        _say(f"reusing task {entry.task_id} from {entry.when} ({cost}); {NEW_TAKE}")
        saved = _into(settings.output_dir, entry) if recorded_video(entry) is not None else None
        return Task(id=entry.task_id, model=entry.model, settings=settings, initial=completed_answer(entry),
                    saved=saved, origin="reused")
    if decision.verdict == Verdict.ATTACH:
        assert entry.task_id is not None
        _say(f"task {entry.task_id} for these inputs was created {entry.when} and is not finished: waiting for it "
             f"instead of creating another ({NEW_TAKE})")
        return Task(id=entry.task_id, model=entry.model, settings=settings, origin="attached")
    if decision.verdict == Verdict.REFUSED:
        hint, _ = hint_for(entry.code, spec, entry.error)  # an input the service could not fetch: that input
        raise TaskFailed(f"{entry.error or 'the service refused these inputs'} (an identical call at {entry.when})",
                         code=entry.code, task_id=entry.task_id, retryable=False,
                         hint=f"{hint}; sending the same inputs again would fail again (pass reuse=False to try)")
    if decision.verdict == Verdict.WAIT:
        doing = "preparing" if entry.state == JobState.RESERVED else "sending"
        raise SparkError(f"an identical {spec.id} call (process {entry.pid}) is still {doing} its task; this one "
                         f"waited {time.monotonic() - waited:.0f} s for it and did not create another",
                         hint="wait for that call to finish, then call again (its result is reused); or pass "
                              "reuse=False for a separate take (billed again)")
    raise _may_exist(entry, spec)


def _may_exist(entry: Entry, spec: ModelSpec) -> TaskMayExist:
    """The error for an attempt that may have made a task: its create's answer was lost, or its row is damaged."""
    when = entry.when
    why = (f"its record in the journal is damaged: {'; '.join(entry.damaged)}" if entry.damaged
           else "its create call's answer was lost")
    return TaskMayExist(
        f"an identical {spec.id} call at {when} may have created a task ({why}), so it was not sent again, to "
        "avoid paying twice",
        hint=f"look for a {spec.id} task created at {when} in your Vtrix dashboard; if there is none, pass "
             "reuse=False to create one",
        model=spec.id, submitted_at=when)


def _into(output_dir: Path, entry: Entry) -> Path | None:
    """The earlier video, in this call's output folder (see place_video); None when it is no longer that video."""
    video = recorded_video(entry)
    if video is None or entry.task_id is None:
        return None
    try:
        return place_video(video, result_path(output_dir, entry.task_id), entry.seconds)
    except SparkError as exc:  # replaced meanwhile: fetched again from the service, as a deleted one is
        logger.info("the video of task %s is not brought in: %s", entry.task_id, exc.headline)
        return None


def recorded_video(entry: Entry) -> Path | None:
    """A completed attempt's video where the journal saw it, while it is still that video: a regular file (never
    through a link: a link there points at whatever its maker chose), not empty, a video of the recorded length.
    None otherwise: a reuse then fetches it again from the service, as for a deleted one."""
    path = Path(entry.path) if entry.path else None
    if path is None:
        return None
    try:
        facts = os.lstat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(facts.st_mode) or facts.st_size == 0:
        return None
    try:
        _is_the_video(path, entry.seconds)
    except SparkError:
        return None
    return path


def _is_the_video(path: Path, seconds: float | None) -> None:
    """SparkError unless path's header is a moving picture of seconds (as the journal recorded it, within 0.1 s)."""
    from ._ffmpeg import ProbeError, read_header

    try:
        facts = read_header(path)
    except ProbeError as exc:
        raise SparkError(f"{path.name} is not a video ({exc})") from exc
    if not facts.has_video or facts.is_still_image or not facts.duration:
        raise SparkError(f"{path.name} is not a video")
    if seconds is not None and abs(facts.duration - seconds) > 0.1:
        raise SparkError(f"{path.name} is {facts.duration:.2f} s long, not the {seconds:.2f} s video recorded")


def place_video(saved: Path, target: Path, seconds: float | None = None) -> Path:
    """saved at target: hard-linked (copied across file systems), whole or not at all; a no-op when it is there.
    Never through a link, and only a video (of seconds, when given): what is linked or copied is judged before it
    takes target's place (SparkError, target as it was).

    So every output folder holds its own videos, however they were obtained: deleting, moving or zipping the
    folder an earlier call wrote to changes nothing in this one.
    """
    with contextlib.suppress(OSError):
        if os.path.samestat(os.lstat(target), os.lstat(saved)) and stat.S_ISREG(os.lstat(target).st_mode):
            return target  # the very file (a hard link), not a link to it
    target.parent.mkdir(parents=True, exist_ok=True)
    return link_atomically(saved, target, check=lambda part: _is_the_video(part, seconds))


def completed_answer(entry: Entry) -> dict[str, Any]:
    """The task object a completed attempt stands for, so waiting on it needs no request."""
    content: dict[str, Any] = {"type": "video", "url": entry.result_url or ""}
    saved = recorded_video(entry)
    if saved is not None:
        content["size"] = saved.stat().st_size
    usage = {"cost": usd_text(entry.cost)} if entry.cost is not None else {}
    return {"id": entry.task_id, "model": entry.model, "status": "completed", "output": [{"content": [content]}],
            "usage": usage}


def _say(line: str) -> None:
    notify(f"spark_nb: {line}")
