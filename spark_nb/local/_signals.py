"""Per-frame control signals from the speech: mouth shapes, blinks, and a talking head's motion."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

import numpy as np

from ._tracking import Pose

SAMPLE_RATE = 16000
BLINK_PROFILE = (0.35, 0.8, 1.0, 0.9, 0.55, 0.2)  # eye closure over six frames at 25 fps (~240 ms)
SPEECH_RANGE_DB = 36.0  # the mouth is shut this far below the speech's peaks, however quiet the pauses
WINDOW = 1024  # spectral analysis window in samples (64 ms at 16 kHz), centred on each video frame
BANDS = {"back": (250.0, 1000.0), "front": (1500.0, 3500.0), "hiss": (4000.0, 8000.0)}  # Hz


@dataclasses.dataclass(frozen=True)
class MouthShape:
    """A mouth pose, each 0..1: how far the jaw drops, how far the corners spread, how rounded the lips are."""

    open: float = 0.0
    wide: float = 0.0
    round: float = 0.0


def samples_of(pcm: bytes) -> np.ndarray:
    """16-bit PCM as float32 samples in [-1, 1]."""
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def smooth(values: np.ndarray, attack: float = 0.7, release: float = 0.35) -> np.ndarray:
    """Follow values quickly upwards and more slowly downwards (no jitter, no lag on syllable onsets)."""
    out = np.empty_like(values)
    level = 0.0
    for i, value in enumerate(values):  # one step per video frame, not per sample
        level += (attack if value > level else release) * (value - level)
        out[i] = level
    return out


def _frame_db(samples: np.ndarray, count: int, fps: int, sample_rate: int) -> np.ndarray:
    """RMS level in dB of each video frame's stretch of samples (a running sum: no loop over frames)."""
    hop = sample_rate / fps
    edges = np.minimum((np.arange(count + 1) * hop).astype(np.int64), samples.size)
    energy = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    length = np.diff(edges)
    mean = (energy[edges[1:]] - energy[edges[:-1]]) / np.maximum(length, 1)
    rms = np.sqrt(np.maximum(mean, 0.0)) * (length > 0)
    db: np.ndarray = (20 * np.log10(rms + 1e-5)).astype(np.float32)
    return db


def _opening(db: np.ndarray) -> np.ndarray:
    """dB normalised to 0..1: 0 at the pauses' level (or SPEECH_RANGE_DB under the peaks), 1 at the peaks."""
    if not db.size:
        return db
    peak = float(np.percentile(db, 97))
    floor = max(float(np.percentile(db, 20)), peak - SPEECH_RANGE_DB)
    return np.clip((db - floor - 3.0) / max(peak - floor - 3.0, 6.0), 0.0, 1.0).astype(np.float32)


