"""The outbound guard (:mod:`connector.outbound`) through real HTTP against local servers: the
addresses it refuses, what ``allow_http`` lets through, that a connection goes to the address
that was checked (DNS rebinding), TLS still by name, no redirect followed, no proxy used.

The resolver is injected (``getaddrinfo``'s signature) to play a DNS server that answers what
each test needs; IP literals go through the real ``socket.getaddrinfo``.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from connector.outbound import OutboundRedirect, OutboundRefused, guarded_session

SECRET = "INTERNAL-SERVICE-SECRET-42"
PUBLIC_ADDRESS = "1.1.1.1"  # global: the guard lets it through
BLOCKED = [
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "0.0.0.0",
    "240.0.0.1",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "2002:7f00:1::",
]


class Internal:
    """A local service that answers every request with the secret, and counts requests."""

    def __init__(self, answer: Response | None = None, ssl_context: ssl.SSLContext | None = None):
        self.answer = answer or Response(SECRET)
        self.hosts: list[str] = []
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, ssl_context=ssl_context
        )
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.port = self._server.server_port

    @Request.application
    def _app(self, request: Request) -> Response:
        self.hosts.append(request.host)
        return self.answer

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def internal() -> Iterator[Internal]:
    service = Internal()
    yield service
    service.stop()


def answering(*answers: list[str]) -> tuple[Callable[..., list], list[str]]:
    """A resolver giving ``answers[i]`` at its i-th call (the last one from then on), and the
    list of host names it was asked for."""
    asked: list[str] = []

    def resolve(host: str, port: int, *_args: object) -> list:
        asked.append(host)
        addresses = answers[min(len(asked), len(answers)) - 1]
        return [(_family(a), socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve, asked


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


@pytest.mark.parametrize("address", BLOCKED)
def test_a_name_resolving_to_a_non_public_address_is_refused(address):
    resolve, asked = answering([address])
    with pytest.raises(OutboundRefused, match=f"resolves to .* address {address}"):
        guarded_session(resolve=resolve).get("https://shop.test/wp-json/", timeout=2)
    assert asked == ["shop.test"]


@pytest.mark.parametrize("address", BLOCKED)
def test_a_non_public_address_given_as_such_is_refused(address):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(OutboundRefused):
        guarded_session().get(f"https://{host}/wp-json/", timeout=2)


def test_one_non_public_answer_among_public_ones_is_enough_to_refuse():
    resolve, _ = answering([PUBLIC_ADDRESS, "10.0.0.1"])
    with pytest.raises(OutboundRefused, match="10.0.0.1"):
        guarded_session(resolve=resolve).get("https://shop.test/", timeout=2)


def test_plain_http_is_refused_without_allow_http(internal):
    with pytest.raises(OutboundRefused, match="only https"):
        guarded_session().get(f"http://127.0.0.1:{internal.port}/", timeout=2)
    assert internal.hosts == []


def test_allow_http_lets_loopback_through_but_nothing_else(internal):
    answer = guarded_session(allow_http=True).get(f"http://127.0.0.1:{internal.port}/", timeout=2)
    assert answer.text == SECRET  # the local test store the escape is for
    for address in ("10.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"):
        resolve, _ = answering([address])
        with pytest.raises(OutboundRefused):
            guarded_session(allow_http=True, resolve=resolve).get("http://shop.test/", timeout=2)


def test_the_connection_goes_to_the_address_that_was_checked(internal):
    """The name resolves once per connection, and the socket goes to that answer. A guard that
    checked one answer and let the connection resolve again would get 127.0.0.2 here, where
    nothing listens."""
    resolve, asked = answering(["127.0.0.1"], ["127.0.0.2"])
    session = guarded_session(allow_http=True, resolve=resolve)
    answer = session.get(f"http://rebind.test:{internal.port}/", timeout=2)
    assert answer.status_code == 200 and asked == ["rebind.test"]
    assert internal.hosts == [f"rebind.test:{internal.port}"]  # Host is still the name


def test_dns_rebinding_to_loopback_reaches_nothing(internal):
    """First answer public (checked, then connected to: nothing of ours is there), the next
    127.0.0.1: refused, so the internal service never sees a request."""
    resolve, asked = answering([PUBLIC_ADDRESS], ["127.0.0.1"])
    session = guarded_session(resolve=resolve)
    url = f"https://rebind.test:{internal.port}/"
    with pytest.raises(requests.ConnectionError) as first:
        session.get(url, timeout=(1, 1))
    assert not isinstance(first.value, OutboundRefused)  # allowed, and went to 1.1.1.1
    assert asked == ["rebind.test"]
    with pytest.raises(OutboundRefused, match="loopback address 127.0.0.1"):
        session.get(url, timeout=(1, 1))
    assert asked == ["rebind.test", "rebind.test"]
    assert internal.hosts == []


def test_tls_is_checked_for_the_name_while_the_socket_goes_to_the_checked_address(tmp_path):
    certificate = self_signed(tmp_path, "shop.test")
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, tmp_path / "key.pem")
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    service = Internal(ssl_context=context)
    try:
        resolve, _ = answering(["127.0.0.1"])
        session = guarded_session(allow_http=True, resolve=resolve)
        url = f"https://shop.test:{service.port}/"
        assert session.get(url, timeout=2, verify=str(certificate)).text == SECRET
        assert names == ["shop.test"] and service.hosts == [f"shop.test:{service.port}"]
        other, _ = answering(["127.0.0.1"])
        with pytest.raises(requests.exceptions.SSLError):  # a certificate for another name
            guarded_session(allow_http=True, resolve=other).get(
                f"https://elsewhere.test:{service.port}/", timeout=2, verify=str(certificate)
            )
    finally:
        service.stop()


def test_a_redirect_is_an_error_and_is_not_followed():
    target = f"http://127.0.0.1:1/{SECRET}"
    service = Internal(Response(status=302, headers={"Location": target}))
    try:
        session = guarded_session(allow_http=True)
        with pytest.raises(OutboundRedirect) as caught:
            session.get(f"http://127.0.0.1:{service.port}/", timeout=2, allow_redirects=True)
    finally:
        service.stop()
    assert caught.value.status == 302
    assert SECRET not in str(caught.value) and "Location" not in str(caught.value)
    assert len(service.hosts) == 1


def test_proxies_from_the_environment_are_not_used(internal, monkeypatch):
    proxy = Internal(Response("from the proxy"))
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        session = guarded_session(allow_http=True)
        assert session.get(f"http://127.0.0.1:{internal.port}/", timeout=2).text == SECRET
        with pytest.raises(OutboundRefused, match="proxy"):
            session.get(
                f"http://127.0.0.1:{internal.port}/",
                timeout=2,
                proxies={"http": f"http://127.0.0.1:{proxy.port}"},
            )
    finally:
        proxy.stop()
    assert proxy.hosts == []


def self_signed(folder: Path, name: str) -> Path:
    """A certificate for ``name`` (also its own CA, so ``verify=`` can trust it), key beside."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path = folder / "cert.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path
