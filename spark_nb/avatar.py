"""spark_avatar_picture_omni_v2: a portrait image and a speech clip become a talking-head video.

Inputs are http(s) URLs, local paths, bytes or ipywidgets FileUpload items. **config takes the
configure() options for this call only: api_key, backend, base_url, output_dir, uploader.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import pipeline
from .models import AVATAR as MODEL
from .results import Result
from .tasks import Task, run_cancellable

__all__ = ["MODEL", "agenerate", "asubmit", "generate", "submit"]


def submit(image: Any, audio: Any, *, trim_audio: bool = True, **config: Any) -> Task:
    """Check the inputs, upload local files and create the task; returns the Task without waiting."""
    return pipeline.submit(MODEL, {"image": image, "audio": audio}, trim_audio=trim_audio, **config)


def generate(
    image: Any, audio: Any, *, trim_audio: bool = True, timeout: float = 600, progress: bool = True, **config: Any
) -> Result:
    """Generate a talking-head video and return its downloaded Result (audio over 15 s is trimmed unless told not)."""
    values = {"image": image, "audio": audio}
    return pipeline.generate(MODEL, values, trim_audio=trim_audio, timeout=timeout, progress=progress, **config)


async def asubmit(image: Any, audio: Any, *, trim_audio: bool = True, **config: Any) -> Task:
    """The async twin of submit()."""
    return await asyncio.to_thread(submit, image, audio, trim_audio=trim_audio, **config)


async def agenerate(
    image: Any, audio: Any, *, trim_audio: bool = True, timeout: float = 600, progress: bool = True, **config: Any
) -> Result:
    """The async twin of generate(); cancelling it stops the wait (the task itself keeps running)."""
    values = {"image": image, "audio": audio}
    return await run_cancellable(
        lambda cancel: pipeline.generate(MODEL, values, trim_audio=trim_audio, timeout=timeout,
                                         progress=progress, cancel=cancel, **config)
    )
