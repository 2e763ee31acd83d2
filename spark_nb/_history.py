"""history() and spend(): the journal's tasks for people (a table in Jupyter) and programs (a list, JSON)."""

from __future__ import annotations

import dataclasses
import datetime
import html
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._boundary import boundary
from ._config import hide_key, resolve
from ._journal import Entry, JobState, journal_at
from ._money import format_usd, total, usd_text
from ._text import inert
from .errors import ValidationError
from .models import MODELS, get_model

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Since = datetime.datetime | datetime.date | datetime.timedelta | str | float | int | None


DAMAGED = "damaged"  # the status of a journal row that could not all be read (see HistoryEntry.damaged)


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One task this machine created (or tried to), as the journal recorded it.

    A journal row that could not all be read has status "damaged", `damaged` saying what (and the state it
    recorded, if readable), and None for what could not be read (created_at among them).

    Attributes:
        task_id: the task id; None when no task was created (refused, or its create's answer lost).
        model: the model id.
        status: "reserved", "submitting", "submitted", "completed", "failed", "uncertain", ... or "damaged".
        cost: a decimal.Decimal of US dollars; None when unknown.
        created_at: when it was attempted (local time); None when unreadable.
        path: its video on disk, when it finished here.
        inputs: the names the user knows the inputs by (a file's name, an upload's), or their URLs.
        error: why it failed, when it did.
        damaged: what of its row could not be read, when something could not.
    """

    task_id: str | None
    model: str
    status: str
    cost: Decimal | None
    created_at: datetime.datetime | None
    path: Path | None
    inputs: list[str]
    error: str | None = None
    damaged: str | None = None

    @classmethod
    def of(cls, entry: Entry) -> HistoryEntry:
        """The public view of a journal entry.

        Args:
            entry: a row of the journal (spark_nb._journal.Entry).

        Returns:
            The HistoryEntry; its inputs' names made inert.
        """
        damaged = None
        if entry.damaged:
            recorded = "" if any(n.startswith("state ") for n in entry.damaged) else f" (recorded as {entry.state})"
            damaged = f"{'; '.join(entry.damaged)}{recorded}"
        return cls(task_id=entry.task_id, model=entry.model, status=DAMAGED if damaged else str(entry.state),
                   cost=entry.cost, inputs=[inert(item.get("name") or item.get("url") or "?", limit=120)
                                            for item in entry.inputs],
                   created_at=None if entry.attempted_at is None
                   else datetime.datetime.fromtimestamp(entry.attempted_at),
                   path=Path(entry.path) if entry.path else None, error=entry.error, damaged=damaged)

    @property
    def when(self) -> str:
        """created_at as "2026-12-01 14:03", or "?" when the journal's row has no readable time."""
        return "?" if self.created_at is None else self.created_at.strftime("%Y-%m-%d %H:%M")

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict.

        Returns:
            Its fields, created_at in ISO format, path as text, the cost as exact decimal text (e.g. "0.004").
        """
        data = dataclasses.asdict(self)
        data.update(created_at=None if self.created_at is None else self.created_at.isoformat(timespec="seconds"),
                    path=str(self.path) if self.path else None, cost=usd_text(self.cost))
        return data


class History(list[HistoryEntry]):
    """The journal's tasks, newest first; shows itself in Jupyter as a table with the videos and a total."""

    @property
    def total(self) -> Decimal:
        """The sum of the known costs, a decimal.Decimal of US dollars."""
        return total(e.cost for e in self)

    def _repr_html_(self) -> str:
        """A table as wide as its cell or form (long ids and names wrap), each video a small player loading from
        the notebook's folder (nothing embedded: a history of a hundred videos stays a small output)."""
        esc = html.escape
        rows = []
        for e in self:
            alias = MODELS[e.model].alias if e.model in MODELS and MODELS[e.model].alias else e.model
            task = e.task_id or "—"
            short = task if len(task) <= SHORT_ID else f"{task[:SHORT_ID]}…"
            rows.append(f"<tr><td>{_video_cell(e)}</td><td class='spark-nowrap' title='{esc(task, quote=True)}'>"
                        f"<code>{esc(short)}</code></td><td>{esc(alias or '')}</td><td>{_status_html(e)}</td>"
                        f"<td class='spark-nowrap'>{_money(e.cost)}</td><td class='spark-nowrap'>{esc(e.when)}</td>"
                        f"<td>{esc(', '.join(e.inputs))}</td></tr>")
        head = "".join(f"<th>{c}</th>" for c in ("video", "task", "model", "status", "cost", "when", "inputs"))
        total = (f"<tr class='spark-total'><td colspan='4'><b>{len(self)} task(s)</b></td>"
                 f"<td><b>{_money(self.total)}</b></td><td colspan='2'></td></tr>")
        return (f"<div class='spark-history-box' style='max-width:100%;overflow-x:auto'><style>{_CSS}</style>"
                f"<table class='spark-history'>{_COLUMNS}<thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}{total}</tbody></table></div>")


SHORT_ID = 12  # a task id shown this long (as its progress bar shows it; Task.from_id and spark-nb status take it)
_COLUMNS = ("<colgroup><col style='width:132px'><col style='width:11em'><col style='width:6em'>"
            "<col style='width:7em'><col style='width:5.5em'><col style='width:10.5em'><col></colgroup>")
# more specific than the notebook's own table rules (JupyterLab right-aligns cells); names and ids wrap anywhere
_CSS = ("table.spark-history{width:100%;table-layout:fixed;border-collapse:collapse;font-size:90%}"
        ".spark-history-box table.spark-history th,.spark-history-box table.spark-history td{text-align:left;"
        "vertical-align:top;padding:2px 6px;white-space:normal}"
        "table.spark-history td{overflow-wrap:anywhere}table.spark-history td.spark-nowrap{white-space:nowrap}"
        "table.spark-history video{width:120px;max-width:100%;display:block}")


def _video_cell(entry: HistoryEntry) -> str:
    """A small player for the entry's video when the notebook's folder holds it, else its name and where it is."""
    from .display import relative_src

    if entry.path is None or not entry.path.is_file():
        return "<i>no video</i>" if entry.status == JobState.COMPLETED else ""
    src = relative_src(entry.path)
    if src is not None:
        return f'<video src="{html.escape(src)}" controls playsinline preload="metadata"></video>'
    where = html.escape(inert(str(entry.path)), quote=True)
    return f"<span title='{where}'>{html.escape(inert(entry.path.name))}<br><small>(outside this folder)</small></span>"


@boundary
def history(*, model: str | None = None, since: Since = None, status: str | None = None, **config: Any) -> History:
    """The tasks this machine's journal knows, newest first; filter by model, since and status.

    It needs no key and sends nothing: a key store holding a malformed key does not stop it.

    Args:
        model: a model id or alias ("avatar"), or None for all.
        since: a datetime, a date, a timedelta back from now, an ISO date or time ("2026-12-01"), a duration ("24h",
            "7d"), or a POSIX timestamp; a row whose time is damaged (unknown) is always listed.
        status: a task state ("completed", "failed", "uncertain", ...), or "damaged".
        **config: home= (the journal's folder), as for configure().

    Returns:
        A History: a list of HistoryEntry that shows as a table in Jupyter, with `.total` (the known cost).

    Raises:
        ValidationError: an unknown model, a since that is not a time, a status that is not a task state.
        JournalError: the journal cannot be read.
        UsageError: an unknown option, or one of the wrong type.
    """
    settings = resolve(**hide_key(config))
    wanted = _state(status) if status else None
    entries = journal_at(settings.home).entries(model=get_model(model).id if model else None, since=since_ts(since),
                                                states=[wanted] if wanted not in (None, DAMAGED) else None)
    shown = (HistoryEntry.of(e) for e in entries)
    return History(e for e in shown if wanted is None or (e.status == DAMAGED) == (wanted == DAMAGED))


@boundary
def spend(since: Since = None, **config: Any) -> Decimal:
    """The sum of the known costs of the journal's tasks, in US dollars.

    Args:
        since: only tasks from then on, as for history().
        **config: home= (the journal's folder), as for configure().

    Returns:
        A decimal.Decimal of US dollars (Decimal("0.004"), never a float's approximation).

    Raises:
        ValidationError: a since that is not a time.
        JournalError: the journal cannot be read.
        UsageError: an unknown option, or one of the wrong type.
    """
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


def _money(cost: Decimal | None) -> str:
    return format_usd(cost)
