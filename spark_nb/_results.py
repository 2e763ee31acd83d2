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

    A Result passes wherever a path does (os.fspath, open, moviepy, ffmpeg helpers): it is its video file. In
    Jupyter it shows itself as a player with its task id, duration and cost.

    Attributes:
        task_id: the task that made it.
        model: the model id.
        status: the task's final status ("completed").
        url: where the service serves the video.
        path: the video on disk (in the output folder).
        size: its size in bytes.
        duration: its length in seconds, measured on the file.
        usage: the service's usage figures (`cost` among them: see `.cost`).
        raw: the task object as the service answered it.
        origin: "created" by this call; "reused": an identical earlier call's video; "attached": an identical earlier
            call's task, waited for here.
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
        """What the task cost, a decimal.Decimal of US dollars, or None when unknown.

        Read from the service's own text, never through a float: "0.004" is Decimal("0.004").
        """
        return usd(self.usage.get("cost"))

    def clip(self) -> VideoFileClip:
        """The video as a moviepy VideoFileClip: use it in a `with` block (or call .close()) so its readers close.

        Returns:
            A moviepy VideoFileClip of the file (moviepy is imported here, not with spark_nb).

        Raises:
            MediaError: the file is no longer there (the hint has the line that fetches it again).
        """
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
