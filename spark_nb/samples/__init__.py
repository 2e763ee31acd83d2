"""Small sample inputs shipped with spark_nb (see README.md here for their sources and licences)."""

from pathlib import Path

FOLDER = Path(__file__).parent
"""The folder of the samples (its README.md says where each comes from, and its licence)."""
PORTRAIT = FOLDER / "portrait.jpg"
"""A portrait (head and shoulders, 384×480, a NASA photo in the public domain), for the avatar and the imitator."""
SPEECH = FOLDER / "speech.wav"
"""A speech clip (5.2 s, 16 kHz mono, synthetic), for the avatar."""
DRIVING_VIDEO = FOLDER / "driving.mp4"
"""A drawn face talking and moving its head (12 s, 320×400, with speech): a driving video for the imitator."""

__all__ = ["DRIVING_VIDEO", "FOLDER", "PORTRAIT", "SPEECH"]
