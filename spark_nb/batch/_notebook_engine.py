"""A papermill engine over a warm kernel: each code cell sent on one client that stays open row after row.

papermill's default engine (nbclient) opens a new asynchronous client per notebook, waits for the kernel to
answer again, and runs every message through an event loop; for a short report notebook on a warm kernel that
was most of the batch's local work per row. This engine speaks the same messages synchronously on the client
the warm kernel keeps (see _kernels.WarmKernel) and fills in the cells as nbclient does: execution counts, the
outputs (consecutive stream outputs merged, clear_output honoured), an error output that stops the notebook.
papermill itself still parameterizes the notebook and records each cell's timing; it writes the executed copy
(and the one with a failed cell's error) through `RowNotebooks`, the batch folder's one writer (`_files`): a part
file made by an exclusive open, renamed into place, so a link planted at `<row>/<row>.ipynb` is replaced, never
written through (papermill's own writer opens the path as it is: it overwrote the file a planted link named).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from papermill.engines import Engine, papermill_engines
from papermill.iorw import papermill_io

from .._files import write_atomically
from ._kernels import WarmKernel, run_code

ENGINE_NAME = "spark-nb-warm"
ROW_NOTEBOOK = "spark-nb-row-notebook:"  # papermill's output path for a row's notebook: this prefix, then its path


def row_notebook_output(path: Path) -> str:
    """What to give papermill as the output path of the notebook executed into path (written by RowNotebooks)."""
    return ROW_NOTEBOOK + str(path)


class RowNotebooks:
    """papermill's I/O handler for the ROW_NOTEBOOK prefix: writes by `_files.write_atomically`, reads nothing."""

    @staticmethod
    def write(buf: str, path: str) -> None:
        """The notebook buf into the file path names, whole, never through a link planted there."""
        write_atomically(Path(path.removeprefix(ROW_NOTEBOOK)), buf)

    @staticmethod
    def read(path: str) -> str:
        """Not a source of notebooks."""
        raise OSError(f"{path} is written only")

    @staticmethod
    def listdir(path: str) -> list[str]:
        """Not a folder."""
        raise OSError(f"{path} is written only")

    @staticmethod
    def pretty_path(path: str) -> str:
        """The file's own path."""
        return path.removeprefix(ROW_NOTEBOOK)


class WarmKernelEngine(Engine):  # type: ignore[misc]  # papermill ships no types: Engine is Any
    """papermill's Engine interface, executing on the WarmKernel passed as `kernel=`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, *, kernel: WarmKernel,
                                 execution_timeout: float = 1800.0, **kwargs: Any) -> None:
        """Run the code cells in order on kernel; the first cell that fails stops the notebook (as nbclient)."""
        deadline = time.monotonic() + execution_timeout
        recorded = nb_man.nb.metadata.get("papermill", {})
        if str(recorded.get("output_path", "")).startswith(ROW_NOTEBOOK):  # the file's own path, as papermill's
            recorded["output_path"] = RowNotebooks.pretty_path(recorded["output_path"])
        for index, cell in enumerate(nb_man.nb.cells):
            try:
                nb_man.cell_start(cell, index)
                if cell.cell_type == "code" and cell.source.strip():
                    if not run_code(kernel, cell.source, deadline, cell=cell):
                        nb_man.cell_exception(cell, cell_index=index)
                        break
            finally:
                nb_man.cell_complete(cell, cell_index=index)


papermill_engines.register(ENGINE_NAME, WarmKernelEngine)
papermill_io.register(ROW_NOTEBOOK, RowNotebooks())
