"""What a message tells its reader to change, in the words of the surface that shows it: code, the CLI or a form.

Messages are written once, in the words of Python callers ("pass reuse=False for a new take"). The CLI and the
forms have the same switches under their own names (`--no-reuse`; a form's "Reuse earlier results" box), so each
surface puts a message into its own words with `in_words_of`, from the one table `SWITCHES`, where it shows the
text: the forms' view (`spark_nb.widgets`), and the CLI's error line, warnings and notices (`speaking`).

A notice (`_notices.notify`) is shown by the surface of the call that made it: `notices_to` sends a thread's notices
to a sink of its own (a form's worker thread: the form's notes), `speaking` words the process's notices for a
surface (the CLI while it runs).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from typing import Literal

Surface = Literal["code", "cli", "form"]

# each switch as a message says it to Python callers -> its words on the other surfaces. Every spelling of reuse=,
# strict= or trim_audio= in the package's messages is a key here (tests/test_architecture.py checks the sources).
SWITCHES: dict[str, dict[Surface, str]] = {
    "pass reuse=False": {"cli": "pass --no-reuse", "form": "untick Reuse earlier results"},
    "pass strict=False": {"cli": "leave out --strict", "form": "untick Strict"},
    "pass trim_audio=False": {"cli": "pass --no-trim",
                              "form": "call generate(..., trim_audio=False) from code (a form always trims)"},
    "pass trim_audio=True": {"cli": "leave out --no-trim", "form": "let the form trim it (it always does)"},
    "(trim_audio=False)": {"cli": "(--no-trim)", "form": "(trim_audio=False, from code)"},
    "pass check_urls=False (or set SPARK_NB_CHECK_URLS=0)": {
        "cli": "set SPARK_NB_CHECK_URLS=0",
        "form": "make the form with check_urls=False (or set SPARK_NB_CHECK_URLS=0 where Jupyter starts)"},
    "or check_urls=False to send URLs unchecked": {
        "cli": "or set SPARK_NB_CHECK_URLS=0 to send URLs unchecked",
        "form": "or make the form with check_urls=False (or set SPARK_NB_CHECK_URLS=0) to send URLs unchecked"},
}
_SPELLINGS = re.compile("|".join(re.escape(said) for said in sorted(SWITCHES, key=len, reverse=True)))

_process: list[Surface] = ["code"]  # the surface of this process's notices: the innermost `speaking`
_thread = threading.local()  # .sink: where this thread's notices go instead (a form's notes)


def in_words_of(text: str, surface: Surface) -> str:
    """text with every switch it names (see SWITCHES) in surface's words; unchanged for code."""
    if surface == "code":
        return text
    return _SPELLINGS.sub(lambda said: SWITCHES[said.group(0)][surface], text)


def words(switch: str, surface: Surface) -> str:
    """One switch of SWITCHES in surface's words (its own key for code)."""
    return switch if surface == "code" else SWITCHES[switch][surface]


@contextlib.contextmanager
def speaking(surface: Surface) -> Iterator[None]:
    """While the block runs, this process's notices are worded for surface (the CLI's main)."""
    _process.append(surface)
    try:
        yield
    finally:
        _process.pop()


@contextlib.contextmanager
def notices_to(sink: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, this thread's notices go to sink (as code words them), not to the screen."""
    before = getattr(_thread, "sink", None)
    _thread.sink = sink
    try:
        yield
    finally:
        _thread.sink = before


def take_notice(text: str) -> str | None:
    """None when this thread's sink took the notice text; else text as the process's surface words it."""
    sink: Callable[[str], None] | None = getattr(_thread, "sink", None)
    if sink is not None:
        sink(text)
        return None
    return in_words_of(text, _process[-1])
