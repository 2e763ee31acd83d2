"""The spending limit (SPARK_NB_BUDGET_USD or configure(budget_usd=...)), decided inside the journal transaction
that claims the call, before any upload: known spend, plus what running tasks and this one are likely to cost,
must stay within it. Concurrent calls and batch rows see each other's claims, so the budget is passed by at
most one task's cost (the one whose estimate was low), whatever the concurrency.

Costs are known per service: per backend, base URL and model. A task is estimated from the newest known cost
of its model at its service: per second of input times this input's seconds, else that cost. A service that
costs nothing on one machine says nothing of another's price: the embedded local backend never bills, so its
tasks neither count, nor set or block an estimate, and a budget does not apply to it (`spark-nb serve` is a
service of its own, with its own base URL).

A service is its base URL in one spelling (`_urls.canonical_url`: `HTTP://Host:80/./` is `http://host`), also
for journal rows written before that; names are not resolved, so `localhost` and `127.0.0.1` are two services.

While a model's cost at a service is unknown (no completed task of it there with a cost), a task of it cannot be
estimated: one budgeted task of unknown cost (at its own service) runs at a time, whatever its model, until one has
finished with a cost there, and another such call raises CostUnknown at once, naming the task it waits for and the
line that finishes it (a batch waits for it by itself). Meanwhile that task, and the call, count at the model's
dearest known cost at any service (nothing when none is known). A create whose answer was lost (a task may exist,
billed) holds that turn until the model's cost is known, since it will never end with a cost: one call without the
budget makes the cost known, and the lost create then counts at it. A task that finished without the service
reporting a cost keeps the cost unknown: no further budgeted task of unknown cost is created (of any model), since
its spend could not be counted. A task of unknown cost starts only while something is left of the budget (a budget
of $0 pays for nothing). A completed task whose cost cannot be read (a damaged row, or one at another service)
counts at its model's estimate; never as the basis of one.

When the task a refusal names was submitted and then left (nobody waits for it: an idle kernel, a dead one),
`settle` asks the service once how it is; if it has ended, its end is recorded, so the call goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypedDict

from ._backends import api_client
from ._config import Settings
from ._journal import OPEN, Entry, JobState, Journal
from ._journal_faults import resume_line
from ._money import format_usd, total, usd
from ._task_state import TaskState, cost_of
from ._urls import canonical_url, is_http_url
from .errors import BudgetExceeded, CostUnknown, SparkError
from .models import ModelSpec, task_failure

SETTLE_READ_S = 10.0  # the one status read of a left task: at most this long (or what is left of the call's timeout)
Service = tuple[str, "str | None", str]  # (backend, base URL in one spelling, model): where a cost is known
_canonical = functools.lru_cache(maxsize=1024)(canonical_url)  # a budget check reads every row of the journal


class _Said(TypedDict):
    """What every CostUnknown of one check says: the model, the budget and what is spent and running."""

    model: str
    budget: Decimal
    spend: Decimal
    running: Decimal


def spent(entries: list[Entry]) -> Decimal:
    """The sum of the known costs of these attempts (US dollars)."""
    return total(e.cost for e in entries if e.state == JobState.COMPLETED)


def service_of(entry: Entry) -> Service:
    """Where entry's task ran, as costs are known: its backend, base URL (none for the local backend), model."""
    return _service(entry.backend, entry.base_url, entry.model)


def _service(backend: str, base_url: str | None, model: str) -> Service:
    """A service as costs are known: base URLs compared in one spelling (rows written before it was one too)."""
    return (backend, None if backend == "local" or base_url is None else _canonical(base_url), model)


@dataclasses.dataclass(frozen=True)
class _Known:
    """A model's newest known cost, and its newest cost per second of input (from a task that had both)."""

    cost: Decimal
    per_second: Decimal | None


def _known_costs(entries: list[Entry]) -> dict[Service, _Known]:
    """Per service, from the newest completed attempts with a readable cost (entries are newest first)."""
    known: dict[Service, _Known] = {}
    for e in entries:
        if e.state != JobState.COMPLETED or e.cost is None:
            continue
        seconds = usd(e.input_seconds)  # a plain decimal from the float, as money is
        rate = e.cost / seconds if seconds else None
        where = service_of(e)
        if where not in known:
            known[where] = _Known(e.cost, rate)
        elif known[where].per_second is None and rate is not None:
            known[where] = dataclasses.replace(known[where], per_second=rate)
    return known


