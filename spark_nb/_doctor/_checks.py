"""The doctor's checks, in the order a person would debug, and how they run: at once, each in a thread, all
within one deadline.

A check is a function of the Context returning a Verdict (`ok(detail)`, `warn(detail, fix)`, `fail(detail, fix)`);
to add one, write it (in a module of its own if it needs one) and list it in `checks()` under its name. A check
that raises is a failed check saying so, never a failed doctor; one still running at the deadline fails as such.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from ..errors import SparkError
from ..models import MODELS
from ._context import DEADLINE_S, Context
from ._machine_checks import budget, ffmpeg, journal, settings, versions
from ._report import Check, Report, Verdict, fail
from ._service_checks import generation_url, key, key_accepted, uploads
from ._spec_checks import model_spec

CheckFn = Callable[[Context], Verdict]
# the checks that wait on nothing but this machine: one that did not finish was held here, not by the network
MACHINE = frozenset({"key", "settings", "ffmpeg", "journal", "budget", "versions"})


def checks() -> list[tuple[str, CheckFn]]:
    """Every check by name, in the order the report lists them (one spec check per registered model)."""
    return [
        ("key", key),
        ("settings", settings),
        ("generation URL", generation_url),
        ("key accepted", key_accepted),
        *((f"spec {model}", functools.partial(model_spec, model=model)) for model in MODELS),
        ("uploads", uploads),
        ("ffmpeg", ffmpeg),
        ("journal", journal),
        ("budget", budget),
        ("versions", versions),
    ]


def run(ctx: Context) -> Report:
    """Run every check at once (daemon threads: one that hangs is left behind, not waited for) and report them."""
    listed = checks()
    for name, _ in listed:
        ctx.expect(name)
    for name, check in listed:
        threading.Thread(target=_run_one, args=(ctx, name, check), daemon=True, name=f"spark-nb-doctor-{name}").start()
    report = Report()
    for name, _ in listed:
        verdict = ctx.verdict(name)
        if verdict is None:
            verdict = fail(f"did not finish within the doctor's {DEADLINE_S:g} s",
                           "something on this machine held it (a file another process holds, a stalled disk): run "
                           "it again" if name in MACHINE else
                           "check the network (a host that accepts connections and never answers?)")
        report.append(Check(name, verdict.status, verdict.detail, verdict.fix))
    return report


def _run_one(ctx: Context, name: str, check: CheckFn) -> None:
    try:
        verdict = check(ctx)
    except SparkError as exc:
        verdict = fail(exc.headline, exc.hint or "")
    except Exception as exc:  # one broken check must not hide the others
        verdict = fail(f"the check itself failed ({type(exc).__name__}: {exc})",
                       "this is a bug in spark-nb's doctor: please report it with this line")
    ctx.finished(name, verdict)
