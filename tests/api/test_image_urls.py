"""Image URLs in requests: off by default, and when on, SSRF-guarded (`brushwork.api.remote_images`).

Nothing here sends traffic beyond loopback: made-up names resolve through a
stubbed `resolve`, and those tests fail if any connection is attempted.
"""

from __future__ import annotations

import functools
import hashlib
import io
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from brushwork.api import remote_images
from brushwork.api.remote_images import fetch_image, is_public_address, parse_target
from brushwork.config import Limits, Settings
from brushwork.errors import InvalidRequest
from brushwork.facade import Brushwork
from brushwork.testing.clients import FakeClient
from brushwork.testing.images import picture

FAST = {"model": "tiny-sd15", "steps": 2, "width": 64, "height": 64, "seed": 3}
LIMITS = Limits()


def png() -> bytes:
    buffer = io.BytesIO()
    picture().save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: ~100 KB on the wire, 900 M pixels when decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    body = b"".join(squeeze.compress(row * 1000) for _ in range(side // 1000)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def loopback_only(address: str) -> bool:
    """The test policy: the strict one, plus 127.0.0.1 (and only that) so a local server can answer."""
    return address == "127.0.0.1" or is_public_address(address)


# -- a loopback HTTP server ---------------------------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, Route]] = {}  # each server gets its own subclass with its own dicts
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Host")))
        route = self.routes.get(self.path)
        try:
            if route is None:
                self.send_error(404)
            else:
                route(self)
        except OSError:  # the client hung up: expected in the refusal tests
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LocalServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        handler = type("Handler", (_Handler,), {"routes": {}, "seen": []})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.port = self.httpd.server_address[1]
        self.routes: dict[str, Route] = handler.routes
        self.seen: list[tuple[str, str | None]] = handler.seen
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def send(status: int, body: bytes = b"", content_type: str = "image/png", length: int | None = -1,
         headers: dict[str, str] | None = None) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if length is not None:
            handler.send_header("Content-Length", str(len(body) if length == -1 else length))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return route


def redirect(location: str) -> Route:
    return send(302, headers={"Location": location}, length=0)


def _serving(tls: ssl.SSLContext | None = None) -> Iterator[LocalServer]:
    local = LocalServer(tls)
    local.thread.start()
    yield local
    local.httpd.shutdown()
    local.httpd.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    yield from _serving()


def self_signed(folder: Path, name: str) -> Path:
    """A certificate + key (one PEM file) for `name`, which is its own CA."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = folder / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return pem


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LocalServer, Path]]:
    """An HTTPS server on loopback whose certificate names images.example (and not its address)."""
    pem = self_signed(tmp_path, "images.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    for local in _serving(context):
        yield local, pem


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail the test on any outgoing connection: refusals must happen before one is made."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def stub_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> list[str]:
    """Resolve made-up names without DNS; returns the names asked for, in order."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host in names:
            return names[host]
        if host == "127.0.0.1":
            return ["127.0.0.1"]
        raise socket.gaierror(f"unknown test name {host}")

    monkeypatch.setattr(remote_images, "resolve", resolve)
    return asked


def refused(url: str, field: str = "init_image", **kwargs: Any) -> str:
    """The message of the InvalidRequest a fetch must end in (naming the field)."""
    kwargs = {"limits": LIMITS, "timeout": 5.0, **kwargs}
    with pytest.raises(InvalidRequest) as info:
        fetch_image(url, field, **kwargs)
    assert info.value.field == field
    return info.value.message


# -- the address policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "fe80::1", "fe80::1%1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
    "100.64.0.1", "100.127.255.254", "0.0.0.0", "::", "fc00::1", "fd12:3456::1", "224.0.1.1", "ff0e::1",
    "240.0.0.1", "255.255.255.255", "2002:7f00:1::", "2002:a00:1::", "64:ff9b::7f00:1", "::127.0.0.1",
    "fec0::1", "2001:db8::1", "198.18.0.1", "not an address", "",
])
def test_the_policy_refuses_every_non_public_address(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34",
                                     "64:ff9b::5db8:d822", "2002:5db8:d822::1"])
