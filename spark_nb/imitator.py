"""spark_avatar_imitator_v2v: a character image performs the motion of a driving video.

Inputs are http(s) URLs, local paths, bytes or ipywidgets FileUpload items. **config takes the
configure() options for this call only: api_key, backend, base_url, output_dir, uploader, check_urls.
reuse=False makes a new take even when an identical call finished before; strict=True refuses, before any
upload, a character image in which no face is found instead of warning about it.
"""

from __future__ import annotations

from typing import Any

from . import _pipeline as pipeline
from ._boundary import boundary, guard_public
from ._results import Result
from ._tasks import Task, run_cancellable
from .models import IMITATOR as MODEL

__all__ = ["MODEL", "async_generate", "async_submit", "generate", "submit"]


@boundary
def submit(image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False, **config: Any) -> Task:
    """Check the inputs, upload local files and create the task; returns the Task without waiting."""
    return pipeline.submit(MODEL, {"image": image, "driving_video": driving_video}, reuse=reuse, strict=strict,
                           **config)


@boundary
def generate(image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False, timeout: float = 600,
             progress: bool = True, **config: Any) -> Result:
    """Generate the imitation video and return its downloaded Result."""
    values = {"image": image, "driving_video": driving_video}
    return pipeline.generate(MODEL, values, reuse=reuse, strict=strict, timeout=timeout, progress=progress, **config)


@boundary
async def async_submit(image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False,
                       **config: Any) -> Task:
    """The async twin of submit()."""
    return await run_cancellable(lambda _: submit(image, driving_video, reuse=reuse, strict=strict, **config))


@boundary
async def async_generate(
    image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False, timeout: float = 600,
    progress: bool = True, **config: Any,
) -> Result:
    """The async twin of generate(); cancelling it stops the wait (the task itself keeps running)."""
    values = {"image": image, "driving_video": driving_video}
    return await run_cancellable(
        lambda cancel: pipeline.generate(MODEL, values, reuse=reuse, strict=strict, timeout=timeout, progress=progress,
                                         cancel=cancel, **config)
    )


guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
