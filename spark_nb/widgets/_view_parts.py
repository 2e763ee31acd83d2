"""What every view of a form does with ipywidgets: markup in an Output (set only when it changes), CSS classes,
hiding and showing."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import ipywidgets as W

HIDDEN, SHOWN = "none", ""
Widget = TypeVar("Widget", bound=W.DOMWidget)


def html_output(markup: str) -> dict[str, Any]:
    """An Output widget entry holding markup.

    Output (not HTML) widgets render through the notebook's rendermime, whose URL resolver maps the relative
    srcs of display.py to /files/...; an HTML widget's innerHTML would resolve them against the page URL.
    """
    return {"output_type": "display_data", "data": {"text/html": markup, "text/plain": "(media)"}, "metadata": {}}


def classes(widget: Widget, *names: str) -> Widget:
    """widget with the CSS classes names (the browser tests find the form's parts by them)."""
    for name in names:
        widget.add_class(name)
    return widget


def set_visible(widget: W.DOMWidget, visible: bool) -> None:
    """Show or hide widget."""
    widget.layout.display = SHOWN if visible else HIDDEN


class Area:
    """An Output showing markup that is made again, and sent to the browser, only when what it shows changes: a
    view renders on every change of its controller's state (each poll), and a video's markup may be large."""

    def __init__(self, output: W.Output) -> None:
        self.output = output
        self._shown: Hashable = None

    def show(self, key: Hashable, markup: Callable[[], str | None]) -> None:
        """Show markup() unless key, what the markup is made from, is what is shown already (None: nothing)."""
        if key == self._shown:
            return
        self._shown = key
        made = markup() if key is not None else None
        self.output.outputs = (html_output(made),) if made else ()
