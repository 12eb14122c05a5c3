"""Requests to addresses a merchant or operator supplied (a WooCommerce store today), made so
they cannot reach the connector's own network.

Why: a store address is only a name we were given. Pointed at ``127.0.0.1``, ``10.x``, or the
cloud metadata service at ``169.254.169.254`` (or a public name whose DNS answers one of
those), every Settings page view used to make an authenticated request there and show the
reply: a server-side request forgery. :func:`guarded_session` returns a ``requests.Session``
that, for every new connection:

* accepts ``https`` only (``allow_http`` also accepts ``http`` and loopback, for local test
  stores: ``connector stores connect-woocommerce --allow-http``);
* resolves the host itself and refuses it unless every address it resolves to is a public
  one: not loopback, private, shared (100.64.0.0/10), link-local, multicast, reserved,
  unspecified, nor one of those inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address
  (IANA special-purpose registries: https://www.iana.org/assignments/iana-ipv4-special-registry
  and https://www.iana.org/assignments/iana-ipv6-special-registry);
* connects to the address it checked, never resolving again, so a DNS answer that changes
  between the check and the connection (DNS rebinding) cannot move it. TLS still verifies the
  certificate for the host name (SNI) and the ``Host`` header is still the name, because only
  the socket's destination is changed (urllib3 takes both from the URL's host);
* follows no redirect: a 3xx raises :class:`OutboundRedirect` (whose text never holds the
  ``Location``), since a redirect is another address nobody checked;
* ignores proxy settings from the environment, which would connect on our behalf unchecked.

Errors raised are ``requests`` exceptions, so callers catching ``RequestException`` keep working;
:class:`OutboundRefused` and :class:`OutboundRedirect` say why in fixed words.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util.connection import create_connection

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
"""RFC 6052's well-known prefix: its last 32 bits are the IPv4 address a NAT64 gateway reaches."""
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
"""RFC 6598's carrier-grade NAT range: not private to Python, yet inside some provider's network."""
GUARD_KEYWORD = "outbound_guard"


class OutboundRefused(requests.exceptions.ConnectionError):
    """The address is not one the connector may call (scheme, or where the host resolves)."""


class OutboundRedirect(requests.exceptions.RequestException):
    """The answer was a redirect, which is never followed; ``status`` is its HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the address answered with a redirect (HTTP {status}), not followed")
        self.status = status


class _Blocked(ValueError):
    """Raised inside urllib3, which wraps every OSError; the adapter turns it into
    :class:`OutboundRefused`."""


@dataclass(frozen=True)
class OutboundGuard:
    """What one guarded session accepts, and how it resolves host names."""

    allow_http: bool = False
    resolve: Resolver = socket.getaddrinfo

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("https", "http") if self.allow_http else ("https",)

    def checked_addresses(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, once all are checked; raises ``_Blocked`` when
        any is not public (one bad answer among good ones is how rebinding gets in), and
        ``socket.gaierror`` when it does not resolve."""
        found = self.resolve(host, port, 0, socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        for address in addresses:
            why = refusal_reason(address, allow_loopback=self.allow_http)
            if why:
                raise _Blocked(f"{host} resolves to {why} address {address}")
        return addresses


def refusal_reason(address: str, *, allow_loopback: bool = False) -> str | None:
    """Why the connector must not connect to ``address`` (like ``"a private"``), or None.

    ``is_global`` alone is not enough: Python counts multicast as global, and an IPv6 address
    can carry an IPv4 one (mapped ``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``) that it judges
    by the IPv6 form.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    for inner in _embedded_ipv4(ip):
        why = refusal_reason(str(inner), allow_loopback=allow_loopback)
        if why:
            return why
    if ip.is_loopback:
        return None if allow_loopback else "a loopback"
    checks = (
        ("an unspecified", ip.is_unspecified),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved),
        ("a shared (carrier-grade NAT)", ip in SHARED_ADDRESS_SPACE),
        ("a private", ip.is_private),
        ("a site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("a non-public", not ip.is_global),
    )
    return next((why for why, hit in checks if hit), None)


def _embedded_ipv4(ip: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: mapped, 6to4, Teredo client, NAT64."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if ip in NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [inner for inner in found if inner is not None]


class _PinnedConnectionMixin:
    """``_new_conn`` resolving through the guard and connecting to the checked address.

    urllib3 calls ``_new_conn`` for every new connection (a pooled keep-alive connection was
    checked when it was made), and takes the ``Host`` header and TLS server name from
    ``self.host``, which stays the name.
    """

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def __init__(self, *args: Any, outbound_guard: OutboundGuard, **kwargs: Any) -> None:
        self._outbound_guard = outbound_guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self._outbound_guard.checked_addresses(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        last_error: OSError | None = None
        for address in addresses:
            try:
                return create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                last_error = exc
        raise NewConnectionError(  # type: ignore[arg-type]
            self, f"Failed to establish a new connection: {last_error}"
        )


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _GuardedPoolManager(PoolManager):
    """Hands every pool the guard, which its connections take as a keyword argument. It is
    added after the pool key is made (the key only knows urllib3's own keywords)."""

    def __init__(self, guard: OutboundGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard
        self.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.conn_kw[GUARD_KEYWORD] = self._guard
        return pool


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections go through :class:`OutboundGuard`."""

    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = _GuardedPoolManager(
            self.guard, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused("requests to merchant addresses never go through a proxy")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        scheme = urlsplit(request.url or "").scheme
        if scheme not in self.guard.schemes:
            raise OutboundRefused(f"only {' and '.join(self.guard.schemes)} addresses are allowed")
        try:
            return super().send(request, *args, **kwargs)
        except _Blocked as exc:
            raise OutboundRefused(str(exc), request=request) from None


class GuardedSession(requests.Session):
    """A ``requests.Session`` that never follows a redirect and never uses a proxy."""

    def __init__(self, guard: OutboundGuard) -> None:
        super().__init__()
        self.trust_env = False  # no HTTP(S)_PROXY, no .netrc credentials
        adapter = GuardedAdapter(guard)
        self.adapters.clear()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        if 300 <= response.status_code < 400:
            response.close()
            raise OutboundRedirect(response.status_code)
        return response


def guarded_session(
    *, allow_http: bool = False, resolve: Resolver = socket.getaddrinfo
) -> requests.Session:
    """A session for requests to a merchant-supplied address (see the module's docstring).

    ``allow_http`` is the operator's explicit escape for a local test store (plain http and
    loopback); ``resolve`` is ``socket.getaddrinfo``'s signature, replaceable in tests.
    """
    return GuardedSession(OutboundGuard(allow_http=allow_http, resolve=resolve))
