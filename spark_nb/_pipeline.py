"""The shared path of every model: check inputs, upload local files, create the task, wait for the Result."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ._backends import api_client
from ._config import InputLimits, hide_key, resolve
from ._inputs import RECOMMENDED_AUDIO_SECONDS, Media, apply_fix, check, ensure_output_dir, validate
from ._results import Result
from ._tasks import Task
from ._uploads import upload, uploader_for
from .errors import warn
from .models import ModelSpec


def prepare(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True,
            limits: InputLimits = InputLimits()) -> dict[str, Media]:
    """Normalise and check every input of spec (raising ValidationError) before anything is sent.

    Advice becomes a warning; long audio is trimmed unless trim_audio is False.
    """
    media = {field.name: check(values.get(field.name), field, limits) for field in spec.fields}
    for name, item in media.items():
        for advice in item.advice:
            if advice.reason == "audio_too_long" and trim_audio and item.path is not None:
                media[name] = _trimmed(item)
            elif advice.reason == "audio_too_long":
                warn(f"{advice.message}; sent as it is (trim_audio=False)")
            else:
                warn(advice.message)
    return media


def _trimmed(item: Media) -> Media:
    assert item.path is not None and item.facts is not None
    trimmed = validate(Media(item.field, path=apply_fix("trim_audio", item.path)))
    kept = trimmed.facts.duration if trimmed.facts and trimmed.facts.duration else 0.0
    warn(f"the {item.field.label} is {item.facts.duration or 0:.1f} s, over the model's recommended "
         f"{RECOMMENDED_AUDIO_SECONDS:g} s limit; trimmed to {kept:.1f} s, cut in a pause near the limit with a "
         "short fade (pass trim_audio=False to send it whole)")
    return trimmed


def submit(spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True,
           before_create: Callable[[], None] | None = None, **config: Any) -> Task:
    """Check, upload and create one task of spec; returns its Task without waiting.

    before_create runs after the uploads, just before the create call (the batch ledger notes there
    that a task may come to exist).
    """
    settings = resolve(**hide_key(config))
    media = prepare(spec, values, trim_audio=trim_audio, limits=settings.limits)
    ensure_output_dir(settings.output_dir)  # found unusable now, not after the task is paid for
    client = api_client(settings)
    urls: dict[str, str] = {}
    uploader = None
    for name, item in media.items():
        if item.url is not None:
            urls[name] = item.url
        else:
            assert item.path is not None
            uploader = uploader or uploader_for(settings, client)
            urls[name] = upload(item.path, uploader)
    if before_create is not None:
        before_create()
    raw = client.create(spec.id, spec.build_params(urls))
    return Task(id=str(raw["id"]), model=spec.id, settings=settings, initial=raw)


def generate(
    spec: ModelSpec, values: Mapping[str, Any], *, trim_audio: bool = True, timeout: float = 600,
    progress: bool = True, cancel: threading.Event | None = None, **config: Any,
) -> Result:
    """submit() then wait(): the whole generation, returning the downloaded, checked Result."""
    task = submit(spec, values, trim_audio=trim_audio, **hide_key(config))
    return task.wait(timeout, progress=progress, cancel=cancel)
