"""Notebook forms (ipywidgets 8) for the two models: pick inputs, check and fix them, generate, compare.

    import spark_nb.widgets
    spark_nb.widgets.studio()        # both forms in tabs; or avatar_form() / imitator_form()

A form is built from a model's spec (`ModelForm(spec)`): one picker per media input, Generate, the result. Each
form takes the configure() options for its own calls (api_key, backend, base_url, output_dir, uploader) and
exposes its widgets as attributes (see `ModelForm` and `MediaPicker`), with stable CSS classes (spark-generate,
spark-status, spark-error, spark-result, spark-sample-image, ...) for browser tests. Every input rule is the
pipeline's own (`spark_nb._inputs`): a form shows its errors and advice and offers its fixes, and generates
through the same submit() and Task.wait() as generate(), with the same arguments: what a form generates, code
calling generate() with the same files reuses, and the other way round.

Each form is state plus view: a controller (`FormController`, a `PickerController` per input, in
`spark_nb.widgets._form_state` and `_picker_state`) holds the state and the actions and imports no ipywidgets;
the widgets here only render it and forward clicks. The views load with their first use, so the controllers can
be imported, and driven, without ipywidgets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..models import AVATAR, IMITATOR, ModelSpec

if TYPE_CHECKING:
    from ._form_view import ModelForm
    from ._picker_view import MediaPicker
    from ._studio_view import Studio

__all__ = ["MediaPicker", "ModelForm", "Studio", "avatar_form", "imitator_form", "model_form", "studio"]

_VIEWS = {"MediaPicker": "_picker_view", "ModelForm": "_form_view", "Studio": "_studio_view"}


def __getattr__(name: str) -> Any:
    """The view classes, loaded (with ipywidgets) on first use."""
    if name in _VIEWS:
        return getattr(importlib.import_module(f"{__name__}.{_VIEWS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def model_form(spec: ModelSpec, *, timeout: float = 600, **config: Any) -> ModelForm:
    """A form for any model spec.

    Args:
        spec: The model (a registered `spark_nb.models.ModelSpec`).
        timeout: Seconds a generation may take, from Generate to the downloaded video.
        **config: configure()'s options for this form's calls (api_key, backend, base_url, output_dir, ...).

    Returns:
        The form; it shows itself when it is the last expression of a cell.

    Raises:
        TypeError: An unknown option (a UsageError).
    """
    from ._form_view import ModelForm

    return ModelForm(spec, timeout=timeout, **config)


def avatar_form(*, timeout: float = 600, **config: Any) -> ModelForm:
    """A form for the avatar model (a portrait and a speech clip).

    Args:
        timeout: Seconds a generation may take, from Generate to the downloaded video.
        **config: configure()'s options for this form's calls (api_key, backend, base_url, output_dir, ...).

    Returns:
        The form; it shows itself when it is the last expression of a cell.

    Raises:
        TypeError: An unknown option (a UsageError).
    """
    return model_form(AVATAR, timeout=timeout, **config)


def imitator_form(*, timeout: float = 600, **config: Any) -> ModelForm:
    """A form for the imitator model (a character image and a driving video).

    Args:
        timeout: Seconds a generation may take, from Generate to the downloaded video.
        **config: configure()'s options for this form's calls (api_key, backend, base_url, output_dir, ...).

    Returns:
        The form; it shows itself when it is the last expression of a cell.

    Raises:
        TypeError: An unknown option (a UsageError).
    """
    return model_form(IMITATOR, timeout=timeout, **config)


def studio(*, timeout: float = 600, **config: Any) -> Studio:
    """Both forms in tabs (avatar, imitator), and the history of this machine's tasks in a third.

    Args:
        timeout: Seconds each generation may take.
        **config: configure()'s options for the forms' calls and the history.

    Returns:
        The studio; it shows itself when it is the last expression of a cell.

    Raises:
        TypeError: An unknown option (a UsageError).
    """
    from ._studio_view import Studio

    return Studio(timeout=timeout, **config)
