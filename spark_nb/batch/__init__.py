"""Batch generation: a CSV manifest, one papermill job notebook per row, the task journal so nothing is paid twice.

    from spark_nb.batch import run_batch
    outcomes = run_batch("manifest.csv", "out/", concurrency=4)

or `spark-nb batch manifest.csv --out out/` (`--skip-invalid`, skip_invalid=True: run the valid rows, list the
others as `skipped`). A job notebook of your own (`--notebook`) calls
submit_or_resume() and finish() as the bundled one does. The folder's gallery.ipynb shows the gallery in
JupyterLab (gallery() draws it again); origin() says where a row's result came from.
"""

from .._boundary import guard_public
from .._journal import JobState
from ._job import finish, submit_or_resume
from ._manifest import InvalidRow, ManifestError, Row, check_manifest, columns, read_manifest
from ._outcome import RowOutcome, RowStatus
from ._progress import spent, summary
from ._record import origin
from ._report import gallery, gallery_html, outcomes_html
from ._runner import run_batch

__all__ = ["InvalidRow", "JobState", "ManifestError", "Row", "RowOutcome", "RowStatus", "check_manifest", "columns",
           "finish", "gallery", "gallery_html", "origin", "outcomes_html", "read_manifest", "run_batch",
           "spent", "submit_or_resume", "summary"]
guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
