"""Settings from the environment: defaults, Heroku's quirks, failing fast with a fix."""

from __future__ import annotations

import pytest

from connector.config import ConfigError, load_settings, normalise_database_url
from connector.crypto import TokenCipher


def test_defaults_are_a_one_machine_install(tmp_path):
    settings = load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'connector.sqlite3'}"
    assert settings.redis_url is None
    assert settings.app_url == "http://localhost:8000"
    assert settings.tiktok_api_base == "https://business-api.tiktok.com"
    assert settings.batch_size == 500


def test_development_secret_is_generated_once_and_kept(tmp_path):
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path)}
    first = load_settings(env).secret_key
    assert len(first) >= 40
    assert load_settings(env).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("marker", [{"DYNO": "web.1"}, {"CONNECTOR_ENV": "production"}])
def test_production_requires_a_secret_key(tmp_path, marker):
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path), **marker})


def test_heroku_postgres_url_is_accepted():
    assert normalise_database_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert normalise_database_url("postgresql://h/d") == "postgresql+psycopg://h/d"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_bad_numbers_fail_with_the_variable_name(tmp_path):
    with pytest.raises(ConfigError, match="PORT must be a whole number"):
        load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path), "PORT": "eighty"})
    with pytest.raises(ConfigError, match="RETRY_BASE_SECONDS"):
        load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path), "RETRY_BASE_SECONDS": "soon"})


def test_batch_size_is_capped_at_tiktoks_limit(tmp_path):
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path), "TIKTOK_BATCH_SIZE": "5000"}
    assert load_settings(env).batch_size == 1000


def test_app_url_follows_the_port_and_drops_a_trailing_slash(tmp_path):
    base = {"CONNECTOR_INSTANCE_PATH": str(tmp_path)}
    assert load_settings({**base, "PORT": "5000"}).app_url == "http://localhost:5000"
    assert load_settings({**base, "APP_URL": "https://c.example/"}).app_url == "https://c.example"


def test_tokens_are_encrypted_and_a_changed_key_is_reported():
    cipher = TokenCipher(None, "secret-one")
    stored = cipher.encrypt("act.live-token")
    assert "act.live-token" not in stored
    assert cipher.decrypt(stored) == "act.live-token"
    with pytest.raises(ValueError, match="TOKEN_ENCRYPTION_KEY or SECRET_KEY changed"):
        TokenCipher(None, "secret-two").decrypt(stored)
