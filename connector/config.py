"""Settings, read once from the environment into one typed object.

Every process (web, worker, command line) calls :func:`load_settings` at start and passes the
result down; nothing else reads ``os.environ``. The variables and their defaults are the public
contract in the README's environment table (docs/ARCHITECTURE.md says where each is read).
One file besides the environment is read: when ``REDIS_URL`` is unset, the instance folder's
``runtime.json``, where a running ``connector run`` records its embedded Redis
(see :mod:`connector.runtime`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from connector.crypto import KEY_ADVICE, key_weakness
from connector.runtime import running_connector

GENERATED_KEY_FILE = "secret_key"  # under instance/: the development SECRET_KEY


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of a one-machine install."""

    instance_path: Path
    database_url: str
    redis_url: str | None
    secret_key: str
    token_encryption_key: str | None
    app_url: str
    # Former SECRET_KEYs (most recent first): what they encrypted or signed still reads.
    secret_key_fallbacks: tuple[str, ...] = ()
    # Each destination's own variables (its API base, OAuth app...), by name, as the
    # destination declares them (connector.destinations.EnvVar): set values, else defaults
    # (only the defaults when built without an environment, as tests do).
    destination_env: Mapping[str, str | None] = field(default_factory=lambda: _destination_env({}))
    # The destinations a store's events are kept for while it has none configured yet, so the
    # orders of a fresh install leave as soon as the merchant connects one of them.
    default_destinations: tuple[str, ...] = ("tiktok",)
    shopify_api_key: str | None = None
    shopify_api_secret: str | None = None
    shopify_scopes: str = "read_orders,write_pixels,read_customer_events"
    # ``https://{shop}`` unless set: a template such as ``http://127.0.0.1:8123/{shop}`` sends
    # every Shopify call to a stand-in (tests only; see platforms.shopify.tokens).
    shopify_admin_base_url: str | None = None
    port: int = 8000
    # HOST: unset, `connector run` listens on 127.0.0.1 and `connector web` on 0.0.0.0.
    host: str | None = None
    web_concurrency: int = 2  # gunicorn processes of `connector web`
    max_webhook_bytes: int = 1024 * 1024
    batch_size: int = 500
    lease_seconds: int = 120
    retry_horizon_seconds: int = 48 * 3600
    retry_base_seconds: float = 5.0
    max_requests_per_second: float = 20.0
    retention_days: int = 30
    unreadable_retention_days: int = 14
    log_format: str = "text"
    proxy_hops: int = 0
    log_level: str = "INFO"
    http_timeout_seconds: float = 10.0
    sweep_interval_seconds: float = 15.0
    reconcile_interval_seconds: float = 900.0
    queue_name: str = "deliveries"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the ``run`` command use this)."""
        return replace(self, **changes)

    def with_env(self, **variables: str | None) -> Settings:
        """A copy with some destination variables changed (``TIKTOK_API_BASE=...``)."""
        return replace(self, destination_env={**self.destination_env, **variables})

    def env(self, name: str) -> str | None:
        """A destination variable's value (its default when unset)."""
        return self.destination_env.get(name)

    @cached_property
    def signing_keys(self) -> list[str]:
        """The keys signed values (sessions, login links, OAuth states) are checked with, in
        itsdangerous' order, oldest first: the last one, ``secret_key``, signs.

        A fallback too weak to be a ``SECRET_KEY`` only decrypts stored secrets: anyone who
        can guess it could sign a session with it.
        """
        strong = [key for key in self.secret_key_fallbacks if key_weakness(key) is None]
        return [*reversed(strong), self.secret_key]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the environment once; fail fast, with a fix, on what cannot work."""
    env = os.environ if environ is None else environ
    instance = Path(env.get("CONNECTOR_INSTANCE_PATH", "instance")).resolve()
    port = _int(env, "PORT", 8000)
    app_url = (env.get("APP_URL") or f"http://localhost:{port}").rstrip("/")
    return Settings(
        instance_path=instance,
        database_url=normalise_database_url(
            env.get("DATABASE_URL") or f"sqlite:///{instance / 'connector.sqlite3'}"
        ),
        redis_url=env.get("REDIS_URL") or _running_redis(instance),
        secret_key=_secret_key(env, instance, app_url),
        token_encryption_key=env.get("TOKEN_ENCRYPTION_KEY") or None,
        app_url=app_url,
        secret_key_fallbacks=_fallbacks(env, "SECRET_KEY_FALLBACKS", env.get("SECRET_KEY")),
        destination_env=_destination_env(env),
        default_destinations=_names(env, "DEFAULT_DESTINATIONS", ("tiktok",)),
        shopify_api_key=env.get("SHOPIFY_API_KEY") or None,
        shopify_api_secret=env.get("SHOPIFY_API_SECRET") or None,
        shopify_scopes=env.get("SHOPIFY_SCOPES") or Settings.shopify_scopes,
        shopify_admin_base_url=env.get("SHOPIFY_ADMIN_BASE_URL") or None,
        port=port,
        host=env.get("HOST") or None,
        web_concurrency=_int(env, "WEB_CONCURRENCY", 2),
        batch_size=min(_int(env, "BATCH_SIZE", _int(env, "TIKTOK_BATCH_SIZE", 500)), 1000),
        sweep_interval_seconds=_float(env, "SWEEP_INTERVAL_SECONDS", 15.0),
        reconcile_interval_seconds=_float(env, "RECONCILE_INTERVAL_SECONDS", 900.0),
        retry_base_seconds=_float(env, "RETRY_BASE_SECONDS", 5.0),
        lease_seconds=_int(env, "LEASE_SECONDS", 120),
        max_requests_per_second=_float(env, "DESTINATION_MAX_QPS", 20.0),
        retention_days=_int(env, "EVENT_RETENTION_DAYS", 30),
        unreadable_retention_days=_int(env, "UNREADABLE_RETENTION_DAYS", 14),
        proxy_hops=_int(env, "PROXY_HOPS", 0),
        log_format=_choice(env, "LOG_FORMAT", ("text", "json"), "text"),
        log_level=_choice(env, "LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
    )


def _destination_env(env: Mapping[str, str]) -> dict[str, str | None]:
    """Every destination's variables; imported here, not at the top, because destination
    packages import the models and services that import this module."""
    from connector.destinations import destination_env, load_destinations

    return destination_env(load_destinations(), env)


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; unset means ``default``, empty means none."""
    if env.get(name) is None:
        return default
    return tuple(part.strip() for part in env[name].split(",") if part.strip())


