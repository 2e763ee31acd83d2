"""Text from elsewhere made inert before a person or a program reads it: one rule per destination.

Service messages, task ids, file names and manifest cells come from peers and users. `inert` is what a terminal,
a widget, an exception or a log line may show of them (no escape sequences, no control or invisible formatting
characters, one line); `csv_cell` is what a spreadsheet may read (inert, and never a formula). HTML and
notebooks escape with `html.escape` on top of `inert`.
"""

from __future__ import annotations

import re
import unicodedata

# Escape sequences are removed whole, not just their ESC: CSI (erase the line, move, colour), the string
# sequences OSC (window title, clipboard), DCS, SOS, PM and APC up to their terminator, any other ESC
# sequence, and the 8-bit C1 forms of each.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# what makes a spreadsheet evaluate a cell (OWASP's list, and the full-width forms some spreadsheets accept)
_FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
ELLIPSIS = "…"


def inert(text: object, *, limit: int | None = None, newlines: bool = False) -> str:
    """str(text) safe to show: escape sequences and control or invisible formatting characters removed, line
    breaks and tabs as spaces (kept as "\\n" with newlines=True), cut to limit characters with an ellipsis."""
    shown = str(text)
    if not shown.isprintable():
        shown = "".join(_printable(char, newlines) for char in _ESCAPES.sub("", shown))
    if limit is not None and len(shown) > limit:
        shown = shown[: max(0, limit - 1)] + ELLIPSIS
    return shown


def _printable(char: str, newlines: bool) -> str:
    if char.isprintable():
        return char
    if char in _LINE_BREAKS:
        return "\n" if newlines else " "
    if char == "\t" or unicodedata.category(char) == "Zs":  # a tab, or a space other than " " (no-break, thin...)
        return " "
    return ""  # other controls, bidi overrides, zero-width and private-use characters, surrogates, unassigned


def file_name_to_send(name: str) -> str:
    """A local file's name as a request may carry it (a multipart upload's filename, an object key): printable
    UTF-8, its suffix kept. Bytes of the name that are not UTF-8 (an old archive's `face\xff.jpg`, which Python
    holds as lone surrogates) become "_", controls and line breaks go; an empty result is "upload"."""
    fixed = "".join("_" if 0xD800 <= ord(char) <= 0xDFFF else char for char in name)
    return inert(fixed).strip() or "upload"


def csv_cell(value: object) -> object:
    """value as a CSV cell a spreadsheet shows and never evaluates: numbers as they are, None as empty, text inert
    and, when it starts like a formula (=, +, -, @, a tab or CR, maybe after spaces), behind a quote mark."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raw = str(value)
    text = inert(raw)
    if raw.lstrip(" ")[:1] in _FORMULA_STARTS or text.lstrip(" ")[:1] in _FORMULA_STARTS:
        return "'" + text
    return text
