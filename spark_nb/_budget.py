"""A spending limit checked before any upload or create: known spend, plus what running tasks and this one
are likely to cost, must stay within SPARK_NB_BUDGET_USD (or configure(budget_usd=...))."""

from __future__ import annotations

from ._config import Settings
from ._journal import Entry, JobState, Journal
from .errors import BudgetExceeded
from .models import ModelSpec

_OPEN = (JobState.SUBMITTING.value, JobState.SUBMITTED.value, JobState.UNCERTAIN.value)


def spent(entries: list[Entry]) -> float:
    """The sum of the known costs of these attempts."""
    return sum(e.cost for e in entries if e.state == JobState.COMPLETED and e.cost is not None)


def estimate(entries: list[Entry], model: str, input_seconds: float | None) -> float:
    """What a task of model is likely to cost: its last known cost per second of input times this input's
    seconds, else its last known cost, else 0 (nothing known yet)."""
    known = [e for e in entries if e.model == model and e.state == JobState.COMPLETED and e.cost is not None]
    for entry in known:  # newest first
        if input_seconds and entry.input_seconds:
            return entry.cost / entry.input_seconds * input_seconds  # type: ignore[operator]
    return known[0].cost if known else 0.0  # type: ignore[return-value]


def check_budget(journal: Journal, settings: Settings, spec: ModelSpec, input_seconds: float | None) -> None:
    """BudgetExceeded when spend + running tasks' estimates + this task's estimate would pass the budget."""
    if settings.budget_usd is None:
        return
    entries = journal.entries()
    spend = spent(entries)
    running = sum(estimate(entries, e.model, e.input_seconds) for e in entries if e.state in _OPEN)
    this = estimate(entries, spec.id, input_seconds)
    if spend + running + this > settings.budget_usd:
        raise BudgetExceeded(spend=spend, running=running, estimate=this, budget=settings.budget_usd)
