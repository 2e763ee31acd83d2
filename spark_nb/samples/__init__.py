"""Small sample inputs shipped with spark_nb (see README.md here for their sources and licences)."""

from pathlib import Path

FOLDER = Path(__file__).parent
PORTRAIT = FOLDER / "portrait.jpg"
SPEECH = FOLDER / "speech.wav"
DRIVING_VIDEO = FOLDER / "driving.mp4"

__all__ = ["DRIVING_VIDEO", "FOLDER", "PORTRAIT", "SPEECH"]
