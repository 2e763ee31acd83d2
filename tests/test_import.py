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
