"""The secret values alive in this process, and the one redaction every message passes before it leaves.

Every `_config.Secret` remembers its value here when it is made. `redact` replaces each remembered value, and
anything sent as a bearer token, with asterisks; it is applied where text leaves spark_nb: an exception's
construction (`errors.SparkError`), warnings and notices, every log record of the `spark_nb` loggers, and every
string of every API answer (`_answers`). So a message that quotes a request (an echoed header, a refused header
value) cannot carry the key to a terminal, a log, the journal or a report, whichever path it takes.

A service echoing the key may have encoded it: JSON writes "/" as `\\/` (PHP) or "&" as `\\u0026` (Go), a URL
writes it percent-encoded, HTML as `&#38;`. A value is matched in any of these spellings, character by
character (mixed ones too), so decoding the text again cannot bring the key back.

Text is often cut to a length before it is shown (a message to 200 characters, a trace body to 4 KB). A key
that a cut went through is no longer the whole key, so every piece of a remembered value that starts like it
(its first PIECE_CHARS characters or more: what a cut leaves) is masked too, in any spelling: whatever was cut
before the redaction, at most PIECE_CHARS - 1 characters of a key can be left to read.
"""

from __future__ import annotations

import re
import threading
import traceback

MASK = "********"
# shorter values are not keys (the embedded server's placeholder is "local"): masking them would garble messages
MIN_SECRET_CHARS = 8
# the shortest start of a remembered value that is masked on its own (what a cut through the value leaves); a
# piece this long is the value's (a key's random part starts within its first few characters)
PIECE_CHARS = 12
# a value is matched in blocks of this many characters, each of which masks its own starts: a regular expression
# nests one group per character, and Python's compiler recurses on each
BLOCK_CHARS = 256
_BEARER = re.compile(r"(bearer\s+)[^\s\"',;]+", re.IGNORECASE)
# scheme://USER:PASSWORD@host, or a token alone (scheme://TOKEN@host): all of it, to the authority's last @
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s/?#]+@", re.IGNORECASE)
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def remember(value: str) -> None:
    """Make value one of the secrets redact() masks (in any of its encodings), for the rest of the process."""
    global _pattern
    if len(value) < MIN_SECRET_CHARS or value in _values:
        return
    with _lock:
        _values.add(value)
        longest_first = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(_starts(known[at:at + BLOCK_CHARS]) for known in longest_first
                                       for at in range(0, len(known), BLOCK_CHARS)
                                       if at == 0 or len(known) - at >= PIECE_CHARS))


def _starts(value: str) -> str:
    """A regular expression for value or any start of it at least PIECE_CHARS long, in any spelling: the first
    PIECE_CHARS characters, then nested optional groups (greedy: the longest start present is the match)."""
    head = min(len(value), PIECE_CHARS)
    tail = ""
    for char in reversed(value[head:]):
        tail = f"(?:{_spellings(char)}{tail})?"
    return "".join(_spellings(char) for char in value[:head]) + tail


def _spellings(char: str) -> str:
    """A regular expression for char as it is, or escaped by JSON (`\\/`, `\\u0026`), a URL (`%26`) or HTML."""
    code = ord(char)
    forms = [re.escape(char), rf"\\u{_hex(code, 4)}", rf"&#0*{code};", rf"&#[xX]0*{_hex(code, 0)};"]
    if code < 0x100:
        forms.append(f"%{_hex(code, 2)}")
    if not char.isalnum():  # `\/` and its kin; a letter after a backslash means something else (`\n`)
        forms.append(rf"\\{re.escape(char)}")
    if char == "&":
        forms.append("&amp;")
    return f"(?:{'|'.join(forms)})"


def _hex(code: int, width: int) -> str:
    """code in hexadecimal, width digits (0: as few as needed), each letter in either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{code:0{width}x}")


def redact(text: str) -> str:
    """text with every remembered secret (as it is, or encoded; whole, or cut after PIECE_CHARS or more of its
    characters), any bearer token, and any URL's user name and password or token (scheme://user:password@),
    replaced by asterisks."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _URL_USERINFO.sub(r"\1" + MASK + "@", _BEARER.sub(r"\1" + MASK, text))


class RedactedError(Exception):
    """Stands in, in an error's chain, for the links whose printed form held a secret: that form, redacted, and no
    frames (see scrub_chain)."""


def scrub_chain(error: BaseException) -> None:
    """Replace what error was raised from (or while handling) by a RedactedError when anything a traceback prints of
    it holds a secret: its text, notes, a SyntaxError's line, a group's members, any later link (e.g. httpx quoting
    an echoed Authorization header). The stand-in carries that printed form redacted and no frames, whose locals a
    verbose traceback would print."""
    suppress = error.__suppress_context__
    for attr in ("__cause__", "__context__"):
        linked = getattr(error, attr)
        if linked is None or isinstance(linked, RedactedError):
            continue
        try:
            printed: str | None = "".join(traceback.format_exception(linked))
        except Exception:  # a link that cannot be printed is not shown either
            printed = None
        if printed is not None and redact(printed) == printed:
            continue
        setattr(error, attr, RedactedError(
            "what this error was raised from, secrets masked and frames dropped:\n" + redact(printed or "")))
    error.__suppress_context__ = suppress  # setting __cause__ turns it on: keep what the raise said
