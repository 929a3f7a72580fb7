"""The server never answers a 5xx to what a client sends: a schema fuzzer plus hand-written hostile inputs.

Engine clients are fakes (a tiny PNG per seed, no engine work), so every
request exercises parsing, validation, planning, the queue and the store, and
nothing else. Part 1 lets schemathesis generate requests for every operation
of the app's own OpenAPI schema (loaded in-process over ASGI, lifespan
running); part 2 sends what a schema fuzzer would not think of.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error

from brushwork.testing.clients import FakeClient

HealthCheck, settings = hypothesis.HealthCheck, hypothesis.settings

FAST = {"model": "tiny-sd15", "steps": 2, "width": 64, "height": 64, "seed": 3}


def build_app(tiny_models: Any, root: Path, **server: Any) -> Any:
    """The app over the tiny models (as tests/conftest.py's make_settings), with a fake engine client."""
    from brushwork.api.app import create_app
    from brushwork.config import ModelSource, ServerSettings, Settings

    checkpoints = tiny_models.models_dir / "checkpoints"
    # the families' default checkpoints are the tiny ones, so a request naming no model plans (and runs) too
    defaults = {"sd15": ModelSource(source=str(checkpoints / "tiny-sd15"), family="sd15"),
                "sdxl": ModelSource(source=str(checkpoints / "tiny-sdxl"), family="sdxl")}
    settings = Settings.load(home=root / "home", models_dir=tiny_models.models_dir, styles_dir=root / "styles",
                             output_dir=root / "out", models=defaults, server=ServerSettings(**server))
    fake = FakeClient()
    return create_app(settings, clients=lambda s, api: [fake])


# --- part 1: schemathesis over every operation ------------------------------------------------------------------
# (`schemathesis.pytest.from_fixture` trips over pytest 9's nodes, so each operation is its own pytest case here
# and hypothesis is driven directly with schemathesis' strategies.)


def operations() -> list[tuple[str, str, bool]]:
    """(METHOD, path, takes input) for every operation of the app's schema (a throwaway app: no lifespan)."""
    import tempfile

    from brushwork.api.app import create_app
    from brushwork.config import Settings

    root = Path(tempfile.mkdtemp(prefix="brushwork-fuzz-schema-"))
    spec = create_app(Settings.load(home=root / "home", output_dir=root / "out", styles_dir=root / "styles"),
                      clients=lambda s, api: []).openapi()
    return [(method.upper(), path, bool(op.get("parameters") or op.get("requestBody")))
            for path, item in spec["paths"].items() for method, op in item.items()]


OPERATIONS = operations()
EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))


