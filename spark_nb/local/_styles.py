"""How the local server shapes its task objects: the seed pages' shape, or a variant the official client's types know.

Combine variants with commas ("content,usage,strings"), so a client can be tested against each over the real wire.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import UsageError
from ._records import TaskRecord

# How task objects may be shaped (protocol page, "Task object"): the seed pages' shape, or the variants the official
# client's own types know, so a client can be tested against each over the real wire. Combine them with commas.
ANSWER_STYLES = {
    "seed": "the seed pages' task object (the default)",
    "content": "the content item with duration (a string), id and img_id, without size and jobId",
    "usage": "usage as {cost (a number), quantity, unit_price, extra_info}",
    "priced": "usage as {quantity, unit_price, extra_info}, without cost",
    "strings": "numbers as strings: progress, created_at, size, duration, the usage figures",
    "error-string": "a failed task's error as a plain string",
    "error-number": "a failed task's error code as a number",
    "error-message": "a failed task's error text under message instead of error_message",
}


def answer_styles(spec: str | None) -> frozenset[str]:
    """The styles a comma list names ("content,usage,strings"; "seed" or nothing: none); UsageError if unknown."""
    names = frozenset(filter(None, (part.strip() for part in (spec or "").split(","))))
    if unknown := sorted(names - ANSWER_STYLES.keys()):
        raise UsageError(f"unknown answer style {', '.join(unknown)}; known: {', '.join(ANSWER_STYLES)}")
    if {"usage", "priced"} <= names or len({name for name in names if name.startswith("error-")}) > 1:
        raise UsageError(f"answer styles {spec!r} contradict each other (one usage shape, one error shape)")
    return names - {"seed"}


def restyle(answer: dict[str, Any], styles: frozenset[str], record: TaskRecord | None = None) -> dict[str, Any]:
    """The seed-shaped task object answer (or create refusal) in the given ANSWER_STYLES; answer is not changed."""
    if not styles:
        return answer
    answer = copy.deepcopy(answer)
    content = answer["output"][0]["content"][0] if "output" in answer else None
    if content is not None and record is not None and "content" in styles:
        content.pop("size", None)
        content.pop("jobId", None)
        content.update(duration=f"{record.seconds:.3f}", id=f"local-{record.id}", img_id="")
    if "usage" in answer and record is not None and styles & {"usage", "priced"}:
        quantity, price = round(record.seconds, 3), record.cost_per_second
        usage: dict[str, Any] = {"quantity": quantity, "unit_price": price, "extra_info": {"unit": "second"}}
        answer["usage"] = {"cost": round(quantity * price, 6), **usage} if "usage" in styles else usage
    error = answer.get("error")
    if isinstance(error, dict):
        code, text = error.get("code"), error.get("error_message")
        if "error-string" in styles:
            answer["error"] = text
        elif "error-number" in styles and isinstance(code, str) and code.isdigit():
            answer["error"] = {"code": int(code), "error_message": text}
        elif "error-message" in styles:
            answer["error"] = {"code": code, "message": text}
    if "strings" in styles:
        for obj, keys in ((answer, ("progress", "created_at")), (content or {}, ("size", "duration")),
                          (answer.get("usage") or {}, ("cost", "quantity", "unit_price"))):
            for key in keys:
                if isinstance(obj.get(key), (int, float)) and not isinstance(obj.get(key), bool):
                    obj[key] = str(obj[key])
    return answer
