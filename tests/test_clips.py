"""moviepy clips in and out of spark_nb.media and Result.clip(): the fast path for untouched file clips (proved with
spies on moviepy's writers and on the ffmpeg command), edited clips rendered, reels, bad inputs, no leaked readers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from spark_nb import Result
from spark_nb import media as helpers  # `media` is conftest's fixture of test files
from spark_nb._clips import untouched_audio, untouched_video
from spark_nb._ffmpeg import ffmpeg_exe, try_decode
from spark_nb.errors import MediaError, SparkError, UsageError

from .conftest import ffmpeg

moviepy = pytest.importorskip("moviepy")
FRAME_S = 0.04  # one frame at 25 fps: moviepy and ffmpeg round a cut to whole frames


def seconds(path: Path) -> float:
    """The duration ffmpeg reports for path (after decoding its start, so the file is known to be sound)."""
    return try_decode(path).facts.duration or 0.0


def ffmpeg_children() -> set[int]:
    """Live or zombie ffmpeg processes whose parent is this test process (moviepy readers and writers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if "ffmpeg" in name and int(rest[1]) == os.getpid():
            found.add(int(entry.name))
    return found


def frame_at(path: Path, at: float) -> np.ndarray:
    """The frame of path shown at `at` seconds, as an RGB array."""
    facts = try_decode(path).facts
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", f"{at:.3f}", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(facts.height, facts.width, 3)


def pcm(path: Path, rate: int = 8000) -> np.ndarray:
    """The audio of path as mono float samples in [-1, 1]."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate),
                          "-f", "s16le", "-"], capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768


def result_of(path: Path) -> Result:
    """A Result for a video already on disk (what generate() hands back, without a task)."""
    facts = try_decode(path).facts
    return Result(task_id=f"task-{path.stem}", model="spark_avatar_imitator_v2v", status="completed", url="",
                  path=path, size=facts.bytes, duration=facts.duration, usage={"cost": "0.30"}, raw={})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> dict[str, Path]:
    """The driving video (320x240, 2 s, sound), a silent 1.5 s one, speech, and a tall 160x240 green clip."""
    root = tmp_path_factory.mktemp("clips")
    tall = root / "tall.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=0x00ff00:size=160x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(tall))
    return {"driving": media["driving"], "silent": media["silent_driving"], "speech": media["speech"],
            "portrait": media["portrait"], "tall": tall}


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of moviepy's video and audio writers during the test, by class."""
    from moviepy import AudioClip, VideoClip

    calls: list[str] = []
    def spying(original: Callable[..., object], name: str) -> Callable[..., object]:
        def spy(self: object, *args: object, **kwargs: object) -> object:
            calls.append(f"{type(self).__name__}.{name}")
            return original(self, *args, **kwargs)
        return spy

    for cls, name in ((VideoClip, "write_videofile"), (AudioClip, "write_audiofile")):
        monkeypatch.setattr(cls, name, spying(getattr(cls, name), name))
    return calls


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argument lists of every ffmpeg run spark_nb.media makes during the test."""
    ran: list[list[str]] = []
    original = helpers._ffmpeg

    def spy(args: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        ran.append(list(args))
        return original(args, **kwargs)

    monkeypatch.setattr(helpers, "_ffmpeg", spy)
    return ran


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fails the test if it leaves ffmpeg child processes behind (moviepy readers not closed)."""
    before = ffmpeg_children()
    yield
    assert ffmpeg_children() - before == set()


def test_result_clip_is_a_video_file_clip_that_closes_its_readers(files: dict[str, Path], no_leaks: None) -> None:
    """Result.clip() opens the video with its sound; leaving the `with` block ends its ffmpeg readers."""
    from moviepy import VideoFileClip

    before = ffmpeg_children()
    with result_of(files["driving"]).clip() as clip:
        assert isinstance(clip, VideoFileClip)
        assert clip.duration == pytest.approx(seconds(files["driving"]), abs=FRAME_S)
        assert tuple(clip.size) == (320, 240) and clip.audio is not None
        clip.get_frame(0.5), clip.audio.get_frame(0.5)
        assert ffmpeg_children() - before  # the readers really are ffmpeg processes of ours
    assert clip.reader is None and clip.audio is None


def test_result_clip_of_a_deleted_video_says_how_to_fetch_it(tmp_path: Path) -> None:
    """A Result whose file is gone: a MediaError naming the task and how to fetch it again."""
    result = result_of_missing(tmp_path / "gone.mp4")
    with pytest.raises(MediaError, match="task-gone") as caught:
        result.clip()
    assert "Task.from_id" in (caught.value.hint or "")


def result_of_missing(path: Path) -> Result:
    """A Result whose video file does not exist."""
    return Result(task_id="task-gone", model="spark_avatar_imitator_v2v", status="completed", url="", path=path,
                  size=0, duration=2.0, usage={}, raw={})


def test_untouched_and_edited_clips_are_told_apart(files: dict[str, Path], no_leaks: None) -> None:
    """Only a clip that still plays exactly its file counts as untouched; every kind of edit is noticed."""
    from moviepy import AudioFileClip, VideoFileClip, vfx

    with VideoFileClip(str(files["driving"])) as clip, AudioFileClip(str(files["speech"])) as sound:
        assert untouched_video(clip) == files["driving"]
        assert untouched_video(clip.copy()) == files["driving"]
        assert untouched_video(clip.with_position((10, 10))) == files["driving"]  # placement only matters in a layout
        edited = {"subclipped": clip.subclipped(0.5, 1.5), "sliced": clip[0:1], "resized": clip.resized(0.5),
                  "with_duration": clip.with_duration(1), "with_start": clip.with_start(1),
                  "with_fps": clip.with_fps(10), "without_audio": clip.without_audio(),
                  "mirrored": clip.with_effects([vfx.MirrorX()]), "quieter": clip.with_volume_scaled(0.5),
                  "new_sound": clip.with_audio(sound), "cropped": clip.cropped(x1=10)}
        assert {name for name, c in edited.items() if untouched_video(c) is not None} == set()
        assert untouched_audio(sound) == files["speech"]
        assert untouched_audio(sound.subclipped(0, 1)) is None and untouched_audio(sound.with_volume_scaled(2)) is None
        assert untouched_audio(clip.audio) == files["driving"]
    with VideoFileClip(str(files["driving"]), audio=False) as mute, \
            VideoFileClip(str(files["driving"]), target_resolution=(160, 120)) as small:
        assert untouched_video(mute) is None and untouched_video(small) is None


def test_an_untouched_clip_takes_the_ffmpeg_path_on_its_file(files: dict[str, Path], writes: list[str],
                                                             commands: list[list[str]], no_leaks: None) -> None:
    """side_by_side and trim_audio of untouched file clips: moviepy's writers never run, ffmpeg reads the files."""
    with result_of(files["driving"]).clip() as clip:
        out = helpers.side_by_side([clip, files["portrait"]], labels=["clip", "portrait"], height=120)
        trimmed = helpers.trim_audio(clip, max_seconds=1.0)
        with moviepy.AudioFileClip(str(files["speech"])) as sound:
            speech = helpers.trim_audio(sound, max_seconds=1.0)
    assert writes == []
    inputs = [arg for args in commands for arg in args if arg.startswith("file:")]
    assert f"file:{files['driving']}" in inputs and f"file:{files['speech']}" in inputs
    assert seconds(out) == pytest.approx(seconds(files["driving"]), abs=FRAME_S)
    assert 0.5 < seconds(trimmed) < 1.0 and 0.5 < seconds(speech) < 1.0


def test_a_subclip_is_rendered_and_the_output_lasts_as_long_as_it(files: dict[str, Path], writes: list[str],
                                                                   no_leaks: None) -> None:
    """An edited clip goes through moviepy's writer once; side_by_side and trim_audio last as long as the subclip."""
    with result_of(files["driving"]).clip() as clip:
        part = clip.subclipped(0.4, 1.6)
        out = helpers.side_by_side([part, files["portrait"]], height=120)
        assert writes == ["VideoFileClip.write_videofile", "AudioFileClip.write_audiofile"]  # its sound too
        sound = helpers.trim_audio(clip.audio.subclipped(0.2, 1.0), max_seconds=15)
    assert seconds(out) == pytest.approx(1.2, abs=FRAME_S)
    assert try_decode(out).facts.has_audio
    assert seconds(sound) == pytest.approx(0.8, abs=0.05)  # AAC frames round the end a little
    assert writes[-1] == "AudioFileClip.write_audiofile"


def test_as_clip_returns_clips_of_the_outputs(files: dict[str, Path], no_leaks: None) -> None:
    """as_clip=True hands back a VideoFileClip / AudioFileClip of the output, of the right duration."""
    from moviepy import AudioFileClip, VideoFileClip

    with VideoFileClip(str(files["driving"])) as clip:
        with helpers.side_by_side([clip.subclipped(0, 1), clip], height=120, as_clip=True) as both:
            assert isinstance(both, VideoFileClip)
            assert both.duration == pytest.approx(seconds(files["driving"]), abs=FRAME_S)
            assert tuple(both.size) == (320, 120)
        with helpers.trim_audio(clip, max_seconds=1.0, as_clip=True) as sound:
            assert isinstance(sound, AudioFileClip) and 0.5 < sound.duration < 1.0
    with helpers.reel([files["silent"]], as_clip=True) as joined:
        assert joined.duration == pytest.approx(seconds(files["silent"]), abs=FRAME_S)


def test_a_reel_of_two_results_with_titles_lasts_their_sum_plus_the_cards(files: dict[str, Path],
                                                                          no_leaks: None) -> None:
    """Two Results with title cards: as long as both plus two cards, at the first one's size, with sound."""
    first, second = result_of(files["driving"]), result_of(files["silent"])
    out = helpers.reel([first, second], titles=["first take", "second take"], title_seconds=0.5)
    facts = try_decode(out).facts
    assert facts.duration == pytest.approx(seconds(first.path) + seconds(second.path) + 2 * 0.5, abs=2 * FRAME_S)
    assert facts.size == (320, 240) and facts.has_audio
    card = frame_at(out, 0.25).astype(int)
    assert card.mean() < 40 and card.max() > 200  # white text on black


def test_a_reel_letterboxes_other_sizes_to_the_first(files: dict[str, Path], no_leaks: None) -> None:
    """A 160x240 piece after a 320x240 one: shown whole in the middle, black bars left and right."""
    from moviepy import VideoFileClip

    with VideoFileClip(str(files["tall"])) as tall:
        out = helpers.reel([files["silent"], tall], titles=[None, ""])  # no cards
    assert seconds(out) == pytest.approx(seconds(files["silent"]) + 1.0, abs=2 * FRAME_S)
    frame = frame_at(out, seconds(files["silent"]) + 0.5).astype(int)
    assert frame.shape == (240, 320, 3)
    assert frame[:, :70].max() < 30 and frame[:, -70:].max() < 30  # the bars
    middle = frame[20:220, 90:230].mean(axis=(0, 1))
    assert middle[1] > 200 and middle[0] < 60 and middle[2] < 60  # the green clip, whole height
    sound = pcm(out)
    first = seconds(files["silent"])
    assert np.abs(sound[: int((first - 0.1) * 8000)]).max() < 0.01  # the silent piece stays silent
    tone = sound[int((first + 0.2) * 8000): int((first + 0.8) * 8000)]
    assert np.sqrt(np.mean(tone**2)) > 0.03  # the tall piece's tone is kept (lavfi's sine: RMS 0.09)


def test_clips_passed_in_stay_open_and_nothing_is_left_running(files: dict[str, Path]) -> None:
    """The helpers do not close the caller's clips; once the caller closes them no ffmpeg process of ours remains."""
    before = ffmpeg_children()
    clip = moviepy.VideoFileClip(str(files["driving"]))
    helpers.reel([clip.subclipped(0, 0.5), files["silent"]], titles=["a", "b"], title_seconds=0.3)
    helpers.side_by_side([clip.resized(0.5)], height=64)
    assert clip.reader is not None
    clip.get_frame(1.0)  # still usable
    clip.close()
    assert ffmpeg_children() - before == set()


@pytest.mark.parametrize("make", ["zero", "none"])
def test_a_clip_with_no_duration_is_refused_with_a_fix(make: str) -> None:
    """A clip lasting 0 s, or an ImageClip given no duration: MediaError saying to give it one."""
    from moviepy import ColorClip, ImageClip

    clip = ColorClip((64, 64), color=(0, 0, 0), duration=0) if make == "zero" else ImageClip(np.zeros((64, 64, 3)))
    for call in (lambda: helpers.side_by_side([clip]), lambda: helpers.reel([clip])):
        with pytest.raises(MediaError, match="nothing to play") as caught:
            call()
        assert "with_duration" in (caught.value.hint or "")


@pytest.mark.parametrize("value", [object(), 42, {"path": "x.mp4"}, b"bytes"])
def test_an_object_that_is_no_clip_or_path_is_a_usage_error(value: object) -> None:
    """Each helper names the type it got and what it takes."""
    for call, accepted in ((lambda: helpers.side_by_side([value]), "moviepy video clip"),
                           (lambda: helpers.trim_audio(value), "moviepy audio clip"),
                           (lambda: helpers.reel([value]), "moviepy video clip")):
        with pytest.raises(UsageError, match=type(value).__name__) as caught:
            call()
        assert accepted in (caught.value.hint or "")


def test_sound_without_picture_and_picture_without_sound_are_refused(files: dict[str, Path], no_leaks: None) -> None:
    """An audio clip to side_by_side or reel, a silent video clip to trim_audio, a closed clip: clear MediaErrors."""
    from moviepy import AudioFileClip, VideoFileClip

    with AudioFileClip(str(files["speech"])) as sound, VideoFileClip(str(files["silent"])) as silent:
        for call in (lambda: helpers.side_by_side([files["portrait"], sound]), lambda: helpers.reel([sound])):
            with pytest.raises(MediaError, match="AudioFileClip, which has no picture") as caught:
                call()
            assert "with_audio" in (caught.value.hint or "")
        with pytest.raises(MediaError, match="has no audio to trim"):
            helpers.trim_audio(silent)
    with pytest.raises(MediaError, match="was closed") as caught:
        helpers.side_by_side([silent])
    assert isinstance(caught.value, SparkError) and "open it again" in (caught.value.hint or "")
    with pytest.raises(MediaError, match="still image"):
        helpers.reel([files["portrait"]])
