"""A model's parameters as Vtrix publishes them (its spec), derived from the ModelSpec, and read back to compare.

`published(spec, endpoint)` is the `data` of the spec the local server serves for a ModelSpec: its wire names, the
nesting of its groups, every parameter required, the constants' one allowed value. `parameters(data)` reads any
published spec (ours or the service's) into flat `Param`s by dotted path: the inverse of `published`, so that
`differences(spec, published(spec, ...))` is empty by construction, and a difference with the service's spec is
a change on the service's side, named parameter by parameter. `value_problems` checks the values of one call
against the published constraints, as the official client does before it sends.

`judge` is the one verdict the create guard (`_specs_service.guard`) and the doctor both take: the blocking
differences and the refused values of a call. A spec it cannot judge (of another model, unreadable, or one whose
comparison fails in any way: a 400-digit `min_length`) is `SpecUnreadable`, never another exception: a spec is
the service's word, and a hostile or broken one is no reason to refuse a call or to crash.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Mapping
from typing import Any

from .errors import safe_text
from .models import ModelSpec

logger = logging.getLogger("spark_nb.specs")
MAX_PARAMETERS = 500  # a spec lists a handful; more is not a spec this reader trusts
NUMERIC_RULES = ("min", "max", "min_length", "max_length", "max_items")
MAX_RULE = 1e12  # a numeric constraint beyond this is no constraint a service means: not judged
# the official client's type names (string / int / float / boolean / array, object with children), and a few
# more a spec may use for a URL; a type not listed here is shown, never judged
_KINDS = {
    "string": "string", "str": "string", "text": "string", "url": "string", "uri": "string", "file": "string",
    "image": "string", "audio": "string", "video": "string",
    "integer": "integer", "int": "integer", "float": "number", "number": "number", "double": "number",
    "boolean": "boolean", "bool": "boolean", "object": "object", "dict": "object", "map": "object",
    "array": "array", "list": "array",
}
_ARTICLES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
             "object": "an object", "array": "an array"}


class SpecUnreadable(ValueError):
    """A published spec whose parameters cannot be read (no list, an item without a name, far too many)."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One published parameter: its dotted path, kind (None: a type this reader does not know), whether it is
    required, its constraints, and its type as written."""

    path: str
    kind: str | None
    required: bool
    constraints: Mapping[str, Any]
    declared: str = ""

    @property
    def parent(self) -> str:
        """The path of the object holding it ("" at the top)."""
        return self.path.rpartition(".")[0]

    @property
    def enum(self) -> list[str] | None:
        """The allowed values, as strings (the official client reads them so), or None."""
        values = self.constraints.get("enum")
        return [str(v) for v in values] if isinstance(values, list) and values else None


@dataclasses.dataclass(frozen=True)
class Difference:
    """What differs between the service's spec and what spark-nb sends; blocking: the service would refuse it."""

    text: str
    blocking: bool


# -- ModelSpec -> a published spec ---------------------------------------------------------------------------


def published(spec: ModelSpec, endpoint: str) -> dict[str, Any]:
    """The spec's `data` for spec, as Vtrix's spec service answers it, with endpoint as its create URL."""
    return {"model_id": spec.id, "name": spec.title, "vendor": "Vtrix", "type": "video", "agent_prompt": "",
            "api": {"endpoint": endpoint, "method": "POST", "headers": {"Content-Type": "application/json"}},
            "parameters": _tree(spec)}


def _tree(spec: ModelSpec) -> list[dict[str, Any]]:
    """The parameters of spec as a tree: its fields' URLs (strings) and constants, inside their groups (objects)."""
    roots: list[dict[str, Any]] = []
    nodes: dict[str, dict[str, Any]] = {}

    def node(path: str, **attrs: Any) -> dict[str, Any]:
        if path not in nodes:
            parent, _, name = path.rpartition(".")
            siblings = node(parent, type="object", description=f"the object holding {name}").setdefault(
                "children", []) if parent else roots
            nodes[path] = {"name": name, "path": path, "required": True, "constraints": {}, **attrs}
            siblings.append(nodes[path])
        return nodes[path]

    for field in spec.fields:
        node(field.wire, type="string", description=f"{field.label}: an http(s) URL the service fetches")
    for constant in spec.constants:
        node(constant.path, type=_type_of(constant.value), description="a fixed value spark-nb sets",
             constraints={"enum": [str(constant.value)], "default": constant.value})
    return roots


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number"}.get(type(value), "string")


