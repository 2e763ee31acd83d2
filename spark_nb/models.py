"""The models as data: each ModelSpec is the one place that says a model's inputs, wire names and error codes.

Everything else (the pipeline, the local server and its renderers, forms, batches) reads these specs, so a
new model is a new spec:

    TOY = ModelSpec(
        id="toy_still_v1", alias="toy", title="Toy: a picture breathes",
        fields=(MediaField("image", "image", "picture", wire="image_url", missing_code="009001001"),),
        errors=error_codes("009001", ["Image URL missing"]),
        renderer="still",
    )
    register(TOY)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from ._boundary import guard_public
from .errors import TaskFailed, UsageError, ValidationError, safe_text

__all__ = ["AVATAR", "IMITATOR", "MODELS", "MediaField", "MediaKind", "ModelSpec", "ParamsError", "RendererName",
           "WireConstant", "WireGroup", "error_codes", "get_model", "input_fields", "register"]
# hint_for, task_failure and input_trouble read a failure for spark_nb's own modules (client, tasks, journal)

MediaKind = Literal["image", "audio", "video"]
"""The kinds of media input; each has its own checks (an image's size, an audio's sound, a video's motion)."""
RendererName = Literal["talking_head", "imitation", "still"]
"""The local server's renderers; a new kind of output is a new one (see docs/architecture.md)."""


@dataclasses.dataclass(frozen=True)
class MediaField:
    """One media input: its argument name, kind, label for people, where its URL goes in params, its "missing" code.

    Attributes:
        name: the argument name (`image`, `audio`, `driving_video`), also a batch manifest's column.
        kind: which input rules apply: "image", "audio" or "video".
        label: how messages and forms name it ("portrait image").
        wire: a dotted path into the request's params: "image_url", or "driving_video_info.video_url".
        missing_code: the error code the service answers when it is missing.
    """

    name: str
    kind: MediaKind
    label: str
    wire: str
    missing_code: str


@dataclasses.dataclass(frozen=True)
class WireGroup:
    """A nested object of params (e.g. driving_video_info), with the codes for its absence and for a bad shape.

    Attributes:
        name: its dotted path in params.
        missing_code: the error code for its absence.
        malformed_code: the error code for a value that is not an object.
    """

    name: str
    missing_code: str
    malformed_code: str


@dataclasses.dataclass(frozen=True)
class WireConstant:
    """A fixed param (e.g. driving_video_info.store_type = 0), with the codes for its absence and a wrong value.

    Attributes:
        path: its dotted path in params.
        value: the value spark_nb always sends.
        missing_code: the error code for its absence.
        invalid_code: the error code for another value.
    """

    path: str
    value: Any
    missing_code: str
    invalid_code: str


class ParamsError(ValueError):
    """A request's params break the model's wire rules; carries the model's seed code and its text.

    Raised by ModelSpec.parse_params (the local server answers it as the service would); a ValueError.

    Args:
        code: the model's error code (`.code`).
        text: its text in the model's table (`.text`).
    """

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"[{code}] {text}")
        self.code = code
        self.text = text


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model: id, media fields, nested params and constants, error-code table, and the local renderer serving it.

    `build_params` and `parse_params` derive from it, so the client and the local server agree by construction.

    Attributes:
        id: the model id the service knows ("spark_avatar_picture_omni_v2").
        title: a line for people.
        fields: one MediaField per media input, in the order of the service's codes.
        errors: the code table (error_codes(): input errors, then the service failures 095-099).
        renderer: which local renderer serves it.
        alias: a short name for get_model, the CLI and batch manifests ("avatar"), or None.
        groups: the nested objects of its params (WireGroup).
        constants: the fixed params (WireConstant).
    """

    id: str
    title: str
    fields: tuple[MediaField, ...]
    errors: Mapping[str, str]
    renderer: RendererName
    alias: str | None = None
    groups: tuple[WireGroup, ...] = ()
    constants: tuple[WireConstant, ...] = ()

    @property
    def code_prefix(self) -> str:
        """The six digits every error code of this model starts with."""
        return next(iter(self.errors))[:6]

    def build_params(self, urls: Mapping[str, str]) -> dict[str, Any]:
        """The request's params for these input URLs.

        Args:
            urls: field name -> the input's http(s) URL, for every field.

        Returns:
            The params object of the create call, constants included.
        """
        params: dict[str, Any] = {}
        for field in self.fields:
            _put(params, field.wire, urls[field.name])
        for constant in self.constants:
            _put(params, constant.path, constant.value)
        return params

    def parse_params(self, params: Any) -> dict[str, str]:
        """The input URLs in a request's params, checked as the service checks them.

        Checked in the service's order: each field's enclosing objects, their constants' presence and the
        field's URL; then the constants' values.

        Args:
            params: the params object of a create call (anything: a non-object reads as empty).

        Returns:
            field name -> URL.

        Raises:
            ParamsError: the first rule broken, with the model's seed code.
        """
        if not isinstance(params, dict):
            params = {}
        urls: dict[str, str] = {}
        for field in self.fields:
            *parents, _ = field.wire.split(".")
            for depth in range(len(parents)):
                path = ".".join(parents[: depth + 1])
                group = self._group(path)
                found, value = _get(params, path)
                if not found or value is None:
                    raise self._error(group.missing_code)
                if not isinstance(value, dict):
                    raise self._error(group.malformed_code)
                for constant in self.constants:
                    if constant.path.rpartition(".")[0] == path and _get(params, constant.path)[1] is None:
                        raise self._error(constant.missing_code)
            _, url = _get(params, field.wire)
            if not isinstance(url, str) or not url.strip():
                raise self._error(field.missing_code)
            urls[field.name] = url
        for constant in self.constants:
            found, value = _get(params, constant.path)
            if not found or value is None:
                raise self._error(constant.missing_code)
            if value != constant.value or type(value) is not type(constant.value):
                raise self._error(constant.invalid_code)
        return urls

    def _group(self, path: str) -> WireGroup:
        for group in self.groups:
            if group.name == path:
                return group
        raise LookupError(f"{self.id}: no WireGroup describes {path!r}")

    def _error(self, code: str) -> ParamsError:
        return ParamsError(code, self.errors[code])


def _get(params: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = params
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _put(params: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        params = params.setdefault(part, {})
    params[leaf] = value


# What each seed code means (the seed pages' words) and what the user can do about it.
SERVICE_FAILURES = {
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
NO_CODE_HINT = ("the service gave no error code; read task.status().raw for its answer, check the inputs, and "
                "submit again if they are right (a new task is billed again)")
INPUT_ERROR_HINTS = {
    "Image URL missing": "pass a portrait image (path, URL, bytes or upload)",
    "Audio URL missing": "pass a speech clip (path, URL, bytes or upload)",
    "Driving video information missing": "pass a driving video (path, URL, bytes or upload)",
    "Storage type missing": "driving_video_info needs store_type 0; spark_nb sets it for you",
    "Video URL missing": "pass a driving video (path, URL, bytes or upload)",
    "Invalid storage type": "store_type must be 0 (an external URL); spark_nb sets it for you",
    "Invalid driving video information format": "driving_video_info must be {video_url, store_type}",
}


def error_codes(prefix: str, input_errors: list[str]) -> dict[str, str]:
    """A model's code table: prefix + 001.. for its input errors (in order), prefix + 095..099 for service failures.

    Args:
        prefix: the model's six digits ("003016").
        input_errors: the texts of its input errors, in the order of their codes.

    Returns:
        code -> text.
    """
    table = {f"{prefix}{i:03d}": text for i, text in enumerate(input_errors, start=1)}
    table.update({f"{prefix}{suffix}": text for suffix, text in SERVICE_FAILURES.items()})
    return table


AVATAR = ModelSpec(
    id="spark_avatar_picture_omni_v2",
    alias="avatar",
    title="Spark Avatar: portrait + speech → talking-head video",
    fields=(
        MediaField("image", "image", "portrait image", wire="image_url", missing_code="003016001"),
        MediaField("audio", "audio", "speech audio", wire="audio_url", missing_code="003016002"),
    ),
    errors=error_codes("003016", ["Image URL missing", "Audio URL missing"]),
    renderer="talking_head",
)
"""spark_avatar_picture_omni_v2 ("avatar"): a portrait and a speech clip become a talking-head video."""

IMITATOR = ModelSpec(
    id="spark_avatar_imitator_v2v",
    alias="imitator",
    title="Spark Imitator: character image + driving video → imitation video",
    fields=(
        MediaField("image", "image", "character image", wire="image_url", missing_code="003018001"),
        MediaField("driving_video", "video", "driving video", wire="driving_video_info.video_url",
                   missing_code="003018004"),
    ),
    groups=(WireGroup("driving_video_info", missing_code="003018002", malformed_code="003018006"),),
    constants=(WireConstant("driving_video_info.store_type", 0, missing_code="003018003", invalid_code="003018005"),),
    errors=error_codes("003018", [
        "Image URL missing",
        "Driving video information missing",
        "Storage type missing",
        "Video URL missing",
        "Invalid storage type",
        "Invalid driving video information format",
    ]),
    renderer="imitation",
)
"""spark_avatar_imitator_v2v ("imitator"): a character image performs the motion of a driving video."""

MODELS: dict[str, ModelSpec] = {}
"""Every registered model by its id."""
_ALIASES: dict[str, str] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Make spec known by its id (and alias) to get_model, the local server, batches and forms.

    Args:
        spec: the model.

    Returns:
        spec itself (so `TOY = register(ModelSpec(...))`).

    Raises:
        UsageError: spec is not a ModelSpec.
    """
    if not isinstance(spec, ModelSpec):
        raise UsageError(f"register takes a ModelSpec, not {type(spec).__name__}",
                         hint="describe the model as ModelSpec(id=..., fields=(MediaField(...), ...), ...)")
    MODELS[spec.id] = spec
    if spec.alias:
        _ALIASES[spec.alias] = spec.id
    return spec


