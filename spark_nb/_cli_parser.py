"""The spark-nb command's arguments: the top-level parser, and one function adding each sub-command's."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from ._cli_serve import SERVER_KEY_ENV
from ._limits import AUDIO_SECONDS

NO_REUSE_HELP = ("make a new take even when an identical call finished before (a new task, billed again); by default "
                 "its video is reused")
STRICT_HELP = ("refuse, before anything is uploaded, inputs spark-nb would only warn about (no face found in the "
               f"image; with --no-trim, audio over {AUDIO_SECONDS:g} s)")
BATCH_EXIT_CODES = ("exit code: 0 when every row that ran completed (rows skipped by --skip-invalid do not count: "
                    "they are listed, and the summary says how many); 1 when a row failed, is uncertain or "
                    "unfinished, or the manifest was refused (nothing ran); 130 on Ctrl-C")
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # the top-level parser's sub-commands


def parser() -> argparse.ArgumentParser:
    """The spark-nb parser with every sub-command."""
    from ._version import __version__

    top = argparse.ArgumentParser(prog="spark-nb", description="Vtrix Spark Avatar videos from the shell.")
    top.add_argument("--version", action="version", version=f"spark-nb {__version__}",
                     help="print the version and exit")
    sub = top.add_subparsers(dest="command", required=True)
    for add in (_add_avatar, _add_imitate, _add_status, _add_history, _add_demo, _add_batch, _add_serve,
                _add_studio, _add_doctor):
        add(sub)
    return top


def _generation(sub: Commands, name: str, help_text: str, image_help: str) -> argparse.ArgumentParser:
    """A sub-command that generates a video: its image and the options every generation takes."""
    cmd = sub.add_parser(name, help=help_text)
    cmd.add_argument("--image", required=True, help=image_help)
    cmd.add_argument("--out", help="folder for the video (default: $SPARK_NB_OUTPUT_DIR or ./spark_outputs)")
    cmd.add_argument("--timeout", type=float, default=600, help="seconds to wait for the task (default 600)")
    cmd.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cmd.add_argument("--no-reuse", action="store_true", help=NO_REUSE_HELP)
    cmd.add_argument("--strict", action="store_true", help=STRICT_HELP)
    return cmd


def _add_avatar(sub: Commands) -> None:
    avatar = _generation(sub, "avatar", "talking head from a portrait and a speech clip",
                         "portrait image (a face, looking at the camera): path or http(s) URL")
    avatar.add_argument("--audio", required=True, help="speech clip: path or http(s) URL")
    avatar.add_argument("--no-trim", action="store_true", help=f"send audio over {AUDIO_SECONDS:g} s whole")


def _add_imitate(sub: Commands) -> None:
    imitate = _generation(sub, "imitate", "a character image performing a driving video's motion",
                          "character image (the one who will perform the motion): path or http(s) URL")
    imitate.add_argument("--driving-video", required=True, help="driving video: path or http(s) URL")


def _add_status(sub: Commands) -> None:
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


def _add_history(sub: Commands) -> None:
    history = sub.add_parser("history", help="the tasks this machine created, newest first, and what they cost")
    history.add_argument("--since", help='only tasks since a date ("2026-12-01") or a duration back ("24h", "7d")')
    history.add_argument("--model", help="only this model (id or alias)")
    history.add_argument("--status", help="only tasks in this state (completed, failed, submitted, ...)")
    history.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_demo(sub: Commands) -> None:
    demo = sub.add_parser("demo", help="render a talking avatar and an imitation from the bundled samples, locally")
    demo.add_argument("--out", default="spark_demo", help="folder for the two videos (default ./spark_demo)")
    demo.add_argument("--no-reuse", action="store_true", help="render both videos again even when an identical run "
                                                              "made them before (by default they are reused)")


def _add_batch(sub: Commands) -> None:
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


def _add_serve(sub: Commands) -> None:
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


def _add_studio(sub: Commands) -> None:
    studio = sub.add_parser("studio", help="the studio (both forms and the history) as a web app on this machine, "
                                           "no code (Voila; pip install 'spark-nb[studio]')")
    studio.add_argument("--port", type=int, default=8866,
                        help="TCP port on 127.0.0.1 to serve the studio on (default 8866); only this machine can "
                             "open it")
    studio.add_argument("--no-browser", action="store_true",
                        help="do not open a browser tab; just print the URL (with the token that opens it)")
    studio.add_argument("--dir", default="spark_studio",
                        help="folder for the studio's page and the videos it makes (default ./spark_studio)")


def _add_doctor(sub: Commands) -> None:
    doctor = sub.add_parser("doctor", help="check for free what a first call needs: key, service, model specs, "
                                           "uploads, ffmpeg, journal, budget (nothing is created)",
                            epilog="exit code: 0 when no check failed (warnings allowed), 1 when one did")
    doctor.add_argument("--json", action="store_true",
                        help='print only JSON: {"checks": [{"name", "status", "detail", "fix"}, ...]}')
