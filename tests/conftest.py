"""Shared fixtures: a real Redis, a real database, the TikTok stand-in, the app and a worker.

Redis is a private ``redis-server`` the suite starts on a free port (never 6379). The database
is a SQLite file; tests marked ``postgres`` run a second time on the PostgreSQL server named by
``TEST_DATABASE_URL`` (``.ci/run`` sets it), and are skipped there when it is unset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import CodeType

import pytest
from flask import Flask
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from redis import Redis
from sqlalchemy import Engine, create_engine, delete, make_url, text
from werkzeug.serving import make_server

from app import create_app
from connector.config import Settings
from connector.db import upgrade_database
from connector.embedded_redis import EmbeddedRedis, free_port, start_redis
from connector.models import Base
from connector.services import Services, build_services
from connector.standins.google import GoogleStandIn
from connector.standins.meta import MetaStandIn
from connector.standins.tiktok import TikTokStandIn
from connector.stores import add_store
from tests.support import (
    GOOGLE_ACTION,
    GOOGLE_CLIENT,
    GOOGLE_CUSTOMER,
    GOOGLE_SECRET,
    META_PIXEL,
    META_TOKEN,
    PIXEL_CODE,
    SHOP_DOMAIN,
    SHOPIFY_SECRET,
    TIKTOK_TOKEN,
    WorkerProcess,
)


class CompiledTemplates(BytecodeCache):
    """Jinja's compiled templates, shared by every Flask app of the test run.

    A deployed process builds one app and compiles each template once; the tests build an app
    per test (several hundred), and compiling the merchant templates again each time was
    several seconds of a run. Jinja keys an entry by template name and file and checks the
    source's checksum before reusing it, so an edited template is compiled again
    (https://jinja.palletsprojects.com/en/stable/api/#bytecode-cache).
    """

    def __init__(self) -> None:
        self._code: dict[str, tuple[str, CodeType]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        checksum, code = self._code.get(bucket.key, ("", None))
        if code is not None and checksum == bucket.checksum:
            bucket.code = code

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is not None:
            self._code[bucket.key] = (bucket.checksum, bucket.code)


Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": CompiledTemplates()}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Choose the database(s) a test runs on.

    ``postgres``-marked tests run on both databases; ``prefer_postgres`` ones (slow,
    process-level scenarios) once, on PostgreSQL when it is available; the rest on SQLite.
    """
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker
    if marker("postgres"):
        backends = ["sqlite", "postgresql"]
    elif marker("prefer_postgres"):
        backends = ["postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"]
    else:
        backends = ["sqlite"]
    metafunc.parametrize("backend", backends)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"), persist=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL runs are skipped")
    from connector.config import normalise_database_url

    url = _database_of_this_process(normalise_database_url(url))
    engine = create_engine(url)
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    upgrade_database(url)
    return url


def _database_of_this_process(url: str) -> str:
    """``url`` itself, or under ``pytest -n N`` (pytest-xdist) a database of this worker's own
    next to it (``test_gw0``...), created when missing: every test empties the tables, so two
    processes cannot share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    own = make_url(url).set(database=f"{make_url(url).database}_{worker}")
    server = create_engine(own.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database}
        ).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{own.database}"'))
    server.dispose()
    return own.render_as_string(hide_password=False)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str) -> str:
    """The backend's migrated database, emptied before the test."""
    url = request.getfixturevalue("postgres_url" if backend == "postgresql" else "sqlite_url")
    _empty(url)
    return url


_EMPTYING_ENGINES: dict[str, Engine] = {}
"""One engine per test database, kept for the session: emptying it before each test then costs
one statement batch instead of a new connection (about 40 ms on PostgreSQL here, against 4)."""


def _empty(url: str) -> None:
    """Delete every row of every connector table (children first); the schema stays.

    PostgreSQL gets the deletes in one round trip; ``TRUNCATE`` would be slower here (about
    150 ms for these small tables: it replaces each table's files).
    """
    engine = _EMPTYING_ENGINES.get(url)
    if engine is None:
        engine = _EMPTYING_ENGINES[url] = create_engine(url, pool_pre_ping=True)
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("; ".join(f"DELETE FROM {t.name}" for t in tables))
        else:
            for table in tables:
                connection.execute(delete(table))


