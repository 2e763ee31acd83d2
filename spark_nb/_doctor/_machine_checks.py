"""The checks of this machine: the bundled ffmpeg, the journal, the budget and the known spend, the versions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .._journal import FILENAME, OPEN, journal_at
from .._journal_faults import is_damage
from .._version import __version__
from ..errors import SparkError
from ._context import Context
from ._report import Verdict, fail, ok, warn

HOME_FIX = "point SPARK_NB_HOME (or configure(home=...)) at a folder you can write"


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


def journal(ctx: Context) -> Verdict:
    """The task journal is a file that can be written, is not damaged, and which rows of it are."""
    if ctx.settings is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    home = ctx.settings.home
    path = Path(home).expanduser() / FILENAME
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None  # made by the first call (and below)
    except OSError as exc:
        return fail(f"the journal {path} cannot be read ({exc.strerror or exc})", HOME_FIX)
    if mode is not None and not stat.S_ISREG(mode):
        return fail(f"the journal {path} is not a file", f"move it away, or {HOME_FIX}")
    if mode is not None and (damage := _damage(path)):
        return warn(f"the journal {path} is damaged ({damage}): the next call moves it aside and starts a new one, "
                    "and tasks recorded only there are not reused", "keep a copy of it if you need its history")
    try:
        entries = journal_at(home).entries()
    except SparkError as exc:  # JournalError: a folder in its place, read-only, a full disk, locked
        return fail(exc.headline, exc.hint or HOME_FIX)
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return fail(f"the journal {path} cannot be written", HOME_FIX)
    damaged = sum(1 for e in entries if e.damaged)
    detail = f"{path}: writable, {len(entries)} attempt(s) recorded"
    if damaged:
        return warn(f"{detail}, {damaged} of them damaged", "`spark-nb history --status damaged` lists them; nothing "
                    "is lost, a damaged row is never paid twice")
    return ok(detail)


def _damage(path: Path) -> str | None:
    """What SQLite finds damaged in the journal, read only (a lock or a missing permission is no damage)."""
    import sqlite3

    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            row = db.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_damage(exc) else None
    return None if row and row[0] == "ok" else str(row[0] if row else "no answer to a check")


def budget(ctx: Context) -> Verdict:
    """The budget (SPARK_NB_BUDGET_USD) and the spend the journal knows."""
    from .._budget import spent

    if ctx.settings is None:
        return warn("not checked: the settings could not be read (see the key)", "fix the key first")
    try:
        entries = journal_at(ctx.settings.home).entries()
    except SparkError as exc:
        return warn(f"not known: {exc.headline}", "see the journal check")
    spend, running = float(spent(entries)), sum(1 for e in entries if e.state in OPEN)
    still = f"; {running} task(s) not finished" if running else ""
    if ctx.settings.budget_usd is None:
        return ok(f"no budget set (SPARK_NB_BUDGET_USD); known spend on this machine ${spend:.2f}{still}")
    limit = float(ctx.settings.budget_usd)
    if spend >= limit:
        return warn(f"budget ${limit:.2f}: the known spend ${spend:.2f} has reached it, so the next task is refused"
                    f"{still}", "raise SPARK_NB_BUDGET_USD (or configure(budget_usd=...)) if you mean to spend more")
    return ok(f"budget ${limit:.2f}: known spend ${spend:.2f}, ${limit - spend:.2f} left{still}")


def versions(ctx: Context) -> Verdict:
    """spark-nb, Python, httpx and the operating system, for a bug report."""
    import platform

    import httpx

    return ok(f"spark-nb {__version__}, Python {platform.python_version()}, httpx {httpx.__version__}, "
              f"{platform.platform(terse=True)}")
