"""The framework ceilings the ingest benchmark divides by: the same gunicorn, apps doing nothing.

``bench/ingest.py`` serves these with exactly the argv and settings ``connector web`` gives
gunicorn, on the same path, with the same signed bodies, so the connector's webhook rate can
be read as a share of what the server stack alone can do:

- ``create_app()``: bare WSGI. Reads the body (any webhook endpoint must take it off the
  socket) and answers 200 with a small JSON body.
- ``create_flask_app()``: the same through Flask's routing, request and response objects: the
  ceiling of the framework the connector is written in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

ANSWER = b'{"status":"accepted"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]

StartResponse = Callable[..., Any]


def create_app() -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A bare WSGI callable (gunicorn calls the factory, as with ``app:create_app()``)."""
    return bare_endpoint


def bare_endpoint(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole body, answer 200: nothing else happens per request."""
    environ["wsgi.input"].read()
    start_response("200 OK", HEADERS)
    return [ANSWER]


def create_flask_app() -> Flask:
    """Flask with one route on the webhook path that reads the body and answers 200."""
    app = Flask(__name__)

    @app.post("/webhooks/shopify")
    def receive() -> Response:
        request.get_data(cache=False)
        return Response(ANSWER, mimetype="application/json")

    return app
