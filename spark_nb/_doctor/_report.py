"""The doctor's findings: one Check per question, and the Report of them all (text, a Jupyter table, JSON)."""

from __future__ import annotations

import dataclasses
import html
import json
from typing import Any, Literal

from ..errors import safe_text

Status = Literal["ok", "warn", "fail"]
_COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}


@dataclasses.dataclass(frozen=True)
class Check:
    """One finding: what was checked (name), ok / warn / fail, what was found (detail), and one line of fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        # any of it may quote a service, a file name or a URL: inert and redacted, whatever shows it
        for field in ("name", "detail", "fix"):
            object.__setattr__(self, field, safe_text(getattr(self, field), newlines=False, limit=600))

    def as_json(self) -> dict[str, str]:
        """{"name", "status", "detail", "fix"}."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a check function returns; the runner names it (see _doctor._checks)."""

    status: Status
    detail: str
    fix: str = ""


def ok(detail: str) -> Verdict:
    """All is well: detail says what was found."""
    return Verdict("ok", detail)


def warn(detail: str, fix: str = "") -> Verdict:
    """Works, but something may surprise: detail says what, fix what to do."""
    return Verdict("warn", detail, fix)


def fail(detail: str, fix: str) -> Verdict:
    """Calls will fail until fixed: detail says what is wrong, fix how to fix it."""
    return Verdict("fail", detail, fix)


class Report(list[Check]):
    """The doctor's checks in order; prints as text, shows as a table in Jupyter, `as_json()` for programs."""

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self if c.status == "fail"]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    def as_json(self) -> dict[str, Any]:
        """{"checks": [{"name", "status", "detail", "fix"}, ...]}."""
        return {"checks": [c.as_json() for c in self]}

    def to_json(self) -> str:
        """as_json() as indented JSON text."""
        return json.dumps(self.as_json(), indent=2)

    def __str__(self) -> str:
        width = max((len(c.name) for c in self), default=0)
        lines = []
        for c in self:
            lines.append(f"{c.status.upper() if c.status == 'fail' else c.status:4s}  {c.name:{width}s}  {c.detail}")
            if c.fix:
                lines.append(f"{'':4s}  {'':{width}s}  -> {c.fix}")
        counts = {s: sum(c.status == s for c in self) for s in ("ok", "warn", "fail")}
        lines.append(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><td style='color:{_COLOURS[c.status]};font-weight:bold'>{esc(c.status)}</td><td>{esc(c.name)}</td>"
            f"<td>{esc(c.detail)}</td><td>{esc(c.fix)}</td></tr>" for c in self)
        head = "".join(f"<th>{h}</th>" for h in ("status", "check", "found", "fix"))
        return (f"<table class='spark-doctor'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                f"<p>{esc(str(self).rpartition(chr(10))[2])}</p>")
