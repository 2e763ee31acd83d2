"""The shared path of every model: check inputs, upload local files, create the task, wait for the Result."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .backends import api_client
from .config import resolve
from .errors import warn
from .inputs import RECOMMENDED_AUDIO_SECONDS, Media, normalise, validate
from .models import ModelSpec
from .results import Result
from .tasks import Task
from .uploads import upload, uploader_for


def prepare(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True) -> dict[str, Media]:
    """Normalise and check every input of spec (raising ValidationError) before anything is sent."""
    media = {field.name: validate(normalise(values.get(field.name), field)) for field in spec.fields}
    for name, item in media.items():
        if item.field.kind == "audio" and item.info and (item.info.duration or 0) > RECOMMENDED_AUDIO_SECONDS:
            media[name] = _long_audio(item, trim_audio)
        if item.field.kind == "image" and item.path is not None:
            _check_face(item)
    return media


def _check_face(item: Media) -> None:
    from .local.faces import face_in_file

    if not face_in_file(item.path):  # type: ignore[arg-type]
        warn(f"no face found in the {item.field.label} ({item.path.name}): the model wants one person with a "  # type: ignore[union-attr]
             "large, frontal face, so the result may be poor")


def _long_audio(item: Media, trim: bool) -> Media:
    length = item.info.duration if item.info else 0.0
    if not trim:
        warn(f"the audio is {length:.1f} s, over the model's recommended 15 s limit; sent as it is "
             "(trim_audio=False), so quality may degrade")
        return item
    from .media import trim_audio

    trimmed = validate(Media(item.field, path=trim_audio(item.path, RECOMMENDED_AUDIO_SECONDS)))  # type: ignore[arg-type]
    kept = trimmed.info.duration if trimmed.info and trimmed.info.duration else RECOMMENDED_AUDIO_SECONDS
    warn(f"the audio is {length:.1f} s, over the model's recommended 15 s limit; trimmed to {kept:.1f} s, "
         "cut in a pause near the limit with a short fade (pass trim_audio=False to send it whole)")
    return trimmed


def submit(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True,
           before_create: Callable[[], None] | None = None, **config: Any) -> Task:
    """Check, upload and create one task of spec; returns its Task without waiting.

    before_create runs after the uploads, just before the create call (the batch ledger notes there
    that a task may come to exist).
    """
    settings = resolve(**config)
    media = prepare(spec, values, trim_audio=trim_audio)
    client = api_client(settings)
    urls: dict[str, str] = {}
    uploader = None
    for name, item in media.items():
        if item.url is not None:
            urls[name] = item.url
        else:
            uploader = uploader or uploader_for(settings, client)
            urls[name] = upload(item.path, uploader)  # type: ignore[arg-type]
    if before_create is not None:
        before_create()
    raw = client.create(spec.id, spec.build_params(urls))
    return Task(id=str(raw["id"]), model=spec.id, settings=settings, initial=raw)


def generate(
    spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True, timeout: float = 600,
    progress: bool = True, cancel: threading.Event | None = None, **config: Any,
) -> Result:
    """submit() then wait(): the whole generation, returning the downloaded, checked Result."""
    task = submit(spec, values, trim_audio=trim_audio, **config)
    return task._wait(timeout, progress, cancel)
