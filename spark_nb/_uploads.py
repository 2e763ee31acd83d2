"""Local media -> a URL the backend can fetch: an HTTP upload endpoint, an S3 bucket, or your own callable."""

from __future__ import annotations

import mimetypes
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._text import file_name_to_send
from ._urls import is_http_url
from .errors import SparkError, UploadError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

    from ._client import ApiClient
    from ._config import Settings

Uploader = Callable[[Path], str]


class HTTPUploader:
    """POSTs a file as multipart `file` to an endpoint answering {"url": ...} or {"data": {"url": ...}}."""

    def __init__(self, endpoint: str, client: ApiClient) -> None:
        self.endpoint = endpoint
        self._client = client

    def __call__(self, path: Path) -> str:
        return self._client.upload(self.endpoint, path)

    def __repr__(self) -> str:
        return f"HTTPUploader({self.endpoint!r})"


class S3Uploader:
    """Puts a file in an S3-compatible bucket and returns a presigned GET URL (needs the `s3` extra)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, expires: int = 6 * 3600) -> None:
        self.bucket, self.prefix, self.endpoint_url, self.expires = bucket, prefix.strip("/"), endpoint_url, expires
        self._s3: S3Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Uploader(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def _client(self) -> S3Client:  # boto3 is optional: imported on the first upload
        with self._lock:
            if self._s3 is None:
                try:
                    import boto3
                except ImportError as exc:
                    raise UploadError("the S3 uploader needs boto3", hint="pip install 'spark-nb[s3]'") from exc
                self._s3 = boto3.client("s3", endpoint_url=self.endpoint_url)
            return self._s3

    def __call__(self, path: Path) -> str:
        name = file_name_to_send(path.name)
        key = "/".join(p for p in (self.prefix, f"{uuid.uuid4().hex[:12]}-{name}") if p)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        s3 = self._client()
        try:
            s3.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
            return s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expires
            )
        except Exception as exc:  # botocore raises many unrelated types
            raise UploadError(f"uploading {path.name} to s3://{self.bucket}/{key} failed: {exc}",
                              hint="check the bucket name, endpoint and AWS credentials") from exc


def uploader_for(settings: Settings, client: ApiClient) -> Uploader:
    """The uploader these settings name: the local server's storage, a callable, an HTTP endpoint, or S3."""
    if settings.backend == "local":
        return HTTPUploader(f"{client.base_url}/api/v1/storage/files", client)
    choice = settings.uploader
    if callable(choice):
        return choice
    if is_http_url(choice):
        return HTTPUploader(choice, client)
    if settings.s3_bucket:
        return _s3_uploaders(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url)
    raise UploadError(
        "a local file needs uploading, but no uploader is configured for the cloud backend",
        hint="set SPARK_NB_UPLOAD_URL to an HTTP upload endpoint, or SPARK_NB_S3_BUCKET (with the s3 extra) "
        "for a bucket, or pass uploader=<callable path -> url>; or pass http(s) URLs instead of files",
    )


_s3_cache: dict[tuple[str, str, str | None], S3Uploader] = {}


def _s3_uploaders(bucket: str, prefix: str, endpoint_url: str | None) -> S3Uploader:
    key = (bucket, prefix, endpoint_url)
    if key not in _s3_cache:
        _s3_cache[key] = S3Uploader(bucket, prefix, endpoint_url)
    return _s3_cache[key]


def upload(path: Path, uploader: Uploader) -> str:
    """The URL uploader gives for path, checked to be http(s); whatever else an uploader raises (a callable of the
    user's, boto3) is an UploadError naming the file, not an internal error of spark_nb."""
    try:
        url = uploader(path)
    except SparkError:  # the client's own errors (a refused key, a 413) say what they are
        raise
    except Exception as exc:
        raise UploadError(f"the uploader failed for {path.name}: {type(exc).__name__}: {exc}",
                          hint="check the uploader (uploader=, SPARK_NB_UPLOAD_URL or the S3 settings); nothing "
                               "was created") from exc
    if not is_http_url(url):
        raise UploadError(f"the uploader returned {url!r} for {path.name}, not an http(s) URL",
                          hint="an uploader is a callable taking a Path and returning an http(s) URL")
    return url
