"""Settings from the environment: defaults, Heroku's quirks, failing fast with a fix; the
strength SECRET_KEY must have outside development, and the keys SECRET_KEY_FALLBACKS keeps
working."""

from __future__ import annotations

import secrets

import pytest
from cryptography.fernet import Fernet

from connector.config import ConfigError, load_settings, normalise_database_url
from connector.crypto import CURRENT, FALLBACK, TokenCipher, UndecryptableSecret, key_weakness

STRONG_KEY = "JGOMJmscFlo8i6-8VL_r1thmEEsQRi-LMszriITVeY_Huk7C7RvY3PBzX6ub-521"
OLD_KEY = "oIAbnC0xUtuXgwbxXvY1Ua2cMt9-wWPyuKk3EE0ndr4OYRN6QKx3tn8xoELPJyLS"
PRODUCTION_MARKERS = [
    {"DYNO": "web.1"},
    {"CONNECTOR_ENV": "production"},
    {"APP_URL": "https://connector.example"},
]


def test_defaults_are_a_one_machine_install(tmp_path):
    settings = load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'connector.sqlite3'}"
    assert settings.redis_url is None
    assert settings.app_url == "http://localhost:8000"
    assert settings.env("TIKTOK_API_BASE") == "https://business-api.tiktok.com"
    assert settings.batch_size == 500


def test_development_secret_is_generated_once_and_kept(tmp_path):
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path)}
    first = load_settings(env).secret_key
    assert len(first) >= 40
    assert load_settings(env).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("marker", PRODUCTION_MARKERS)
def test_production_requires_a_secret_key(tmp_path, marker):
    with pytest.raises(ConfigError, match="SECRET_KEY is required") as refused:
        load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path), **marker})
    assert "secrets.token_urlsafe(48)" in str(refused.value)


def test_a_missing_key_names_the_file_of_the_key_generated_so_far(tmp_path):
    """An install that ran on the generated key and now gets an https APP_URL must keep it."""
    generated = load_settings({"CONNECTOR_INSTANCE_PATH": str(tmp_path)}).secret_key
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path), "APP_URL": "https://connector.example"}
    with pytest.raises(ConfigError, match="the key used so far is in .*secret_key"):
        load_settings(env)
    settings = load_settings({**env, "SECRET_KEY": STRONG_KEY, "SECRET_KEY_FALLBACKS": generated})
    assert settings.secret_key_fallbacks == (generated,)


@pytest.mark.parametrize("marker", PRODUCTION_MARKERS)
@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("x7!", "3 bytes; at least 32 random bytes"),
        ("changeme", "8 bytes"),
        ("changeme" * 4, "placeholder"),
        ("my-super-secret-key-for-the-connector", "placeholder"),
        ("test-key-0123456789-0123456789-0123456789", "test value"),
        ("192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf", "published"),
        ("a" * 64, "repeats"),
        ("0f3c9a1b" * 8, "repeats"),
        ("6f1e2a8c4b0d4e7f9a3b5c1d2e4f6a8b", "about 128 random bits"),  # 16 bytes, in hex
        ("9b1c1c2e-5d2a-4d53-9c7e-6f0a3b8e2d11-aa", "random bits"),  # a uuid4 and a bit
    ],
)
def test_production_refuses_a_weak_key(tmp_path, marker, key, why):
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": key, **marker}
    with pytest.raises(ConfigError, match="SECRET_KEY is too weak") as refused:
        load_settings(env)
    assert why in str(refused.value)
    assert key not in str(refused.value)  # never echo a secret, even a weak one


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_hex(32),  # Heroku's ``generator: secret`` makes 64 hex characters
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(48),  # what the error messages suggest
        Fernet.generate_key().decode(),
        "correct horse battery staple, then 27 more words nobody could guess",
    ],
    ids=["hex-32", "urlsafe-32", "urlsafe-48", "fernet", "passphrase"],  # same in every process
)
def test_production_accepts_a_strong_key(tmp_path, key):
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": key, "DYNO": "web.1"}
    assert load_settings(env).secret_key == key


