"""spark_avatar_picture_omni_v2: a portrait image and a speech clip become a talking-head video.

Inputs are http(s) URLs, local paths, bytes or ipywidgets FileUpload items. **config takes the
configure() options for this call only: api_key, backend, base_url, output_dir, uploader, check_urls.
reuse=False makes a new take even when an identical call finished before; strict=True refuses, before any
upload, a portrait in which no face is found (and, with trim_audio=False, audio over 15 s) instead of
warning about it.
"""

from __future__ import annotations

from typing import Any

from . import _pipeline as pipeline
from ._boundary import boundary, guard_public
from ._results import Result
from ._tasks import Task, run_cancellable
from .models import AVATAR as MODEL

__all__ = ["MODEL", "async_generate", "async_submit", "generate", "submit"]


@boundary
def submit(image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
           **config: Any) -> Task:
    """Check the inputs, upload local files and create the task; returns the Task without waiting."""
    return pipeline.submit(MODEL, {"image": image, "audio": audio}, trim_audio=trim_audio, reuse=reuse, strict=strict,
                           **config)


@boundary
def generate(
    image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
    timeout: float = 600, progress: bool = True, **config: Any
) -> Result:
    """Generate a talking-head video and return its downloaded Result (audio over 15 s is trimmed unless told not)."""
    values = {"image": image, "audio": audio}
    return pipeline.generate(MODEL, values, trim_audio=trim_audio, reuse=reuse, strict=strict, timeout=timeout,
                             progress=progress, **config)


@boundary
async def async_submit(image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
                       **config: Any) -> Task:
    """The async twin of submit()."""
    return await run_cancellable(lambda _: submit(image, audio, trim_audio=trim_audio, reuse=reuse, strict=strict,
                                                  **config))


@boundary
async def async_generate(
    image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
    timeout: float = 600, progress: bool = True, **config: Any
) -> Result:
    """The async twin of generate(); cancelling it stops the wait (the task itself keeps running)."""
    values = {"image": image, "audio": audio}
    return await run_cancellable(
        lambda cancel: pipeline.generate(MODEL, values, trim_audio=trim_audio, reuse=reuse, strict=strict,
                                         timeout=timeout, progress=progress, cancel=cancel, **config)
    )


guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
