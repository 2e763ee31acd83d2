"""One check per model: its published spec read (no key, nothing created) and compared with what spark-nb sends."""

from __future__ import annotations

from urllib.parse import urlsplit

from .._specs import SpecUnreadable, differences
from .._specs_service import fetch, remember
from ..models import MODELS
from ._context import Context
from ._report import Verdict, fail, ok, warn

UPGRADE = "upgrade spark-nb (pip install -U spark-nb); until then its calls of this model are refused before paying"


def model_spec(ctx: Context, model: str) -> Verdict:
    """model's published spec, compared with its ModelSpec (names, required, nesting, allowed values, endpoint)."""
    if ctx.settings is None:
        return warn(f"{model}: not checked: the settings could not be read (see the key)", "fix the key first")
    models_url = ctx.models_url()
    if models_url is None:
        return warn(f"{model}: not checked: {ctx.settings.base_url} is not Vtrix's, so Vtrix's published spec "
                    "says nothing about it", "set VTRIX_MODELS_URL to this gateway's spec service, if it has one")
    answer = fetch(models_url, model, limit=ctx.left())
    if not ctx.local:  # what calls consult next: the freshest answer
        from .._config import spec_source

        if (source := spec_source(ctx.settings.base_url)) is not None and source[0] == models_url:
            remember(source[1], answer)
    if answer.state == "missing":
        return warn(f"{model}: no published spec at {models_url} ({answer.detail}); spark-nb sends the parameters "
                    "of the model page", "nothing to do: a missing spec proves nothing either way")
    if answer.state == "unreadable":
        return warn(f"{model}: the spec service {models_url} gave {answer.detail}",
                    "check VTRIX_MODELS_URL and the network; calls go on without the spec meanwhile")
    try:
        found = differences(MODELS[model], answer.data)
    except SpecUnreadable as exc:
        return warn(f"{model}: the published spec cannot be read ({exc})", "report it to the spark-nb project")
    blocking = [d.text for d in found if d.blocking]
    if blocking:
        return fail(f"{model}: {'; '.join(blocking)}", UPGRADE)
    if endpoint_problem := _endpoint_problem(ctx, answer.data):
        return warn(f"{model}: the published spec matches what spark-nb sends, but {endpoint_problem}",
                    "if Vtrix moved its gateway, set VTRIX_GENERATION_URL to it; else report it to the project")
    return ok(f"{model}: the published spec matches what spark-nb sends" + "".join(f"; {d.text}" for d in found))


def _ours(ctx: Context) -> str:
    return f"{ctx.base_url().rstrip('/')}/model/v1/generation"


def _endpoint_of(data: object) -> str | None:
    api = data.get("api") if isinstance(data, dict) else None
    endpoint = api.get("endpoint") if isinstance(api, dict) else None
    return endpoint if isinstance(endpoint, str) and endpoint.strip() else None


def _endpoint_problem(ctx: Context, data: object) -> str | None:
    """How the spec's api.endpoint differs from where spark-nb creates tasks, or None. spark-nb keeps creating at
    the configured URL: another host would need the key, which goes only where the user pointed it."""
    endpoint, ours = _endpoint_of(data), _ours(ctx)
    if endpoint is None or endpoint.rstrip("/") == ours:
        return None
    try:
        theirs, mine = urlsplit(endpoint), urlsplit(ours)
        same_host = (theirs.scheme, theirs.hostname, theirs.port) == (mine.scheme, mine.hostname, mine.port)
    except ValueError:
        same_host = False
    if same_host:
        return f"it names {endpoint} as the create URL, and spark-nb creates at {ours}"
    return (f"its create URL {endpoint} is on another host than the one configured; spark-nb creates at {ours} "
            "and sends the key to no other host")
