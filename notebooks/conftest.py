"""nbval runs these notebooks on the local backend only: a key in the developer's environment is never used, and
the journal and local tasks live in a fresh folder of their own (so a run never reuses a developer's videos)."""

from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Drop any ambient key or backend before the notebook kernels (started with this environment) exist."""
    for name in ("VTRIX_API_KEY", "VTRIX_GENERATION_URL", "SPARK_NB_BACKEND", "SPARK_NB_UPLOAD_URL",
                 "SPARK_NB_OUTPUT_DIR"):
        os.environ.pop(name, None)
    os.environ["SPARK_NB_HOME"] = tempfile.mkdtemp(prefix="spark_nb_notebook_home_")
