"""The S3 result store against a moto server on loopback: round trip, put-once, keys, presigning, errors.

moto is required: if it (or boto3) is missing this module fails to import, it is never skipped.
Every request is checked to go to 127.0.0.1, and nothing else is contacted.
"""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer
from pydantic import ValidationError

from brushwork.errors import BrushworkError
from brushwork.storage.results import ResultStore, image_key
from brushwork.storage.s3 import CACHE_CONTROL, S3ResultStore, S3Settings

BUCKET = "brushwork-test"
SECRET = "s3cr3t-DO-NOT-PRINT-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image" * 10


def _key(seed: str) -> str:
    return image_key(hashlib.sha256(seed.encode()).hexdigest())


@pytest.fixture(scope="module", autouse=True)
def _offline_aws() -> Iterator[None]:
    """No credential chain, no instance metadata, no proxies: only what the settings say."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION",
                     "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        yield


@pytest.fixture(scope="module")
def endpoint(_offline_aws: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    admin = boto3.session.Session().client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    admin.create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def _settings(endpoint: str, **overrides: Any) -> S3Settings:
    values: dict[str, Any] = {"bucket": BUCKET, "endpoint_url": endpoint, "region": "us-east-1",
                              "access_key_id": "AKIDTEST", "secret_access_key": SECRET}
    values.update(overrides)
    return S3Settings(**values)


class Calls:
    """Counts the S3 operations a store's client sends, and refuses any host but loopback."""

    def __init__(self, store: S3ResultStore) -> None:
        self.operations: list[str] = []
        events = store.client.meta.events
        events.register("before-call.s3", self._call)
        events.register("before-send.s3", self._send)

    def _call(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def _send(self, request: Any, **_: Any) -> None:
        host = urlsplit(request.url).hostname
        assert host == "127.0.0.1", f"request left loopback: {request.url}"


def _store(endpoint: str, **overrides: Any) -> tuple[S3ResultStore, Calls]:
    store = S3ResultStore(_settings(endpoint, **overrides))
    return store, Calls(store)


def _head(store: S3ResultStore, key: str) -> dict[str, Any]:
    return store.client.head_object(Bucket=store.settings.bucket, Key=store.settings.prefix + key)


def test_round_trip_sets_content_type_and_cache_control(endpoint: str) -> None:
    store, calls = _store(endpoint)
    key = _key("round trip")
    assert not store.has(key)
    assert store.put(key, PNG) == key
    assert store.has(key)
    assert store.read(key) == PNG
    head = _head(store, key)
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert head["ContentLength"] == len(PNG)
    assert calls.operations == ["HeadObject", "HeadObject", "PutObject", "HeadObject", "GetObject", "HeadObject"]
    store.delete(key)
    assert not store.has(key)
    store.delete(key)  # already gone: not an error


def test_missing_key_reads_as_key_error(endpoint: str) -> None:
    store, _ = _store(endpoint)
    key = _key("never stored")
    with pytest.raises(KeyError) as caught:
        store.read(key)
    assert caught.value.args == (key,)


def test_put_of_an_existing_key_does_nothing(endpoint: str) -> None:
    store, calls = _store(endpoint)
    key = _key("twice")
    store.put(key, PNG)
    first = _head(store, key)["LastModified"]
    time.sleep(1.1)  # LastModified has one-second resolution
    assert store.put(key, b"other bytes: content-addressed, so never written") == key
    assert calls.operations.count("PutObject") == 1
    assert calls.operations.count("HeadObject") == 3  # put, put, and the check above
    assert _head(store, key)["LastModified"] == first
    assert store.read(key) == PNG


@pytest.mark.parametrize("bad", ["", "x.png", "../" + "a" * 64 + ".png", "A" * 64 + ".png", "a" * 64,
                                 "a" * 64 + ".png/../x", "a" * 63 + ".png", "a" * 64 + ".jpg",
                                 "sub/" + "a" * 64 + ".png"])
def test_bad_keys_are_refused_before_any_request(endpoint: str, bad: str) -> None:
    store, calls = _store(endpoint)
    with pytest.raises(ValueError, match="not a result key"):
        store.put(bad, PNG)
    with pytest.raises(ValueError, match="not a result key"):
        store.read(bad)
    with pytest.raises(ValueError, match="not a result key"):
        store.url(bad, 60)
    assert store.has(bad) is False  # like ResultStore.has
    store.delete(bad)  # like ResultStore.delete: nothing to do
    assert calls.operations == []


def test_presigned_url_is_fetchable_from_loopback(endpoint: str) -> None:
    store, calls = _store(endpoint)
    key = _key("presigned")
    store.put(key, PNG)
    url = store.url(key, 120)
    assert url is not None and url.startswith(endpoint + "/")
    assert "X-Amz-Expires=120" in url and "X-Amz-Signature=" in url
    assert SECRET not in url
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with no_proxy.open(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
        assert response.read() == PNG
    assert calls.operations == ["HeadObject", "PutObject"]  # signing makes no request
    assert "X-Amz-Expires=3600" in (store.url(key) or "")  # default: presign_seconds
    with pytest.raises(ValueError, match="at most"):
        store.url(key, 8 * 24 * 3600)


def test_presign_seconds_zero_means_serve_through_the_api(endpoint: str) -> None:
    store, _ = _store(endpoint, presign_seconds=0)
    assert store.url(_key("proxied")) is None
    assert store.url(_key("proxied"), 0) is None
    assert store.url(_key("proxied"), 30) is not None  # an explicit lifetime still signs


def test_prefix_is_respected(endpoint: str) -> None:
    store, _ = _store(endpoint, prefix="brushwork/results")  # trailing '/' added
    assert store.settings.prefix == "brushwork/results/"
    key = _key("prefixed")
    store.put(key, PNG)
    listed = store.client.list_objects_v2(Bucket=BUCKET, Prefix="brushwork/")
    assert [o["Key"] for o in listed["Contents"]] == [f"brushwork/results/{key}"]
    assert store.has(key) and store.read(key) == PNG
    assert f"/{BUCKET}/brushwork/results/{key}?" in (store.url(key, 60) or "")
    unprefixed, _ = _store(endpoint)
    assert not unprefixed.has(key)
    with pytest.raises(KeyError):
        unprefixed.read(key)


def test_missing_bucket_is_one_line_naming_the_bucket(endpoint: str) -> None:
    store, _ = _store(endpoint, bucket="no-such-bucket-here")
    for action in (lambda: store.put(_key("nb"), PNG), lambda: store.read(_key("nb")), store.check):
        with pytest.raises(BrushworkError) as caught:
            action()
        message = str(caught.value)
        assert message.startswith("S3 bucket 'no-such-bucket-here': ")
        assert "NoSuchBucket" in message
        assert "\n" not in message and SECRET not in message
    S3ResultStore(_settings(endpoint)).check()  # the real bucket passes


def test_unreachable_endpoint_is_a_brushwork_error(endpoint: str) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    store, _ = _store(f"http://127.0.0.1:{closed}")
    with pytest.raises(BrushworkError) as caught:
        store.has(_key("unreachable"))
    message = str(caught.value)
    assert message.startswith(f"S3 bucket {BUCKET!r}: EndpointConnectionError: ")
    assert "\n" not in message


def _stubbed(**overrides: Any) -> tuple[S3ResultStore, Stubber]:
    client = boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="y", config=Config(retries={"max_attempts": 1}))
    stubber = Stubber(client)
    stubber.activate()
    return S3ResultStore(S3Settings(bucket=BUCKET, **overrides), client=client), stubber


def test_has_is_false_only_for_404() -> None:
    store, stubber = _stubbed()
    key = _key("forbidden")
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stubber.add_client_error("head_object", service_error_code="403", http_status_code=403)
    stubber.add_client_error("get_object", service_error_code="AccessDenied", service_message="Access Denied",
                             http_status_code=403)
    assert store.has(key) is False
    with pytest.raises(BrushworkError, match=r"^S3 bucket 'brushwork-test': 403: Forbidden \(access denied\)"):
        store.has(key)
    with pytest.raises(BrushworkError, match=r"^S3 bucket 'brushwork-test': AccessDenied: Access Denied \(GetObject\)$"):
        store.read(key)
    stubber.assert_no_pending_responses()


def test_client_is_built_lazily_with_timeouts_and_retries(endpoint: str) -> None:
    store = S3ResultStore(_settings(endpoint))
    assert store._client is None  # nothing built (or imported) until the first request
    store.has(_key("lazy"))
    assert store._client is not None
    config = store.client.meta.config
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}  # 3 tries, first included
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    assert config.s3 == {"addressing_style": "auto"}