@pytest.fixture(scope="session", autouse=True)
def _close_kept_connections() -> Iterator[None]:
    """Close, at the end of the run, the connections the fixtures keep for it."""
    yield
    while _EMPTYING_ENGINES:
        _EMPTYING_ENGINES.popitem()[1].dispose()
    while _REDIS_CLIENTS:
        _REDIS_CLIENTS.popitem()[1].close()


@pytest.fixture(scope="session")
def tiktok_session() -> Iterator[TikTokStandIn]:
    standin = TikTokStandIn({TIKTOK_TOKEN: {PIXEL_CODE}}).start()
    yield standin
    standin.stop()


@pytest.fixture
def tiktok(tiktok_session: TikTokStandIn) -> TikTokStandIn:
    tiktok_session.reset()
    return tiktok_session


@pytest.fixture(scope="session")
def meta_session() -> Iterator[MetaStandIn]:
    with MetaStandIn({META_TOKEN: {META_PIXEL}}) as standin:
        yield standin


@pytest.fixture
def meta(meta_session: MetaStandIn) -> MetaStandIn:
    meta_session.reset()
    return meta_session


@pytest.fixture(scope="session")
def google_session() -> Iterator[GoogleStandIn]:
    with GoogleStandIn() as standin:
        yield standin


@pytest.fixture
def google(google_session: GoogleStandIn) -> GoogleStandIn:
    """Google with the connector's OAuth client and one Ads account with a conversion
    action; ``tests.support.google_env`` points settings at it."""
    google_session.reset()
    google_session.register_client(GOOGLE_CLIENT, GOOGLE_SECRET)
    google_session.add_account(GOOGLE_CUSTOMER, {GOOGLE_ACTION})
    return google_session


@pytest.fixture
def settings(
    database_url: str, redis_server: EmbeddedRedis, tiktok: TikTokStandIn, tmp_path: Path
) -> Settings:
    redis_server_client(redis_server).flushall()
    return Settings(
        instance_path=tmp_path / "instance",
        database_url=database_url,
        redis_url=redis_server.url,
        secret_key="test-secret-key",
        token_encryption_key=None,
        app_url="http://connector.test",
        retry_base_seconds=0.05,
        sweep_interval_seconds=0.3,
        lease_seconds=5,
        http_timeout_seconds=3.0,
    ).with_env(TIKTOK_API_BASE=tiktok.base_url)


_REDIS_CLIENTS: dict[str, Redis] = {}


def redis_server_client(server: EmbeddedRedis) -> Redis:
    """A client of the suite's Redis, kept for the run (a new one per test was a connection
    per test)."""
    client = _REDIS_CLIENTS.get(server.url)
    if client is None:
        client = _REDIS_CLIENTS[server.url] = Redis.from_url(server.url)
    return client


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    yield built
    built.db.dispose()


@pytest.fixture
def app(services: Services):  # type: ignore[no-untyped-def]
    application = create_app(services=services)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app over real HTTP, on a free port, in a thread."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, tmp_path / "worker.log").start()
    yield process
    process.stop()


# -- stores and webhooks -----------------------------------------------------------------------


@pytest.fixture
def shopify_store(services: Services) -> str:
    store = add_store(
        services, platform="shopify", domain=SHOP_DOMAIN, webhook_secret=SHOPIFY_SECRET
    )
    return store.id


@pytest.fixture
def woocommerce_store(services: Services) -> tuple[str, str]:
    secret = "woo-webhook-secret"
    store = add_store(
        services, platform="woocommerce", domain="shop.example", webhook_secret=secret
    )
    return store.id, secret


SLOW_FIXTURES = frozenset({"worker", "live_server", "browser_page"})
"""Fixtures that start a worker process, a live server or a browser: a test using one is
``slow``. The ``connector`` command run in-process (``tests.support.invoke_connector``, the
WooCommerce tests' ``connector`` fixture) and the in-process stand-ins are not."""
SLOW_HELPERS = frozenset(
    {"WorkerProcess", "run_connector", "chromium_page", "start_redis", "subprocess", "CHROMIUM"}
)
"""Names whose presence in a test module means its tests start processes or a browser."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` what needs a worker process, a live server, a browser, a child process
    (such as the ``connector`` command run as a program) or fault injection, so
    ``pytest -m "not slow"`` is the fast tier (README); the full suite stays the default."""
    for item in items:
        module = getattr(item, "module", None)
        names = set(vars(module)) if module is not None else set()
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SLOW_FIXTURES or names & SLOW_HELPERS or "reliability" in item.nodeid:
            item.add_marker(pytest.mark.slow)
