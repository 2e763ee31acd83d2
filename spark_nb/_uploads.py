"""Local media -> a URL the backend can fetch: an HTTP upload endpoint, an S3 bucket, or your own callable."""

from __future__ import annotations

import mimetypes
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ._deadline import ran_out, within
from ._text import file_name_to_send
from ._urls import is_http_url, shown_url
from .errors import SparkError, UploadError

if TYPE_CHECKING:  # boto3 is optional: imported on the first upload
    from boto3.session import Session
    from types_boto3_s3 import S3Client

    from ._client import ApiClient
    from ._config import Settings

Uploader = Callable[[Path], str]


class HTTPUploader:
    """POSTs a file as multipart `file` to an endpoint answering {"url": ...} or {"data": {"url": ...}}.

    spark_nb makes one from SPARK_NB_UPLOAD_URL (or upload_url=, or uploader= an URL); call it with a Path to get
    the file's URL.

    Args:
        endpoint: the upload endpoint's URL.
        client: the API client whose key and limits the upload uses (the key goes only to the API's own host).
    """

    def __init__(self, endpoint: str, client: ApiClient) -> None:
        self.endpoint = endpoint
        self._client = client

    def __call__(self, path: Path) -> str:
        return self._client.upload(self.endpoint, path)

    def __repr__(self) -> str:
        return f"HTTPUploader({shown_url(self.endpoint)!r})"


S3_CONNECT_S = 10.0  # connecting to the bucket's endpoint
S3_READ_S = 60.0  # botocore's own read limit: each attempt's, when the call has no deadline
S3_ATTEMPTS = 3  # a throttled or failed PUT is tried again, this many times in all
_RAN_OUT_S = 0.05  # less than this left of the call's deadline is none
_EXPECT_S = 1.0  # how long botocore waits for a "100 Continue" before it sends a PUT's body anyway


class S3Uploader:
    """Puts a file in an S3-compatible bucket and returns a presigned GET URL (needs the `s3` extra).

    spark_nb makes one from SPARK_NB_S3_BUCKET (and _PREFIX, _ENDPOINT_URL); credentials are boto3's own (the
    environment, ~/.aws). Calling it raises UploadError when boto3 is missing or the upload fails. Each attempt is
    one PUT by a client whose connect and read limits are what is left of the call's deadline (`_deadline`; else
    10 s and 60 s), with botocore's own retries off: at most S3_ATTEMPTS, backing off within the deadline; a
    stalled endpoint ends with the call's timeout, an UploadError naming it.

    Args:
        bucket: the bucket's name.
        prefix: a folder in the bucket for the uploads.
        endpoint_url: an S3-compatible service's URL (MinIO, R2, ...), or None for AWS.
        expires: how long the presigned URL works, in seconds (6 hours: tasks may queue).
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, expires: int = 6 * 3600) -> None:
        self.bucket, self.prefix, self.endpoint_url, self.expires = bucket, prefix.strip("/"), endpoint_url, expires
        self._session: Session | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        endpoint = None if self.endpoint_url is None else shown_url(self.endpoint_url)
        return f"S3Uploader(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={endpoint!r})"

    def _client(self) -> Callable[[float], S3Client]:
        """A maker of clients, one per attempt, whose limits fit in the seconds given. The session (not
        thread-safe: the lock) is made and its S3 model loaded once, so a client takes milliseconds to make."""
        with self._lock:
            if self._session is None:
                try:
                    import boto3
                except ImportError as exc:
                    raise UploadError("the S3 uploader needs boto3", hint="pip install 'spark-nb[s3]'") from exc
                session = boto3.session.Session()
                session.client("s3", endpoint_url=self.endpoint_url)  # loads the model: 0.3 s, once
                self._session = session
            session = self._session
        from botocore.config import Config

        def client(left: float) -> S3Client:
            # botocore waits up to 1 s for a "100 Continue" before it sends a PUT's body: that comes off the read
            config = Config(connect_timeout=min(S3_CONNECT_S, left), read_timeout=max(_RAN_OUT_S, left - _EXPECT_S),
                            retries={"total_max_attempts": 1})
            with self._lock:
                return session.client("s3", endpoint_url=self.endpoint_url, config=config)

        return client

    def __call__(self, path: Path) -> str:
        name = file_name_to_send(path.name)
        key = "/".join(p for p in (self.prefix, f"{uuid.uuid4().hex[:12]}-{name}") if p)
        where = f"{path.name} to s3://{self.bucket}/{key}"
        from ._retry import RetryPolicy  # httpx with it: not at `import spark_nb`

        make, problem = self._client(), None
        for attempt in range(1, S3_ATTEMPTS + 1):
            left = within(S3_READ_S)
            if left < _RAN_OUT_S:
                break
            try:
                return self._put(make(left), path, key, mimetypes.guess_type(name)[0] or "application/octet-stream")
            except Exception as exc:  # botocore raises many unrelated types
                problem = exc
            if attempt == S3_ATTEMPTS or not _transient(problem):
                raise UploadError(f"uploading {where} failed ({attempt} attempt{'s' * (attempt > 1)}; last: "
                                  f"{problem})", hint="check the bucket name, endpoint and AWS credentials"
                                  ) from problem
            time.sleep(min(RetryPolicy().delay(attempt - 1), within(S3_READ_S)))
        timeout, last = ran_out() or "the call's timeout", f" (last: {problem})" if problem else ""
        raise UploadError(f"uploading {where} did not end within {timeout}{last}",
                          hint="pass a longer timeout= (a large file on a slow link takes long); no task was created")

    def _put(self, s3: S3Client, path: Path, key: str, content_type: str) -> str:
        """One PUT of path at key, and its presigned GET URL."""
        with path.open("rb") as body:
            s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                         ExpiresIn=self.expires)


def _transient(exc: Exception) -> bool:
    """A failure another attempt may not meet: the connection (refused, reset, timed out), or an answer of
    throttling or a server error."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    from ._retry import RETRYABLE_STATUS

    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status in RETRYABLE_STATUS or exc.response.get("Error", {}).get("Code") == "SlowDown"
    return False


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
