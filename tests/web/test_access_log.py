"""The access log of a real ``connector web`` (gunicorn) keeps no login token, embedded grant or
Shopify session token, which travel in URLs (security issue, item 1)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connector.embedded_redis import free_port
from connector.web.accesslog import REDACTED, redact_path
from connector.web.merchant.access import login_token
from tests.support import ROOT, settings_environment, wait_until


@pytest.fixture
def web(settings, services, tmp_path: Path) -> Iterator[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    """A real ``connector web`` on a free port; yields its URL and the file of its output."""
    port = free_port()
    output = tmp_path / "web.log"
    env = {**settings_environment(settings), "WEB_CONCURRENCY": "1"}
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "web", "--host", "127.0.0.1"]
            + ["--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url), timeout=60)
        yield url, output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_no_token_or_grant_reaches_the_access_log(web, services, shopify_store) -> None:
    url, output = web
    token = login_token(services.settings.secret_key, shopify_store)
    grant = "grant-" + "g" * 40
    id_token = "eyJ-session-token-" + "i" * 40
    with requests.Session() as browser:
        assert browser.get(f"{url}/login/{token}", timeout=10).status_code == 200
        browser.post(f"{url}/login/{token}?utm=1", timeout=10)
        browser.get(f"{url}/settings/{shopify_store}/", params={"session": grant}, timeout=10)
        browser.get(f"{url}/shopify/app", params={"id_token": id_token}, timeout=10)
        browser.get(
            f"{url}/healthz",
            headers={"Referer": f"https://elsewhere.example/?session={grant}"},
            timeout=10,
        )
    logged = lambda: f"/settings/{shopify_store}/" in output.read_text()  # noqa: E731
    wait_until(logged, timeout=10)
    log = output.read_text()
    assert f'"GET /login/{REDACTED} HTTP/1.1" 200' in log
    assert f'"POST /login/{REDACTED} HTTP/1.1"' in log
    assert '"GET /shopify/app HTTP/1.1" 404' in log
    for secret in (token, grant, id_token, "session=", "id_token="):
        assert secret not in log


def test_redacted_paths() -> None:
    assert redact_path("/login/abc.def?x=1") == f"/login/{REDACTED}"
    assert redact_path("/settings/st_1/?session=g") == "/settings/st_1/"
    assert redact_path("/logout") == "/logout"
