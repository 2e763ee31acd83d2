"""Reuse against what the attack on issue 25 did to it (a real local server on loopback, the journal on disk, real
videos): the file the journal names is brought into a new folder only while it is still the video recorded, and
never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spark_nb import _files, avatar
from spark_nb._config import resolve
from spark_nb._journal import journal_at
from spark_nb.errors import WriteError
from spark_nb.local import LocalServer

from .conftest import cloud_config

PRIVATE = b"PRIVATE KEY MATERIAL -----BEGIN OPENSSH PRIVATE KEY-----\n" * 4


def test_a_reused_video_replaced_by_a_link_or_another_file_is_fetched_again_not_copied(
        server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """The journal's video replaced by a link to a private file, then by a copy of it (a regular file that is no
    video): a reuse into a new folder brings neither in (before: the private file was linked into the new folder as
    the video); the video is fetched again from the service, and the private file is never read into a folder."""
    cloud = cloud_config(server)
    first = avatar.generate(media["portrait"], media["speech"], progress=False, output_dir=tmp_path / "a", **cloud)
    private = tmp_path / "private.txt"
    private.write_bytes(PRIVATE)
    original = first.path.read_bytes()
    journal = journal_at(resolve().home)

    def as_link(path: Path) -> None:
        path.unlink()
        os.symlink(private, path)

    def as_copy(path: Path) -> None:
        path.unlink()
        path.write_bytes(PRIVATE)

    for number, swap in enumerate((as_link, as_copy)):
        recorded = journal.by_task(first.task_id)
        assert recorded is not None and recorded.path and Path(recorded.path).is_file()
        swap(Path(recorded.path))  # the file the journal names now
        folder = tmp_path / f"again{number}"
        again = avatar.generate(media["portrait"], media["speech"], progress=False, output_dir=folder, **cloud)
        assert again.task_id == first.task_id and server.stats()["created"] == 1  # reused, not paid again
        assert not again.path.is_symlink() and again.path.read_bytes() == original
        assert all(PRIVATE not in path.read_bytes() for path in folder.rglob("*") if path.is_file())


def test_link_atomically_never_brings_a_link_in_and_judges_the_file_before_it_takes_its_place(
        tmp_path: Path) -> None:
    """A link as the source is refused, on the hard-link path and on the copy path (another file system); a check
    that refuses the part leaves the target as it was and no part file behind."""
    private = tmp_path / "private.txt"
    private.write_bytes(PRIVATE)
    link = tmp_path / "video.mp4"
    os.symlink(private, link)
    target = tmp_path / "out" / "video.mp4"
    target.parent.mkdir()
    with pytest.raises(WriteError):
        _files.link_atomically(link, target)
    with pytest.raises(WriteError):
        _files._copied(link, target, None)
    target.write_bytes(b"kept")

    def refuse(part: Path) -> None:
        raise WriteError(f"{part.name} is not the video")

    with pytest.raises(WriteError):
        _files.link_atomically(private, target, check=refuse)
    assert target.read_bytes() == b"kept" and sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]
