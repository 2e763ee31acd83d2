"""The studio's view (Studio): the forms of several models in a Tab, and the journal's history in one more."""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as W

from .._boundary import boundary
from .._config import hide_key
from ..errors import SparkError
from ..models import AVATAR, IMITATOR, ModelSpec
from ._form_view import ModelForm
from ._view_parts import classes, html_output
from ._words import error_markup


class Studio:
    """Forms for several models in a Tab (by default the two Spark models), and a History tab.

    forms maps model id -> ModelForm; each form is also an attribute named after its model's alias (studio.avatar,
    studio.imitator); history is the History tab's Output; widget is the Tab.

    Args:
        specs: The models, one tab each.
        timeout: Seconds each generation may take.
        **config: configure()'s options for the forms' calls and the history.

    Raises:
        TypeError: An unknown option (a UsageError), when the studio is made.
    """

    def __init__(self, specs: tuple[ModelSpec, ...] = (AVATAR, IMITATOR), *, timeout: float = 600,
                 **config: Any) -> None:
        self._config = dict(hide_key(config))
        self.forms = {spec.id: ModelForm(spec, timeout=timeout, **config) for spec in specs}
        # short titles: a widget Tab gives each title a fixed width (about 144 px) and cuts longer ones off
        titles = [_tab_title(spec) for spec in specs]
        self.history = classes(W.Output(), "spark-history")
        refresh = classes(W.Button(description="Refresh", icon="refresh"), "spark-history-refresh")
        refresh.on_click(lambda _: self.show_history())
        for form in self.forms.values():
            form.on_result = lambda _: self.show_history()
            if form.spec.alias and not hasattr(self, form.spec.alias):  # studio.avatar: a plain attribute
                setattr(self, form.spec.alias, form)
        self.widget = classes(W.Tab(children=[*(form.widget for form in self.forms.values()),
                                              W.VBox([refresh, self.history])], titles=[*titles, "History"]),
                              "spark-studio")
        self.show_history()

    def show_history(self) -> None:
        """Show the journal's tasks (newest first) and their total cost in the History tab."""
        try:
            markup = boundary(_history_markup)(self._config)
        except SparkError as exc:  # said in the tab (a click has no cell to raise into)
            markup = error_markup(exc)
        self.history.outputs = (html_output(markup),)

    def wait(self, timeout: float | None = None) -> bool:
        """Join every form's running work.

        Args:
            timeout: Seconds to wait at most, for all the forms together (None: until they end).

        Returns:
            True when nothing is left running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        done = True
        for form in self.forms.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = form.wait(left) and done
        return done

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _history_markup(config: dict[str, Any]) -> str:
    from .._history import history

    return str(history(**config)._repr_html_())


def _tab_title(spec: ModelSpec) -> str:
    """A model's tab title: its alias (or id), short enough for a widget tab to show whole."""
    title = (spec.alias or spec.id).replace("_", " ").capitalize()
    return title if len(title) <= 16 else f"{title[:15]}…"

