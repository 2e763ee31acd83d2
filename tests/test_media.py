"""spark_nb.media on real media of mixed sizes, frame rates and durations, made here with the bundled ffmpeg."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spark_nb import media as helpers  # `media` is conftest's fixture of test files
from spark_nb._ffmpeg import ProbeError, decode_audio, ffmpeg_exe, try_decode
from spark_nb._inputs import scratch_dir

from .conftest import ffmpeg


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> dict[str, Path]:
    """Long speech as mp3, a 17 s video with sound, speech with a pause near 15 s, a 640x360 30 fps clip, and
    pictures players transform: a rotated phone-style clip, non-square pixels, a still and an animated GIF."""
    root = tmp_path_factory.mktemp("clips")
    files = {"long_wav": media["long_speech"], "portrait": media["portrait"], "small_video": media["driving"],
             "silent_video": media["silent_driving"]}
    files["long_mp3"] = root / "long.mp3"
    ffmpeg("-i", str(media["long_speech"]), "-c:a", "libmp3lame", "-b:a", "64k", str(files["long_mp3"]))
    files["long_video"] = root / "long_video.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-i", str(media["long_speech"]), "-t", "17",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(files["long_video"]))
    files["pause"] = root / "pause.wav"  # tone to 13.8 s, silence to 14.3 s, tone to 17 s
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=16000",
           "-af", "volume=enable='between(t,13.8,14.3)':volume=0", "-t", "17", str(files["pause"]))
    files["tone"] = root / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=16000", "-t", "17", str(files["tone"]))
    files["wide_video"] = root / "wide.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=500",
           "-t", "3.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           str(files["wide_video"]))
    files["split"] = root / "split.mp4"  # left half red, right half blue, moov first (faststart)
    ffmpeg("-f", "lavfi", "-i", "color=red:size=160x240:rate=25",
           "-f", "lavfi", "-i", "color=blue:size=160x240:rate=25", "-filter_complex", "[0:v][1:v]hstack",
           "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
           str(files["split"]))
    files["rotated"] = root / "rotated.mp4"  # stored 320x240, shown 240x320, as phones record portrait video
    ffmpeg("-display_rotation", "90", "-i", str(files["split"]), "-c", "copy", str(files["rotated"]))
    files["anamorphic"] = root / "anamorphic.mp4"  # stored 320x240 with 2:1 pixels, shown 640x240
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-vf", "setsar=2", "-t", "2", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(files["anamorphic"]))
    files["still_gif"] = root / "still.gif"
    ffmpeg("-i", str(media["portrait"]), str(files["still_gif"]))
    files["animated_gif"] = root / "animated.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=100x80:rate=10", "-t", "1.6", str(files["animated_gif"]))
    return files


def pcm(path: Path, rate: int = 8000) -> np.ndarray:
    """The audio of path as mono float samples."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate),
                          "-f", "s16le", "-"], capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.float32)


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """One decoded RGB frame of path."""
    facts = helpers.read_header(path)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(seconds), "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(facts.height, facts.width, 3)  # type: ignore[arg-type]


def ffmpeg_children() -> list[int]:
    """Live ffmpeg processes whose parent is this test process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if "ffmpeg" in name and int(rest[1]) == os.getpid():
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_probe_reads_headers_of_images_audio_and_video(clips: dict[str, Path]) -> None:
    """Duration, size, frame rate, streams and bytes, for a still, an mp3 and a video."""
    still = helpers.read_header(clips["portrait"])
    assert still.is_still_image and still.size == (480, 600) and still.duration is None and not still.has_audio
    assert still.fps is None and still.bytes == clips["portrait"].stat().st_size
    mp3 = helpers.read_header(clips["long_mp3"])
    assert not mp3.has_video and mp3.has_audio and abs(mp3.duration - 17) < 0.1  # type: ignore[operator]
    wav = helpers.read_header(clips["long_wav"])
    assert wav.container == "wav" and wav.size is None and wav.has_audio and wav.duration == 17.0
    wide = helpers.read_header(clips["wide_video"])
    assert wide.size == (640, 360) and wide.fps == 30 and wide.has_audio and not wide.is_still_image
    assert abs(wide.duration - 3.2) < 0.1  # type: ignore[operator]
    assert wide.bytes == clips["wide_video"].stat().st_size


def test_probe_reads_the_header_only(clips: dict[str, Path], tmp_path: Path) -> None:
    """A video whose frame data is zeroed probes to its header's facts, where decoding it (try_decode) fails."""
    data = bytearray(clips["split"].read_bytes())
    payload = data.index(b"mdat") + 4
    data[payload:] = bytes(len(data) - payload)
    zeroed = tmp_path / "zeroed.mp4"
    zeroed.write_bytes(data)
    facts = helpers.read_header(zeroed)
    assert facts.size == (320, 240) and facts.fps == 25 and abs(facts.duration - 3.0) < 0.05  # type: ignore[operator]
    with pytest.raises(ProbeError):
        try_decode(zeroed)