def test_random_keys_are_never_refused():
    """The heuristics must not refuse what the recommended generators make."""
    generators = (secrets.token_hex, secrets.token_urlsafe)
    refused = [k for k in (g(32) for g in generators for _ in range(2000)) if key_weakness(k)]
    assert refused == []


def test_development_accepts_any_key(tmp_path):
    env = {"CONNECTOR_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "dev"}
    assert load_settings(env).secret_key == "dev"
    assert not (tmp_path / "secret_key").exists()


def test_fallbacks_are_a_comma_separated_list_without_the_current_key(tmp_path):
    env = {
        "CONNECTOR_INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": STRONG_KEY,
        "SECRET_KEY_FALLBACKS": f" {OLD_KEY}, changeme,,{STRONG_KEY},{OLD_KEY}",
        "DYNO": "web.1",
    }
    settings = load_settings(env)
    assert settings.secret_key_fallbacks == (OLD_KEY, "changeme")  # weak ones may leave...
    assert settings.signing_keys == [OLD_KEY, STRONG_KEY]  # ...but never sign anyone in
    assert load_settings({**env, "SECRET_KEY_FALLBACKS": ""}).secret_key_fallbacks == ()


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
    base = {"CONNECTOR_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": STRONG_KEY}
    assert load_settings({**base, "PORT": "5000"}).app_url == "http://localhost:5000"
    assert load_settings({**base, "APP_URL": "https://c.example/"}).app_url == "https://c.example"


def test_tokens_are_encrypted_and_a_changed_key_is_reported():
    cipher = TokenCipher(None, "secret-one")
    stored = cipher.encrypt("act.live-token")
    assert "act.live-token" not in stored
    assert cipher.decrypt(stored) == "act.live-token"
    with pytest.raises(UndecryptableSecret, match="put the previous SECRET_KEY in SECRET_KEY_F"):
        TokenCipher(None, "secret-two").decrypt(stored)
    assert issubclass(UndecryptableSecret, ValueError)  # what callers caught before


def test_a_fallback_key_decrypts_and_the_current_key_encrypts():
    old = TokenCipher(None, OLD_KEY).encrypt("shpss_old")
    rotated = TokenCipher(None, STRONG_KEY, [OLD_KEY])
    assert rotated.decrypt(old) == "shpss_old"
    assert rotated.key_of(old) == FALLBACK
    fresh = rotated.encrypt("shpss_new")
    assert TokenCipher(None, STRONG_KEY).decrypt(fresh) == "shpss_new"  # no fallback needed
    again = rotated.rotate(old)
    assert rotated.key_of(again) == CURRENT
    assert TokenCipher(None, "a-third-key", [OLD_KEY]).key_of(again) is None
    assert TokenCipher(None, STRONG_KEY).decrypt(again) == "shpss_old"
    with pytest.raises(UndecryptableSecret):
        TokenCipher(None, STRONG_KEY).decrypt(old)


def test_token_encryption_key_encrypts_and_what_secret_key_wrote_still_decrypts():
    """Setting TOKEN_ENCRYPTION_KEY on a running install loses nothing; and a former
    TOKEN_ENCRYPTION_KEY can be listed in SECRET_KEY_FALLBACKS like a former SECRET_KEY."""
    before = TokenCipher(None, STRONG_KEY).encrypt("before")
    first_fernet_key = Fernet.generate_key().decode()
    with_key = TokenCipher(first_fernet_key, STRONG_KEY)
    assert with_key.decrypt(before) == "before"
    written = with_key.encrypt("written")
    assert TokenCipher(first_fernet_key, "another-secret-key").decrypt(written) == "written"
    second = TokenCipher(Fernet.generate_key().decode(), STRONG_KEY, [first_fernet_key])
    assert second.decrypt(written) == "written"