def test_secret_never_in_repr_or_str() -> None:
    settings = S3Settings(bucket=BUCKET, access_key_id="AKIDTEST", secret_access_key=SECRET)
    store = S3ResultStore(settings)
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()),
                 repr(store), str(store)):
        assert SECRET not in text
    assert settings.secret_access_key is not None
    assert settings.secret_access_key.get_secret_value() == SECRET


def test_settings_validation() -> None:
    assert S3Settings(bucket="b").prefix == ""
    assert S3Settings(bucket="b", prefix="/a/b/").prefix == "a/b/"
    for bad in ({"bucket": ""}, {"bucket": "a/b"}, {"bucket": "b", "prefix": "a/../b"},
                {"bucket": "b", "prefix": "a//b"}, {"bucket": "b", "access_key_id": "only-the-id"},
                {"bucket": "b", "secret_access_key": "only-the-secret"}, {"bucket": "b", "presign_seconds": -1},
                {"bucket": "b", "presign_seconds": 8 * 24 * 3600}, {"bucket": "b", "endpoint_url": "minio:9000"},
                {"bucket": "b", "addressing_style": "dns"}, {"bucket": "b", "unknown": 1}):
        with pytest.raises(ValidationError):
            S3Settings(**bad)


def test_same_interface_as_the_local_store() -> None:
    for name in ("has", "put", "read", "delete"):
        assert callable(getattr(S3ResultStore, name)) and callable(getattr(ResultStore, name))
    assert not hasattr(S3ResultStore, "path")