def _running_redis(instance: Path) -> str | None:
    """The embedded Redis of a ``connector run`` alive on this instance folder, if any."""
    runtime = running_connector(instance)
    return runtime.redis_url if runtime else None


def normalise_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` URLs, which SQLAlchemy 2 refuses, and pick psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    """The variable, spelt as in ``allowed`` (any case), or ``default`` when unset."""
    raw = env.get(name)
    if not raw:
        return default
    for choice in allowed:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def _secret_key(env: Mapping[str, str], instance: Path, app_url: str) -> str:
    """SECRET_KEY, which must be strong wherever it protects something real.

    It signs merchant sessions and, unless TOKEN_ENCRYPTION_KEY is set, encrypts every stored
    token and webhook secret: a guessable key gives away every store. Only a development
    process (see :func:`_production_reason`) may run with a weak key or a generated one.
    """
    key = env.get("SECRET_KEY") or ""
    reason = _production_reason(env, app_url)
    if reason is None:
        return key or _development_secret(instance)
    if not key.strip():
        generated = instance / GENERATED_KEY_FILE
        hint = f" (the key used so far is in {generated})" if generated.exists() else ""
        raise ConfigError(f"SECRET_KEY is required ({reason}): {KEY_ADVICE}{hint}")
    if weakness := key_weakness(key):
        raise ConfigError(f"SECRET_KEY is too weak ({weakness}; {reason}): {KEY_ADVICE}")
    return key


def _production_reason(env: Mapping[str, str], app_url: str) -> str | None:
    """Why this process is not a development one, or None if it is.

    Heroku sets ``DYNO``; anyone can set ``CONNECTOR_ENV=production``; and an https APP_URL
    means real stores deliver to it, whatever the process manager.
    """
    if env.get("DYNO"):
        return "in production: DYNO is set"
    if env.get("CONNECTOR_ENV") == "production":
        return "in production: CONNECTOR_ENV=production"
    if app_url.startswith("https://"):
        return "APP_URL is https"
    return None


def _fallbacks(env: Mapping[str, str], name: str, current: str | None) -> tuple[str, ...]:
    """A comma-separated list of older keys, without blanks, repeats or the current key.

    Not checked for strength: moving off a weak key is what they are for.
    """
    keys = (key.strip() for key in (env.get(name) or "").split(","))
    return tuple(dict.fromkeys(key for key in keys if key and key != current))


def _development_secret(instance: Path) -> str:
    """A secret generated once and kept under ``instance/``, so sessions survive restarts.

    Development only: a generated file would differ between machines (and dynos), and
    whatever it encrypted is lost with the file.
    """
    path = instance / GENERATED_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key