def loudness_envelope(samples: np.ndarray, count: int, fps: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mouth opening per video frame (0..1) from the speech's loudness: RMS in dB, normalised, smoothed."""
    return smooth(_opening(_frame_db(samples, count, fps, sample_rate)))


def _band_levels(samples: np.ndarray, count: int, fps: int, sample_rate: int) -> dict[str, np.ndarray]:
    """Energy per video frame in each of BANDS: a Hann-windowed FFT centred on the frame (in blocks)."""
    hop = sample_rate / fps
    freqs = np.fft.rfftfreq(WINDOW, 1.0 / sample_rate)
    masks = {name: (freqs >= low) & (freqs < high) for name, (low, high) in BANDS.items()}
    padded = np.pad(samples.astype(np.float32), (WINDOW // 2, WINDOW))
    starts = (np.arange(count) * hop + hop / 2).astype(np.int64)  # window centre = frame centre
    taper = np.hanning(WINDOW).astype(np.float32)
    levels = {name: np.zeros(count, dtype=np.float64) for name in BANDS}
    for block in range(0, count, 1024):  # bounded memory for long audio: 1024 frames x WINDOW at a time
        index = np.minimum(starts[block:block + 1024, None] + np.arange(WINDOW), padded.size - 1)
        power = np.abs(np.fft.rfft(padded[index] * taper, axis=1)) ** 2
        for name, mask in masks.items():
            levels[name][block:block + 1024] = power[:, mask].sum(axis=1)
    return levels


def mouth_shapes(samples: np.ndarray, count: int, fps: int, sample_rate: int = SAMPLE_RATE) -> list[MouthShape]:
    """The mouth's shape per video frame, from the speech's loudness and spectrum.

    Loudness opens the jaw. The balance of the front-vowel band (1.5-3.5 kHz, a high second formant: "ee",
    "eh") against the back-vowel band (250 Hz-1 kHz: "oo", "oh") spreads the corners or rounds the lips,
    measured against the clip's own median so a voice's timbre does not bias it. Hiss (4-8 kHz louder than
    the voiced bands: "s", "sh", "f") shows the teeth: the mouth slightly open and wide.
    """
    if count <= 0:
        return []
    db = _frame_db(samples, count, fps, sample_rate)
    opening = _opening(db)
    bands = _band_levels(samples, count, fps, sample_rate)
    voiced = bands["back"] + bands["front"] + 1e-12
    balance = 10 * np.log10((bands["front"] + 1e-12) / (bands["back"] + 1e-12))
    hiss = 10 * np.log10((bands["hiss"] + 1e-12) / voiced)
    speaking = opening > 0.25
    centre = float(np.clip(np.median(balance[speaking]), -16.0, 0.0)) if speaking.sum() >= 10 else -8.0
    tone = np.clip((balance - centre) / 8.0, -1.0, 1.0) * (opening > 0.05)
    audible = db > max(float(np.percentile(db, 97)) - SPEECH_RANGE_DB + 6, -75.0)  # not a pause, not silence
    sibilance = np.clip((hiss + 8.0) / 12.0, 0.0, 1.0) * audible
    openness = smooth(np.maximum(opening, 0.3 * sibilance))
    wide = smooth(np.maximum(np.clip(tone, 0.0, 1.0), sibilance), attack=0.6, release=0.3)
    rounded = smooth(np.clip(-tone, 0.0, 1.0) * (1 - sibilance), attack=0.5, release=0.3)
    return [MouthShape(float(o), float(w), float(r)) for o, w, r in zip(openness, wide, rounded, strict=True)]


def blinks(count: int, fps: int, seed: int = 7) -> np.ndarray:
    """Eye closure per frame: a natural blink every 2.5-5.5 s."""
    rng = random.Random(seed)
    closure = np.zeros(count, dtype=np.float32)
    frame = int(fps * rng.uniform(1.0, 2.5))
    while frame < count:
        for k, value in enumerate(BLINK_PROFILE):
            if frame + k < count:
                closure[frame + k] = value
        frame += int(fps * rng.uniform(2.5, 5.5))
    return closure


def _pulse(fps: int, peak: float, lead: int = 1) -> np.ndarray:
    """A smooth pulse (t^2 e^-t): 0 with zero slope `lead` frames before its onset, 1 at `peak` s after it."""
    width = peak + lead / fps
    t = np.arange(int(math.ceil(7 * width * fps)) + 1) / fps
    return (t / width) ** 2 * np.exp(2 * (1 - t / width))


def _accents(impulses: np.ndarray, kernel: np.ndarray, fps: int, lead: int = 1) -> np.ndarray:
    """Each frame's impulse starting a kernel pulse, summed, less part of its 0.8 s running mean (so a run of
    syllables bobs rather than sinks), soft-limited to -1..1 (tanh)."""
    summed = np.convolve(impulses, kernel)[lead:lead + impulses.size]
    summed = np.pad(summed, (0, impulses.size - summed.size))
    window = np.hanning(max(3, int(0.8 * fps)) | 1)
    mean = np.convolve(np.pad(summed, window.size // 2, mode="edge"), window / window.sum(), mode="valid")
    return np.tanh((summed - 0.6 * mean) / 0.4)


def _onsets(opening: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the opening starts to rise (frame indices), and how strongly: the whole rise, weighted by how
    loud it gets (a stressed syllable, or speech after a pause, rises far and high)."""
    rise = np.diff(opening, prepend=0.0)
    rising = rise > 0.01
    starts = rising & ~np.concatenate([[False], rising[:-1]])
    ids = np.cumsum(starts) * rising  # 1, 2, ... for each rise's frames, 0 elsewhere
    total = np.bincount(ids, weights=rise * rising)[1:]
    ends = np.nonzero(starts)[0] + np.bincount(ids)[1:] - 1
    return np.nonzero(starts)[0], total * (0.4 + 0.6 * opening[ends])


def head_motion(mouth: Sequence[MouthShape] | np.ndarray, fps: int, seed: int = 11) -> list[Pose]:
    """A talking head's motion per frame: a slow idle sway, and small nods and tilts on the speech's accents.

    Accents are the rises of the mouth opening (syllable onsets); the further and higher it rises, the more
    it weighs (a stressed syllable, or speech after a pause). Each starts a smooth dip of the head (a nod)
    and a tilt to a random side. At most ~0.026 face widths of shift and ~1.9 degrees of tilt, no jumps.
    """
    opening = np.array([m.open if isinstance(m, MouthShape) else m for m in mouth], dtype=np.float64).reshape(-1)
    count = opening.size
    if not count:
        return []
    t = np.arange(count) / fps
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi, 5)
    where, strength = _onsets(opening)
    impulses, sided = np.zeros(count), np.zeros(count)
    impulses[where] = strength
    sided[where] = strength * rng.choice([-1.0, 1.0], size=where.size)
    nod = _accents(impulses, _pulse(fps, 0.16), fps)
    tilt = _accents(sided, _pulse(fps, 0.22), fps)

    def wave(period: float, k: int) -> np.ndarray:  # the idle sway: slow sines of unrelated periods
        sway: np.ndarray = np.sin(2 * math.pi * t / period + phase[k])
        return sway

    dx = 0.016 * wave(4.3, 0) + 0.004 * wave(1.9, 1) + 0.004 * tilt
    dy = 0.006 * wave(3.7, 2) + 0.016 * nod
    scale = 1.0 + 0.006 * wave(5.9, 3) - 0.004 * nod
    angle = np.radians(1.1 * wave(3.1, 4) + 0.2 * wave(1.7, 0) + 0.6 * tilt)
    return [Pose(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(dx, dy, scale, angle, strict=True)]
