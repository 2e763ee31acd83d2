"""The model spec endpoint of the local server, as Vtrix's spec service answers it, and drift to test against.

`GET /api/v1/skill/models/{id}/spec` needs no key (as Vtrix's): `{"status": {"code": 200, "message": "ok"},
"data": <the spec>}` for a registered model, its data derived from the ModelSpec (`_specs.published`); a model it
does not publish answers HTTP 200 with `status.code` 404 inside the body, as the service does.

A drift (`ServerOptions.spec_drift`, `spark-nb serve --spec-drift`) makes it publish what a changed service would,
a comma list of:

- `OLD=NEW`: the parameter at dotted path OLD is now named NEW (its wire name less `_url`, say);
- `OLD=`: the parameter is gone;
- `+PATH`: a new required string parameter (e.g. `+prompt`, or `+GROUP.fps` inside a nested object);
- `PATH:TYPE`: the parameter's type is now TYPE (e.g. a nested object's `:string`, its children gone);
- `PATH~V1|V2`: its allowed values are now V1, V2 (e.g. a constant's `~1|2`);
- `-MODEL`: the model's spec is not published (status.code 404).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._specs import published
from ..models import MODELS

_ITEM = re.compile(r"^(?:(?P<hide>-)(?P<model>[\w.-]+)|(?P<add>\+)(?P<new>[\w.]+)|(?P<path>[\w.]+)"
                   r"(?:=(?P<name>\w*)|:(?P<type>\w+)|~(?P<enum>[\w|.-]+)))$")


@dataclasses.dataclass(frozen=True)
class SpecDrift:
    """The changes a drifted spec service makes to every spec it publishes (see the module)."""

    items: tuple[re.Match[str], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> SpecDrift:
        """Read a drift list; ValueError naming an item that is none of the forms."""
        items = []
        for item in filter(None, (part.strip() for part in (text or "").split(","))):
            match = _ITEM.match(item)
            if match is None:
                raise ValueError(f"spec drift {item!r} is not OLD=NEW, OLD=, +PATH, PATH:TYPE, PATH~V1|V2 or -MODEL")
            items.append(match)
        return cls(tuple(items))

    def hides(self, model: str) -> bool:
        """True when the drift unpublishes model."""
        return any(m["hide"] and m["model"] == model for m in self.items)

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """A drifted copy of a spec's data."""
        data = copy.deepcopy(data)
        for match in self.items:
            if match["add"]:
                parent, _, name = match["new"].rpartition(".")
                siblings = _children(data, parent)
                if siblings is not None:
                    siblings.append({"name": name, "type": "string", "required": True, "description": "new"})
            elif match["path"]:
                _change(data, match)
        return data


def _children(data: dict[str, Any], path: str) -> list[dict[str, Any]] | None:
    """The parameter list at path ("" the top one), or None when there is no such object."""
    level: list[dict[str, Any]] = data["parameters"]
    for part in filter(None, path.split(".")):
        found = next((p for p in level if p.get("name") == part), None)
        if found is None:
            return None
        level = found.setdefault("children", [])
    return level


def _change(data: dict[str, Any], match: re.Match[str]) -> None:
    parent, _, name = match["path"].rpartition(".")
    siblings = _children(data, parent) or []
    param = next((p for p in siblings if p.get("name") == name), None)
    if param is None:
        return
    if match["type"]:
        param["type"] = match["type"]
        param.pop("children", None)
    elif match["enum"]:
        param["constraints"] = {**param.get("constraints", {}), "enum": match["enum"].split("|")}
    elif match["name"]:
        param["name"] = match["name"]
        param["path"] = f"{parent}.{match['name']}" if parent else match["name"]
    else:
        siblings.remove(param)


class SpecRoute:
    """The spec endpoint of one server (its drift fixed when the server starts)."""

    def __init__(self, drift: str | None) -> None:
        self.drift = SpecDrift.parse(drift)

    async def answer(self, request: Request) -> Response:
        """The spec of the model the path names, in the spec service's envelope."""
        model = request.path_params["model_id"]
        spec = MODELS.get(model)
        if spec is None or self.drift.hides(model):
            return JSONResponse({"status": {"code": 404, "message": "model not found"}, "data": None})
        data = self.drift.apply(published(spec, f"{request.base_url}model/v1/generation"))
        return JSONResponse({"status": {"code": 200, "message": "ok"}, "data": data})
