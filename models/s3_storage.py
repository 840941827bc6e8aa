"""``RegistryStorage`` on an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2, ...), through boto3.

Endpoint, region and credentials come from the standard AWS configuration (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, ...), so nothing
S3-specific lives in camcount's settings beyond the ``s3://BUCKET[/PREFIX]`` location.

Model files are downloaded on demand into a local cache, because ONNX Runtime opens a filesystem path.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from models.atomic_files import write_atomically
from models.errors import ModelError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_MISSING_BUCKET = {"NoSuchBucket"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken", "InvalidToken",
}
_UNSAFE_ETAG_CHARACTERS = re.compile(r"[^0-9A-Za-z_-]")
_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and AWS_ENDPOINT_URL for a service "
    "other than AWS S3 (MinIO, Ceph, R2)"
)


class S3RegistryError(ModelError):
    """The registry's bucket cannot be used: it is missing, unreachable, or the credentials are refused."""

    code = "MODEL_002"
    detail = "registry-unavailable"


class S3RegistryStorage:
    """``RegistryStorage`` on ``s3://bucket/prefix``; every registry key is stored as the object ``prefix/key``.

    Invariants: writes are single PUTs (or multipart uploads, completed atomically by S3), so readers see the
    old object or the new one. A cached file ``cache_dir/BUCKET/PREFIX/KEY_DIR/ETAG/NAME`` only ever holds the
    content S3 served under that ETag (written to a temp file, then os.replace'd), so a cached copy whose ETag
    matches the object's current ETag is reused without downloading it again.
    """

    def __init__(self, bucket: str, prefix: str, cache_dir: Path, client: BaseClient | None = None) -> None:
        parts = [part for part in prefix.split("/") if part]
        if not bucket or any(part in (".", "..") for part in parts):
            raise S3RegistryError(
                f"bad S3 registry location bucket={bucket!r} prefix={prefix!r}: use s3://BUCKET[/PREFIX] with a "
                "bucket name and a prefix without '.' or '..' segments"
            )
        self.bucket = bucket
        self.prefix = "/".join(parts)
        self.cache_dir = Path(cache_dir)
        # A session of its own: boto3's default session caches the credentials it first found, for the process.
        self.client: BaseClient = client if client is not None else boto3.session.Session().client("s3")

    @classmethod
    def from_url(cls, url: str, cache_dir: Path) -> "S3RegistryStorage":
        """Storage for ``s3://BUCKET[/PREFIX]``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise S3RegistryError(f"bad S3 registry URL {url!r}: use s3://BUCKET[/PREFIX], e.g. s3://models/camcount")
        return cls(parts.netloc, parts.path, cache_dir)

    def read_bytes(self, key: str) -> bytes | None:
        with self._errors(f"reading {self._url(key)}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            except ClientError as exc:
                if _code(exc) in _MISSING_KEY:
                    return None
                raise
            return response["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._errors(f"writing {self._url(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    def put_file(self, key: str, source: Path) -> None:
        with self._errors(f"uploading {source} to {self._url(key)}"):
            self.client.upload_file(str(source), self.bucket, self._object(key))

    def list_children(self, prefix: str) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        directory = f"{root}{prefix}/" if prefix else root
        names: set[str] = set()
        with self._errors(f"listing {self._url(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=directory, Delimiter="/"
            )
            for page in pages:
                names.update(entry["Prefix"][len(directory):].rstrip("/") for entry in page.get("CommonPrefixes", []))
                names.update(entry["Key"][len(directory):] for entry in page.get("Contents", []))
        return sorted(name for name in names if name and not name.startswith("."))

    def local_path(self, key: str) -> Path:
        """Cached local copy of ``key``, downloaded first when the cache has no copy of the object's current ETag."""
        with self._errors(f"downloading {self._url(key)}"):
            try:
                etag = self.client.head_object(Bucket=self.bucket, Key=self._object(key))["ETag"]
            except ClientError as exc:
                if _code(exc) in _MISSING_KEY:
                    raise S3RegistryError(
                        f"{self._url(key)} does not exist although its manifest does: the version was removed or "
                        "only partly copied; copy the object back or register the model again as a new version"
                    ) from exc
                raise
            cached = self._cache_path(key, etag)
            if cached.is_file():
                return cached
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            # Name the copy by the ETag of what was actually served: the object may have changed since the HEAD.
            target = self._cache_path(key, response["ETag"])
            write_atomically(target, lambda handle: shutil.copyfileobj(response["Body"], handle, _CHUNK))
        logger.info("downloaded %s to %s", self._url(key), target)
        return target

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object(key)}"

    def _cache_path(self, key: str, etag: str) -> Path:
        *directories, name = self._object(key).split("/")
        safe_etag = _UNSAFE_ETAG_CHARACTERS.sub("_", etag.strip('"'))
        return self.cache_dir.joinpath(self.bucket, *directories, safe_etag, name)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn boto3's errors into S3RegistryError messages that say what to set or fix."""
        try:
            yield
        except NoCredentialsError as exc:
            raise S3RegistryError(f"{action}: no AWS credentials found; {_CREDENTIALS_HINT}") from exc
        except EndpointConnectionError as exc:
            raise S3RegistryError(
                f"{action}: cannot reach {exc.kwargs.get('endpoint_url')}; check AWS_ENDPOINT_URL and that the "
                "S3 service is running"
            ) from exc
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING_BUCKET:
                raise S3RegistryError(
                    f"{action}: bucket {self.bucket!r} does not exist at this endpoint; create it, or fix the "
                    "bucket in model.registry (s3://BUCKET[/PREFIX]) or AWS_ENDPOINT_URL"
                ) from exc
            if code in _BAD_CREDENTIALS:
                raise S3RegistryError(
                    f"{action}: the S3 service refused the credentials ({code}); {_CREDENTIALS_HINT}, with read/write "
                    f"access to bucket {self.bucket!r}"
                ) from exc
            raise S3RegistryError(f"{action}: S3 error {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise S3RegistryError(f"{action}: {exc}; check the AWS_* settings of this environment") from exc


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
