"""Local files become URLs the service can fetch: an S3 bucket, any callable, or a clear error when none is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb._ffmpeg import read_header

from .conftest import cloud_config
from .test_pipeline import assert_video, upload


@pytest.mark.slow
def test_s3_uploader_against_a_real_s3_server_on_loopback(media: dict[str, Path], server: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Local files go to an S3 bucket (moto's server mode on 127.0.0.1) and the task fetches presigned URLs."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    s3.start()
    try:
        host, port = s3.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="avatars")
        config = {**cloud_config(server), "uploader": None, "s3_bucket": "avatars", "s3_prefix": "in",
                  "s3_endpoint_url": endpoint}
        result = avatar.generate(media["portrait"], media["speech"], progress=False, **config)
        assert_video(result, read_header(media["speech"]).duration)
        listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="avatars")
        keys = [item["Key"] for item in listing["Contents"]]
        assert len(keys) == 2 and all(k.startswith("in/") for k in keys)
        assert server.stats()["uploads"] == 0  # nothing went through the HTTP upload endpoint
    finally:
        s3.stop()


def test_a_callable_uploader(media: dict[str, Path], server: Any) -> None:
    """uploader= may be any callable path -> url; it is called once per local file."""
    seen: list[str] = []

    def my_uploader(path: Path) -> str:
        seen.append(path.name)
        return upload(server, path)

    result = avatar.generate(media["portrait"], media["speech"], progress=False,
                             **{**cloud_config(server), "uploader": my_uploader})
    assert result.status == "completed" and sorted(seen) == sorted([media["portrait"].name, media["speech"].name])


def test_no_uploader_on_the_cloud_path_names_the_three_options(media: dict[str, Path], server: Any) -> None:
    """Local files with no uploader configured: a clear error, and no task is created."""
    with pytest.raises(spark_nb.UploadError) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False,
                        **{**cloud_config(server), "uploader": None})
    text = str(info.value)
    assert "SPARK_NB_UPLOAD_URL" in text and "SPARK_NB_S3_BUCKET" in text and "uploader=" in text
    assert server.stats()["created"] == 0


@pytest.mark.parametrize("where", ["endpoint", "local server", pytest.param("s3", marks=pytest.mark.slow)])
def test_a_file_whose_name_is_not_utf8_is_uploaded_under_a_safe_name(where: str, media: dict[str, Path],
                                                                      server: Any, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: an input named `face\\xff.jpg` (bytes that are not UTF-8: an old archive, a USB stick) could not
    be uploaded on any backend ("a header holds a character that is not ASCII... check the base URL and the API
    key"). Now it goes as `face_.jpg` (its suffix kept) to an HTTP endpoint, the local server's storage and S3, and
    the task is created."""
    import os
    import shutil

    from .peers import peers

    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"face\xff.jpg")))
    shutil.copy(media["portrait"], odd)
    config = cloud_config(server)
    if where == "endpoint":  # a scripted endpoint that keeps what it was sent
        start = peers()
        endpoint = next(start)(lambda p, conn, req: p.json(conn, 200, {"url": "https://inputs.example/f.jpg"}))
        config["uploader"] = f"{endpoint.url}/upload"
    elif where == "s3":
        boto3 = pytest.importorskip("boto3")
        moto_server = pytest.importorskip("moto.server")
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        s3.start()
        host, port = s3.get_host_and_port()
        boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="avatars")
        config.update(uploader=None, s3_bucket="avatars", s3_endpoint_url=f"http://{host}:{port}")
    try:
        task = avatar.submit(odd, media["speech"], **config)
        assert task.id and server.stats()["created"] == 1
        if where == "endpoint":
            sent = [s.body for s in endpoint.seen if s.path == "/upload"]
            assert len(sent) == 2 and b'filename="face_.jpg"' in sent[0]
        elif where == "local server":
            assert server.stats()["uploads"] == 2
        else:
            listing = boto3.client("s3", endpoint_url=f"http://{host}:{port}").list_objects_v2(Bucket="avatars")
            assert any(item["Key"].endswith("-face_.jpg") for item in listing["Contents"])
    finally:
        if where == "endpoint":
            next(start, None)
        elif where == "s3":
            s3.stop()


@pytest.mark.parametrize("endpoint", ["stalls", pytest.param("answers 503", marks=pytest.mark.slow)])
def test_the_s3_uploader_ends_by_the_calls_timeout_and_retries_a_bounded_number_of_times(
        endpoint: str, media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second attack: generate(timeout=5) with SPARK_NB_S3_BUCKET and an S3 endpoint that takes the PUT and
    never answers was still running at 100 s (boto3's own 60 s reads, retried). Now each attempt's limits are
    what is left of the call's deadline: it ends by about its timeout with an UploadError naming it, and nothing
    is created. An endpoint that keeps failing (503) is tried S3_ATTEMPTS times, then an UploadError says so."""
    import time

    pytest.importorskip("boto3")
    from spark_nb._uploads import S3_ATTEMPTS

    from .conftest import TEST_KEY
    from .peers import peers
    from .test_pipeline import SLACK_S, TIMEOUT_S, hostile_submission

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}.items():
        monkeypatch.setenv(name, value)

    def s3(p: Any, conn: Any, req: Any) -> None:
        if endpoint == "stalls":
            p.stop_event.wait(60)
            return None
        return p.respond(conn, 503, b"<Error><Code>ServiceUnavailable</Code></Error>",
                         {"Content-Type": "application/xml"})

    start = peers()
    make = next(start)
    api, bucket = make(hostile_submission("none")), make(s3)
    timeout = TIMEOUT_S if endpoint == "stalls" else 60  # three attempts of about 1 s each, and their backoff
    try:
        began = time.monotonic()
        with pytest.raises(spark_nb.UploadError) as info:
            avatar.generate(media["portrait"], "https://inputs.example/a.wav", progress=False, timeout=timeout,
                            backend="cloud", base_url=api.url, api_key=TEST_KEY, s3_bucket="avatars",
                            s3_endpoint_url=bucket.url, output_dir=tmp_path / "out")
        assert time.monotonic() - began < TIMEOUT_S + SLACK_S
        puts = sum(s.method == "PUT" for s in bucket.seen)
        if endpoint == "stalls":
            assert f"did not end within the call's timeout of {TIMEOUT_S:g} s" in str(info.value) and puts == 1
            assert "timeout=" in (info.value.hint or "")
        else:
            said = str(info.value)
            assert f"failed ({S3_ATTEMPTS} attempts; last:" in said and "ServiceUnavailable" in said, said
            assert puts == S3_ATTEMPTS
        assert not any(s.path == "/model/v1/generation" for s in api.seen)
    finally:
        next(start, None)
