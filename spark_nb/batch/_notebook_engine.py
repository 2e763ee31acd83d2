"""A papermill engine over a warm kernel: each code cell sent on one client that stays open row after row.

papermill's default engine (nbclient) opens a new asynchronous client per notebook, waits for the kernel to
answer again, and runs every message through an event loop; for a short report notebook on a warm kernel that
was most of the batch's local work per row. This engine speaks the same messages synchronously on the client
the warm kernel keeps (see _kernels.WarmKernel) and fills in the cells as nbclient does: execution counts, the
outputs (consecutive stream outputs merged, clear_output honoured), an error output that stops the notebook.
papermill itself still parameterizes the notebook, records each cell's timing and writes the executed copy.
"""

from __future__ import annotations

import time
from typing import Any

from papermill.engines import Engine, papermill_engines

from ._kernels import WarmKernel, run_code

ENGINE_NAME = "spark-nb-warm"


class WarmKernelEngine(Engine):  # type: ignore[misc]  # papermill ships no types: Engine is Any
    """papermill's Engine interface, executing on the WarmKernel passed as `kernel=`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, *, kernel: WarmKernel,
                                 execution_timeout: float = 1800.0, **kwargs: Any) -> None:
        """Run the code cells in order on kernel; the first cell that fails stops the notebook (as nbclient)."""
        deadline = time.monotonic() + execution_timeout
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
