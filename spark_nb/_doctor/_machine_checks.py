"""The checks of this machine: the settings, the bundled ffmpeg, the journal, the budget and the known spend, the
versions. The journal is read once, read-only, for both the journal and the budget checks (`read_journal`): the
doctor never makes, migrates or moves it, so what it says of it stays true."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from .._journal import FILENAME, OPEN
from .._journal_faults import is_damage
from .._journal_rows import Entry, read_only
from .._version import __version__
from ._context import Context
from ._report import Verdict, fail, ok, warn

HOME_FIX = "point SPARK_NB_HOME (or configure(home=...)) at a folder you can write"
JOURNAL_BUSY_S = 2.0  # how long the doctor waits for a journal another process is writing


def ffmpeg(ctx: Context) -> Verdict:
    """The ffmpeg bundled with imageio-ffmpeg is there and runs."""
    from .. import _procs
    from .._ffmpeg import ffmpeg_exe

    fix = "pip install --force-reinstall imageio-ffmpeg"
    try:
        exe = ffmpeg_exe()
        run = _procs.run([exe, "-hide_banner", "-version"], timeout=ctx.left(10.0))
    except Exception as exc:  # missing, not executable, killed at its time limit
        return fail(f"the bundled ffmpeg does not run ({type(exc).__name__}: {exc})", fix)
    first = run.stdout.decode("utf-8", "replace").strip().splitlines()[:1]
    if run.returncode != 0 or not first:
        return fail(f"the bundled ffmpeg ({exe}) exited with {run.returncode}", fix)
    return ok(f"{' '.join(first[0].split()[:3])} ({exe})")


def settings(ctx: Context) -> Verdict:
    """Every setting other than the key and the budget can be read: the backend, URL checks, input limits."""
    if ctx.read is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    own = [exc for option, exc in ctx.problems.items() if option != "budget_usd"]
    if own:
        return fail("; ".join(exc.headline for exc in own), own[0].hint or "fix the setting, or unset it")
    chosen = ctx.read
    how = " (chosen by whether a key is found)" if chosen.auto_backend else ""
    checked = "checked before paying" if chosen.limits.urls_checked else "sent unchecked (SPARK_NB_CHECK_URLS=0)"
    return ok(f"backend {chosen.backend}{how}; URL inputs {checked}; audio and video inputs up to "
              f"{chosen.limits.max_bytes / 1024**2:g} MB and {chosen.limits.max_seconds:g} s")


@dataclasses.dataclass(frozen=True)
class JournalReading:
    """The journal as the doctor found it, read once and read-only (see read_journal)."""

    path: Path
    state: str  # missing, read, damaged, busy, older, not a file, unreadable
    entries: tuple[Entry, ...] = ()
    detail: str = ""


def read_journal(ctx: Context) -> JournalReading:
    """The journal of ctx's home, read once for every check (Context.shared), without writing anything: a damaged
    one is left where it is, a locked one waited for JOURNAL_BUSY_S and reported busy."""
    assert ctx.read is not None
    home = ctx.read.home
    return ctx.shared("journal", lambda: _read(Path(home).expanduser() / FILENAME))


def _read(path: Path) -> JournalReading:
    import sqlite3

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return JournalReading(path, "not a file")
        return JournalReading(path, "read", tuple(read_only(path, busy_seconds=JOURNAL_BUSY_S)))
    except FileNotFoundError:
        return JournalReading(path, "missing")
    except sqlite3.Error as exc:
        said = str(exc)
        if is_damage(exc):
            return JournalReading(path, "damaged", detail=said)
        if "locked" in said or "busy" in said:
            return JournalReading(path, "busy", detail=said)
        if "no such table" in said:  # an empty file: no attempt recorded yet
            return JournalReading(path, "read")
        if "no such column" in said:
            return JournalReading(path, "older", detail=said)
        return JournalReading(path, "unreadable", detail=said)
    except OSError as exc:
        return JournalReading(path, "unreadable", detail=exc.strerror or str(exc))


def journal(ctx: Context) -> Verdict:
    """The task journal is a file that can be written, is not damaged, and which rows of it are."""
    if ctx.read is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    reading = read_journal(ctx)
    path, state = reading.path, reading.state
    if state == "not a file":
        return fail(f"the journal {path} is not a file", f"move it away, or {HOME_FIX}")
    if state == "unreadable":
        return fail(f"the journal {path} cannot be read ({reading.detail})", HOME_FIX)
    if state == "damaged":
        return warn(f"the journal {path} is damaged ({reading.detail}): the next call moves it aside and starts a new "
                    "one, and tasks recorded only there are not reused", "keep a copy of it if you need its history")
    if state == "busy":
        return warn(f"the journal {path} is busy: another process is writing it (a batch, another kernel), so the "
                    "doctor read nothing of it", "run the doctor again once that process is done; a call waits for "
                    "it up to a minute")
    folder = path.parent if path.parent.exists() else _existing_parent(path.parent)
    writable = os.access(folder, os.W_OK) and (state == "missing" or os.access(path, os.W_OK))
    if not writable:
        return fail(f"the journal {path} cannot be written", HOME_FIX)
    if state == "missing":
        return ok(f"{path}: not made yet (the first call makes it; its folder can be written)")
    if state == "older":
        return ok(f"{path}: writable, written by an older spark-nb (the next call brings it up to date)")
    damaged = sum(1 for e in reading.entries if e.damaged)
    detail = f"{path}: writable, {len(reading.entries)} attempt(s) recorded"
    if damaged:
        return warn(f"{detail}, {damaged} of them damaged", "`spark-nb history --status damaged` lists them; nothing "
                    "is lost, a damaged row is never paid twice")
    return ok(detail)


def _existing_parent(folder: Path) -> Path:
    """The nearest folder above folder that exists (the one a call would make the home folder in)."""
    for parent in folder.parents:
        if parent.exists():
            return parent
    return folder


def budget(ctx: Context) -> Verdict:
    """The budget (SPARK_NB_BUDGET_USD) and the spend the journal knows."""
    from .._budget import spent
    from .._money import format_usd, usd

    if ctx.read is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    if (problem := ctx.problems.get("budget_usd")) is not None:
        return fail(problem.headline, problem.hint or "fix SPARK_NB_BUDGET_USD, or unset it")
    reading = read_journal(ctx)
    if reading.state not in ("read", "missing"):
        return warn(f"the known spend is not known: the journal is {reading.state}", "see the journal check")
    entries = list(reading.entries)
    spend, running = spent(entries), sum(1 for e in entries if e.state in OPEN)
    still = f"; {running} task(s) not finished" if running else ""
    limit = usd(ctx.read.budget_usd)
    if limit is None:
        return ok(f"no budget set (SPARK_NB_BUDGET_USD); known spend on this machine {format_usd(spend)}{still}")
    if spend >= limit:
        return warn(f"budget {format_usd(limit)}: the known spend {format_usd(spend)} has reached it, so the next "
                    f"task is refused{still}",
                    "raise SPARK_NB_BUDGET_USD (or configure(budget_usd=...)) if you mean to spend more")
    return ok(f"budget {format_usd(limit)}: known spend {format_usd(spend)}, {format_usd(limit - spend)} left{still}")


def versions(ctx: Context) -> Verdict:
    """spark-nb, Python, httpx and the operating system, for a bug report."""
    import platform

    import httpx

    return ok(f"spark-nb {__version__}, Python {platform.python_version()}, httpx {httpx.__version__}, "
              f"{platform.platform(terse=True)}")