# -- a published spec -> Params --------------------------------------------------------------------------------


def parameters(data: Any) -> dict[str, Param]:
    """Every parameter of a published spec's data by dotted path, parents before children, in their order;
    SpecUnreadable when it has no parameter list or an item this reader cannot use."""
    items = data.get("parameters") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise SpecUnreadable("it has no parameter list")
    found: dict[str, Param] = {}
    queue: list[tuple[list[Any], str]] = [(items, "")]
    while queue:
        level, parent = queue.pop(0)
        for item in level:
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not name.strip():
                raise SpecUnreadable("a parameter has no name")
            if len(found) >= MAX_PARAMETERS:
                raise SpecUnreadable(f"it lists more than {MAX_PARAMETERS} parameters")
            path = f"{parent}.{name}" if parent else name
            children = item.get("children")
            nested = isinstance(children, list) and bool(children)
            declared = str(item.get("type") or "")
            found[path] = Param(path, _kind(declared, nested), item.get("required") in (True, "true"),
                                _constraints(item.get("constraints")), declared)
            if nested:
                queue.append((children, path))
    return found


def _kind(declared: str, nested: bool) -> str | None:
    """The kind a declared type names ("string[]", "array<string>" and "list[str]" are arrays, whatever their
    children); a type not known with children is an object, without them None (shown, never judged)."""
    word = declared.strip().lower()
    if word.endswith("[]"):
        return "array"
    known = _KINDS.get(word.split("[")[0].split("<")[0].strip())
    return known or ("object" if nested else None)


def _constraints(raw: Any) -> dict[str, Any]:
    """A parameter's constraints, the numeric ones kept only when they are finite numbers of a sane size."""
    if not isinstance(raw, Mapping):
        return {}
    return {str(name): value for name, value in raw.items() if name not in NUMERIC_RULES or _sane_number(value)}


def _sane_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and abs(value) <= MAX_RULE
    except OverflowError:  # an integer too large for a float
        return False


# -- the comparison ---------------------------------------------------------------------------------------------


def differences(spec: ModelSpec, data: Any) -> list[Difference]:
    """What differs between the service's published spec (data) and the params spark-nb sends for spec; blocking
    ones first. SpecUnreadable when data's parameters cannot be read."""
    ours, theirs = parameters(published(spec, "")), parameters(data)
    found: list[Difference] = []
    covered: set[str] = set()  # paths a difference already speaks for (with everything inside them)
    for path, mine in ours.items():
        if path in theirs and not _under(path, covered):
            found.extend(changed := _compare(mine, theirs[path]))
            covered.update(path for d in changed if d.blocking)
    gone = [p for p in ours.values() if p.path not in theirs and not _under(p.path, covered)]
    new = [p for p in theirs.values() if p.path not in ours and not _under(p.path, covered)]
    for old, renamed in _renames(gone, new):
        found.append(Difference(f"the service now names {_name(renamed.path)} what spark-nb sends as "
                                f"{_name(old.path)}", True))
        covered.update((old.path, renamed.path))
    for param in gone:
        if param.path not in covered and not _under(param.path, covered):
            found.append(Difference(f"the service no longer lists {_name(param.path)}, which spark-nb sends", True))
            covered.add(param.path)
    for param in new:
        if param.path in covered or _under(param.path, covered):
            continue
        covered.add(param.path)
        if param.required and "default" not in param.constraints:
            found.append(Difference(f"the service requires {_name(param.path)}, which spark-nb does not send", True))
        else:
            found.append(Difference(f"the service also takes {_name(param.path)} (optional; spark-nb does not send "
                                    "it)", False))
    return sorted(found, key=lambda d: not d.blocking)


def _compare(mine: Param, theirs: Param) -> list[Difference]:
    """How one parameter spark-nb sends differs from the service's: its kind, its allowed values."""
    if theirs.kind is None:
        return [Difference(f"the service declares {_name(theirs.path)} as type {_type(theirs)!r}, "
                           "which spark-nb does not know", False)]
    if theirs.kind != mine.kind and {theirs.kind, mine.kind} != {"integer", "number"}:
        return [Difference(f"the service takes {_name(mine.path)} as {_ARTICLES[theirs.kind]} (type "
                           f"{_type(theirs)!r}); spark-nb sends "
                           f"{_ARTICLES[mine.kind or 'string']}", True)]
    sent = mine.enum
    if sent and theirs.enum and not set(sent) <= set(theirs.enum):
        allowed = ", ".join(safe_text(v, newlines=False, limit=20) for v in theirs.enum[:10])
        return [Difference(f"the service takes {_name(mine.path)} only as {allowed}; spark-nb sends "
                           f"{', '.join(sent)}", True)]
    return []


