"""The S3 backend of the file repository: each key's files under `s3://bucket/prefix/<key_id>/` on any
S3-compatible store (AWS, MinIO, Ceph, R2; ONEKEYLLM_S3_ENDPOINT_URL for those that are not AWS).

boto3 streams both ways: an upload is read from the client a part at a time (one PUT below PART_BYTES,
a multipart upload above it, one part in memory at a time, aborted on failure); a download is read from
the object's body as the client takes it. Credentials and region come from the standard AWS_* variables
(boto3's own chain). Under gevent, boto3's sockets are gevent's: a slow store stalls only its own requests.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

from ...api_error import ApiError
from .store import content_missing, too_large, unavailable

PART_BYTES = 8 * 1024 * 1024  # S3's parts must be at least 5 MiB (but the last)
MISSING = ("404", "NoSuchKey", "NotFound")


class _ChunkReader:
    """A readable (not seekable) file over the request's chunks, counting them against the size limit."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = bytearray()
        self._max_bytes = max_bytes
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        while amount < 0 or len(self._buffer) < amount:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self.size += len(chunk)
            if self.size > self._max_bytes:
                raise too_large(self._max_bytes)
            self._buffer += chunk
        if amount < 0:
            amount = len(self._buffer)
        out = bytes(self._buffer[:amount])
        del self._buffer[:amount]
        return out


class S3Object:
    """A stored object's body for reading in chunks; a store that fails mid-read is a 503."""

    def __init__(self, body, size: int):
        self._body = body
        self.size = size

    def read(self, amount: Optional[int] = None) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        try:
            return self._body.read(amount)
        except (BotoCoreError, HTTPError, OSError) as error:
            raise unavailable(error) from None

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> "S3Object":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class S3FileStore:
    """The key spaces under one bucket and prefix (the `FileStore` interface)."""

    def __init__(self, url: str, endpoint_url: Optional[str] = None):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        bucket, _, prefix = url[len("s3://"):].partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # checksums only where the API requires them: stores that are not AWS refuse the newer trailers
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                        max_pool_connections=64, request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        s3={"addressing_style": "path"} if endpoint_url else None)
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        # no threads: one part in memory at a time, read from the request in the request's own greenlet
        self.transfer = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                                       use_threads=False)

    def object_key(self, key_id: str, segments: list[str]) -> str:
        """Where a path of a key's space lives in the bucket."""
        return f"{self.prefix}{key_id}/{'/'.join(segments)}"

    def write(self, key_id: str, segments: list[str], chunks: Iterable[bytes], max_bytes: int) -> int:
        """Upload the chunks (a multipart upload past PART_BYTES); the object appears whole or not at all."""
        reader = _ChunkReader(chunks, max_bytes)
        try:
            self.client.upload_fileobj(reader, self.bucket, self.object_key(key_id, segments), Config=self.transfer)
        except ApiError:
            raise
        except Exception as error:  # botocore's and s3transfer's errors alike: the store did not take it
            raise unavailable(_described(error)) from None
        return reader.size

    def open(self, key_id: str, segments: list[str]) -> S3Object:
        """The object's body, streamed (404 when it is gone)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key_id, segments))
        except ClientError as error:
            if _code(error) in MISSING:
                raise content_missing() from None
            raise unavailable(_described(error)) from None
        except BotoCoreError as error:
            raise unavailable(error) from None
        return S3Object(answer["Body"], answer["ContentLength"])

    def remove(self, key_id: str, segments: list[str]) -> None:
        """Delete the object (S3 answers the same whether it was there or not)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key_id, segments))
        except (BotoCoreError, ClientError) as error:
            raise unavailable(_described(error)) from None

    def check(self) -> None:
        """A HEAD on the bucket: it exists and these credentials may use it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            raise unavailable(_described(error)) from None


def _code(error) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def _described(error: Exception) -> str:
    """What the log says of a store's refusal: its kind and code, never a request's signed headers."""
    code = _code(error)
    return f"{type(error).__name__} {code}".strip() if code else f"{type(error).__name__}: {error}"
