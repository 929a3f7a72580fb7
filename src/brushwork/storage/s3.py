"""Server results in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, GCS interop).

Same interface as `ResultStore` (`has`, `put`, `read`, `delete`; no `path`),
plus `url(key)`: a presigned GET URL, so clients fetch images from the bucket
instead of through the API. Keys are the content-addressed `<64 hex>.png`
names of `storage.results`; anything else is refused before any request.

Writes are atomic by S3 semantics: an object is written by a single PUT and
becomes visible whole or not at all, so a half-written image is never served.
Content-addressed keys never change meaning, so `put` of a key already there
does nothing, and objects carry `Cache-Control: ... immutable`.

boto3 is imported only when the first request is made, so it is needed only
by servers configured with an `s3` section.
"""

from __future__ import annotations

import threading
from typing import Any

from brushwork.config import MAX_PRESIGN_SECONDS, S3Settings
from brushwork.errors import BrushworkError
from brushwork.storage.results import is_key

CONTENT_TYPE = "image/png"
CACHE_CONTROL = "public, max-age=31536000, immutable"

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class S3ResultStore:
    """Result PNGs as objects `<prefix><key>` in one bucket; see the module docstring.

    Every method is blocking network I/O: call it from a worker thread, not the event loop.
    Errors from S3 (missing bucket, access denied, endpoint unreachable, bad credentials)
    are raised as one-line `BrushworkError("S3 bucket 'name': reason")`.
    """

    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ResultStore(bucket={self.settings.bucket!r}, prefix={self.settings.prefix!r})"

    # -- client ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use (thread-safe; boto3 clients are)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise BrushworkError("S3 result store needs boto3: pip install boto3") from exc
        s = self.settings
        options: dict[str, Any] = {
            # 3 tries in all: botocore's `max_attempts` counts retries (3 → 4 tries), `total_max_attempts` does not
            "retries": {"total_max_attempts": 3, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 30,
            "signature_version": "s3v4",
            "s3": {"addressing_style": s.addressing_style},
        }
        if s.endpoint_url is not None:
            # S3-compatible services lag behind AWS's default CRC checksums (botocore >= 1.36);
            # send/verify checksums only where the operation requires them.
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        credentials: dict[str, Any] = {}
        if s.access_key_id is not None and s.secret_access_key is not None:
            credentials = {"aws_access_key_id": s.access_key_id,
                           "aws_secret_access_key": s.secret_access_key.get_secret_value()}
        session = boto3.session.Session()  # its own session: the default one is not thread-safe
        try:
            return session.client("s3", endpoint_url=s.endpoint_url, region_name=s.region,
                                  config=Config(**options), **credentials)
        except (*_boto_errors(), ValueError) as exc:  # bad region / endpoint: botocore raises at build time
            raise self._error(exc) from exc

    # -- errors ----------------------------------------------------------------------

    def _error(self, exc: BaseException) -> BrushworkError:
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and "Error" in response:
            error = response.get("Error") or {}
            code = str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
            message = error.get("Message") or {"403": "Forbidden (access denied)", "404": "Not Found"}.get(code, "")
            operation = getattr(exc, "operation_name", "")
            reason = f"{code}: {message}" if message else code
            if operation:
                reason += f" ({operation})"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return BrushworkError(f"S3 bucket {self.settings.bucket!r}: {_one_line(reason)}")

    def _call(self, operation: str, missing: frozenset[str] = frozenset(), **params: Any) -> Any:
        """`client.<operation>(**params)`; error codes in `missing` → `_Missing`, other S3 errors → BrushworkError."""
        client = self.client
        try:
            response = getattr(client, operation)(**params)
            if operation == "get_object":
                with response["Body"] as body:
                    return body.read()
            return response
        except _boto_errors() as exc:
            response = getattr(exc, "response", None)
            code = str((response.get("Error") or {}).get("Code", "")) if isinstance(response, dict) else ""
            if code in missing:
                raise _Missing(code) from exc
            raise self._error(exc) from exc

    # -- keys --------------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """The object name of a result key; ValueError for anything but a result key."""
        if not is_key(key):
            raise ValueError(f"not a result key: {key!r}")
        return self.settings.prefix + key

    # -- ResultStore interface ------------------------------------------------------------

    def has(self, key: str) -> bool:
        """Whether the object exists (False for a non-key, like `ResultStore`); BrushworkError on S3 errors.

        A HEAD has no error body, so a missing bucket also reads as 404 → False; use `check()`
        at startup. On AWS, HEAD of a missing object is 403 without s3:ListBucket → BrushworkError.
        """
        if not is_key(key):
            return False
        return self._exists(self.object_key(key))

    def _exists(self, name: str) -> bool:
        try:
            self._call("head_object", _MISSING, Bucket=self.settings.bucket, Key=name)
        except _Missing:
            return False
        return True

    def put(self, key: str, data: bytes) -> str:
        """Store `data` under `key` with one PUT (atomic); a key already there is left as it is."""
        name = self.object_key(key)
        if not self._exists(name):
            self._call("put_object", Bucket=self.settings.bucket, Key=name, Body=data,
                       ContentType=CONTENT_TYPE, CacheControl=CACHE_CONTROL)
        return key

    def read(self, key: str) -> bytes:
        """The stored bytes; KeyError(key) when there is no such object."""
        name = self.object_key(key)
        try:
            return self._call("get_object", _MISSING, Bucket=self.settings.bucket, Key=name)
        except _Missing:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        """Remove the object (a missing one, or a non-key, is not an error, like `ResultStore`)."""
        if not is_key(key):
            return
        try:
            self._call("delete_object", _MISSING, Bucket=self.settings.bucket, Key=self.object_key(key))
        except _Missing:
            pass

    def url(self, key: str, expires: int | None = None) -> str | None:
        """A presigned GET URL valid `expires` seconds (default `presign_seconds`); None when that is 0.

        None means "serve it through the API" (as `ResultStore.url` always does). Signing is
        local: no request is made and the object's existence is not checked.
        """
        name = self.object_key(key)
        seconds = self.settings.presign_seconds if expires is None else expires
        if seconds <= 0:
            return None
        if seconds > MAX_PRESIGN_SECONDS:
            raise ValueError(f"presigned URLs live at most {MAX_PRESIGN_SECONDS} s, asked {seconds}")
        params = {"Bucket": self.settings.bucket, "Key": name}
        return str(self._call("generate_presigned_url", ClientMethod="get_object", Params=params,
                              ExpiresIn=seconds))

    def check(self) -> None:
        """Fail fast at startup: the bucket exists and these credentials reach it (HEAD bucket)."""
        try:
            self._call("head_bucket", frozenset({"404", "NoSuchBucket", "NotFound"}), Bucket=self.settings.bucket)
        except _Missing as exc:
            raise BrushworkError(f"S3 bucket {self.settings.bucket!r}: NoSuchBucket: "
                                 "the bucket does not exist") from exc


class _Missing(Exception):
    """An S3 'not found' answer, turned into False / KeyError / nothing by the caller."""


def _boto_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)