def test_probe_gives_the_picture_as_players_show_it(clips: dict[str, Path]) -> None:
    """Rotation metadata swaps the sides, 2:1 pixels double the width; one-frame GIFs are stills, animated ones not."""
    assert helpers.read_header(clips["rotated"]).size == (240, 320)
    assert helpers.read_header(clips["anamorphic"]).size == (640, 240)
    still, animated = helpers.read_header(clips["still_gif"]), helpers.read_header(clips["animated_gif"])
    assert still.is_still_image and still.size == (480, 600) and still.duration is None
    assert not animated.is_still_image and abs(animated.duration - 1.6) < 0.15  # type: ignore[operator]


def test_decode_audio_gives_the_header_and_a_bounded_stretch_of_samples(clips: dict[str, Path], media: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    """One ffmpeg run: the file's facts (its whole length, from the header) and mono 16-bit PCM of at most the
    seconds asked for, from WAV and MP3 alike; ProbeError for what is not audio."""
    facts, pcm = decode_audio(clips["tone"], 16000, 3.0)
    assert facts.has_audio and abs(facts.duration - 17.0) < 0.1  # type: ignore[operator]
    assert abs(len(pcm) / 2 / 16000 - 3.0) < 0.05
    samples = np.frombuffer(pcm, dtype=np.int16)
    assert 0.1 < np.abs(samples.astype(np.int32)).max() / 32768 < 0.2  # the tone itself (lavfi sine is at 1/8)
    facts, pcm = decode_audio(media["speech_mp3"], 8000, 60.0)
    assert abs(len(pcm) / 2 / 8000 - facts.duration) < 0.1  # type: ignore[operator]
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(ProbeError, match="notes.wav"):
        decode_audio(text, 16000, 5.0)


def test_decode_audio_reads_a_plain_wav_itself_and_leaves_the_rest_to_ffmpeg(
        media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mono 16-bit WAV at the rate asked for is read without starting ffmpeg, to the same samples and length;
    another rate, stereo, or a header claiming more samples than the file holds goes through ffmpeg."""
    import struct
    import wave

    from spark_nb import _ffmpeg

    plain = tmp_path / "plain.wav"
    ffmpeg("-i", str(media["speech"]), "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(plain))
    stereo = tmp_path / "stereo.wav"
    ffmpeg("-i", str(media["speech"]), "-ac", "2", "-ar", "16000", "-c:a", "pcm_s16le", str(stereo))
    lying = tmp_path / "lying.wav"
    data = bytearray(plain.read_bytes())
    with wave.open(str(plain)) as wav:
        frames = wav.getnframes()
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", frames * 2 * 50)  # claims 50 times the samples it has
    lying.write_bytes(bytes(data))
    runs: list[Path] = []
    real = _ffmpeg._run_ffmpeg
    monkeypatch.setattr(_ffmpeg, "_run_ffmpeg", lambda path, *a, **k: runs.append(path) or real(path, *a, **k))
    facts, pcm = decode_audio(plain, 16000, 2.0)
    assert runs == [] and len(pcm) == 2 * 32000 and facts.has_audio
    assert abs(facts.duration - frames / 16000) < 1e-6  # type: ignore[operator]
    monkeypatch.setattr(_ffmpeg, "_plain_wav", lambda *a: None)
    by_ffmpeg, ffmpeg_pcm = decode_audio(plain, 16000, 2.0)
    assert ffmpeg_pcm == pcm and abs(by_ffmpeg.duration - facts.duration) < 0.01  # type: ignore[operator]
    monkeypatch.undo()
    runs.clear()
    monkeypatch.setattr(_ffmpeg, "_run_ffmpeg", lambda path, *a, **k: runs.append(path) or real(path, *a, **k))
    for other in (stereo, lying):
        decode_audio(other, 16000, 2.0)
    decode_audio(plain, 8000, 2.0)
    # each audio file ffmpeg reads is also measured by one decode, once per file version (plain's was, above)
    assert runs == [stereo, stereo, lying, lying, plain]


def test_probes_at_once_are_bounded_by_the_cores(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Sixteen threads decoding at once (a batch's downloads, all ended together) run at most max(2, cores) ffmpeg
    readers at a time, and every one of them gets its answer."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from spark_nb import _ffmpeg, _procs

    running, most, lock, real_run = 0, 0, threading.Lock(), _procs.run

    def counted(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real_run(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(_procs, "run", counted)
    monkeypatch.setattr(_ffmpeg, "_cache", {})  # every call reaches ffmpeg
    with ThreadPoolExecutor(16) as pool:
        reports = list(pool.map(lambda _: try_decode(clips["wide_video"], 0.5), range(16)))
    assert all(report.facts.has_audio for report in reports)
    assert 2 <= most <= max(2, os.cpu_count() or 2)


def test_probe_refuses_what_is_not_media(tmp_path: Path) -> None:
    """A missing file and a text file raise ProbeError naming them."""
    with pytest.raises(ProbeError, match="does not exist"):
        helpers.read_header(tmp_path / "nothing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ProbeError, match="notes.mp4"):
        helpers.read_header(text)


@pytest.mark.parametrize("source", ["long_wav", "long_mp3", "long_video"])
def test_trim_audio_cuts_under_the_limit_with_a_fade(source: str, clips: dict[str, Path], tmp_path: Path) -> None:
    """17 s of speech from a wav, an mp3 and a video's audio track become < 15 s, ending in silence."""
    out = helpers.trim_audio(clips[source], 15.0, out=tmp_path / "trimmed.m4a")
    facts = helpers.read_header(out)
    assert not facts.has_video and facts.has_audio
    assert 15.0 - helpers.PAUSE_SEARCH_S - 0.1 <= facts.duration < 15.0  # type: ignore[operator]
    samples = pcm(out)
    tail, body = samples[-400:], samples[: len(samples) // 2]  # the last 50 ms at 8 kHz
    assert np.sqrt(np.mean(tail**2)) < 0.1 * np.sqrt(np.mean(body**2))


def test_trim_audio_cuts_in_a_pause_near_the_limit(clips: dict[str, Path], tmp_path: Path) -> None:
    """With silence from 13.8 s to 14.3 s the cut lands in it; a steady tone is cut just under the limit."""
    in_pause = helpers.read_header(helpers.trim_audio(clips["pause"], 15.0, out=tmp_path / "pause.wav")).duration
    assert 13.8 < in_pause < 14.3  # type: ignore[operator]
    steady = helpers.read_header(helpers.trim_audio(clips["tone"], 15.0, out=tmp_path / "tone.wav")).duration
    assert 14.9 <= steady < 15.0  # type: ignore[operator]


def test_trim_audio_keeps_short_audio_whole(media: dict[str, Path], tmp_path: Path) -> None:
    """Audio already under the limit comes back whole, in the requested format."""
    out = helpers.trim_audio(media["speech"], 15.0, out=tmp_path / "speech.mp3")
    assert abs(helpers.read_header(out).duration - helpers.read_header(media["speech"]).duration) < 0.1  # type: ignore[operator]


def test_trim_audio_in_place_and_default_outputs(clips: dict[str, Path], tmp_path: Path) -> None:
    """Trimming a file onto itself works; default outputs land in the scratch folder, one per distinct source."""
    in_place = tmp_path / "in_place.wav"
    in_place.write_bytes(clips["long_wav"].read_bytes())
    assert helpers.trim_audio(in_place, 10.0, out=in_place) == in_place
    assert 10.0 - helpers.PAUSE_SEARCH_S - 0.1 <= helpers.read_header(in_place).duration < 10.0  # type: ignore[operator]
    first, second = tmp_path / "a" / "speech.wav", tmp_path / "b" / "speech.wav"  # same name, different sound
    for path, source in ((first, clips["long_wav"]), (second, clips["pause"])):
        path.parent.mkdir()
        path.write_bytes(source.read_bytes())
    outs = [helpers.trim_audio(first), helpers.trim_audio(second), helpers.trim_audio(first)]
    assert outs[0] != outs[1] and outs[0] == outs[2] and all(out.parent == scratch_dir() for out in outs)
    assert outs[0].suffix == ".m4a" and 13.8 < helpers.read_header(outs[1]).duration < 14.3  # type: ignore[operator]


def test_trim_audio_refuses_a_video_without_sound(clips: dict[str, Path]) -> None:
    """A silent video has nothing to trim: a clear ValueError."""
    with pytest.raises(ValueError, match="no audio"):
        helpers.trim_audio(clips["silent_video"])


def test_extract_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    """A video's sound as its own file, as long as the video; a silent video is refused."""
    out = helpers.extract_audio(clips["wide_video"], out=tmp_path / "wide.m4a")
    facts = helpers.read_header(out)
    assert facts.has_audio and not facts.has_video and abs(facts.duration - 3.2) < 0.1  # type: ignore[operator]
    with pytest.raises(ValueError, match="no audio"):
        helpers.extract_audio(clips["silent_video"])
    nested = helpers.extract_audio(clips["small_video"], out=tmp_path / "new" / "folder" / "small.wav")
    assert abs(helpers.read_header(nested).duration - 2.0) < 0.1  # type: ignore[operator]
    assert [p.name for p in nested.parent.iterdir()] == ["small.wav"]  # the temporary name was renamed away


def test_side_by_side_mixes_sizes_rates_and_durations(clips: dict[str, Path], tmp_path: Path) -> None:
    """A 480x600 still, a 320x240 25 fps 2 s clip and a 640x360 30 fps 3.2 s clip at 360 px high, 3.2 s long."""
    inputs = [clips["portrait"], clips["small_video"], clips["wide_video"]]
    labelled = helpers.side_by_side(inputs, labels=["portrait", "driving", "result"], out=tmp_path / "l.mp4")
    plain = helpers.side_by_side(inputs, out=tmp_path / "p.mp4")
    facts = helpers.read_header(labelled)
    assert facts.height == 360
    assert abs(facts.width - (288 + 480 + 640)) <= 2  # type: ignore[operator]
    assert facts.fps == 25 and facts.has_audio
    assert abs(facts.duration - 3.2) < 0.1  # type: ignore[operator]
    assert abs(len(pcm(labelled)) / 8000 - 3.2) < 0.15  # the longest input's sound, whole
    # the short clip holds its last frame after it ends: the middle tile is still at 2.9 s
    late = frame_at(plain, 2.9)
    assert late[:, 300:760].mean() > 20
    # labels darken a bar at the bottom of each tile and leave the rest of the picture alone
    with_labels, without = frame_at(labelled, 1.0).astype(int), frame_at(plain, 1.0).astype(int)
    assert np.abs(with_labels[-25:] - without[-25:]).mean() > 15
    assert np.abs(with_labels[:200] - without[:200]).mean() < 3


def test_side_by_side_shows_rotated_and_non_square_pictures_undistorted(clips: dict[str, Path], tmp_path: Path) -> None:
    """A rotated clip is stood upright (180 px wide at 240 high), 2:1 pixels are widened (640 px), not squashed."""
    out = helpers.side_by_side([clips["rotated"], clips["anamorphic"]], out=tmp_path / "turned.mp4", height=240)
    facts = helpers.read_header(out)
    assert facts.size == (180 + 640, 240) and abs(facts.duration - 3.0) < 0.1  # type: ignore[operator]
    tile = frame_at(out, 1.0)[:, :180].astype(int)
    # red|blue side by side, turned a quarter: now red over blue (or blue over red), each row of one colour
    top, bottom = tile[20:100].mean(axis=(0, 1)), tile[140:220].mean(axis=(0, 1))
    assert np.abs(top - bottom)[[0, 2]].min() > 150
    assert np.abs(tile[20:220, 10:60].mean(axis=(0, 1)) - tile[20:220, 120:170].mean(axis=(0, 1))).max() < 10


def test_side_by_side_takes_gifs(clips: dict[str, Path], tmp_path: Path) -> None:
    """A one-frame GIF is held like any still; an animated GIF is a 1.6 s clip that sets the length."""
    out = helpers.side_by_side([clips["still_gif"], clips["animated_gif"]], labels=["still", "animated"],
                               out=tmp_path / "gifs.mp4", height=200)
    facts = helpers.read_header(out)
    assert facts.size == (160 + 250, 200) and not facts.has_audio
    assert abs(facts.duration - 1.6) < 0.15  # type: ignore[operator]
    assert try_decode(out, 5).frames >= 38  # 1.6 s at 25 fps, all of it decodable


def test_side_by_side_of_a_single_still_and_bad_arguments(clips: dict[str, Path], tmp_path: Path) -> None:
    """One still makes a short silent video; wrong label counts and audio-only inputs are refused."""
    facts = helpers.read_header(helpers.side_by_side([clips["portrait"]], out=tmp_path / "one.mp4", height=240))
    assert facts.height == 240 and not facts.has_audio and facts.duration and facts.duration > 1
    with pytest.raises(ValueError, match="labels"):
        helpers.side_by_side([clips["portrait"]], labels=["a", "b"])
    with pytest.raises(ValueError, match="no picture"):
        helpers.side_by_side([clips["portrait"], clips["long_mp3"]])


def test_no_ffmpeg_process_is_left_behind(clips: dict[str, Path], tmp_path: Path) -> None:
    """After every helper has run (and one has failed), no ffmpeg child of this process is alive."""
    helpers.trim_audio(clips["long_mp3"], 10.0, out=tmp_path / "a.m4a")
    helpers.extract_audio(clips["wide_video"], out=tmp_path / "b.m4a")
    helpers.side_by_side([clips["portrait"], clips["wide_video"]], out=tmp_path / "c.mp4")
    with pytest.raises(ValueError):
        helpers.side_by_side([clips["long_mp3"]])
    text = tmp_path / "text.wav"
    text.write_text("not sound")
    with pytest.raises(ProbeError):  # ffmpeg itself ran and failed
        helpers.trim_audio(text)
    assert ffmpeg_children() == []
    # no .part left
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.m4a", "b.m4a", "c.mp4", "text.wav"]


def test_a_long_audio_is_measured_no_further_than_the_longest_input(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack (sixth round): every audio file was decoded to its end before its length was compared, so a
    2-hour FLAC took ffmpeg's whole 30 s deadline and failed with "took too long" instead of its length. A header
    already past the longest input stands as it is (nothing decoded), and a decode stops just past that length."""
    from spark_nb import _ffmpeg
    from spark_nb._ffmpeg import read_header
    from spark_nb._limits import MEDIA_SECONDS

    honest = tmp_path / "honest.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", str(2 * MEDIA_SECONDS), str(honest))
    runs: list[Path] = []
    real = _ffmpeg._run_ffmpeg
    monkeypatch.setattr(_ffmpeg, "_run_ffmpeg", lambda path, *a, **k: runs.append(path) or real(path, *a, **k))
    assert read_header(honest).duration == 2 * MEDIA_SECONDS and runs == [honest]  # the header read, no decode
    data = bytearray(honest.read_bytes())  # STREAMINFO's total samples set to a quarter: it states 300 s
    value, low = int.from_bytes(data[18:26], "big"), (1 << 36) - 1
    data[18:26] = ((value & ~low) | ((value & low) // 4)).to_bytes(8, "big")
    lying = tmp_path / "lying.flac"
    lying.write_bytes(bytes(data))
    measured = read_header(lying).duration or 0
    assert MEDIA_SECONDS < measured <= MEDIA_SECONDS + 1.1, measured  # past the limit: refused by its length
