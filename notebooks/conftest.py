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
    os.environ["VTRIX_NO_KEYCHAIN"] = "1"  # nor the key a developer keeps for the vtrix CLI
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="spark_nb_notebook_config_")
    os.environ["HOME"] = tempfile.mkdtemp(prefix="spark_nb_notebook_user_")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every notebook run is slow (a kernel, real renders): not in the quick run, pytest -m "not slow"."""
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.slow)
