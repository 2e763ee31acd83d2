"""The spending limit (SPARK_NB_BUDGET_USD or configure(budget_usd=...)), decided inside the journal transaction
that claims the call, before any upload: known spend, plus what running tasks and this one are likely to cost,
must stay within it. Concurrent calls and batch rows see each other's claims, so the budget is passed by at
most one task's cost (the one whose estimate was low), whatever the concurrency.

A task is estimated from its model's newest known cost: per second of input times this input's seconds, else
that cost. While a model has no known cost (no completed task of it with a cost), a task of it cannot be
estimated: one budgeted task of that model runs at a time until one has finished with a cost, and another
call raises CostUnknown at once, naming the task it waits for (a batch waits for it by itself). A damaged row
whose cost cannot be read may still be a paid task: it counts at its model's estimate; a damaged cost is never
the basis of an estimate.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from decimal import Decimal

from ._config import Settings
from ._journal import OPEN, Entry, JobState
from ._journal_faults import resume_line
from ._money import total, usd
from .errors import BudgetExceeded, CostUnknown
from .models import ModelSpec


def spent(entries: list[Entry]) -> Decimal:
    """The sum of the known costs of these attempts (US dollars)."""
    return total(e.cost for e in entries if e.state == JobState.COMPLETED)


@dataclasses.dataclass(frozen=True)
class _Known:
    """A model's newest known cost, and its newest cost per second of input (from a task that had both)."""

    cost: Decimal
    per_second: Decimal | None


def _known_costs(entries: list[Entry]) -> dict[str, _Known]:
    """Per model, from the newest completed attempts with a readable cost (entries are newest first)."""
    known: dict[str, _Known] = {}
    for e in entries:
        if e.state != JobState.COMPLETED or e.cost is None:
            continue
        seconds = usd(e.input_seconds)  # a plain decimal from the float, as money is
        rate = e.cost / seconds if seconds else None
        if e.model not in known:
            known[e.model] = _Known(e.cost, rate)
        elif known[e.model].per_second is None and rate is not None:
            known[e.model] = dataclasses.replace(known[e.model], per_second=rate)
    return known


def estimate(entries: list[Entry], model: str, input_seconds: float | None) -> Decimal:
    """What a task of model is likely to cost: its last known cost per second of input times this input's
    seconds, else its last known cost, else 0 (nothing known yet)."""
    return _estimate(_known_costs(entries), model, input_seconds) or Decimal(0)


def _estimate(known: dict[str, _Known], model: str, input_seconds: float | None) -> Decimal | None:
    basis = known.get(model)
    if basis is None:
        return None
    seconds = usd(input_seconds)
    return basis.per_second * seconds if seconds and basis.per_second is not None else basis.cost


def budget_rule(settings: Settings, spec: ModelSpec, input_seconds: float | None
                ) -> Callable[[list[Entry]], None] | None:
    """The check the journal runs on every attempt while it claims this call (None without a budget)."""
    if settings.budget_usd is None:
        return None
    return functools.partial(check, budget=usd(settings.budget_usd) or Decimal(0), model=spec.id,
                             input_seconds=input_seconds)


def check(entries: list[Entry], *, budget: Decimal, model: str, input_seconds: float | None) -> None:
    """BudgetExceeded when spend + running tasks' estimates + this task's estimate would pass the budget;
    CostUnknown when model's cost is unknown and a budgeted task of it is already on its way."""
    known = _known_costs(entries)
    unpriced = [e for e in entries if e.state == JobState.COMPLETED and e.cost is None and _cost_damaged(e)]
    spend = spent(entries) + total(_estimate(known, e.model, e.input_seconds) for e in unpriced)
    running_entries = [e for e in entries if e.state in OPEN]
    running = total(_estimate(known, e.model, e.input_seconds) for e in running_entries)
    this = _estimate(known, model, input_seconds)
    if this is None:
        blocking = next((e for e in running_entries if e.model == model and _on_its_way(e)), None)
        if blocking is not None:
            raise _cost_unknown(blocking, model=model, budget=budget, spend=spend, running=running)
        this = Decimal(0)
    if spend + running + this > budget:
        raise BudgetExceeded(spend=spend, running=running, estimate=this, budget=budget)


def _cost_damaged(entry: Entry) -> bool:
    return any(note.startswith("cost ") for note in entry.damaged)


def _on_its_way(entry: Entry) -> bool:
    """A task that will end with a cost once waited for: created, or being created by a live process. (A create
    whose answer was lost may be no task at all: it does not hold others back for ever.)"""
    return entry.state == JobState.SUBMITTED or (entry.state in (JobState.RESERVED, JobState.SUBMITTING)
                                                 and entry.creator_alive)


def _cost_unknown(entry: Entry, *, model: str, budget: Decimal, spend: Decimal, running: Decimal) -> CostUnknown:
    alive = entry.creator_alive
    what = f"task {entry.task_id}" if entry.task_id else "a task being created"
    blocking = f"{what}, started {entry.when}, is still running"
    if alive:
        hint = ("wait for it to finish, then call again: its cost then sets the estimate (a batch waits for it "
                "by itself); or raise or unset the budget (SPARK_NB_BUDGET_USD)")
    else:
        hint = (f"the process that started it has ended: finish it with {resume_line(entry.task_id or '?', model)}, "
                "then call again; or raise or unset the budget (SPARK_NB_BUDGET_USD)")
    return CostUnknown(model=model, budget=budget, spend=spend, running=running, blocking=blocking,
                       attempt=entry.attempt, creator_alive=alive, hint=hint)
