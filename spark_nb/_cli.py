"""The spark-nb command: generate from the shell, check a task, run a batch, or run the local server."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SparkError

if TYPE_CHECKING:
    from ._results import Result

SERVER_KEY_ENV = "SPARK_NB_SERVER_API_KEY"
MAX_KEY_FILE_BYTES = 4096  # a key is a line; a larger file is not one
NO_REUSE_HELP = ("make a new take even when an identical call finished before (a new task, billed again); by default "
                 "its video is reused")
STRICT_HELP = ("refuse, before anything is uploaded, inputs spark-nb would only warn about "
               "(no face found in the image; with --no-trim, audio over 15 s)")
BATCH_EXIT_CODES = ("exit code: 0 when every row that ran completed (rows skipped by --skip-invalid do not count: "
                    "they are listed, and the summary says how many); 1 when a row failed, is uncertain or "
                    "unfinished, or the manifest was refused (nothing ran); 130 on Ctrl-C")


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="spark-nb", description="Vtrix Spark Avatar videos from the shell.")
    parser.add_argument("--version", action="version", version=f"spark-nb {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def generation(name: str, help_text: str, image_help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--image", required=True, help=image_help)
        cmd.add_argument("--out", help="folder for the video (default: $SPARK_NB_OUTPUT_DIR or ./spark_outputs)")
        cmd.add_argument("--timeout", type=float, default=600, help="seconds to wait for the task (default 600)")
        cmd.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        cmd.add_argument("--no-reuse", action="store_true", help=NO_REUSE_HELP)
        cmd.add_argument("--strict", action="store_true", help=STRICT_HELP)
        return cmd

    avatar = generation("avatar", "talking head from a portrait and a speech clip",
                        "portrait image (a face, looking at the camera): path or http(s) URL")
    avatar.add_argument("--audio", required=True, help="speech clip: path or http(s) URL")
    avatar.add_argument("--no-trim", action="store_true", help="send audio over 15 s whole")
    imitate = generation("imitate", "a character image performing a driving video's motion",
                         "character image (the one who will perform the motion): path or http(s) URL")
    imitate.add_argument("--driving-video", required=True, help="driving video: path or http(s) URL")

    status = sub.add_parser("status", help="show a task's status (and its video and cost when known), or wait for it "
                                           "and download its video")
    status.add_argument("task_id", help="the task's id, as printed when it was created, or its beginning (the short "
                                        "id a progress bar shows) when this machine's journal knows only one such "
                                        "task")
    status.add_argument("--model", help="the task's model id (for readable error hints)")
    status.add_argument("--wait", action="store_true", help="wait for the task and download its video")
    status.add_argument("--out", help="folder for the video (with --wait; default: $SPARK_NB_OUTPUT_DIR or "
                                      "./spark_outputs)")
    status.add_argument("--timeout", type=float, default=600,
                        help="with --wait: seconds to wait for the task (default 600)")

    history = sub.add_parser("history", help="the tasks this machine created, newest first, and what they cost")
    history.add_argument("--since", help='only tasks since a date ("2026-12-01") or a duration back ("24h", "7d")')
    history.add_argument("--model", help="only this model (id or alias)")
    history.add_argument("--status", help="only tasks in this state (completed, failed, submitted, ...)")
    history.add_argument("--json", action="store_true", help="print JSON instead of a table")

    demo = sub.add_parser("demo", help="render a talking avatar and an imitation from the bundled samples, locally")
    demo.add_argument("--out", default="spark_demo", help="folder for the two videos (default ./spark_demo)")
    demo.add_argument("--no-reuse", action="store_true", help="render both videos again even when an identical run "
                                                              "made them before (by default they are reused)")

    batch = sub.add_parser("batch", help="run every row of a CSV manifest through the job notebook (papermill)",
                           description="Run every row of a CSV manifest through the job notebook (papermill); one "
                                       "progress bar, then one summary line.",
                           epilog=BATCH_EXIT_CODES)
    batch.add_argument("manifest", help="CSV with columns name, model, image, audio, driving_video")
    batch.add_argument("--out", required=True, help="folder for the rows, results.csv, index.html and rows.json")
    batch.add_argument("--concurrency", type=int, default=4, help="rows run at once (default 4)")
    batch.add_argument("--notebook", help="a job notebook of your own (default: the bundled avatar_job.ipynb)")
    batch.add_argument("--resubmit-uncertain", action="store_true",
                       help="send again rows whose create call may have made a task (may pay twice)")
    batch.add_argument("--skip-invalid", action="store_true",
                       help="run the valid rows even if others have problems; those are listed as skipped in "
                            "results.csv, rows.json and index.html, with their problems (default: a manifest with "
                            "any invalid row runs nothing)")
    batch.add_argument("--no-reuse", action="store_true",
                       help="make a new take of every row, even of rows an earlier run (or an identical call) "
                            "completed (new tasks, billed again); by default they are reused")
    batch.add_argument("--strict", action="store_true", help=STRICT_HELP.replace("inputs", "rows whose inputs"))

    serve = sub.add_parser("serve", help="run the local server (the Vtrix protocol; on this machine only unless "
                                         "--host says otherwise)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only). Any other address, e.g. "
                            f"0.0.0.0, makes the server reachable from the network and needs --api-key-file or "
                            f"${SERVER_KEY_ENV}")
    serve.add_argument("--port", type=int, default=8765,
                       help="TCP port to listen on (default 8765; 0 picks a free one)")
    serve.add_argument("--latency", type=float, default=0.0, help="every task takes at least this many seconds")
    serve.add_argument("--faults", help="inject faults: ROUTE:KIND:P,... (see docs)")
    serve.add_argument("--fault-seed", type=int, help="make injected faults repeatable")
    serve.add_argument("--api-key-file",
                       help="require the bearer key written alone, on one line, in this file (default: any key, on "
                            "loopback only)")
    serve.add_argument("--api-key", help=f"require this key; visible to other users in the process list, so prefer "
                                         f"--api-key-file or ${SERVER_KEY_ENV}")
    serve.add_argument("--render-size", type=int, default=512, help="longest side of rendered videos, px (512)")
    serve.add_argument("--render-workers", type=int, default=2,
                       help="videos rendered at once (default 2); more keeps up with large batches on small renders")
    serve.add_argument("--cost-per-second", type=float, default=0.0,
                       help="report usage.cost as this many USD per second of video (default 0)")
    serve.add_argument("--spec-drift", help="publish changed model specs, to test against: a comma list of OLD=NEW "
                                            "(renamed), OLD= (gone), +PATH (new required), PATH:TYPE, PATH~V1|V2 "
                                            "(allowed values), -MODEL (unpublished); PATH is a dotted wire name")

    studio = sub.add_parser("studio", help="the studio (both forms and the history) as a web app on this machine, "
                                           "no code (Voila; pip install 'spark-nb[studio]')")
    studio.add_argument("--port", type=int, default=8866,
                        help="TCP port on 127.0.0.1 to serve the studio on (default 8866); only this machine can "
                             "open it")
    studio.add_argument("--no-browser", action="store_true",
                        help="do not open a browser tab; just print the URL (with the token that opens it)")
    studio.add_argument("--dir", default="spark_studio",
                        help="folder for the studio's page and the videos it makes (default ./spark_studio)")
    _add_doctor(sub)
    return parser


def _add_doctor(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `doctor` subcommand's arguments."""
    doctor = sub.add_parser("doctor", help="check for free what a first call needs: key, service, model specs, "
                                           "uploads, ffmpeg, journal, budget (nothing is created)",
                            epilog="exit code: 0 when no check failed (warnings allowed), 1 when one did")
    doctor.add_argument("--json", action="store_true",
                        help='print only JSON: {"checks": [{"name", "status", "detail", "fix"}, ...]}')


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
        return _serve(args)
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
        if result.origin == "reused":
            print(f"{label:15s} {result.path}  (reused task {result.task_id} from {_made_at(result.task_id)}; "
                  f"--no-reuse renders it again)")
        else:
            print(f"{label:15s} {result.path}  ({result.duration:.1f} s of video in {seconds:.1f} s)")
    return 0


