"""The two Spark Avatar models as data: their media fields, how those become params, and their error codes."""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal, Mapping

MediaKind = Literal["image", "audio", "video"]


@dataclasses.dataclass(frozen=True)
class MediaField:
    """One media input of a model: its argument name, kind and the seed code for "missing"."""

    name: str
    kind: MediaKind
    label: str
    missing_code: str


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model: id, media fields, how their URLs become the request's params, and its error-code table."""

    id: str
    fields: tuple[MediaField, ...]
    build_params: Callable[[Mapping[str, str]], dict]
    errors: Mapping[str, str]

    @property
    def code_prefix(self) -> str:
        """The six digits every error code of this model starts with."""
        return next(iter(self.errors))[:6]

    def field(self, name: str) -> MediaField:
        """The media field called name."""
        return next(f for f in self.fields if f.name == name)


# What each seed code means (the seed pages' words) and what the user can do about it.
_SERVICE_FAILURES = {
    "095": "Internal generation error",
    "096": "Result parsing error",
    "097": "HTTP error response",
    "098": "Status check error",
    "099": "Task creation error",
}
SERVICE_FAILURE_HINT = (
    "the service failed on its side; submitting again may succeed (a new task is billed again), "
    "and if an input URL is involved check that it is publicly reachable and decodable"
)
INPUT_ERROR_HINTS = {
    "Image URL missing": "pass a portrait image (path, URL, bytes or upload)",
    "Audio URL missing": "pass a speech clip (path, URL, bytes or upload)",
    "Driving video information missing": "pass a driving video (path, URL, bytes or upload)",
    "Storage type missing": "driving_video_info needs store_type 0; spark_nb sets it for you",
    "Video URL missing": "pass a driving video (path, URL, bytes or upload)",
    "Invalid storage type": "store_type must be 0 (an external URL); spark_nb sets it for you",
    "Invalid driving video information format": "driving_video_info must be {video_url, store_type}",
}


def _codes(prefix: str, input_errors: list[str]) -> dict[str, str]:
    table = {f"{prefix}{i:03d}": text for i, text in enumerate(input_errors, start=1)}
    table.update({f"{prefix}{suffix}": text for suffix, text in _SERVICE_FAILURES.items()})
    return table


def hint_for(code: str | None, spec: ModelSpec | None) -> tuple[str | None, bool]:
    """A readable hint for an error code, and whether a new task may succeed."""
    if not code:
        return None, False
    code = str(code).zfill(9)
    if code[-3:] in _SERVICE_FAILURES:
        return SERVICE_FAILURE_HINT, True
    description = (spec.errors.get(code) if spec else None) or _describe_any(code)
    return INPUT_ERROR_HINTS.get(description or "", "fix the request's inputs; retrying as is will fail again"), False


def _describe_any(code: str) -> str | None:
    for spec in MODELS.values():
        if code in spec.errors:
            return spec.errors[code]
    return None


AVATAR = ModelSpec(
    id="spark_avatar_picture_omni_v2",
    fields=(
        MediaField("image", "image", "portrait image", "003016001"),
        MediaField("audio", "audio", "speech audio", "003016002"),
    ),
    build_params=lambda urls: {"image_url": urls["image"], "audio_url": urls["audio"]},
    errors=_codes("003016", ["Image URL missing", "Audio URL missing"]),
)

IMITATOR = ModelSpec(
    id="spark_avatar_imitator_v2v",
    fields=(
        MediaField("image", "image", "character image", "003018001"),
        MediaField("driving_video", "video", "driving video", "003018004"),
    ),
    build_params=lambda urls: {
        "image_url": urls["image"],
        "driving_video_info": {"video_url": urls["driving_video"], "store_type": 0},
    },
    errors=_codes(
        "003018",
        [
            "Image URL missing",
            "Driving video information missing",
            "Storage type missing",
            "Video URL missing",
            "Invalid storage type",
            "Invalid driving video information format",
        ],
    ),
)

MODELS: dict[str, ModelSpec] = {AVATAR.id: AVATAR, IMITATOR.id: IMITATOR}
ALIASES = {"avatar": AVATAR.id, "imitator": IMITATOR.id}


def get_model(name: str) -> ModelSpec:
    """The spec for a model id or alias ('avatar', 'imitator')."""
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        known = ", ".join([*ALIASES, *MODELS])
        raise ValueError(f"unknown model {name!r}; known: {known}")
    return spec
