"""Result: the finished task's video, downloaded atomically, checked, and shown inline."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DownloadError, SparkError
from .ffmpeg import ProbeError, probe

if TYPE_CHECKING:
    from .client import ApiClient
    from .tasks import TaskState


@dataclasses.dataclass(frozen=True)
class Result:
    """A completed generation: the local video file, its URL, size, duration and usage (cost)."""

    task_id: str
    model: str
    status: str
    url: str
    path: Path
    size: int
    duration: float | None
    usage: dict[str, Any]
    raw: dict[str, Any] = dataclasses.field(repr=False)

    @property
    def cost(self) -> str | None:
        """What the task cost in US dollars, as the service reports it (a string)."""
        cost = self.usage.get("cost")
        return None if cost is None else str(cost)

    def _repr_html_(self) -> str:
        from .display import result_html

        return result_html(self)


def download_result(client: ApiClient, state: TaskState, output_dir: Path) -> Result:
    """Download a completed task's video into output_dir (reusing an intact earlier download) and check it."""
    try:
        content = state.raw["output"][0]["content"][0]
        url = str(content["url"])
    except (KeyError, IndexError, TypeError) as exc:
        raise SparkError(f"task {state.id} completed but its answer has no video URL",
                         hint="read task.status().raw to see what the service returned", task_id=state.id) from exc
    expected = content.get("size") if isinstance(content.get("size"), int) else None
    path = Path(output_dir) / f"{state.id}.mp4"
    if not (path.is_file() and expected is not None and path.stat().st_size == expected):
        client.download(url, path, expected_size=expected, task_id=state.id)
    try:
        info = probe(path, decode_seconds=0.2)
    except ProbeError as exc:
        raise DownloadError(f"the downloaded video {path} cannot be decoded: {exc}",
                            hint=f"fetch it again from {url}", task_id=state.id) from exc
    return Result(
        task_id=state.id, model=state.model, status=state.status, url=url, path=path,
        size=path.stat().st_size, duration=info.duration, usage=dict(state.raw.get("usage") or {}), raw=state.raw,
    )
