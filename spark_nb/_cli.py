"""The spark-nb command: generate from the shell, check a task, run a batch, or run the local server."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_parser import parser as _parser
from .errors import SparkError

if TYPE_CHECKING:
    from ._results import Result


def _print_result(result: Result) -> None:
    from ._money import format_usd

    print(f"task:  {result.task_id}")
    print(f"video: {result.path}")
    print(f"cost:  {format_usd(result.cost)}")


def _run(args: argparse.Namespace) -> int:
    config = {"output_dir": args.out} if getattr(args, "out", None) else {}
    if args.command == "avatar":
        from . import avatar

        _print_result(avatar.generate(args.image, args.audio, trim_audio=not args.no_trim, timeout=args.timeout,
                                      progress=not args.no_progress, reuse=not args.no_reuse, strict=args.strict,
                                      **config))
    elif args.command == "imitate":
        from . import imitator

        _print_result(imitator.generate(args.image, args.driving_video, timeout=args.timeout,
                                        progress=not args.no_progress, reuse=not args.no_reuse, strict=args.strict,
                                        **config))
    elif args.command == "batch":
        return _batch(args)
    elif args.command == "status":
        return _status(args, config)
    elif args.command == "serve":
        from ._cli_serve import serve

        return serve(args)
    elif args.command == "history":
        return _history(args)
    elif args.command == "demo":
        return _demo(args.out, reuse=not args.no_reuse)
    elif args.command == "studio":
        return _studio(args)
    elif args.command == "doctor":
        return _doctor(args)
    return 0


def _status(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """A task's state (and, when the journal knows them, its video and cost), or its Result once waited for."""
    from ._journal import FILENAME, journal_at
    from ._money import format_usd
    from ._tasks import Task

    task = Task.from_id(args.task_id, model=args.model, **config)
    if args.wait:
        _print_result(task.wait(timeout=args.timeout))
        return 0
    state = task.status()
    progress = f" {state.progress:.0%}" if state.progress is not None else ""
    print(f"task:   {state.id}\nmodel:  {state.model}\nstatus: {state.status}{progress}")
    known = (journal_at(task.settings.home).by_task(task.id)
             if (Path(task.settings.home).expanduser() / FILENAME).exists() else None)  # a lookup makes no journal
    if known is not None and known.path:
        gone = "" if Path(known.path).is_file() else "  (no longer there: --wait fetches it again)"
        print(f"video:  {known.path}{gone}")
    if known is not None and known.cost is not None:
        print(f"cost:   {format_usd(known.cost)}")
    if state.failed:
        from .models import task_failure

        raise task_failure(state.raw.get("error"), state.id, state.model)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Print the doctor's report (text, or only JSON on stdout); 1 when a check failed."""
    from ._doctor import doctor

    report = doctor()
    print(report.to_json() if args.json else report, flush=True)
    return 0 if report.ok else 1


def _history(args: argparse.Namespace) -> int:
    """Print the journal's tasks (a table, or JSON) and the total known cost."""
    import json

    from ._history import history
    from ._money import format_usd, usd_text

    tasks = history(since=args.since, model=args.model, status=args.status)
    if args.json:
        print(json.dumps({"tasks": [t.as_json() for t in tasks], "total_usd": usd_text(tasks.total)}, indent=2))
        return 0
    for t in tasks:
        print(f"{t.when:16s}  {t.task_id or '-':34s}  {t.model:30s}  {t.status:10s}  {format_usd(t.cost):>9s}  "
              f"{', '.join(t.inputs)}")
    print(f"{len(tasks)} task(s), known cost {format_usd(tasks.total)}")
    return 0