register(AVATAR)
register(IMITATOR)


def get_model(name: str) -> ModelSpec:
    """The spec for a model id or alias ('avatar', 'imitator').

    Args:
        name: a model id or alias.

    Returns:
        The registered ModelSpec.

    Raises:
        ValidationError: no model is known by that name (reason "unknown_model"; the known ones are named).
    """
    spec = MODELS.get(_ALIASES.get(name, name)) if isinstance(name, str) else None  # history(model=5): no TypeError
    if spec is None:
        known = ", ".join([*_ALIASES, *MODELS])
        shown = safe_text(name, newlines=False, limit=80)
        raise ValidationError(f"unknown model {shown!r}; known: {known}", reason="unknown_model",
                              hint="use a model id or alias from that list")
    return spec


def input_fields() -> Iterator[str]:
    """Every media field name of the registered models, once each, in order (a batch manifest's input columns).

    Returns:
        An iterator of field names ("image", "audio", "driving_video").
    """
    seen: dict[str, None] = {}
    for spec in MODELS.values():
        for field in spec.fields:
            seen.setdefault(field.name)
    return iter(seen)


def hint_for(code: str | None, spec: ModelSpec | None, message: str | None = None) -> tuple[str, bool]:
    """A readable hint for an error code (and the failure's message, when it says an input could not be fetched or
    read: see input_trouble), and whether a new task may succeed."""
    if message and (not code or str(code).zfill(9)[-3:] in SERVICE_FAILURES):
        troubled = input_trouble(message, spec)
        if troubled is not None:
            return troubled, False
    if not code:
        return NO_CODE_HINT, False
    code = str(code).zfill(9)
    if code[-3:] in SERVICE_FAILURES:
        return SERVICE_FAILURE_HINT, True
    description = (spec.errors.get(code) if spec else None) or _describe_any(code)
    return INPUT_ERROR_HINTS.get(description or "", "fix the request's inputs; retrying as is will fail again"), False


