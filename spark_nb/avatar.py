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
from ._boundary import boundary
from ._results import Result
from ._tasks import Task, run_cancellable
from .models import AVATAR as MODEL

__all__ = ["MODEL", "async_generate", "async_submit", "generate", "submit"]


@boundary
def submit(image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
           **config: Any) -> Task:
    """Check the inputs, upload local files and create the task; returns the Task without waiting.

    Args:
        image: the portrait (a face looking at the camera): a path, an http(s) URL, bytes, or an ipywidgets
            FileUpload item.
        audio: the speech clip (wav, mp3, m4a, or a video's sound): a path, URL, bytes or upload.
        trim_audio: trim audio over the recommended 15 s at a pause (with a short fade); False sends it whole.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the portrait; with
            trim_audio=False, audio over 15 s).
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
    return pipeline.submit(MODEL, {"image": image, "audio": audio}, trim_audio=trim_audio, reuse=reuse, strict=strict,
                           **config)


@boundary
def generate(
    image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
    timeout: float = 600, progress: bool = True, **config: Any
) -> Result:
    """Generate a talking-head video from a portrait and a speech clip, and return its downloaded Result.

    Advice on the inputs (no face found, long audio) is a SparkWarning; a long audio is trimmed unless told not.

    Args:
        image: the portrait (a face looking at the camera): a path, an http(s) URL, bytes, or an ipywidgets
            FileUpload item.
        audio: the speech clip (wav, mp3, m4a, or a video's sound): a path, URL, bytes or upload.
        trim_audio: trim audio over the recommended 15 s at a pause (with a short fade); False sends it whole.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the portrait; with
            trim_audio=False, audio over 15 s).
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
    values = {"image": image, "audio": audio}
    return pipeline.generate(MODEL, values, trim_audio=trim_audio, reuse=reuse, strict=strict, timeout=timeout,
                             progress=progress, **config)


@boundary
async def async_submit(image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
                       **config: Any) -> Task:
    """The async twin of submit(): the same checks, upload and create, in a worker thread.

    Args:
        image: the portrait (a face looking at the camera): a path, an http(s) URL, bytes, or an ipywidgets
            FileUpload item.
        audio: the speech clip (wav, mp3, m4a, or a video's sound): a path, URL, bytes or upload.
        trim_audio: trim audio over the recommended 15 s at a pause (with a short fade); False sends it whole.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the portrait; with
            trim_audio=False, audio over 15 s).
        **config: configure()'s options for this call only (api_key, backend, base_url, output_dir, uploader,
            check_urls, budget_usd, ...).

    Returns:
        The Task, as submit() returns it.

    Raises:
        SparkError: as submit() raises (ValidationError, BudgetExceeded, TaskMayExist, ...).
    """
    return await run_cancellable(lambda _: submit(image, audio, trim_audio=trim_audio, reuse=reuse, strict=strict,
                                                  **config))


@boundary
async def async_generate(
    image: Any, audio: Any, *, trim_audio: bool = True, reuse: bool = True, strict: bool = False,
    timeout: float = 600, progress: bool = True, **config: Any
) -> Result:
    """The async twin of generate(); cancelling it stops the wait (the task itself keeps running).

    Args:
        image: the portrait (a face looking at the camera): a path, an http(s) URL, bytes, or an ipywidgets
            FileUpload item.
        audio: the speech clip (wav, mp3, m4a, or a video's sound): a path, URL, bytes or upload.
        trim_audio: trim audio over the recommended 15 s at a pause (with a short fade); False sends it whole.
        reuse: answer from an identical earlier call (its video, or its task still running) instead of paying
            again; False makes a new take.
        strict: refuse, before any upload, inputs that would only be advised on (no face in the portrait; with
            trim_audio=False, audio over 15 s).
        timeout: seconds for the whole call, uploads and create included (a finite number above 0).
        progress: show a progress bar.
        **config: configure()'s options for this call only (api_key, backend, base_url, output_dir, uploader,
            check_urls, budget_usd, ...).

    Returns:
        The Result, as generate() returns it.

    Raises:
        SparkError: as generate() raises (ValidationError, TaskFailed, TaskTimeout, ...).
    """
    values = {"image": image, "audio": audio}
    return await run_cancellable(
        lambda cancel: pipeline.generate(MODEL, values, trim_audio=trim_audio, reuse=reuse, strict=strict,
                                         timeout=timeout, progress=progress, cancel=cancel, **config)
    )