@pytest.fixture
def fuzz_schema(tiny_models, tmp_path):
    """The app's OpenAPI schema, loaded from the ASGI app itself; schemathesis' ASGI transport runs the
    lifespan from the first request on, and its pytest plugin ends it when the test ends."""
    app = build_app(tiny_models, tmp_path, generate_timeout=5.0)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(("method", "path", "takes_input"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_no_operation_answers_a_server_error(fuzz_schema, method, path, takes_input):
    from hypothesis import given
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    operation = fuzz_schema[path][method]
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if takes_input else [GenerationMode.POSITIVE]

    @given(case=st.one_of(*(operation.as_strategy(mode) for mode in modes)))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    fuzz()


# --- part 2: hostile inputs a schema fuzzer won't produce -------------------------------------------------------


@pytest.fixture(scope="module")
def http(tiny_models, tmp_path_factory):
    """One app for all of part 2 (the lifespan running), whose TestClient reports a server exception as the
    500 a client would get."""
    client = TestClient(build_app(tiny_models, tmp_path_factory.mktemp("hostile")), raise_server_exceptions=False)
    with client:
        yield client


def refused(answer: Any) -> None:
    """A 4xx whose body is JSON with a `detail` — never a 5xx, never an HTML or plain-text error page."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:500])
    assert "detail" in answer.json(), answer.text[:500]


def not_a_failure(answer: Any) -> None:
    """Either served or refused as in `refused`; what matters is that it is not a 5xx."""
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        assert "detail" in answer.json(), answer.text[:500]


def raw(http: TestClient, text: str | bytes, content_type: str = "application/json", path: str = "/v1/jobs") -> Any:
    return http.post(path, content=text.encode() if isinstance(text, str) else text,
                     headers={"content-type": content_type})


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of width x height zero pixels, compressed to a few hundred KB at most."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(height)]
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


BODY_CASES: dict[str, str | bytes] = {
    "nested 10k lists in a field": '{"prompt": "x", "style": ' + nested(10_000) + "}",
    "nested 10k objects as the body": '{"a":' * 10_000 + "1" + "}" * 10_000,
    "nested 10k lists as the body": nested(10_000),
    "NaN cfg": '{"prompt": "x", "cfg": NaN}',
    "Infinity cfg": '{"prompt": "x", "cfg": Infinity}',
    "-Infinity strength": '{"prompt": "x", "strength": -Infinity}',
    "NaN nested under sampling": '{"prompt": "x", "sampling": {"cfg": NaN}}',
    "NaN in an unknown field": '{"prompt": "x", "colour": NaN}',
    "NaN as a seed": '{"prompt": "x", "seed": NaN}',
    "1e999 as steps": '{"prompt": "x", "steps": 1e999}',
    "truncated JSON": '{"prompt": "x", ',
    "invalid UTF-8": b'{"prompt": "\xff\xfe\xfa"}',
    "nested 10k lists in the multipart request field": b"",  # built in the test: it needs a content type
    "lone surrogate escape": '{"prompt": "\\ud800"}',
    "empty body": "",
    "JSON null": "null",
    "JSON string": '"a fox"',
    "JSON number": "7",
}


@pytest.mark.parametrize("body", list(BODY_CASES.values()), ids=list(BODY_CASES))
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/generate"])
def test_hostile_raw_bodies_are_refused(http, body, path):
    if body == b"":
        field = '{"prompt": "x", "style": ' + nested(10_000) + "}"
        body = (b'--XyZ\r\nContent-Disposition: form-data; name="request"\r\n\r\n' + field.encode()
                + b"\r\n--XyZ--\r\n")
        refused(raw(http, body, "multipart/form-data; boundary=XyZ", path=path))
    else:
        refused(raw(http, body, path=path))


@pytest.mark.parametrize("depth", [100, 500, 900])
def test_moderately_nested_json_is_refused(http, depth):
    refused(raw(http, '{"prompt": "x", "style": ' + nested(depth) + "}"))
    refused(raw(http, '{"prompt": "x", "colour": ' + nested(depth, '{"a":', "}").replace("{}", "1") + "}"))


def test_json_in_another_unicode_encoding_is_not_a_failure(http):
    for encoding in ("utf-16", "utf-32", "utf-8-sig"):
        not_a_failure(raw(http, json.dumps({"prompt": "x", **FAST}).encode(encoding)))


JSON_CASES: dict[str, dict[str, Any]] = {
    "1 MB prompt": {"prompt": "x" * (1 << 20), **FAST},
    "control characters in prompt": {"prompt": "a\x00b\x07c\x1b[31md\u202ee\ufeff\u200b\x7f\x85", **FAST},
    "control characters in negative_prompt": {"prompt": "x", "negative_prompt": "\x00" * 100, **FAST},
    "control characters in model": {"prompt": "x", **FAST, "model": "tiny\x00sd15"},
    "path as model": {"prompt": "x", **FAST, "model": "/etc/passwd"},
    "traversal as model": {"prompt": "x", **FAST, "model": "../../../../etc"},
    "traversal as style": {"prompt": "x", **FAST, "style": "../../etc/passwd"},
    "controls as a string": {"prompt": "x", **FAST, "controls": "canny"},
    "controls as numbers": {"prompt": "x", **FAST, "controls": [1, 2, 3]},
    "controls as an object": {"prompt": "x", **FAST, "controls": {"image": "x"}},
    "controls with a numeric image": {"prompt": "x", **FAST, "controls": [{"model": "tinycanny", "image": 5}]},
    "controls with garbage base64": {"prompt": "x", **FAST, "controls": [{"model": "tinycanny", "image": "%%%"}]},
    "seed 2**64": {"prompt": "x", **FAST, "seed": 2**64},
    "seed -2**63-1": {"prompt": "x", **FAST, "seed": -(2**63) - 1},
    "seed 10**400": {"prompt": "x", **FAST, "seed": 10**400},
    "batch_size -1": {"prompt": "x", **FAST, "batch_size": -1},
    "batch_size 0": {"prompt": "x", **FAST, "batch_size": 0},
    "batch_size 10**9": {"prompt": "x", **FAST, "batch_size": 10**9},
    "steps 2**64": {"prompt": "x", **FAST, "steps": 2**64},
    "width 2**40": {"prompt": "x", **FAST, "width": 2**40, "height": 2**40},
    "unknown field": {"prompt": "x", **FAST, "colour": "red"},
    "unknown nested field": {"prompt": "x", **FAST, "sampling": {"colour": "red"}},
    "a group given as a string": {"prompt": "x", **FAST, "sampling": "fast"},
    "a flat and nested clash": {"prompt": "x", **FAST, "sampling": {"steps": 3}},
    "prompt missing": {**FAST},
    "prompt as a list": {"prompt": ["x"], **FAST},
    "prompt null": {"prompt": None, **FAST},
    "init_image as a number": {"prompt": "x", **FAST, "init_image": 12345},
    "init_image as a list": {"prompt": "x", **FAST, "init_image": [1, 2]},
    "init_image as an AssetRef of nothing": {"prompt": "x", **FAST, "init_image": {"sha256": "0" * 64}},
    "init_image as an AssetRef with traversal": {"prompt": "x", **FAST, "init_image": {"sha256": "../../etc/passwd"}},
    "init_image as an empty data URL": {"prompt": "x", **FAST, "init_image": "data:image/png;base64,"},
    "init_image as an empty string": {"prompt": "x", **FAST, "init_image": ""},
    "mask_image without init_image": {"prompt": "x", **FAST, "mask_image": b64(b"\x89PNG\r\n\x1a\n")},
}


@pytest.mark.parametrize("body", list(JSON_CASES.values()), ids=list(JSON_CASES))
def test_hostile_json_fields_are_refused(http, body):
    refused(http.post("/v1/jobs", json=body))


def test_a_huge_base64_init_image_of_random_bytes_is_refused(http):
    refused(http.post("/v1/jobs", json={"prompt": "x", **FAST, "init_image": b64(os.urandom(16 << 20)),
                                        "strength": 0.5}))


@pytest.mark.parametrize(("width", "height"), [(20_000, 20_000), (10_000, 10_000), (200_000, 1_000)])
def test_a_decompression_bomb_png_is_refused(http, width, height):
    bomb = png_bomb(width, height)
    assert len(bomb) < 200_000
    refused(http.post("/v1/jobs", json={"prompt": "x", **FAST, "init_image": b64(bomb), "strength": 0.5}))
    refused(http.post("/v1/jobs", json={"prompt": "x", **FAST,
                                        "controls": [{"model": "tinycanny", "image": b64(bomb)}]}))


CONTENT_TYPE_CASES: dict[str, tuple[str, bytes]] = {
    "text/plain JSON": ("text/plain", json.dumps({"prompt": "x", **FAST}).encode()),
    "text/plain text": ("text/plain", b"a lighthouse at dusk"),
    "form-urlencoded": ("application/x-www-form-urlencoded", b"prompt=x&steps=2"),
    "multipart garbage": ("multipart/form-data; boundary=XyZ", os.urandom(4096)),
    "multipart without a boundary": ("multipart/form-data", b"--XyZ\r\n\r\nstuff\r\n--XyZ--\r\n"),
    "multipart unterminated": ("multipart/form-data; boundary=XyZ",
                               b'--XyZ\r\nContent-Disposition: form-data; name="request"\r\n\r\n{"prompt"'),
    "multipart request not JSON": ("multipart/form-data; boundary=XyZ",
                                   b'--XyZ\r\nContent-Disposition: form-data; name="request"\r\n\r\n{{{\r\n--XyZ--\r\n'),
    "multipart init_image garbage file": (
        "multipart/form-data; boundary=XyZ",
        b'--XyZ\r\nContent-Disposition: form-data; name="request"\r\n\r\n{"prompt": "x", "strength": 0.5}\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="init_image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + os.urandom(2048) + b"\r\n--XyZ--\r\n"),
    "multipart unknown field": ("multipart/form-data; boundary=XyZ",
                                b'--XyZ\r\nContent-Disposition: form-data; name="colour"\r\n\r\nred\r\n--XyZ--\r\n'),
    "multipart control file without controls": (
        "multipart/form-data; boundary=XyZ",
        (b'--XyZ\r\nContent-Disposition: form-data; name="request"\r\n\r\n{"prompt": "x"}\r\n'
         b'--XyZ\r\nContent-Disposition: form-data; name="control_image_1"; filename="a.png"\r\n\r\nxx\r\n'
         b"--XyZ--\r\n")),
    "image/png": ("image/png", b"\x89PNG\r\n\x1a\n"),
    "no content type, a bad request": ("", json.dumps({"prompt": "x", **FAST, "steps": "many"}).encode()),
    "no content type, a good request": ("", json.dumps({"prompt": "x", **FAST}).encode()),
    "garbage content type": ("\x00/;;;=", b"{}"),
}


@pytest.mark.parametrize(("content_type", "body"), list(CONTENT_TYPE_CASES.values()), ids=list(CONTENT_TYPE_CASES))
def test_wrong_content_types_are_refused(http, content_type, body):
    refused(raw(http, body, content_type))


def test_many_multipart_parts_are_refused(http):
    parts = b"".join(b'--XyZ\r\nContent-Disposition: form-data; name="f%d"; filename="a"\r\n\r\nx\r\n' % i
                     for i in range(2000))
    refused(raw(http, parts + b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ"))


def test_a_declared_length_that_is_not_a_number_is_refused(http):
    answer = http.post("/v1/jobs", content=b"{}", headers={"content-type": "application/json",
                                                         "content-length": "-1"})
    assert answer.status_code < 500, answer.text


TRAVERSALS = ["..%2F..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e", "a%00b", "%00", "%ff%fe", "x" * 10_000,
              "..%5C..%5Cwindows", "%E2%80%AE", "0" * 64 + ".png%00.txt", "0" * 64 + "%2F..%2F.png", "-1", "NaN"]


@pytest.mark.parametrize("name", TRAVERSALS)
@pytest.mark.parametrize("template", ["/v1/jobs/{}", "/v1/jobs/{}/events", "/v1/images/{}"])
def test_traversal_and_odd_ids_are_404(http, template, name):
    answer = http.get(template.format(name))
    refused(answer)
    assert answer.status_code == 404, answer.text[:300]


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "a%00b", "x" * 10_000])
def test_traversal_ids_cannot_be_cancelled(http, name):
    refused(http.delete(f"/v1/jobs/{name}"))


@pytest.fixture(scope="module")
def finished_job(http):
    job = http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()
    deadline = time.monotonic() + 20
    while http.get(f"/v1/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job["id"]


def asgi_get(http: TestClient, path: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes, bool]:
    """GET `path` straight through the app on the TestClient's own event loop, giving up after `timeout`
    seconds (the TestClient itself would wait forever on a stream that never ends, and so would teardown).
    Returns (status, body so far, whether the response ended)."""
    import asyncio

    app = http.app
    messages: list[dict[str, Any]] = []
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def call() -> bool:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
                 "headers": [(b"host", b"testserver"),
                             *((k.lower().encode(), v.encode("latin-1")) for k, v in headers.items())]}
        try:
            await asyncio.wait_for(app(scope, receive, send), timeout)
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001 - what a server turns into a 500 (or a cut-off stream)
            if not any(m["type"] == "http.response.start" for m in messages):
                messages.append({"type": "http.response.start", "status": 500})
            return True
        return True

    assert http.portal is not None
    ended = http.portal.call(call)
    status = next((m["status"] for m in messages if m["type"] == "http.response.start"), 0)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body, ended


@pytest.mark.parametrize("last", ["-1", "0", "1", "id of done", "99999999999999999999", "9" * 4_400, "\u00b2",
                                  "\u00b9\u00b2\u00b3", "1e9", " 1", ""],
                         ids=lambda last: f"{len(last)} nines" if len(last) > 100 else ascii(last))
def test_odd_last_event_ids_still_stream_to_the_end_or_are_refused(http, finished_job, last):
    """A finished job's events end with its final event whatever Last-Event-ID says (a browser's EventSource
    reconnects with the id of the last event it saw, `done` included)."""
    if last == "id of done":
        status, body, ended = asgi_get(http, f"/v1/jobs/{finished_job}/events", {}, timeout=3)
        assert status == 200 and ended, (status, body[:300])
        last = [line[4:] for line in body.decode().splitlines() if line.startswith("id: ")][-1]
    status, body, ended = asgi_get(http, f"/v1/jobs/{finished_job}/events", {"Last-Event-ID": last}, timeout=3)
    assert status < 500, (status, body[:300])
    assert ended, f"Last-Event-ID {last[:30]!r}: the event stream of a finished job never ends (got {body[:200]!r})"
    if status != 200:
        assert 400 <= status < 500 and "detail" in json.loads(body), (status, body[:300])


QUERY_CASES = [
    ("GET", "/v1/jobs?limit=0"), ("GET", "/v1/jobs?limit=abc"), ("GET", "/v1/jobs?limit=-5"),
    ("GET", "/v1/jobs?limit=99999999999999999999999"), ("GET", "/v1/jobs?before=-1"),
    ("GET", "/v1/jobs?before=nan"), ("GET", "/v1/jobs?before=abc"), ("GET", "/v1/jobs?status=bogus"),
    ("GET", "/v1/jobs?status="), ("POST", "/v1/jobs?priority=1e9"), ("POST", "/v1/jobs?priority=1000000000"),
    ("POST", "/v1/jobs?priority=abc"), ("POST", "/v1/generate?timeout=nan"), ("POST", "/v1/generate?timeout=-1"),
    ("POST", "/v1/generate?timeout=inf"), ("POST", "/v1/generate?response_format=xml"),
]


@pytest.mark.parametrize(("method", "url"), QUERY_CASES, ids=[f"{m} {u}" for m, u in QUERY_CASES])
def test_bad_query_parameters_are_refused(http, method, url):
    refused(http.request(method, url, json={"prompt": "x", **FAST}))


GOOD_QUERIES = ["/v1/jobs?before=inf", "/v1/jobs?before=1e308", "/v1/jobs?before=0", "/v1/jobs?style=%00",
                "/v1/jobs?style=" + "x" * 5000, "/v1/jobs?limit=200&status=queued"]


@pytest.mark.parametrize("url", GOOD_QUERIES)
def test_edge_query_parameters_are_not_failures(http, url):
    not_a_failure(http.get(url))


def test_odd_headers_are_not_failures(http):
    not_a_failure(http.post("/v1/jobs", json={"prompt": "x", **FAST}, headers={"Idempotency-Key": "k" * 201}))
    not_a_failure(http.post("/v1/jobs", json={"prompt": "x", **FAST}, headers={"Idempotency-Key": "\x00"}))
    not_a_failure(http.get("/v1/jobs", headers={"Authorization": b"Bearer \xff\x00"}))
    not_a_failure(http.get("/v1/jobs/x", headers={"Host": "\x00"}))


@pytest.mark.parametrize("shape", [(100_000, 1), (1, 1_000_000)])
def test_extreme_aspect_ratio_images_are_not_failures(http, shape):
    not_a_failure(http.post("/v1/jobs", json={"prompt": "x", **FAST, "init_image": b64(png_bomb(*shape)),
                                              "strength": 0.5}))


def test_a_model_that_is_not_installed_is_503_by_design(http):
    """errors.py: a model's runtime unavailability is 503 with the reason (a known alias whose weights are
    absent) — the one 5xx that is the server's documented answer to a request."""
    answer = http.post("/v1/jobs", json={"prompt": "x", **FAST, "model": "dreamshaper"})
    assert answer.status_code in (422, 503), answer.text[:300]
    assert "detail" in answer.json() and "not installed" in answer.text