def _describe_any(code: str) -> str | None:
    for spec in MODELS.values():
        if code in spec.errors:
            return spec.errors[code]
    return None


def task_failure(error: Any, task_id: str | None, model: str | None) -> TaskFailed:
    """A TaskFailed from a task's `error` field (a string, or an object with code and error_message/message).

    A failure whose message says the service could not fetch or read an input (see input_trouble) is that input's
    problem, whatever its code: the hint says to check that input, and a new task with it is not sent by itself
    (retryable False), since it would fail, and be billed, again.
    """
    code, message = None, "the task failed"
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("error_message") or error.get("message") or message
    elif error:
        message = str(error)
    given = isinstance(code, (str, int)) and not isinstance(code, bool) and str(code).strip()
    code = str(code).zfill(9) if given else None
    hint, retryable = hint_for(code, MODELS.get(model or ""), str(message))
    return TaskFailed(safe_text(message, limit=500), code=code, task_id=task_id, hint=hint, retryable=retryable)


# what a service's message says when it could not fetch or read an input (its URL, or the file behind it)
_FETCH_WORDS = re.compile(r"fetch|download|could not be (?:read|decoded|opened)|cannot (?:identify|decode|open|read)|"
                          r"unable to (?:get|open|read|load|decode)|failed to (?:get|open|read|load|decode)|"
                          r"not (?:reachable|accessible|a valid)|unreachable|invalid (?:image|audio|video|media|url)|"
                          r"unsupported (?:image|audio|video|media) |\b(?:403|404|410)\b|forbidden|not found",
                          re.IGNORECASE)


def input_trouble(message: str, spec: ModelSpec | None) -> str | None:
    """The hint for a failure whose message says an input could not be fetched or read ("image_url could not be
    fetched: HTTP 404", "cannot identify image file"), naming the input when the message does; None otherwise."""
    if not _FETCH_WORDS.search(message):
        return None
    fields = spec.fields if spec is not None else tuple(f for s in MODELS.values() for f in s.fields)
    lowered = message.lower()
    named = next((f for f in fields if f.wire.lower() in lowered or f.wire.rsplit(".", 1)[-1].lower() in lowered),
                 None) or next((f for f in fields if f.kind in lowered), None)
    what = f"the {named.label} ({named.wire})" if named is not None else "an input"
    return (f"the service could not fetch or read {what}: check that its URL opens without a login from anywhere "
            "and gives the file itself, of the right kind (a local file is uploaded for you: check the uploader's "
            "URLs are public); submitting the same input again would fail again (and be billed)")


guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
