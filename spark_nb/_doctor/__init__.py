"""spark-nb doctor: before the first paid call, everything that can be checked for free, in the order a person
would debug it; nothing is created, and the key is never shown.

`doctor(**config)` returns a Report (a table in Jupyter, text in a terminal, `as_json()`); `spark-nb doctor
[--json]` prints it and exits non-zero when a check failed. The checks are listed in `_checks.checks()`.
"""

from __future__ import annotations

from typing import Any

from .._boundary import boundary
from ._checks import checks, run
from ._context import Context
from ._report import Check, Report, Verdict, fail, ok, warn


@boundary
def doctor(**config: Any) -> Report:
    """Check the key, the service, each model's published spec, uploads, ffmpeg, the journal and the budget."""
    return run(Context.make(config))


__all__ = ["Check", "Context", "Report", "Verdict", "checks", "doctor", "fail", "ok", "warn"]
