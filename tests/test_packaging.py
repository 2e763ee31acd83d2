"""The wheel as users install it: the license text in its metadata, py.typed and the bundled samples inside."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_carries_the_license_py_typed_and_the_samples(tmp_path: Path) -> None:
    """pip builds the wheel from a copy of the sources; its dist-info holds LICENSE (MIT, with its copyright
    line) and names it in METADATA, and the package ships py.typed (users' checkers read its types) and samples."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
                   check=True, timeout=240, capture_output=True)
    (wheel,) = tmp_path.glob("spark_nb-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        license_text = archive.read(license_name).decode()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode().splitlines()
    assert license_text == (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "Copyright (c)" in license_text
    assert "Permission is hereby granted, free of charge" in license_text  # the full text, not a name
    assert "License-File: LICENSE" in metadata and "License: MIT" in metadata
    assert "spark_nb/py.typed" in names
    assert {"spark_nb/samples/portrait.jpg", "spark_nb/samples/speech.wav"} <= set(names)