def _demo(out: str, *, reuse: bool = True) -> int:
    """Both models on the bundled samples, on the local backend: no key, no network. A video an earlier demo made
    is reused (and said so, with when), unless reuse is False."""
    from . import avatar, imitator, samples

    print("spark-nb demo: local backend, bundled samples (no key, no network)")
    options: dict[str, Any] = {"backend": "local", "output_dir": out, "progress": False, "reuse": reuse}
    runs: list[tuple[str, Callable[[], Result]]] = [
        ("talking avatar", lambda: avatar.generate(samples.PORTRAIT, samples.SPEECH, **options)),
        ("imitation", lambda: imitator.generate(samples.PORTRAIT, samples.DRIVING_VIDEO, **options))]
    for label, run in runs:
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        if result.origin == "reused":  # which task, from when, and how to render it again: the notice said so
            print(f"{label:15s} {result.path}  (reused)")
        else:
            print(f"{label:15s} {result.path}  ({result.duration:.1f} s of video in {seconds:.1f} s)")
    return 0


def _studio(args: argparse.Namespace) -> int:
    """Serve the studio notebook with Voila on loopback behind a token until Ctrl-C or SIGTERM (see `_studio`)."""
    from ._studio import run_studio

    return run_studio(int(args.port), args.dir, open_browser=not args.no_browser)


def _batch(args: argparse.Namespace) -> int:
    """Run the manifest with one progress bar (stderr), then print where the reports are and one summary line."""
    from .batch import RowStatus, run_batch, summary

    # papermill validates notebooks with jsonschema, which on import builds rfc3987-syntax's IRI grammars when
    # that package is installed (2.5 CPU seconds, python-jsonschema/jsonschema#1428); notebooks use no IRI
    # formats, so this process, which is ours alone, goes without them
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: its import fails at once
    try:
        outcomes = run_batch(args.manifest, args.out, concurrency=args.concurrency, notebook=args.notebook,
                             resubmit_uncertain=args.resubmit_uncertain, skip_invalid=args.skip_invalid,
                             reuse=not args.no_reuse, strict=args.strict)
    except KeyboardInterrupt:
        print(f"spark-nb batch: interrupted. Tasks already created keep running on the service; run the same "
              f"command again to resume them (so far: {args.out}/results.csv)", file=sys.stderr)
        return 130
    # each row's error is in results.csv and the gallery; the console gets the bar and one summary line
    print(f"results: {args.out}/results.csv, gallery: {args.out}/gallery.ipynb (in JupyterLab) or "
          f"{args.out}/index.html (in a browser)")
    print(summary(outcomes))
    # the work is done and written: the interpreter's exit need not garbage-collect every object of the modules
    # imported (papermill brings boto3 and botocore), which took 0.3-0.45 s after the last line was printed
    import gc

    gc.freeze()
    return 0 if all(o.status in (RowStatus.COMPLETED, RowStatus.SKIPPED) for o in outcomes) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the spark-nb console script: any failure is one `spark-nb: error:` message (a SparkError's
    text, inert and redacted by construction; an unexpected error wrapped as one by the boundary), exit code 1."""
    from ._boundary import boundary
    from ._surfaces import in_words_of, speaking

    args = _parser().parse_args(argv)
    try:
        with _one_line_warnings(), speaking("cli"):  # its messages name --no-reuse, not reuse=False
            # ValueError: an argument refused by the parser it is handed to (e.g. the local server's --faults)
            return boundary(_run, as_usage=(ValueError,))(args)
    except SparkError as exc:
        print(f"spark-nb: error: {in_words_of(str(exc), 'cli')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """While the command runs, every warning is shown as one line starting with `spark_nb:` (no source line, no
    category for spark_nb's own), written through tqdm so a progress bar stays whole. Only the display changes:
    the warnings themselves are raised as always (filters apply), and the previous display comes back after."""
    import warnings

    from ._surfaces import in_words_of
    from .errors import SparkWarning, safe_text

    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = in_words_of(safe_text(str(message), newlines=False), "cli")
        if not issubclass(category, SparkWarning):
            text = f"{category.__name__}: {text}"
        from tqdm import tqdm

        tqdm.write(text if text.startswith("spark_nb:") else f"spark_nb: {text}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
