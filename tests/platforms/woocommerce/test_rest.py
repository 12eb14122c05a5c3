"""The REST client's answers to what real sites do besides WooCommerce's happy path."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from platforms.woocommerce.rest import RestError, WooCommerceClient


class Site:
    """A local site whose next answers tests choose."""

    def __init__(self) -> None:
        self.answer = Response("", status=200)
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    @Request.application
    def _app(self, _request: Request) -> Response:
        return self.answer


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    yield made
    made._server.shutdown()


def refusal(site: Site) -> RestError:
    with pytest.raises(RestError) as caught:
        WooCommerceClient(site.url, "ck_x", "cs_x", allow_http=True).list_webhooks()
    return caught.value


def test_a_failing_site_is_not_called_a_non_woocommerce_one(site):
    site.answer = Response("<h1>There has been a critical error</h1>", 500, mimetype="text/html")
    error = refusal(site)
    assert error.reason == "server-error"
    assert str(error) == (
        f"{site.url} answered HTTP 500: the site is failing (a PHP error, or its host is down);"
        " try again later"
    )


def test_a_wordpress_error_that_is_not_about_keys(site):
    body = '{"code":"rest_invalid_param","message":"Invalid parameter(s): per_page","data":{}}'
    site.answer = Response(body, 400, mimetype="application/json")
    error = refusal(site)
    assert (error.reason, str(error)) == (
        "refused",
        "WooCommerce refused the request (HTTP 400 rest_invalid_param)",
    )  # the site's "message" is never repeated: whatever answers there chooses it


def test_a_json_answer_that_is_not_a_list_of_webhooks(site):
    site.answer = Response('{"name":"My blog"}', 200, mimetype="application/json")
    error = refusal(site)
    assert error.reason == "not-woocommerce"
    assert "the webhook list is not a JSON list" in str(error)


def test_an_unresolvable_host():
    with pytest.raises(RestError) as caught:
        WooCommerceClient("https://shop.invalid", "ck_x", "cs_x").list_webhooks()
    assert str(caught.value) == "cannot reach https://shop.invalid: its host name does not resolve"