def _renames(gone: list[Param], new: list[Param]) -> list[tuple[Param, Param]]:
    """Pairs (what spark-nb sends, what the service lists instead) in the same object and of a compatible kind:
    the closest names first; a lone pair left in an object is a rename whatever the names."""
    pairs: list[tuple[Param, Param]] = []
    left = list(new)
    for old in gone:
        candidates = [p for p in left if p.parent == old.parent and p.kind in (old.kind, None)]
        names = [p.path.rpartition(".")[2] for p in candidates]
        close = difflib.get_close_matches(old.path.rpartition(".")[2], names, n=1, cutoff=0.5)
        lone = len(candidates) == 1 and sum(g.parent == old.parent for g in gone) == 1
        if close or lone:
            match = candidates[names.index(close[0])] if close else candidates[0]
            pairs.append((old, match))
            left.remove(match)
    return pairs


def _under(path: str, paths: set[str]) -> bool:
    return any(path.startswith(f"{p}.") for p in paths)


def _type(param: Param) -> str:
    return safe_text(param.declared, newlines=False, limit=40)


def _name(path: str) -> str:
    return f"`{safe_text(path, newlines=False, limit=80)}`"


# -- one call's values -----------------------------------------------------------------------------------------


def value_problems(theirs: Mapping[str, Param], params: Mapping[str, Any]) -> list[str]:
    """What in params breaks the published constraints (enum, min, max, min_length, max_length, max_items)."""
    problems = []
    for path, param in theirs.items():
        value: Any = params
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None and (problem := _breaks(param, value)):
            problems.append(f"{_name(path)} {problem}")
    return problems


def _breaks(param: Param, value: Any) -> str | None:
    """How value breaks param's constraints, or None (a constraint that is not a number is not judged)."""
    rules = param.constraints
    if param.enum and not isinstance(value, (dict, list)) and str(value) not in param.enum:
        return f"must be one of {', '.join(safe_text(v, newlines=False, limit=20) for v in param.enum[:10])}"
    limits: dict[str, float] = {name: rules[name] for name in NUMERIC_RULES if _sane_number(rules.get(name))}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and "min" in limits and value < limits["min"]:
        return f"is below the minimum {limits['min']:g}"
    if number and "max" in limits and value > limits["max"]:
        return f"is above the maximum {limits['max']:g}"
    if isinstance(value, str) and "min_length" in limits and len(value) < limits["min_length"]:
        return f"is shorter than {limits['min_length']:g} characters"
    if isinstance(value, str) and "max_length" in limits and len(value) > limits["max_length"]:
        return f"is {len(value)} characters, over the service's {limits['max_length']:g}"
    if isinstance(value, list) and "max_items" in limits and len(value) > limits["max_items"]:
        return f"has more than {limits['max_items']:g} items"
    return None


# -- the verdict ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What a published spec says of spark-nb's calls of a model: every difference, and the values of one call
    (when given) its constraints refuse."""

    differences: list[Difference]
    values: list[str]

    @property
    def refusals(self) -> list[str]:
        """Why the service would refuse the call: the blocking differences, then the refused values."""
        return [d.text for d in self.differences if d.blocking] + self.values


def judge(spec: ModelSpec, data: Any, params: Mapping[str, Any] | None = None) -> Judgement:
    """The published spec (data) compared with what spark-nb sends for spec, and params' values (when given)
    checked against its constraints. SpecUnreadable when it cannot be judged: a spec of another model, parameters
    that cannot be read, or any failure of the comparison itself (logged at DEBUG)."""
    named = data.get("model_id") if isinstance(data, Mapping) else None
    if named is not None and str(named) != spec.id:
        raise SpecUnreadable(f"it describes another model ({safe_text(named, newlines=False, limit=80)!r})")
    try:
        found = differences(spec, data)
        values = [] if params is None else value_problems(parameters(data), params)
    except SpecUnreadable:
        raise
    except Exception as exc:  # a hostile spec's numbers or types: unreadable, not a crash
        logger.debug("the published spec of %s could not be compared", spec.id, exc_info=True)
        raise SpecUnreadable(f"it could not be compared ({type(exc).__name__})") from exc
    return Judgement(found, values)