def test_the_policy_allows_public_addresses(address):
    assert is_public_address(address)


# -- URLs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "fragment"), [
    ("ftp://example.com/a.png", "not http or https"),
    ("file:///etc/passwd", "not http or https"),
    ("http://user:secret@example.com/a.png", "user name or password"),
    ("http://user@example.com/a.png", "user name or password"),
    ("http:///a.png", "no host"),
    ("http://example.com:99999/a.png", "malformed"),
    ("http://example.com/a b.png", "spaces or control characters"),
    ("http://exa\nmple.com/", "spaces or control characters"),
])
def test_urls_other_than_plain_http_and_https_are_refused(url, fragment):
    with pytest.raises(InvalidRequest) as info:
        parse_target(url, "mask_image")
    assert info.value.field == "mask_image" and fragment in info.value.message
    assert "http:// or https://" in info.value.message


def test_a_target_keeps_the_name_for_host_and_tls_and_encodes_the_path():
    target = parse_target("HTTPS://Images.Example:8443/a/ü.png?size=1#top", "init_image")
    assert (target.https, target.host, target.port) == (True, "images.example", 8443)
    assert target.host_header == "images.example:8443" and target.path == "/a/%C3%BC.png?size=1"
    v6 = parse_target("http://[2606:4700::1]/x", "init_image")
    assert v6.host == "2606:4700::1" and v6.host_header == "[2606:4700::1]" and v6.port == 80


# -- refusals before any connection -------------------------------------------------------------------


@pytest.mark.parametrize("answer", [["10.0.0.7"], ["169.254.169.254"], ["192.168.0.2"], ["fe80::1"],
                                    ["::ffff:127.0.0.1"], ["93.184.216.34", "10.0.0.7"]])
def test_a_name_resolving_to_any_private_address_is_refused_without_connecting(monkeypatch, no_connections, answer):
    stub_dns(monkeypatch, {"images.example": answer})
    message = refused("http://images.example/cat.png")
    assert "resolves to" in message and "public" in message and no_connections == []


def test_metadata_and_loopback_literals_are_refused_without_connecting(no_connections):
    """The real `resolve`: IP literals need no DNS."""
    assert "link-local" in refused("http://169.254.169.254/latest/meta-data/")
    assert "loopback" in refused("http://[::1]:8080/", field="control #1 image")
    assert "loopback" in refused("http://2130706433/")  # 127.0.0.1 spelt as one number
    assert no_connections == []


def test_a_name_that_does_not_resolve_is_refused(monkeypatch, no_connections):
    stub_dns(monkeypatch, {})
    assert "cannot be resolved" in refused("https://nowhere.example/a.png")


# -- a real server on loopback ------------------------------------------------------------------------


def test_the_strict_policy_refuses_a_loopback_server(server):
    server.routes["/pic.png"] = send(200, png())
    assert "loopback" in refused(server.url("/pic.png"))
    assert server.seen == []


def test_a_loopback_policy_fetches_the_image_and_the_store_keeps_it(server, tmp_path):
    data = png()
    server.routes["/pic.png"] = send(200, data)
    fetched = fetch_image(server.url("/pic.png"), "init_image", limits=LIMITS, timeout=5, allow_address=loopback_only)
    assert fetched == data
    ref = Brushwork(Settings.load(home=tmp_path / "home")).add_image(fetched, "init_image")
    assert ref.sha256 == hashlib.sha256(data).hexdigest()


