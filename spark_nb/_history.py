"""history() and spend(): the journal's tasks for people (a table in Jupyter) and programs (a list, JSON)."""

from __future__ import annotations

import dataclasses
import datetime
import html
import re
from pathlib import Path
from typing import Any

from ._boundary import boundary
from ._config import hide_key, resolve
from ._journal import Entry, JobState, journal_at
from .errors import ValidationError
from .models import MODELS, get_model

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Since = datetime.datetime | datetime.date | datetime.timedelta | str | float | int | None


DAMAGED = "damaged"  # the status of a journal row that could not all be read (see HistoryEntry.damaged)


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One task this machine created (or tried to): its id, model, status, cost in USD, when, video and inputs.

    A journal row that could not all be read has status "damaged", `damaged` saying what (and the state it
    recorded, if readable), and None for what could not be read (created_at among them).
    """

    task_id: str | None
    model: str
    status: str
    cost: float | None
    created_at: datetime.datetime | None
    path: Path | None
    inputs: list[str]
    error: str | None = None
    damaged: str | None = None

    @classmethod
    def of(cls, entry: Entry) -> "HistoryEntry":
        """The public view of a journal entry."""
        damaged = None
        if entry.damaged:
            recorded = "" if any(n.startswith("state ") for n in entry.damaged) else f" (recorded as {entry.state})"
            damaged = f"{'; '.join(entry.damaged)}{recorded}"
        return cls(task_id=entry.task_id, model=entry.model, status=DAMAGED if damaged else str(entry.state),
                   cost=entry.cost, inputs=[str(item.get("name") or item.get("url") or "?") for item in entry.inputs],
                   created_at=None if entry.attempted_at is None
                   else datetime.datetime.fromtimestamp(entry.attempted_at),
                   path=Path(entry.path) if entry.path else None, error=entry.error, damaged=damaged)

    @property
    def when(self) -> str:
        """created_at as "2026-12-01 14:03", or "?" when the journal's row has no readable time."""
        return "?" if self.created_at is None else self.created_at.strftime("%Y-%m-%d %H:%M")

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = dataclasses.asdict(self)
        data.update(created_at=None if self.created_at is None else self.created_at.isoformat(timespec="seconds"),
                    path=str(self.path) if self.path else None)
        return data


class History(list[HistoryEntry]):
    """The journal's tasks, newest first; shows itself in Jupyter as a table with the videos and a total."""

    @property
    def total(self) -> float:
        """The sum of the known costs."""
        return sum(e.cost for e in self if e.cost is not None)

    def _repr_html_(self) -> str:
        from .display import video_html

        esc = html.escape
        rows = []
        for e in self:
            video = (video_html(e.path, width=160) if e.path is not None and e.path.is_file()
                     else "<i>no video</i>" if e.status == JobState.COMPLETED else "")
            alias = MODELS[e.model].alias if e.model in MODELS and MODELS[e.model].alias else e.model
            rows.append(f"<tr><td>{video}</td><td><code>{esc(e.task_id or '—')}</code></td><td>{esc(alias or '')}"
                        f"</td><td>{_status_html(e)}</td><td>{_money(e.cost)}</td>"
                        f"<td>{esc(e.when)}</td>"
                        f"<td>{esc(', '.join(e.inputs))}</td></tr>")
        head = "".join(f"<th>{c}</th>" for c in ("video", "task", "model", "status", "cost", "when", "inputs"))
        total = (f"<tr class='spark-total'><td colspan='4'><b>{len(self)} task(s)</b></td>"
                 f"<td><b>{_money(self.total)}</b></td><td colspan='2'></td></tr>")
        return (f"<table class='spark-history'><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}{total}</tbody></table>")


@boundary
def history(*, model: str | None = None, since: Since = None, status: str | None = None, **config: Any) -> History:
    """The tasks this machine's journal knows, newest first; filter by model (id or alias), since and status.

    since is a datetime, a date, a timedelta back from now, an ISO date or time ("2026-12-01"), a duration
    ("24h", "7d"), or a POSIX timestamp; a row whose time is damaged (unknown) is always listed. status is a
    task state, or "damaged". config: home=, as for configure().
    """
    settings = resolve(**hide_key(config))
    wanted = _state(status) if status else None
    entries = journal_at(settings.home).entries(model=get_model(model).id if model else None, since=since_ts(since),
                                                states=[wanted] if wanted not in (None, DAMAGED) else None)
    shown = (HistoryEntry.of(e) for e in entries)
    return History(e for e in shown if wanted is None or (e.status == DAMAGED) == (wanted == DAMAGED))


@boundary
def spend(since: Since = None, **config: Any) -> float:
    """The sum of the known costs of the journal's tasks (since, as for history()), in US dollars."""
    return history(since=since, **config).total


def since_ts(since: Since) -> float | None:
    """since as a POSIX timestamp (see history()); ValidationError when it is none of the accepted forms."""
    if since is None:
        return None
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    if isinstance(since, datetime.timedelta):
        return (datetime.datetime.now() - since).timestamp()
    if isinstance(since, datetime.datetime):
        return since.timestamp()
    if isinstance(since, datetime.date):
        return datetime.datetime.combine(since, datetime.time()).timestamp()
    if isinstance(since, str):
        if match := _DURATION.match(since):
            return datetime.datetime.now().timestamp() - float(match.group(1)) * _SECONDS[match.group(2)]
        try:
            return datetime.datetime.fromisoformat(since.strip()).timestamp()
        except ValueError:
            pass
    raise ValidationError(f"since={str(since)[:60]!r} is not a time", reason="invalid_since",
                          hint='give a date ("2026-12-01"), a duration ("24h", "7d") or a datetime')


def _state(status: str) -> str:
    if str(status).lower() == DAMAGED:
        return DAMAGED
    try:
        return JobState(str(status).lower()).value
    except ValueError:
        raise ValidationError(f"status={str(status)[:40]!r} is not a task status", reason="invalid_status",
                              hint=f"use one of {', '.join(s.value for s in JobState)}, {DAMAGED}") from None


def _status_html(entry: HistoryEntry) -> str:
    if entry.damaged is None:
        return html.escape(entry.status)
    return f"<span class='spark-damaged' title='{html.escape(entry.damaged, quote=True)}'>{DAMAGED}</span>"


def _money(cost: float | None) -> str:
    return "?" if cost is None else f"${cost:.2f}"
