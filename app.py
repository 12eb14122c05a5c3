"""The Flask application factory; gunicorn serves ``app:create_app()``."""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, jsonify, render_template, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from connector.config import Settings, load_settings
from connector.logs import configure_logging
from connector.plugins import load_store_platforms
from connector.services import Services, build_services
from connector.web import EXTENSION_KEY, PLATFORMS_KEY, WEBHOOK_BLUEPRINT_SUFFIX
from connector.web.collect import blueprint as collect_blueprint
from connector.web.health import blueprint as health_blueprint
from connector.web.merchant import blueprint as merchant_blueprint
from connector.web.merchant.access import (
    add_embedded_grant,
    csrf_field,
    current_grant,
    embedded_head_html,
)
from connector.web.merchant.login import blueprint as login_blueprint


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the web app from the environment (or from given settings, in tests)."""
    services = services or build_services(settings or load_settings())
    configure_logging(services.settings.log_format, services.settings.log_level, force=False)
    app = Flask(__name__, instance_path=str(services.settings.instance_path))
    app.config.update(
        SECRET_KEY=services.settings.secret_key,
        # Sessions signed with a former key stay valid (Flask >= 3.1.1): a key change logs no
        # merchant out. Oldest first, as Flask hands them to itsdangerous; weak ones left out.
        SECRET_KEY_FALLBACKS=services.settings.signing_keys[:-1],
        MAX_CONTENT_LENGTH=services.settings.max_webhook_bytes,
        # The merchant pages' session: never readable by scripts, never sent cross-site.
        SESSION_COOKIE_NAME="connector_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=services.settings.app_url.startswith("https://"),
    )
    app.extensions[EXTENSION_KEY] = services
    if services.settings.proxy_hops:
        # Behind a router (Heroku's, a load balancer): trust its X-Forwarded-* headers for the
        # client address (rate limits) and scheme, and only as many hops as configured.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=services.settings.proxy_hops, x_proto=services.settings.proxy_hops
        )
    register_blueprints(app)
    register_template_helpers(app)
    register_error_handlers(app)
    register_webhook_metrics(app)
    return app


def register_blueprints(app: Flask) -> None:
    """The core's pages, each destination's pages (OAuth), each store platform's routes."""
    for blueprint in (health_blueprint, collect_blueprint, login_blueprint, merchant_blueprint):
        app.register_blueprint(blueprint)
    services = app.extensions[EXTENSION_KEY]
    for destination in services.destinations.values():
        if (blueprint := getattr(destination, "blueprint", None)) is not None:
            app.register_blueprint(blueprint)
    platforms = load_store_platforms()
    for platform in platforms:
        app.register_blueprint(platform.blueprint)
    app.extensions[PLATFORMS_KEY] = {platform.name: platform for platform in platforms}


def register_template_helpers(app: Flask) -> None:
    """What the merchant templates call: the CSRF field, whether a page exists, whether the
    page is framed in a store platform's admin; and links that keep an embedded grant."""
    app.jinja_env.globals.update(
        csrf_field=csrf_field,
        endpoint_exists=lambda endpoint: endpoint in current_app.view_functions,
        embedded=lambda: bool((grant := current_grant()) and grant.embedded_token),
        embedded_head=embedded_head_html,
    )
    app.url_defaults(add_embedded_grant)


def register_webhook_metrics(app: Flask) -> None:
    """Count every webhook answer by platform, topic and result, and time it."""

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def count_webhook(response: Response) -> Response:
        if request.blueprint and request.blueprint.endswith(WEBHOOK_BLUEPRINT_SUFFIX):
            platform = request.blueprint.removesuffix(WEBHOOK_BLUEPRINT_SUFFIX)
            result = g.get("webhook_result") or f"http_{response.status_code}"
            metrics = app.extensions[EXTENSION_KEY].metrics
            metrics.webhooks.labels(platform, g.get("webhook_topic", ""), result).inc()
            metrics.webhook_seconds.labels(platform).observe(time.perf_counter() - g.started)
        return response


def register_error_handlers(app: Flask) -> None:
    """Every HTTP error as JSON ``{"error": ...}``, the contract webhook senders see."""

    @app.errorhandler(HTTPException)
    def json_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"] // 1024
            return jsonify(error=f"body larger than the {limit} KiB limit"), 413
        if _wants_html():
            return Response(render_template("error.html", error=error), status=status), status
        return jsonify(error=error.description), status

    def _wants_html() -> bool:
        """A person's browser gets a page; webhook senders and scripts (``*/*``) get JSON."""
        best = request.accept_mimetypes.best_match(["application/json", "text/html"])
        return best == "text/html"

    @app.errorhandler(SQLAlchemyError)
    def database_unavailable(error: SQLAlchemyError) -> tuple[Response, int]:
        # 503 makes Shopify retry a webhook (8 times over 4 hours); the event is not lost.
        app.logger.error("database.unavailable error=%s", type(error).__name__)
        return jsonify(error="the event could not be stored; please retry"), 503