def test_the_connection_goes_to_the_vetted_address_with_the_original_host(server, monkeypatch):
    """Resolved once per hop, connected to that very address: a second DNS answer cannot swap it (rebinding)."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    monkeypatch.setattr(remote_images, "resolve", rebinding)
    server.routes["/pic.png"] = send(200, png())
    url = f"http://images.example:{server.port}/pic.png"
    assert fetch_image(url, "init_image", limits=LIMITS, timeout=5, allow_address=loopback_only) == png()
    assert asked == ["images.example"] and server.seen == [("/pic.png", f"images.example:{server.port}")]


def test_https_checks_the_certificate_against_the_urls_name_not_the_pinned_address(tls_server, monkeypatch):
    server, pem = tls_server
    server.routes["/pic.png"] = send(200, png())
    stub_dns(monkeypatch, {"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    url = server.url("/pic.png", host="images.example")
    assert "TLS certificate is not valid" in refused(url, allow_address=loopback_only)  # not trusted yet
    system_trust = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda: system_trust(cafile=str(pem)))
    assert fetch_image(url, "init_image", limits=LIMITS, timeout=5, allow_address=loopback_only) == png()
    assert server.seen == [("/pic.png", f"images.example:{server.port}")]
    wrong_name = refused(server.url("/pic.png", host="other.example"), allow_address=loopback_only)
    assert "TLS certificate is not valid" in wrong_name and "other.example" in wrong_name


def test_redirects_are_followed_up_to_three(server):
    server.routes["/pic.png"] = send(200, png())
    for hop in range(1, 5):
        server.routes[f"/hop{hop}"] = redirect("/pic.png" if hop == 1 else f"/hop{hop - 1}")
    assert fetch_image(server.url("/hop3"), "init_image", limits=LIMITS, timeout=5,
                       allow_address=loopback_only) == png()
    message = refused(server.url("/hop4"), allow_address=loopback_only)
    assert "redirects more than 3 times" in message
    server.routes["/loop"] = redirect("/loop")
    assert "redirects more than 3 times" in refused(server.url("/loop"), allow_address=loopback_only)


def test_a_redirect_to_a_refused_address_is_refused_as_a_redirect(server, monkeypatch):
    server.routes["/pic.png"] = send(200, png())
    server.routes["/to-other-loopback"] = redirect(f"http://127.0.0.2:{server.port}/pic.png")
    server.routes["/to-internal"] = redirect("http://internal.example/pic.png")
    server.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    server.routes["/to-ftp"] = redirect("ftp://127.0.0.1/pic.png")
    asked = stub_dns(monkeypatch, {"internal.example": ["10.0.0.7"], "127.0.0.2": ["127.0.0.2"],
                                   "169.254.169.254": ["169.254.169.254"]})
    for path, fragment in (("/to-other-loopback", "127.0.0.2"), ("/to-internal", "10.0.0.7"),
                           ("/to-metadata", "link-local")):
        message = refused(server.url(path), allow_address=loopback_only)
        assert message.startswith("the redirect to") and fragment in message, message
    assert "internal.example" in asked
    message = refused(server.url("/to-ftp"), allow_address=loopback_only)
    assert message.startswith("the image URL redirected to") and "not http or https" in message
    assert [path for path, _ in server.seen] == ["/to-other-loopback", "/to-internal", "/to-metadata", "/to-ftp"]


def test_bodies_over_the_byte_limit_are_refused_whatever_the_length_says(server):
    small = Limits(max_image_bytes=4096)
    big = bytes(200_000)
    server.routes["/honest"] = send(200, big)
    server.routes["/unsaid"] = send(200, big, length=None)  # HTTP/1.0: ends when the connection closes
    server.routes["/too-long-claim"] = send(200, b"x" * 100, length=10**9)
    server.routes["/too-short-claim"] = send(200, big, length=1000)
    for path in ("/honest", "/unsaid", "/too-long-claim"):
        assert "larger than the 4096 bytes allowed" in refused(server.url(path), limits=small,
                                                             allow_address=loopback_only)
    # a short claim frames the body: only the claimed 1000 bytes are read, and they are no image
    fetched = fetch_image(server.url("/too-short-claim"), "init_image", limits=small, timeout=5,
                          allow_address=loopback_only)
    assert len(fetched) == 1000


def test_a_decompression_bomb_is_refused_by_the_asset_store(server, tmp_path):
    bomb = bomb_png()
    assert len(bomb) < 1_000_000
    server.routes["/bomb.png"] = send(200, bomb)
    api = Brushwork(Settings.load(home=tmp_path / "home"))
    fetched = fetch_image(server.url("/bomb.png"), "init_image", limits=api.settings.limits, timeout=5,
                          allow_address=loopback_only)
    with pytest.raises(InvalidRequest) as info:
        api.add_image(fetched, "init_image")
    assert info.value.field == "init_image" and "pixels" in info.value.message


def test_error_statuses_and_closed_ports_are_clear(server):
    assert "HTTP 404" in refused(server.url("/missing.png"), allow_address=loopback_only)
    server.routes["/broken"] = send(500, b"oops", content_type="text/plain")
    assert "HTTP 500" in refused(server.url("/broken"), allow_address=loopback_only)
    server.routes["/nowhere"] = send(302, length=0)
    assert "without a Location" in refused(server.url("/nowhere"), allow_address=loopback_only)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert "connection was refused" in refused(f"http://127.0.0.1:{port}/x.png", allow_address=loopback_only)


def test_the_timeout_covers_the_whole_fetch_even_a_trickle(server):
    def trickle_headers(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.0 200 OK\r\n")
        for _ in range(100):
            handler.wfile.write(b"X-Slow: 1\r\n")
            handler.wfile.flush()
            time.sleep(0.05)

    def trickle_body(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)

    server.routes["/slow-headers"] = trickle_headers
    server.routes["/slow-body"] = trickle_body
    for path in ("/slow-headers", "/slow-body"):
        started = time.monotonic()
        message = refused(server.url(path), timeout=0.5, allow_address=loopback_only)
        assert "longer than 0.5 s" in message and time.monotonic() - started < 2.5


# -- through the API -------------------------------------------------------------------------------------


def test_image_urls_are_off_by_default(serve, no_connections):
    http = serve(FakeClient())
    answer = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "init_image": "https://example.com/a.png"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"] == ["init_image"] and "server.allow_image_urls" in error["msg"]
    control = http.post("/v1/jobs", json={"prompt": "a fox", **FAST,
                                          "controls": [{"model": "tinycanny", "image": "http://example.com/e.png"}]})
    assert control.status_code == 422 and control.json()["detail"][0]["loc"] == ["control #1 image"]
    other = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "mask_image": "file:///etc/passwd"})
    assert other.status_code == 422 and "file:// URLs are not accepted" in other.json()["detail"][0]["msg"]
    assert no_connections == []


def test_when_on_the_server_uses_the_strict_policy(serve, server):
    server.routes["/pic.png"] = send(200, png())
    http = serve(FakeClient(), allow_image_urls=True)
    answer = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "strength": 0.5,
                                         "init_image": server.url("/pic.png")})
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"] == ["init_image"] and "loopback" in error["msg"] and server.seen == []


def test_a_fetched_image_becomes_the_plans_init_image(serve, server, monkeypatch):
    data = png()
    server.routes["/pic.png"] = send(200, data)
    server.routes["/text"] = send(200, b"hello", content_type="text/plain")
    monkeypatch.setattr(remote_images, "fetch_image", functools.partial(fetch_image, allow_address=loopback_only))
    http = serve(FakeClient(), allow_image_urls=True)
    job = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "strength": 0.5, "init_image": server.url("/pic.png")})
    assert job.status_code == 202, job.text
    plan = job.json()["plan"]
    assert plan["mode"] == "img2img" and plan["init"]["init_image"]["sha256"] == hashlib.sha256(data).hexdigest()
    for url, fragment in ((server.url("/text"), "not a PNG, JPEG or WebP"), (server.url("/gone.png"), "HTTP 404")):
        answer = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "strength": 0.5, "init_image": url})
        assert answer.status_code == 422, answer.text
        error = answer.json()["detail"][0]
        assert error["loc"] == ["init_image"] and fragment in error["msg"], error
