"""The server with results in an S3-compatible bucket (moto on 127.0.0.1): presigned URLs and cache hits."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).parent))
from test_app import FAST, wait_done  # noqa: E402

from brushwork.testing.clients import FakeClient  # noqa: E402

BUCKET = "results"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import boto3

    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.session.Session().client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="t",
                                   aws_secret_access_key="t").create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


def _app(make_settings, tmp_path, endpoint: str, fake: FakeClient, bucket: str = BUCKET) -> TestClient:
    from brushwork.api.app import create_app
    from brushwork.config import S3Settings, ServerSettings

    s3 = S3Settings(bucket=bucket, endpoint_url=endpoint, region="us-east-1", access_key_id="AKID",
                    secret_access_key="secret", prefix="brushwork/")
    settings = make_settings(home=tmp_path / "home", server=ServerSettings(s3=s3))
    return TestClient(create_app(settings, clients=lambda s, api: [fake]))


def test_results_go_to_the_bucket_and_identical_requests_are_served_from_it(make_settings, tmp_path, endpoint):
    fake = FakeClient()
    with _app(make_settings, tmp_path, endpoint, fake) as http:
        job = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()["id"])
        assert job["status"] == "succeeded"
        redirect = http.get(job["images"][0], follow_redirects=False)
        assert redirect.status_code == 307 and redirect.headers["location"].startswith(endpoint)
        png = httpx.get(redirect.headers["location"], timeout=10)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        again = http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()
        assert again["status"] == "succeeded" and again["images"] == job["images"] and fake.runs == 1


def test_a_missing_bucket_stops_the_server_at_start(make_settings, tmp_path, endpoint):
    from brushwork.errors import BrushworkError

    with pytest.raises(BrushworkError, match="S3 bucket 'nosuch'"):
        with _app(make_settings, tmp_path, endpoint, FakeClient(), bucket="nosuch"):
            pass
