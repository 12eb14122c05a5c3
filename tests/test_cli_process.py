"""The ``connector`` command as the installed program, in real child processes.

``tests/test_cli.py`` and the other command tests run the commands in-process through the
same click group (``tests.support.invoke_connector``); these few keep what only a process
shows covered: the console script ``pip install`` writes (``[project.scripts]`` in
pyproject.toml, which the Procfile runs), its exit statuses, and settings read from the
process environment. ``.venv/bin/pytest -m "not slow"`` leaves this module out (it starts
processes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect, select

from connector.config import Settings
from connector.models import Store
from tests.support import ROOT, command_environment, run_connector

CONSOLE_SCRIPT = Path(sys.executable).parent / "connector"
"""The entry point ``pip install -e .`` wrote next to this interpreter."""


def installed(settings: Settings, *args: str, **env: str | None) -> subprocess.CompletedProcess:
    """``connector ARGS`` through the console script, with these settings' environment."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        env=command_environment(settings, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def errors(result: subprocess.CompletedProcess) -> list[str]:
    """stderr without the log lines the command's logging setup may print."""
    return [line for line in result.stderr.splitlines() if " INFO " not in line]


def test_the_console_script_adds_and_lists_a_store_in_the_tests_database(settings, services):
    added = installed(settings, "stores", "add-woocommerce", "--url", "https://shop.example")
    assert added.returncode == 0, added.stderr
    store_id = json.loads(added.stdout)["store_id"]
    with services.db.session() as session:
        assert session.scalars(select(Store.id)).all() == [store_id]
    listed = installed(settings, "stores", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert (json.loads(line)["store_id"], json.loads(line)["domain"]) == (store_id, "shop.example")


def test_a_refusal_exits_1_and_a_usage_error_exits_2(settings, shopify_store):
    unknown = installed(
        settings, "tiktok", "set", "st_nope", "--pixel-code", "C", "--access-token", "t"
    )
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert errors(unknown) == ["Error: no store st_nope: see `connector stores list`"]
    usage = installed(settings, "events", "list", "--status", "lost")
    assert usage.returncode == 2
    assert "Invalid value for '--status'" in usage.stderr
    assert usage.stderr.startswith("Usage: connector events list")


def test_settings_come_from_the_process_environment(settings, tmp_path):
    bad_format = installed(settings, "stores", "list", LOG_FORMAT="xml")
    assert bad_format.returncode == 1
    assert errors(bad_format) == ["Error: LOG_FORMAT must be one of text, json; got 'xml'"]
    elsewhere = f"sqlite:///{tmp_path / 'new.db'}"
    unmigrated = installed(settings, "stores", "list", DATABASE_URL=elsewhere)
    assert unmigrated.returncode == 1
    [line] = errors(unmigrated)
    assert line.startswith(f"Error: {elsewhere} has no connector tables")


def test_the_release_phase_db_upgrade_migrates_the_database_it_is_given(settings, tmp_path):
    """The Procfile's ``release: connector db upgrade``, as ``python -m connector.cli``."""
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = run_connector(settings, "db", "upgrade", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, errors(result)[-1]) == ("", "database is up to date")
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"stores", "destinations", "events", "attempts", "alembic_version"} <= tables
