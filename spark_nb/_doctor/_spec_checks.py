"""One check per model: its published spec read (no key, nothing created) and judged as the calls judge it
(`_specs.judge`, as `_specs_service.guard` does): its names, nesting, types and allowed values, and its value
constraints on what spark-nb sends: its constants, and URLs of the lengths it may send (SHORT_URL_CHARS, about the
shortest there is; LONG_URL_CHARS, as long as a presigned upload URL can be). A spec that would refuse every call
fails; one that would refuse some URLs warns; one that cannot be judged (another model's, unreadable) warns as
unreadable. A spec's `api.endpoint` on another host is reported, never followed, and the fix never points the
key at it: a spec is read without authentication, so anyone between here and it could have written it."""

from __future__ import annotations

from urllib.parse import urlsplit

from .._specs import SpecUnreadable, judge
from .._specs_service import fetch, remember
from ..models import MODELS, ModelSpec
from ._context import Context
from ._report import Verdict, fail, ok, warn

UPGRADE = "upgrade spark-nb (pip install -U spark-nb); until then its calls of this model are refused before paying"
VALUES_FIX = (f"{UPGRADE}. If the service does accept these calls, set SPARK_NB_SPEC_CHECK=off")
ENDPOINT_FIX = ("nothing to change: spark-nb keeps creating at the URL you configured and sends the key nowhere else; "
                "a spec is not authenticated, so never point VTRIX_GENERATION_URL at a host only a spec names. "
                "Report it to the spark-nb project if it persists")
SHORT_URL_CHARS = 25  # "https://example.com/a.jpg": about the shortest URL of a file
LONG_URL_CHARS = 1000  # a presigned S3 URL with a session token is often this long


def model_spec(ctx: Context, model: str) -> Verdict:
    """model's published spec, judged for what spark-nb sends (names, required, nesting, types, allowed values,
    value constraints, endpoint)."""
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
    spec = MODELS[model]
    try:
        short, long = (judge(spec, answer.data, _sample(spec, chars)) for chars in (SHORT_URL_CHARS, LONG_URL_CHARS))
    except SpecUnreadable as exc:
        return warn(f"{model}: the published spec cannot be read ({exc}); calls go on without it",
                    "report it to the spark-nb project")
    if short.refusals and long.refusals:
        said = [d.text for d in short.differences if d.blocking]
        if short.values:
            said.append(f"its constraints refuse URLs of {SHORT_URL_CHARS} and of {LONG_URL_CHARS} characters alike, "
                        f"so every call: {'; '.join(short.values)}")
        return fail(f"{model}: {'; '.join(said)}", VALUES_FIX if short.values else UPGRADE)
    if short.refusals or long.refusals:
        chars, said = (SHORT_URL_CHARS, short.values) if short.refusals else (LONG_URL_CHARS, long.values)
        which = "short ones" if chars == SHORT_URL_CHARS else "presigned upload URLs are often this long"
        return warn(f"{model}: the published spec refuses URLs of {chars} characters (spark-nb may send such "
                    f"URLs: {which}): {'; '.join(said)}", VALUES_FIX)
    if endpoint_problem := _endpoint_problem(ctx, answer.data):
        return warn(f"{model}: the published spec matches what spark-nb sends, but {endpoint_problem}", ENDPOINT_FIX)
    return ok(f"{model}: the published spec matches what spark-nb sends" +
              "".join(f"; {d.text}" for d in short.differences))


def _sample(spec: ModelSpec, chars: int) -> dict[str, object]:
    """The params spark-nb sends for spec with every input a URL of chars characters (its constants as they are)."""
    def url(suffix: str) -> str:
        head = "https://example.com/"
        return head + "a" * max(1, chars - len(head) - len(suffix)) + suffix

    suffixes = {"image": ".jpg", "audio": ".wav", "video": ".mp4"}
    return spec.build_params({field.name: url(suffixes.get(field.kind, ".bin")) for field in spec.fields})


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
