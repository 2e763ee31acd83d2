"""The input rules for audio and video files: within the size and length limits, decodable from start to end,
with sound (audio) or motion (video). Part of the input rules, called by _inputs.validate only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._config import InputLimits
from ._ffmpeg import DecodeReport, MediaFacts, ProbeError, decode_tail, loudest_db, picture_changes, try_decode
from .errors import ValidationError
from .models import MediaField

SILENCE_DB = -70.0  # a peak below this is no speech (digital silence measures -91 dB or -inf)
STILL_CHANGE = 10  # no pixel of a small grey copy changing by more than this (of 255) is no motion


def _decode(path: Path, field: MediaField, kind: str, shown: str, seconds: float = 1.0) -> DecodeReport:
    try:
        return try_decode(path, seconds)
    except ProbeError as exc:
        raise ValidationError(
            f"{field.label} could not be decoded as {kind} ({shown}: {exc.why})", reason="not_decodable",
            field=field.name, hint=f"check that the file is complete and really {kind} (e.g. wav, mp3, m4a, mp4)",
        ) from exc


def check_stream(path: Path, field: MediaField, limits: InputLimits, *, name: str | None = None) -> MediaFacts:
    """Audio or video: within the size and length limits, decodable from start to end, with sound or motion.
    Messages call the file name (its user's name for it), else by its own name."""
    shown = name or path.name
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ValidationError(
            f"{field.label} is {size / 1024**2:.0f} MB; inputs are limited to {limits.max_bytes / 1024**2:.0f} MB",
            reason="media_too_large", field=field.name,
            hint="cut or re-encode it smaller (e.g. spark_nb.media.trim_audio for speech), or raise the limit with "
                 "configure(max_input_mb=...) if your service takes larger files",
        )
    report = _decode(path, field, "audio" if field.kind == "audio" else "a video", shown)
    facts = report.facts
    (_check_audio if field.kind == "audio" else _check_video)(shown, field, report)
    if facts.duration and facts.duration > limits.max_seconds:
        raise ValidationError(
            f"{field.label} lasts {facts.duration:.0f} s; inputs are limited to {limits.max_seconds:.0f} s",
            reason="media_too_long", field=field.name,
            hint="cut it shorter, or raise the limit with configure(max_input_seconds=...)",
        )
    truncated = ValidationError(
        f"{field.label} ends before its declared {facts.duration or 0:.1f} s ({shown} looks truncated)",
        reason="not_decodable", field=field.name, hint="the file is incomplete: download or export it again",
    )
    if facts.damaged:  # e.g. an MP4 cut inside its index: a track (often the sound) silently gone
        raise ValidationError(
            f"{field.label} is damaged ({shown}: its index is incomplete, so a track cannot be read)",
            reason="not_decodable", field=field.name, hint="the file is incomplete: download or export it again",
        )
    if facts.duration and facts.duration > 1.0:  # a file cut short: its header promises more than it holds
        tail = _unless_undecodable(decode_tail, path, facts.duration, min(3.0, facts.duration / 2))
        if tail is None or (tail.frames <= 0 and tail.seconds <= 0):
            raise truncated
    if field.kind == "audio":
        peak = _unless_undecodable(loudest_db, path)
        if peak is None:
            raise truncated
        if peak < SILENCE_DB:
            raise ValidationError(
                f"{field.label} is silent ({shown}: its loudest moment is {peak:.0f} dB)", reason="no_audio",
                field=field.name, hint="pass a recording of speech; check that the recording was not muted",
            )
    else:
        changes = _unless_undecodable(picture_changes, path)
        if changes is not None and changes <= STILL_CHANGE:
            raise ValidationError(
                f"{field.label} shows no motion ({shown}: its frames are all the same picture)",
                reason="still_video", field=field.name, hint="pass a video of a person moving",
            )
    return facts


def _unless_undecodable(measure: Any, *args: Any) -> Any:
    """measure(*args), or None when the part of the file it reads does not decode."""
    try:
        return measure(*args)
    except ProbeError:
        return None


def _check_audio(shown: str, field: MediaField, report: DecodeReport) -> None:
    if not report.facts.has_audio:
        raise ValidationError(
            f"{field.label} has no audio stream ({shown})", reason="no_audio", field=field.name,
            hint="pass a speech clip (wav, mp3, m4a) or a video with sound",
        )
    if not report.facts.duration or report.seconds <= 0:
        raise ValidationError(
            f"{field.label} contains no sound ({shown} is empty)", reason="no_audio", field=field.name,
            hint="pass a speech clip with at least a fraction of a second of sound",
        )


def _check_video(shown: str, field: MediaField, report: DecodeReport) -> None:
    if not report.facts.has_video:
        raise ValidationError(
            f"{field.label} has no video stream ({shown})", reason="no_video", field=field.name,
            hint="pass a video file (e.g. mp4) showing a person moving",
        )
    if report.facts.is_still_image or report.frames < 2:
        raise ValidationError(
            f"{field.label} is a still picture or has no frames ({shown})", reason="still_video",
            field=field.name, hint="pass a video file (e.g. mp4) with motion",
        )