def _made_at(task_id: str) -> str:
    """When this machine's journal says task_id was made ("2026-12-01 14:03:07"), or "an earlier run"."""
    from ._config import resolve
    from ._journal import journal_at

    entry = journal_at(resolve(backend="local").home).by_task(task_id)
    return entry.when if entry is not None else "an earlier run"


def _serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then stop renders and children and remove the storage within seconds."""
    import signal

    from .local import LocalServer

    key = _server_key(args)
    host, loopback = _bind_address(args.host)
    network = not loopback
    if network and key is None:
        raise SparkError(f"--host {args.host} makes the server reachable from the network (127.0.0.1 keeps it on "
                         f"this machine), so it must require a key: pass --api-key-file FILE or set "
                         f"${SERVER_KEY_ENV}")
    server = LocalServer(host, args.port, latency=args.latency, faults=args.faults, fault_seed=args.fault_seed,
                         api_key=key, longest_side=args.render_size, cost_per_second=args.cost_per_second,
                         render_workers=max(1, args.render_workers), spec_drift=args.spec_drift)
    try:
        server.start()
    except SparkError as exc:
        raise SparkError(_listen_failure(exc, host, args.port)) from None

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background, where SIGINT comes ignored
    reach = "reachable from the network, requests need the key; " if network else ""
    print(f"spark-nb local server on {server.url} ({reach}Ctrl-C to stop)", flush=True)
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server.stop()
    return 0


def _bind_address(host: str) -> tuple[str, bool]:
    """The address `serve --host host` binds, and whether that keeps the server on this machine. The name is
    normalised once (spaces, [brackets], a final dot, case) and what is bound is what was checked: an address as
    it is; a name resolved here, loopback only when every address it resolves to is, its first IPv4 address bound
    (else its first). A name that does not resolve is not loopback (binding it then fails, saying so)."""
    import ipaddress
    import socket

    name = host.strip()
    name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    name = name.rstrip(".").lower() if name not in ("", ".") else name
    if not name:  # every interface
        return "0.0.0.0", False
    try:
        return name, ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        addresses = [str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        return name, False
    loopback = all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)
    return next((a for a in addresses if ":" not in a), addresses[0]), loopback


def _listen_failure(exc: SparkError, host: str, port: int) -> str:
    """One line for a server that cannot listen: which port, and what to do (a taken port named as such)."""
    import errno

    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        return (f"cannot listen on {host}:{port}: port {port} is in use; pass --port N (0 picks a free one) "
                f"or stop the other server")
    return f"{exc.headline}; {exc.hint}" if exc.hint else exc.headline


def _studio(args: argparse.Namespace) -> int:
    """Serve the studio notebook with Voila on loopback behind a token until Ctrl-C or SIGTERM (see `_studio`)."""
    from ._studio import run_studio

    return run_studio(int(args.port), args.dir, open_browser=not args.no_browser)


def _server_key(args: argparse.Namespace) -> str | None:
    """The key `serve` requires, checked as every key is (`_config.Secret`: one line of printable ASCII, naming its
    source when refused): from --api-key-file, then $SPARK_NB_SERVER_API_KEY, then --api-key (warned)."""
    import os

    from ._config import Secret

    if args.api_key_file:
        return Secret(_key_file_text(args.api_key_file), source=f"the key file {args.api_key_file}").reveal()
    if os.environ.get(SERVER_KEY_ENV):
        return Secret(os.environ[SERVER_KEY_ENV], source=f"${SERVER_KEY_ENV}").reveal()
    if args.api_key:
        print(f"spark-nb serve: warning: --api-key is visible to every user of this machine (ps); use "
              f"--api-key-file or ${SERVER_KEY_ENV} instead", file=sys.stderr)
        return Secret(args.api_key, source="--api-key").reveal()
    return None


def _key_file_text(path: str) -> str:
    """The text of a key file, read as every configuration file is (`_keys.read_small_file`: a regular file, small,
    never blocking: a FIFO, a device or a directory is refused unopened), UTF-8, not empty."""
    from ._keys import read_small_file

    fix = f"write the key alone into {path}, on one line (at most {MAX_KEY_FILE_BYTES} bytes, UTF-8)"
    try:
        text = read_small_file(Path(path), MAX_KEY_FILE_BYTES).decode("utf-8")
    except OSError as exc:
        raise SparkError(f"cannot read the key file {path}: {exc.strerror or exc}", hint=fix) from None
    except UnicodeDecodeError:
        raise SparkError(f"the key file {path} is not UTF-8 text", hint=fix) from None
    except ValueError as exc:  # not a regular file, or too large
        raise SparkError(f"the key file {path} is {exc}: it was not read", hint=fix) from None
    if not text.strip():
        raise SparkError(f"the key file {path} is empty", hint=fix)
    return text


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
