"""Batch generation: a CSV manifest, one papermill job notebook per row, a ledger that never pays twice.

    from spark_nb.batch import run_batch
    outcomes = run_batch("manifest.csv", "out/", concurrency=4)

or `spark-nb batch manifest.csv --out out/`.
"""

from .manifest import ManifestError, Row, read_manifest
from .report import outcomes_html
from .runner import RowOutcome, run_batch, summary

__all__ = ["ManifestError", "Row", "RowOutcome", "outcomes_html", "read_manifest", "run_batch", "summary"]
