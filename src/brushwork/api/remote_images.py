"""Fetch a request's input image from an http(s) URL without opening a door into the server's network (SSRF).

Why so careful: a server that fetches URLs for its callers can be aimed at its
own loopback, its private network or the cloud metadata service
(169.254.169.254). So every hop (the URL, then each redirect) is parsed here,
its host is resolved here, and *every* address it resolves to must pass the
address policy before any connection is made. The connection then goes to the
vetted address itself, with the original Host header and TLS server name, so
a second DNS answer (rebinding) cannot swap in another address. The body is
capped at `limits.max_image_bytes` while it streams, and one deadline covers
the whole fetch. Every refusal is an `InvalidRequest` naming the field.

Blocking I/O: callers on an event loop run this in a thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from brushwork.config import Limits
from brushwork.errors import InvalidRequest

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ALLOWED = "an http:// or https:// URL of a public internet host (no user:password@)"
_SHARED_NAT = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: is_global already says no; stated anyway
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: an IPv4 address in IPv6 clothes
_PATH_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # keeps existing escapes; only non-ASCII and spaces get encoded

AddressPolicy = Callable[[str], bool]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a seam: tests replace it to resolve made-up names)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _routable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    special = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
               or ip.is_unspecified or ip in _SHARED_NAT
               or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local))
    return ip.is_global and not special


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:a.b.c.d, 6to4, NAT64), which is what gets reached."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    """The server's policy: only globally routable unicast addresses (never loopback, private, link-local,
    metadata, multicast, unspecified, reserved, shared NAT, or IPv6 forms of those)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if ip.ipv4_mapped is not None or ip in _NAT64:  # "reserved" as IPv6; what is reached is the IPv4 inside
            return embedded is not None and _routable(embedded)
        if embedded is not None and not _routable(embedded):  # 6to4 of a private address
            return False
    return _routable(ip)


def _kind(address: str) -> str:
    """A few words for a refused address, so the message says why."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        ip = embedded
    for test, words in (("is_loopback", "loopback"), ("is_unspecified", "unspecified"),
                        ("is_link_local", "link-local, e.g. cloud metadata"), ("is_multicast", "multicast"),
                        ("is_private", "private network")):
        if getattr(ip, test):
            return words
    return "shared NAT" if ip in _SHARED_NAT else "not a public address"


@dataclass(frozen=True)
class Target:
    """One hop's URL, split into what the connection needs."""

    url: str
    https: bool
    host: str  # ASCII (IDNA) name or IP literal, for resolution and the TLS server name
    port: int
    path: str  # the request target: path and query, percent-encoded
    host_header: str


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "…"


def parse_target(url: str, field: str) -> Target:
    """Split and check one URL: http/https only, a host, an optional port, no userinfo."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidRequest(field, f"the URL {_shown(url)!r} contains spaces or control characters; expected {ALLOWED}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(field, f"the URL {_shown(url)!r} is malformed ({exc}); expected {ALLOWED}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidRequest(field, f"the URL {_shown(url)!r} is not http or https; expected {ALLOWED}")
    if "@" in parts.netloc:
        raise InvalidRequest(field, f"the URL {_shown(url)!r} has a user name or password in it; expected {ALLOWED}")
    if not parts.hostname:
        raise InvalidRequest(field, f"the URL {_shown(url)!r} has no host; expected {ALLOWED}")
    try:
        host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
    except UnicodeError:
        raise InvalidRequest(field, f"the host in {_shown(url)!r} is not a valid domain name") from None
    https = scheme == "https"
    default_port = 443 if https else 80
    named = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in the Host header
    path = quote(parts.path or "/", safe=_PATH_SAFE) + (f"?{quote(parts.query, safe=_PATH_SAFE)}" if parts.query else "")
    return Target(url=url, https=https, host=host, port=port or default_port, path=path,
                  host_header=named if port in (None, default_port) else f"{named}:{port}")


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to an address chosen beforehand; `host` stays the name (Host header)."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = address

    def _tcp(self) -> socket.socket:
        return socket.create_connection((self.address, self.port), self.timeout)

    def connect(self) -> None:
        self.sock = self._tcp()


class _PinnedHTTPS(_PinnedHTTP):
    """HTTPS to an address chosen beforehand; the certificate is checked against the URL's host name (SNI)."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target, address, timeout)
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self._tcp()  # held first: the watchdog can end a stalled handshake, close() frees it on failure
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


