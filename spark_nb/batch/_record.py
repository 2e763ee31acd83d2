"""A row folder's own record: result.json (how the row ended, where its video came from, the advice on its inputs).

The record is what makes a row folder stand on its own: moved, zipped or opened on another machine, the job
notebook finds its result in it (no journal, no request, no download), and a rerun into the same folder finds
the row complete. Every path in it is relative to the row folder, and one that leaves it is not followed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._answers import parse_json
from .._boundary import path_argument
from .._files import write_atomically
from .._journal import Entry
from .._money import usd_text
from .._results import Result
from .._task_state import as_number
from .._text import inert
from ..errors import WriteError
from ._outcome import RowStatus

RESULT_FILE = "result.json"
RECORD_MAX_BYTES = 1_000_000  # a record is a few hundred bytes; anything much larger is not one of ours


def row_folder(out_dir: str | Path) -> Path:
    """A row's folder, made if missing, to write into: never through a link (WriteError), which would have a rerun
    write wherever the link points, outside the batch folder (check_output_folder refuses one before a batch runs;
    this holds for one made since)."""
    folder = Path(out_dir)
    if folder.is_symlink():
        raise WriteError(f"{folder} is a link to {os.path.realpath(folder)}, not a folder of the batch: nothing is "
                         "written through it", hint="remove the link (a rerun makes the folder again)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_record(out_dir: str | Path, record: dict[str, Any], *, durable: bool = True) -> Path:
    """result.json in out_dir: the machine-readable outcome of the job (on the disk before this returns, unless
    not durable)."""
    path = row_folder(out_dir) / RESULT_FILE
    write_atomically(path, json.dumps(record, indent=2), durable=durable)
    return path


def new_record(name: str, model: str, task_id: str | None, status: RowStatus, *, video: str | None = None,
               duration: float | None = None, cost: str | None = None, error: BaseException | None = None,
               retryable: bool = False) -> dict[str, Any]:
    """A record of how the job ended (video relative to the row folder)."""
    return {"name": name, "model": model, "task_id": task_id, "status": status, "video": video,
            "duration": duration, "cost": cost, "error": None if error is None else str(error),
            "retryable": retryable}


def read_record(out_dir: str | Path) -> dict[str, Any]:
    """result.json in out_dir as a dict, or {} when there is none or it is not a record (too big, not JSON)."""
    path = Path(out_dir) / RESULT_FILE
    try:
        if not path.is_file() or path.stat().st_size > RECORD_MAX_BYTES:
            return {}
        record, _ = parse_json(path.read_bytes())  # bounded: depth, numbers; None when unreadable
    except OSError:
        return {}
    return record if isinstance(record, dict) else {}


def note_advice(out_dir: str | Path, advice: list[str]) -> None:
    """Add the advice on the row's inputs to its record (when it has one)."""
    record = read_record(out_dir)
    if record:  # advice can be found again: a power cut may lose it, and no fsync holds up the row for it
        write_record(out_dir, {**record, "advice": advice}, durable=False)


def record_reused(row_dir: Path, name: str, entry: Entry, video: Path, advice: list[str]) -> dict[str, Any]:
    """result.json of a row answered by an earlier task (a rerun, an identical row): its video, now in row_dir,
    and where the result came from."""
    assert entry.task_id is not None
    record = new_record(name, entry.model, entry.task_id, RowStatus.COMPLETED,
                        video=Path(os.path.relpath(video, row_dir)).as_posix(), duration=entry.seconds,
                        cost=usd_text(entry.cost))
    record["advice"] = advice
    record["reused"] = {"task_id": entry.task_id, "made_at": entry.when, "made_by": _made_by(entry.source)}
    write_record(row_dir, record)
    return record


def _made_by(source: str) -> str:
    """Who made the task, for people, without naming another folder (the record travels with this one)."""
    if source.startswith("batch:"):
        return "a batch row"
    return {"generate": "a generate() call", "submit": "a submit() call"}.get(source, "an earlier call")


def video_in(out_dir: str | Path, record: dict[str, Any]) -> Path | None:
    """The record's video when it is a non-empty file inside out_dir, else None (a path that leaves it is ignored)."""
    video = record.get("video")
    if not isinstance(video, str) or not video:
        return None
    folder = Path(out_dir).resolve()
    path = (folder / video).resolve()
    if not path.is_relative_to(folder):
        return None
    try:
        return path if path.is_file() and path.stat().st_size > 0 else None
    except OSError:
        return None


def completed_here(out_dir: str | Path, task_id: str) -> dict[str, Any] | None:
    """The record in out_dir when it says task_id completed and its video is in out_dir, else None."""
    record = read_record(out_dir)
    if record.get("task_id") == task_id and record.get("status") == RowStatus.COMPLETED \
            and video_in(out_dir, record) is not None:
        return record
    return None


def result_of(out_dir: str | Path, record: dict[str, Any]) -> Result:
    """The Result a completed record stands for (its video in out_dir): no journal, no request, no download."""
    path = video_in(out_dir, record)
    assert path is not None
    cost = record.get("cost")
    usage = {"cost": str(cost)} if isinstance(cost, (str, int, float)) and not isinstance(cost, bool) else {}
    duration = record.get("duration")
    return Result(task_id=str(record["task_id"]), model=str(record.get("model") or ""), status="completed", url="",
                  path=path, size=path.stat().st_size,
                  duration=as_number(duration), usage=usage,
                  raw={"id": record["task_id"], "status": "completed", "usage": usage})


def origin(out_dir: str | Path = ".") -> str:
    """Where the row's result came from and the advice on its inputs, in a few lines (the job notebook prints it).

    Args:
        out_dir: the row's folder (its result.json is read).

    Returns:
        The lines: the task made for the row, or the earlier task reused; then the advice.
    """
    record = read_record(path_argument(out_dir, "out_dir"))
    if not record:
        return "no result recorded in this folder yet"
    reused = record.get("reused")
    if isinstance(reused, dict):
        lines = [f"reused task {reused.get('task_id')} from {reused.get('made_at')} (made by "
                 f"{reused.get('made_by')}): no new task, nothing downloaded; its video is in this folder"]
    else:
        lines = [f"task {record.get('task_id') or '-'}, made for this row: {record.get('status')}"]
    advice = record.get("advice")
    lines += [f"advice: {line}" for line in advice if isinstance(line, str)] if isinstance(advice, list) else []
    return "\n".join(inert(line) for line in lines)  # the record may come from another machine
