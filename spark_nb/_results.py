"""Result: a finished task's video on disk, its URL, size, duration and cost; shows itself inline in Jupyter."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._money import usd

if TYPE_CHECKING:
    from moviepy import VideoFileClip


@dataclasses.dataclass(frozen=True)
class Result:
    """A completed generation: the local video file, its URL, size, duration and usage (cost).

    A Result passes wherever a path does (os.fspath, open, moviepy, ffmpeg helpers): it is its video file.
    """

    task_id: str
    model: str
    status: str
    url: str
    path: Path
    size: int
    duration: float | None
    usage: dict[str, Any]
    raw: dict[str, Any] = dataclasses.field(repr=False)
    origin: str = "created"  # "reused": an earlier identical call's video; "attached": its task, waited for here

    @property
    def cost(self) -> Decimal | None:
        """What the task cost, a decimal.Decimal in US dollars (read from the service's string, never through
        float), or None when unknown. Show it with spark_nb._money.format_usd ("$0.004")."""
        return usd(self.usage.get("cost"))

    def clip(self) -> VideoFileClip:
        """The video as a moviepy VideoFileClip: use it in a `with` block (or call .close()) so its readers close."""
        from .errors import MediaError

        if not self.path.is_file():
            fetch = f'spark_nb.Task.from_id("{self.task_id}", model="{self.model}").wait()'
            raise MediaError(f"the video of task {self.task_id} is no longer at {self.path}",
                             hint=f"fetch it again: {fetch}")
        from moviepy import VideoFileClip

        return VideoFileClip(str(self.path))

    def __fspath__(self) -> str:
        return str(self.path)

    def _repr_html_(self) -> str:
        from .display import result_html

        return result_html(self)
