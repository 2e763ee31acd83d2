"""spark_avatar_imitator_v2v: a character image performs the motion of a driving video.

Inputs are http(s) URLs, local paths, bytes or ipywidgets FileUpload items. **config takes the
configure() options for this call only: api_key, backend, base_url, output_dir, uploader, check_urls.
reuse=False makes a new take even when an identical call finished before; strict=True refuses, before any
upload, a character image in which no face is found instead of warning about it.
"""

from __future__ import annotations

from typing import Any

from . import _pipeline as pipeline
from ._boundary import boundary
from ._results import Result
from ._tasks import Task, run_cancellable
from .models import IMITATOR as MODEL

__all__ = ["MODEL", "async_generate", "async_submit", "generate", "submit"]


@boundary
def submit(image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False, **config: Any) -> Task:
    """Check the inputs, upload local files and create the task; returns the Task without waiting.

    Args:
        image: the character image (the one who will perform the motion): a path, an http(s) URL, bytes, or an
            ipywidgets FileUpload item.
        driving_video: the video whose motion the character performs: a path, URL, bytes or upload.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the character
            image).
        **config: configure()'s options for this call only (api_key, backend, base_url, output_dir, uploader,
            check_urls, budget_usd, ...).

    Returns:
        The Task (its `.origin` says whether an identical earlier call answered); `.wait()` gives the Result.

    Raises:
        ValidationError: an input is missing or breaks the model's rules (`.reason`, `.field`); nothing was sent.
        UsageError: an unknown option, or one of the wrong type.
        BudgetExceeded: the task would pass the budget (CostUnknown: its cost is not known yet and one such task
            is running); nothing was uploaded.
        UploadError: a local file could not be uploaded (no uploader configured, or it failed).
        TaskMayExist: the create call's answer was lost: a task may exist (and be billed), so it was not resent.
        TaskFailed: the service refused the task (the model's error code, its hint).
        AuthenticationError: no key for the cloud backend, or the key was refused (401).
        PermissionDeniedError: the account was refused (402, 403: balance or permission).
        JournalError: the task journal cannot be written.
        SparkError: the service could not be reached, a key found is malformed, or an identical call in another
            kernel is still creating its task.
    """
    return pipeline.submit(MODEL, {"image": image, "driving_video": driving_video}, reuse=reuse, strict=strict,
                           **config)


@boundary
def generate(image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False, timeout: float = 600,
             progress: bool = True, **config: Any) -> Result:
    """Generate the imitation video and return its downloaded Result.

    Advice on the inputs (no face found in the character image) is a SparkWarning.

    Args:
        image: the character image (the one who will perform the motion): a path, an http(s) URL, bytes, or an
            ipywidgets FileUpload item.
        driving_video: the video whose motion the character performs: a path, URL, bytes or upload.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the character
            image).
        timeout: seconds for the whole call, uploads and create included (a finite number above 0).
        progress: show a progress bar.
        **config: configure()'s options for this call only (api_key, backend, base_url, output_dir, uploader,
            check_urls, budget_usd, ...).

    Returns:
        The Result: the downloaded, checked video (its `.origin` says whether an earlier identical call's video was
            reused), with its duration and cost.

    Raises:
        ValidationError: an input is missing or breaks the model's rules (`.reason`, `.field`); nothing was sent.
        UsageError: an unknown option, or one of the wrong type.
        BudgetExceeded: the task would pass the budget (CostUnknown: its cost is not known yet and one such task
            is running); nothing was uploaded.
        UploadError: a local file could not be uploaded (no uploader configured, or it failed).
        TaskMayExist: the create call's answer was lost: a task may exist (and be billed), so it was not resent.
        TaskFailed: the service refused the task (the model's error code, its hint).
        AuthenticationError: no key for the cloud backend, or the key was refused (401).
        PermissionDeniedError: the account was refused (402, 403: balance or permission).
        JournalError: the task journal cannot be written.
        SparkError: the service could not be reached, a key found is malformed, or an identical call in another
            kernel is still creating its task.
        TaskTimeout: the timeout passed first; the task goes on (the hint has the line that resumes it).
        DownloadError: the video could not be downloaded intact.
    """
    values = {"image": image, "driving_video": driving_video}
    return pipeline.generate(MODEL, values, reuse=reuse, strict=strict, timeout=timeout, progress=progress, **config)


@boundary
async def async_submit(image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False,
                       **config: Any) -> Task:
    """The async twin of submit(): the same checks, upload and create, in a worker thread.

    Args:
        image: the character image (the one who will perform the motion): a path, an http(s) URL, bytes, or an
            ipywidgets FileUpload item.
        driving_video: the video whose motion the character performs: a path, URL, bytes or upload.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the character
            image).
        **config: configure()'s options for this call only (api_key, backend, base_url, output_dir, uploader,
            check_urls, budget_usd, ...).

    Returns:
        The Task, as submit() returns it.

    Raises:
        SparkError: as submit() raises (ValidationError, BudgetExceeded, TaskMayExist, ...).
    """
    return await run_cancellable(lambda _: submit(image, driving_video, reuse=reuse, strict=strict, **config))


@boundary
async def async_generate(
    image: Any, driving_video: Any, *, reuse: bool = True, strict: bool = False, timeout: float = 600,
    progress: bool = True, **config: Any,
) -> Result:
    """The async twin of generate(); cancelling it stops the wait (the task itself keeps running).

    Args:
        image: the character image (the one who will perform the motion): a path, an http(s) URL, bytes, or an
            ipywidgets FileUpload item.
        driving_video: the video whose motion the character performs: a path, URL, bytes or upload.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the character
            image).
        timeout: seconds for the whole call, uploads and create included (a finite number above 0).
        progress: show a progress bar.
        **config: configure()'s options for this call only (api_key, backend, base_url, output_dir, uploader,
            check_urls, budget_usd, ...).

    Returns:
        The Result, as generate() returns it.

    Raises:
        SparkError: as generate() raises (ValidationError, TaskFailed, TaskTimeout, ...).
    """
    values = {"image": image, "driving_video": driving_video}
    return await run_cancellable(
        lambda cancel: pipeline.generate(MODEL, values, reuse=reuse, strict=strict, timeout=timeout, progress=progress,
                                         cancel=cancel, **config)
    )
