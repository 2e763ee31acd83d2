"""What spark_nb tells its user besides errors and results: a one-line notice (a grey line in Jupyter, a stderr
line elsewhere), each at most once per process, said where a call starts (`begin`), never while settings are read."""

from __future__ import annotations

import html
import sys
import threading

from . import _surfaces
from ._config import Settings, unusable_key
from .errors import safe_text

_lock = threading.Lock()
_shown: set[str] = set()  # each notice once per process


def begin(settings: Settings) -> Settings:
    """Where a call starts (submit, Task.from_id, a form's Generate, run_batch; the CLI through them): refuse a key
    it would need but cannot use, then show the settings' notices, each once per process; returns settings."""
    problem = unusable_key(settings)
    if problem is not None:
        raise problem
    for text in settings.notices:
        notice_once(text)
    return settings


def notice_once(text: str) -> None:
    """notify(text), unless this process has already shown that very text."""
    with _lock:
        if text in _shown:
            return
        _shown.add(text)
    notify(text)


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel); IPython is not imported to find out."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def notify(text: str) -> None:
    """Show a one-line notice: a small grey info line in a Jupyter notebook, one plain stderr line elsewhere.

    The text is made safe first (inert, one line, redacted): it may quote a service's words or a file's name. It
    goes to the surface of the call that made it (`_surfaces.take_notice`: a form's notes; the CLI's words)."""
    shown = _surfaces.take_notice(safe_text(text, newlines=False))
    if shown is None:
        return
    text = shown
    if in_jupyter_kernel():
        try:
            from IPython.display import display

            markup = f'<div style="color: #777; font-size: 0.85em; line-height: 1.4">{html.escape(text)}</div>'
            display({"text/plain": text, "text/html": markup}, raw=True)  # type: ignore[no-untyped-call]  # IPython's
            return
        except Exception:  # no display machinery after all: the plain line below
            pass
    print(text, file=sys.stderr)
