"""What one answer about a task says, trusting none of its types: its state (TaskState: status, progress, the
result's content item, its announced size and duration) and its figures (as_number, the one reading of numbers
that arrive as strings; the cost it was billed, cost_of; the usage a Result keeps, usage_of), so Result.cost, the
journal and the budget agree."""

from __future__ import annotations

import dataclasses
import math
import re
from decimal import Decimal
from typing import Any

from ._money import usd, usd_text
from .errors import safe_text

DONE_STATUSES = frozenset({"completed", "success", "succeeded"})
FAILED_STATUSES = frozenset({"failed", "error", "cancelled", "canceled"})
STATUS_CHARS, MODEL_CHARS = 40, 100


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One reading of a task: status, progress (0..1 or None) and the raw task object.

    Attributes:
        id: the task id.
        model: the model id.
        status: "pending", "processing", "completed", "failed", ... as the service says it (made inert).
        progress: 0..1, or None when the service does not say.
        raw: the task object as the service answered it.
    """

    id: str
    model: str
    status: str
    progress: float | None
    raw: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: dict[str, Any], task_id: str, model: str) -> TaskState:
        """Read a task object as the protocol page describes it, trusting none of its types.

        The id is always the one we asked about: an answer naming another task (or a path) changes nothing.
        progress is a number or a string spelling one (as_number), clamped to 0..1 ("2.5" reads as 1.0, "-1" as
        0.0); anything else (NaN, "abc", a list) reads as None, i.e. unknown.

        Args:
            raw: the task object of a create or poll answer.
            task_id: the id asked about.
            model: the model id, when the answer does not name one.

        Returns:
            The state; a missing status reads as "pending".
        """
        progress = as_number(raw.get("progress"))
        status, answered_model = raw.get("status"), raw.get("model")
        answered_model = safe_text(answered_model, newlines=False, limit=MODEL_CHARS) \
            if isinstance(answered_model, str) else None
        status = safe_text(status.lower(), newlines=False, limit=STATUS_CHARS) if isinstance(status, str) else None
        return cls(  # the service's strings made inert: they reach progress bars, forms and the CLI as they are
            id=task_id,
            model=answered_model or model,
            status=status or "pending",
            progress=None if progress is None else min(1.0, max(0.0, progress)),
            raw=raw,
        )

    @property
    def content(self) -> dict[str, Any]:
        """The result's content item (output[0].content[0]) when the answer has one as an object, else {}."""
        try:
            item = self.raw["output"][0]["content"][0]
        except (KeyError, IndexError, TypeError):
            return {}
        return item if isinstance(item, dict) else {}

    @property
    def announced_size(self) -> int | None:
        """The video's size in bytes as the task announces it (`size`), or None when absent or not a size.

        Only a whole number of bytes above zero counts ("-5", "12.5", 0, "abc" are ignored): the download is then
        bounded by the result cap and checked by decoding instead of by its size.
        """
        size = as_number(self.content.get("size"))
        return int(size) if size is not None and size > 0 and size.is_integer() else None

    @property
    def announced_duration(self) -> float | None:
        """The video's length in seconds as the task announces it (`duration`, often a string), or None.

        For information only (Result.duration is measured on the file); None when absent, negative or not a number.
        """
        duration = as_number(self.content.get("duration"))
        return duration if duration is not None and duration >= 0 else None

    @property
    def done(self) -> bool:
        """True when the video is ready."""
        return self.status in DONE_STATUSES

    @property
    def failed(self) -> bool:
        """True when the task ended without a video."""
        return self.status in FAILED_STATUSES


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")


def as_number(value: Any) -> float | None:
    """A finite number from a JSON value: a number, or a string spelling one in JSON's way; else None.

    The one reading of "numbers that arrive as strings" (protocol page), for progress, created_at, size,
    duration and the usage figures. Booleans, NaN, infinities, "abc", "1_000", lists and objects are None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64 or not _NUMBER.fullmatch(text):
            return None
        value = float(text)
    if not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def cost_of(usage: Any) -> Decimal | None:
    """A task's cost as a decimal.Decimal amount of US dollars, or None when unknown.

    usage comes in two shapes: the seed pages' `{cost, discount, *_tokens, ...}` and the official client's
    `{cost, quantity, unit_price, extra_info}`; cost, quantity and unit_price may each be a number or a string,
    read as spelled (a string never goes through float: _money.usd). A cost that is present but unreadable or
    negative ("abc", "-1") is unknown, never guessed.
    """
    if not isinstance(usage, dict):
        return None
    if usage.get("cost") is not None:
        return usd(usage["cost"])
    # No cost but a quantity and a unit price: their product is what the task is billed by definition of a unit
    # price, so reporting it is honest. If the service also applied a discount it overstates the cost, which errs
    # on the safe side for the budget (spark_nb._budget adds up these figures).
    quantity, price = usd(usage.get("quantity")), usd(usage.get("unit_price"))
    if quantity is None or price is None:
        return None
    return usd(quantity * price)  # 1e9 units at 1e9 dollars is no cost either


def usage_of(usage: Any) -> dict[str, Any]:
    """A Result's usage: a copy of the task's `usage` object ({} when it is not one) whose `cost`, when there is
    one, is what cost_of reads, as decimal text (the service's own spelling when it sent a string).

    So Result.cost, the journal and the budget agree: a derived cost (quantity × unit_price) is filled in, and an
    unreadable one ("abc") is dropped rather than shown. The service's answer as sent stays in Result.raw.
    """
    if not isinstance(usage, dict):
        return {}
    cleaned = dict(usage)
    cost = cost_of(usage)
    if cost is None:
        cleaned.pop("cost", None)
    elif isinstance(usage.get("cost"), str):
        cleaned["cost"] = usage["cost"].strip()
    else:
        cleaned["cost"] = usd_text(cost)
    return cleaned


MAX_TASK_ID_CHARS = 200


def usable_task_id(task_id: str) -> bool:
    """Whether task_id can name a task: printable text (no control character, no undecodable byte) of at most
    MAX_TASK_ID_CHARS characters; what a create's answer and a user's task id must both be."""
    return len(task_id) <= MAX_TASK_ID_CHARS and task_id.isprintable()
