"""`import spark_nb` stays light: no moviepy, OpenCV, Starlette, uvicorn, papermill, PIL, numpy, httpx or asyncio."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["moviepy", "cv2", "starlette", "uvicorn", "papermill", "PIL", "numpy", "boto3", "httpx", "asyncio"]


def test_import_loads_no_heavy_module() -> None:
    """A fresh interpreter importing spark_nb has none of the heavy modules loaded."""
    code = f"import sys, json, spark_nb; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_are_importable() -> None:
    """Every name the issue fixes is importable from spark_nb."""
    import spark_nb

    for name in ["avatar", "imitator", "Task", "Result", "SparkError", "ValidationError", "APIError", "TaskFailed",
                 "TaskTimeout", "AuthenticationError", "PermissionDeniedError", "RateLimitError", "ServerError",
                 "TaskMayExist", "configure"]:
        assert getattr(spark_nb, name).__doc__, name
    for fn in ["generate", "submit", "async_generate", "async_submit"]:
        assert callable(getattr(spark_nb.avatar, fn)) and callable(getattr(spark_nb.imitator, fn))


def test_samples_after_a_bare_import() -> None:
    """`import spark_nb; spark_nb.samples.PORTRAIT` works (as the README uses it), loaded on first use only."""
    code = ("import sys, spark_nb; before = 'spark_nb.samples' in sys.modules; "
            "print(before, spark_nb.samples.PORTRAIT.is_file(), 'yaml' in sys.modules, 'keyring' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "True", "False", "False"]


def test_unknown_attributes_still_fail() -> None:
    """The lazy attribute hook names what is missing, as any module does."""
    import pytest

    import spark_nb

    with pytest.raises(AttributeError, match="no attribute 'sampels'"):
        spark_nb.sampels  # noqa: B018
