"""What answers at a store's address never reaches a merchant page or command output, and an
address in the connector's own network is never called (server-side request forgery).

A local "internal service" answers every request with a secret: in WordPress's error
``message``, in its error ``code``, in a redirect's ``Location``, in a content type. It is
reached over plain http on 127.0.0.1 through ``--allow-http``, the escape for local test
stores, so the mechanics run for real; without that escape the same address is refused.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app import create_app
from connector.models import Store
from platforms.woocommerce.connect import (
    StoreAddress,
    StoreKeys,
    connect_store,
    load_keys,
    save_keys,
)
from tests.platforms.woocommerce.helpers import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    connect_args,
    error_line,
)
from tests.support import csrf_of

pytestmark = pytest.mark.postgres

SECRET = "INTERNAL-SERVICE-SECRET-42"
ANSWERS = {
    "error-message": lambda: Response(
        json.dumps({"code": "rest_forbidden", "message": SECRET, "data": {"status": 403}}),
        403,
        mimetype="application/json",
    ),
    "keys-message": lambda: Response(
        json.dumps({"code": "woocommerce_rest_authentication_error", "message": SECRET}),
        401,
        mimetype="application/json",
    ),
    "error-code": lambda: Response(
        json.dumps({"code": SECRET, "message": "x"}), 400, mimetype="application/json"
    ),
    "redirect": lambda: Response(status=302, headers={"Location": f"https://x.example/{SECRET}"}),
    "content-type": lambda: Response("<p>hi</p>", 200, content_type=f"text/html; x={SECRET}"),
}


class InternalService:
    """Answers every request with :data:`SECRET` in the chosen way; counts requests."""

    def __init__(self, answer: str) -> None:
        self.answer = ANSWERS[answer]
        self.requests = 0
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.port = self._server.server_port

    @Request.application
    def _app(self, _request: Request) -> Response:
        self.requests += 1
        return self.answer()

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture(params=sorted(ANSWERS))
def internal(request) -> Iterator[InternalService]:  # type: ignore[no-untyped-def]
    service = InternalService(request.param)
    yield service
    service.stop()


@pytest.fixture
def web(live_services):  # type: ignore[no-untyped-def]
    return create_app(services=live_services).test_client()


@pytest.fixture
def connected(live_services, woo) -> str:  # type: ignore[no-untyped-def]
    """A store connected to the stand-in with REST keys; its id."""
    address = StoreAddress.parse(woo.base_url)
    return connect_store(live_services, address, CONSUMER_KEY, CONSUMER_SECRET)["store_id"]


def log_in(client, services, store_id: str) -> None:  # type: ignore[no-untyped-def]
    """The login link, then its Continue button with the page's CSRF token."""
    from connector.web.merchant.access import login_token

    path = f"/login/{login_token(services.settings.secret_key, store_id)}"
    page = client.get(path)
    assert page.status_code == 200
    answer = client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert answer.status_code == 303, answer.get_data(as_text=True)


def settings_page(client, store_id: str, **query: str) -> str:  # type: ignore[no-untyped-def]
    answer = client.get(f"/settings/{store_id}/settings", query_string=query)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def test_connect_prints_nothing_the_site_answered(connector, internal, services):
    result = connector(*connect_args(f"http://127.0.0.1:{internal.port}"))
    line = error_line(result)
    assert internal.requests == 1  # reached, through --allow-http
    assert SECRET not in result.stdout + result.stderr
    assert "HTTP " in line  # the status stands in for the site's words


def test_check_prints_nothing_the_site_answered(connector, internal, live_services, connected):
    url = f"http://127.0.0.1:{internal.port}"
    save_keys(live_services, connected, StoreKeys(url, CONSUMER_KEY, CONSUMER_SECRET))
    result = connector("stores", "check", connected)
    assert error_line(result).startswith("Error: ")
    assert internal.requests == 1 and SECRET not in result.stdout + result.stderr


def test_the_settings_page_and_the_repair_show_nothing_the_site_answered(
    web, live_services, connected, internal, caplog
):
    url = f"http://127.0.0.1:{internal.port}"
    save_keys(live_services, connected, StoreKeys(url, CONSUMER_KEY, CONSUMER_SECRET))
    log_in(web, live_services, connected)
    caplog.set_level(logging.INFO)

    page = settings_page(web, connected)
    assert internal.requests == 1 and 'id="webhooks-unreadable"' in page
    assert SECRET not in page
    answer = web.post(
        f"/settings/{connected}/woocommerce/repair", data={"csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 303 and SECRET not in answer.headers["Location"]
    assert SECRET not in settings_page(web, connected)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("answer", ["error-message"])
def test_a_store_on_this_machine_is_not_called_without_allow_http(
    web, live_services, connected, answer
):
    service = InternalService(answer)
    try:
        url = f"https://127.0.0.1:{service.port}"
        save_keys(live_services, connected, StoreKeys(url, CONSUMER_KEY, CONSUMER_SECRET))
        log_in(web, live_services, connected)
        page = settings_page(web, connected)
    finally:
        service.stop()
    assert service.requests == 0
    assert f"Refusing to call {url}: 127.0.0.1 resolves to a loopback address 127.0.0.1" in page
    assert "only calls stores at a public https:// address" in page


def test_connect_refuses_the_cloud_metadata_address_even_with_allow_http(connector, services):
    url = "http://169.254.169.254"
    line = error_line(connector(*connect_args(url)))  # --allow-http: loopback only
    assert line == (
        f"Error: refusing to call {url}: 169.254.169.254 resolves to a link-local address"
        " 169.254.169.254; a store must be reachable at a public https:// address"
    )
    with services.db.session() as session:
        assert session.query(Store).count() == 0


def test_allow_http_is_kept_with_the_keys_for_a_local_https_store(live_services, connected):
    """``--allow-http`` given to an https store on this machine still lets its later checks
    call it: the flag is recorded, not guessed from the scheme."""
    url = "https://127.0.0.1:1"
    keys = StoreKeys(url, CONSUMER_KEY, CONSUMER_SECRET, allow_http=True)
    save_keys(live_services, connected, keys)
    with live_services.db.session() as session:
        store = session.get(Store, connected)
    assert load_keys(live_services, store).local_test_store is True
    assert StoreKeys(url, CONSUMER_KEY, CONSUMER_SECRET).local_test_store is False