def _estimate(known: dict[Service, _Known], where: Service, input_seconds: float | None) -> Decimal | None:
    basis = known.get(where)
    if basis is None:
        return None
    seconds = usd(input_seconds)
    return basis.per_second * seconds if seconds and basis.per_second is not None else basis.cost


def _at_most(known: dict[Service, _Known], entry: Entry) -> Decimal | None:
    """A task of unknown or unreadable cost: its service's estimate, else the dearest of its model anywhere."""
    own = _estimate(known, service_of(entry), entry.input_seconds)
    return own if own is not None else _dearest(known, entry.model, entry.input_seconds)


def _dearest(known: dict[Service, _Known], model: str, input_seconds: float | None) -> Decimal | None:
    """The highest estimate of a model's task at any service whose cost of it is known (None: known nowhere)."""
    values = [_estimate(known, where, input_seconds) for where in known if where[2] == model]
    return max((value for value in values if value is not None), default=None)


def budget_rule(settings: Settings, spec: ModelSpec, input_seconds: float | None
                ) -> Callable[[list[Entry]], None] | None:
    """The check the journal runs on every attempt while it claims this call (None without a budget, or on the
    local backend, which never bills)."""
    if settings.budget_usd is None or settings.backend == "local":
        return None
    return functools.partial(check, budget=settings.budget_usd, model=spec.id,
                             input_seconds=input_seconds, backend=settings.backend, base_url=settings.base_url)


def check(entries: list[Entry], *, budget: Decimal, model: str, input_seconds: float | None, backend: str = "cloud",
          base_url: str | None = None) -> None:
    """BudgetExceeded when spend + running tasks' estimates + this task's estimate would pass the budget;
    CostUnknown when model's cost at this service is unknown and a budgeted task of unknown cost is on its way
    (of this model at any service, or of any model whose cost is known nowhere), or one of this model finished here
    without a cost, or nothing is left of the budget for one."""
    billed = [e for e in entries if e.backend != "local"]
    known = _known_costs(billed)
    here = _service(backend, base_url, model)
    spend = spent(billed)
    costless = None  # a task that finished without a cost where its cost is unknown: its spend stays uncounted
    for e in billed:
        if e.state == JobState.COMPLETED and e.cost is None:
            value = _at_most(known, e)
            costless = costless or (e if service_of(e) not in known else None)
            spend += value or Decimal(0)
    running_entries = [e for e in billed if e.state in OPEN]
    running = total(_at_most(known, e) for e in running_entries)  # an unknown cost: the model's dearest known
    this = _estimate(known, here, input_seconds)
    if this is None:
        elsewhere = _dearest(known, model, input_seconds)
        said: dict[str, Any] = {"model": model, "budget": budget, "spend": spend, "running": running,
                                "service": here[1], "elsewhere": elsewhere}
        # one task of unknown cost (at its own service) on its way at a time, whatever its model and whatever its
        # model costs elsewhere: each counts at a guess until it ends
        blocking = next((e for e in running_entries
                         if (_on_its_way(e) or _may_be_billed(e)) and service_of(e) not in known), None)
        if blocking is not None:
            raise _cost_unknown(blocking, here, **said)
        if costless is not None:
            raise _never_priced(costless, **said)
        if spend + running >= budget:
            raise CostUnknown(blocking=f"nothing is left of the budget for one ({format_usd(spend)} spent, about "
                                       f"{format_usd(running)} running)", attempt="", creator_alive=False,
                              hint="raise the budget (SPARK_NB_BUDGET_USD or budget_usd=), or unset it", **said)
        this = elsewhere or Decimal(0)
    if spend + running + this > budget:
        raise BudgetExceeded(spend=spend, running=running, estimate=this, budget=budget)


def _on_its_way(entry: Entry) -> bool:
    """A task that will end with a cost once waited for: created, or being created by a live process. (A create
    whose answer was lost may be no task at all: it does not hold others back for ever.)"""
    return entry.state == JobState.SUBMITTED or (entry.state in (JobState.RESERVED, JobState.SUBMITTING)
                                                 and entry.creator_alive)


