"""The settings as the doctor reads them: a setting that cannot be read is that setting's finding, reported by its
own check, and the other checks go on with it set aside; only a key that cannot be used leaves them unread.

`_config.resolve` stops at the first setting it cannot read. The doctor asks it again with each readable-by-
construction stand-in (SUBSTITUTES) until it answers, and keeps, per setting, the error it raised: a bad
SPARK_NB_BUDGET_USD is the budget check's failure, a bad SPARK_NB_BACKEND the settings check's, never "fix the
key first".
"""

from __future__ import annotations

from typing import Any

from .._config import Settings, hide_key, resolve
from ..errors import SparkError

# option -> a value it can always be read as, tried in place of one that cannot be
SUBSTITUTES: dict[str, Any] = {
    "budget_usd": 0,
    "backend": "cloud",  # or "local" when no key is found: what an unset backend chooses
    "check_urls": True,
    "max_input_mb": 100,
    "max_input_seconds": 600,
}
# the environment variable each is read from, for the findings
VARIABLES = {"budget_usd": "SPARK_NB_BUDGET_USD", "backend": "SPARK_NB_BACKEND", "check_urls": "SPARK_NB_CHECK_URLS",
             "max_input_mb": "SPARK_NB_MAX_INPUT_MB", "max_input_seconds": "SPARK_NB_MAX_INPUT_SECONDS"}


def read_settings(config: dict[str, Any]) -> tuple[Settings | None, SparkError | None, dict[str, SparkError]]:
    """(the settings, with stand-ins for the unreadable ones; the error that left none (the key's), or None;
    option -> the error it raised, for each setting that cannot be read)."""
    problems: dict[str, SparkError] = {}
    stand_ins: dict[str, Any] = {}
    try:
        config = hide_key(dict(config))
    except SparkError as exc:  # api_key= itself
        return None, exc, problems
    for _ in range(len(SUBSTITUTES) + 1):
        try:
            settings = resolve(**{**config, **stand_ins})
        except SparkError as exc:
            culprit = _culprit(config, stand_ins, exc)
            if culprit is None:
                return None, exc, problems
            problems[culprit], stand_ins[culprit] = exc, SUBSTITUTES[culprit]
            continue
        if "backend" in stand_ins and settings.api_key is None:
            settings = resolve(**{**config, **stand_ins, "backend": "local"})
        return settings, None, problems
    raise AssertionError("unreachable: each pass sets one more setting aside")


def _culprit(config: dict[str, Any], stand_ins: dict[str, Any], exc: SparkError) -> str | None:
    """The setting exc is about: the first whose stand-in makes resolve() answer, or fail another way."""
    for option, value in SUBSTITUTES.items():
        if option in stand_ins:
            continue
        try:
            resolve(**{**config, **stand_ins, option: value})
        except SparkError as other:
            if other.headline == exc.headline:
                continue
        return option
    return None