class _Fetch:
    """One fetch: the hops, the byte cap, and a watchdog that ends it at the deadline whatever the peer does."""

    def __init__(self, field: str, limits: Limits, timeout: float, allow_address: AddressPolicy) -> None:
        self.field = field
        self.limits = limits
        self.timeout = timeout
        self.allow_address = allow_address
        self.deadline = time.monotonic() + timeout
        self.connection: http.client.HTTPConnection | None = None
        self.expired = threading.Event()

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timed_out()
        return left

    def timed_out(self) -> InvalidRequest:
        return InvalidRequest(self.field, f"fetching the image URL took longer than {self.timeout:g} s "
                                          "(server.image_url_timeout)")

    def abort(self) -> None:
        """At the deadline: shut the socket so a read that trickles in byte by byte ends now."""
        self.expired.set()
        sock = self.connection.sock if self.connection is not None else None
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket under TLS too
            except OSError:
                pass

    def addresses(self, target: Target, what: str) -> list[str]:
        """Resolve here (bounded by the deadline) and vet every answer before anything connects."""
        answer: list[list[str] | BaseException] = []

        def lookup() -> None:
            try:
                answer.append(resolve(target.host, target.port))
            except BaseException as exc:  # noqa: BLE001 — handed to the caller's thread
                answer.append(exc)

        worker = threading.Thread(target=lookup, name="brushwork-resolve", daemon=True)
        worker.start()
        worker.join(self.remaining())
        if not answer:
            raise self.timed_out()
        found = answer[0]
        if isinstance(found, BaseException) or not found:
            raise InvalidRequest(self.field, f"the host {target.host!r} of {what} cannot be resolved")
        for address in found:
            if not self.allow_address(address):
                raise InvalidRequest(self.field, f"{what} resolves to {address} ({_kind(address)}); only public "
                                                 "internet addresses are fetched, never the server's own or private "
                                                 "networks")
        return found

    def run(self, url: str) -> bytes:
        timer = threading.Timer(self.timeout, self.abort)
        timer.daemon = True
        timer.start()
        try:
            for hop in range(MAX_REDIRECTS + 1):
                what = f"the URL {_shown(url)!r}" if hop == 0 else f"the redirect to {_shown(url)!r}"
                try:
                    target = parse_target(url, self.field)
                except InvalidRequest as exc:
                    if hop == 0:
                        raise
                    raise InvalidRequest(self.field, f"the image URL redirected to a refused URL: {exc.message}") from None
                body, location = self.hop(target, what)
                if location is None:
                    return body
                url = urljoin(url, location)
            raise InvalidRequest(self.field, f"the image URL redirects more than {MAX_REDIRECTS} times; "
                                             f"at most {MAX_REDIRECTS} redirects are followed")
        finally:
            timer.cancel()
            if self.connection is not None:
                self.connection.close()

    def hop(self, target: Target, what: str) -> tuple[bytes, str | None]:
        """One request: (body, None) for a 2xx answer, (b"", location) for a redirect."""
        addresses = self.addresses(target, what)
        try:
            response = self.request(target, addresses)
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise InvalidRequest(self.field, f"{what} answered HTTP {response.status} without a Location")
                return b"", location.strip()
            if not 200 <= response.status < 300:
                raise InvalidRequest(self.field, f"{what} answered HTTP {response.status} {response.reason[:80]}; "
                                                 "expected 200 with an image")
            return self.body(response, what), None
        except InvalidRequest:
            raise
        except Exception as exc:  # noqa: BLE001 — the peer is untrusted: its failures are the request's, not 500s
            if self.expired.is_set() or isinstance(exc, TimeoutError):
                raise self.timed_out() from None
            raise InvalidRequest(self.field, f"fetching {what} failed: {_network_error(exc)}") from None

    def request(self, target: Target, addresses: list[str]) -> http.client.HTTPResponse:
        """GET from the first vetted address that accepts a connection."""
        kind = _PinnedHTTPS if target.https else _PinnedHTTP
        failure: Exception | None = None
        for address in addresses:
            if self.connection is not None:
                self.connection.close()
            self.connection = kind(target, address, self.remaining())
            try:
                self.connection.connect()
            except OSError as exc:
                if isinstance(exc, (ssl.SSLError, TimeoutError)) or self.expired.is_set():
                    raise
                failure = exc  # refused or unreachable: the next vetted address may answer
                continue
            if self.expired.is_set():  # the watchdog fired before the socket existed: it could not shut it
                raise self.timed_out()
            self.connection.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
            for name, value in (("Host", target.host_header), ("User-Agent", "brushwork"),
                                ("Accept", "image/png, image/jpeg, image/webp"), ("Accept-Encoding", "identity"),
                                ("Connection", "close")):
                self.connection.putheader(name, value)
            self.connection.endheaders()
            return self.connection.getresponse()
        assert failure is not None
        raise failure

    def body(self, response: http.client.HTTPResponse, what: str) -> bytes:
        """Read at most `max_image_bytes`, whatever Content-Length claims."""
        cap = self.limits.max_image_bytes
        too_big = InvalidRequest(self.field, f"{what} is larger than the {cap} bytes allowed (limits.max_image_bytes)")
        declared = response.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(CHUNK_BYTES):
            size += len(chunk)
            if size > cap:
                raise too_big
            chunks.append(chunk)
            self.remaining()
        if self.expired.is_set():
            raise self.timed_out()
        if declared is not None and declared.strip().isdigit() and size < int(declared):
            raise InvalidRequest(self.field, f"{what} closed the connection after {size} of {int(declared)} bytes")
        return b"".join(chunks)


def _network_error(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not valid ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, http.client.HTTPException):
        return f"the server's answer is not valid HTTP ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"a network error ({exc.strerror or type(exc).__name__})"
    return f"an unexpected error ({type(exc).__name__})"


def fetch_image(url: str, field: str, *, limits: Limits, timeout: float,
                allow_address: AddressPolicy = is_public_address) -> bytes:
    """The bytes at `url` (following at most 3 redirects), for the asset store to check like any upload.

    `allow_address` vets every resolved address of every hop; the server always
    uses the strict default, tests pass one that admits loopback.
    """
    return _Fetch(field, limits, timeout, allow_address).run(url.strip())