def _may_be_billed(entry: Entry) -> bool:
    """A create whose answer was lost: a task may exist, billed at a cost nobody will learn from this journal."""
    return entry.state == JobState.UNCERTAIN or (entry.state == JobState.SUBMITTING and not entry.creator_alive)


def _cost_unknown(entry: Entry, here: Service, *, model: str, **said: Any) -> CostUnknown:
    alive = entry.creator_alive
    if _may_be_billed(entry):  # it never ends with a cost: it holds the turn until the model's cost is known
        where = f" at {service_of(entry)[1]}" if service_of(entry) != here else ""
        return CostUnknown(
            model=model, blocking=f"a create of {entry.model}{where}, sent {entry.when}, lost its answer, so a task "
                                  "may exist, billed at a cost that cannot be counted", attempt=entry.attempt,
            creator_alive=False, hint=f"look for that task at the service (spark-nb history lists the attempt as "
                                      f"uncertain); to go on, make one call of {entry.model} without the budget "
                                      "(budget_usd=None, or unset SPARK_NB_BUDGET_USD) so its cost becomes known: "
                                      "the lost create then counts at that cost", **said)
    what = f"task {entry.task_id}" if entry.task_id else "a task being created"
    if service_of(entry) != here:
        what += f" at {service_of(entry)[1]}"
    blocking = f"{what}, started {entry.when}, is still running"
    unset = "or raise or unset the budget (SPARK_NB_BUDGET_USD)"
    if entry.task_id is None:
        hint = f"wait for it to finish (its call is under way), then call again (a batch waits by itself); {unset}"
    elif alive:
        hint = (f"wait for it to finish (in any kernel: {resume_line(entry.task_id, entry.model)}), then call again: "
                f"its cost then sets the estimate (a batch waits for it by itself); {unset}")
    else:
        hint = (f"the process that started it has ended: finish it with {resume_line(entry.task_id, entry.model)}, "
                f"then call again; {unset}")
    return CostUnknown(model=model, blocking=blocking, attempt=entry.attempt, creator_alive=alive, hint=hint, **said)


def _never_priced(entry: Entry, **said: Any) -> CostUnknown:
    """The refusal once a task finished without the service reporting its cost where its cost is unknown."""
    return CostUnknown(blocking=f"task {entry.task_id} ({entry.model} at {service_of(entry)[1] or entry.backend}), "
                                f"started {entry.when}, finished without the service reporting its cost, so what "
                                "it and the next one cost cannot be counted",
                       attempt=entry.attempt, creator_alive=False,
                       hint="this service does not say what a task costs: a budget cannot be kept with it. Unset "
                            "the budget (SPARK_NB_BUDGET_USD or budget_usd=None) to go on without one", **said)


def settle(error: CostUnknown, journal: Journal, settings: Settings) -> bool:
    """For a refusal naming a task that was submitted and never waited for: one status read of that task (within
    SETTLE_READ_S or the call's deadline), and, if it has ended, its end recorded (completed with its cost, or
    failed). True when something was recorded, so the budget is worth checking again."""
    entry = journal.attempt(error.attempt) if error.attempt else None
    if entry is None or entry.state != JobState.SUBMITTED or not entry.task_id:
        return False
    if service_of(entry)[:2] != _service(settings.backend, settings.base_url, entry.model)[:2]:
        return False  # a task at another service: this call's client (and key) may not ask there
    try:
        raw = api_client(settings).get_task(entry.task_id, deadline=time.monotonic() + SETTLE_READ_S)
    except SparkError:  # no answer now: the refusal stands, with the line that finishes the task
        return False
    state = TaskState.from_raw(raw, entry.task_id, entry.model)
    if state.done:
        url = state.content.get("url")
        journal.finished(entry.task_id, completed=True, cost=cost_of(raw.get("usage")),
                         seconds=state.announced_duration, result_url=url if is_http_url(url) else None)
    elif state.failed:
        failure = task_failure(raw.get("error"), entry.task_id, entry.model)
        journal.finished(entry.task_id, completed=False, error=failure.headline, code=failure.code,
                         retryable=failure.retryable)
    return state.done or state.failed
