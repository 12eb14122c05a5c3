"""The traps of a newcomer's first minutes (issue 15), each as a user meets it.

A second terminal finds the running ``connector run`` (its Redis) through the instance folder;
``run`` listens on loopback only; ``worker`` without Redis is one line; a command run from the
wrong folder names the database it opened; ``.env`` is read without overriding the
environment; the README's settings table, ``.env.example`` and :func:`load_settings` list the
same variables; nothing logs a warning when nothing is wrong.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import requests
from redis import Redis

from connector.cli import main
from connector.config import load_settings
from connector.embedded_redis import free_port
from connector.jobs import request_delivery
from connector.runtime import RUNTIME_FILE
from connector.services import build_services
from tests.support import ROOT, wait_until

# Read by load_settings but set by the platform or the tests, never by an operator.
# TIKTOK_BATCH_SIZE: BATCH_SIZE's former name, still read for deployments that set it.
NOT_FOR_OPERATORS = {"DYNO", "SHOPIFY_ADMIN_BASE_URL", "TIKTOK_BATCH_SIZE"}
BACKTICKED = re.compile(r"`([^`]*)`")
EXAMPLE_LINE = re.compile(r"^# ([A-Z][A-Z0-9_]+)=(\S*)", re.MULTILINE)


def connector(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_environment(**changes: str) -> dict[str, str]:
    """This process's environment without any connector setting, plus ``changes``."""
    names = readme_table() | {"CONNECTOR_INSTANCE_PATH", "CONNECTOR_ENV", "HOST"}
    env = {name: value for name, value in os.environ.items() if name not in names}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **changes}


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def readme_rows() -> Iterator[tuple[list[str], str]]:
    """(variable names, default column) of each row of the README's Configuration table."""
    for line in readme_section("Configuration").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 3:
            yield BACKTICKED.findall(cells[0]), cells[2]


def readme_table() -> set[str]:
    return {name for names, _ in readme_rows() for name in names}


def env_example() -> dict[str, str]:
    return dict(EXAMPLE_LINE.findall((ROOT / ".env.example").read_text()))


class Recording(dict):
    """An environment that remembers every variable asked for."""

    def __init__(self, **values: str) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, name, default=None):  # type: ignore[no-untyped-def, override]
        self.asked.add(name)
        return super().get(name, default)


# -- one list of settings ----------------------------------------------------------------------


def test_readme_env_example_and_load_settings_name_the_same_variables(tmp_path):
    environ = Recording(CONNECTOR_INSTANCE_PATH=str(tmp_path))
    load_settings(environ)
    assert readme_table() == environ.asked - NOT_FOR_OPERATORS
    assert set(env_example()) == readme_table()


def test_env_example_shows_the_readme_defaults():
    example = env_example()
    compared = 0
    for names, default in readme_rows():
        values = BACKTICKED.findall(default)
        if BACKTICKED.sub("", default).strip(", ") or "<" in default:
            continue  # a description (or a placeholder), not values
        for name, value in zip(names, values, strict=True):
            assert example[name] == value, name
            compared += 1
    assert compared >= 15


def documented_commands() -> set[str]:
    """Each command the README's Commands table names in its first column: a row names a
    command (``connector stores list``), then maybe siblings in the same group (```replay```)."""
    groups = {name for name, command in main.commands.items() if isinstance(command, click.Group)}
    found = set()
    for line in readme_section("Commands and processes").splitlines():
        if not line.startswith("| `connector "):
            continue  # the routes' table shares the section
        group = None
        for piece in BACKTICKED.findall(line.strip("|").split(" | ")[0]):
            words = piece.split()
            if words[0] == "connector":
                group = words[1] if words[1] in groups else None
                words = words[2:] if group else words[1:]
            found.add(f"{group} {words[0]}" if group else words[0])
    return found


def test_the_readme_lists_every_command_of_connector_help():
    actual = set()
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            actual |= {f"{name} {sub}" for sub in command.commands}
        else:
            actual.add(name)
    assert documented_commands() == actual


# -- a second terminal finds `connector run` ---------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a socket listening on ``port`` (Linux's /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _, state = line.split()[1:4]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[dict, dict[str, str]]]:
    """A real ``connector run`` on embedded defaults (SQLite, embedded Redis), as a newcomer
    starts it; yields its runtime record and the environment of a second terminal."""
    instance = tmp_path / "instance"
    env = clean_environment(CONNECTOR_INSTANCE_PATH=str(instance), WEB_CONCURRENCY="1")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    runtime_file = instance / RUNTIME_FILE
    try:
        wait_until(runtime_file.exists, timeout=60)
        runtime = json.loads(runtime_file.read_text())
        wait_until(lambda: healthy(runtime["web_url"]), timeout=60)
        yield runtime, env
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert not runtime_file.exists()  # removed on a clean exit
    assert " WARNING " not in stderr and " ERROR " not in stderr, stderr


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_a_second_terminal_queues_on_the_running_connectors_redis(running, tmp_path):
    runtime, env = running
    port = int(runtime["web_url"].rsplit(":", 1)[1])
    assert runtime["web_url"] == f"http://127.0.0.1:{port}"
    assert listening_addresses(port) == {"127.0.0.1"}  # not the local network

    elsewhere = tmp_path / "another-folder"
    elsewhere.mkdir()
    added = connector("stores", "add-woocommerce", "--url", "https://shop.example",
                      cwd=elsewhere, env=env)  # fmt: skip
    store_id = json.loads(added.stdout)["store_id"]
    result = connector("tiktok", "set", store_id, "--pixel-code", "CPIXEL", "--access-token",
                       "tok", cwd=elsewhere, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["delivery_requested"] is True
    assert "WARNING" not in result.stderr and "queue.unavailable" not in result.stderr
    assert Redis.from_url(runtime["redis_url"]).ping()

    second = connector("run", cwd=elsewhere, env=env)
    assert second.returncode == 1
    assert second.stderr.splitlines()[-1].startswith("Error: `connector run` is already running")


def finished_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    return int(finished.stdout)


@pytest.mark.parametrize("after", ["a crash", "a reboot"])
def test_worker_without_redis_is_one_line_even_after_a_run_that_did_not_stop(tmp_path, after):
    """After a crash the recorded pid is gone; after a reboot another program may have it."""
    instance = tmp_path / "instance"
    instance.mkdir()
    pid = finished_pid() if after == "a crash" else os.getpid()
    stale = {"pid": pid, "redis_url": "redis://127.0.0.1:1/0", "web_url": "x"}
    (instance / RUNTIME_FILE).write_text(json.dumps(stale))
    env = clean_environment(CONNECTOR_INSTANCE_PATH=str(instance))
    result = connector("worker", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: REDIS_URL is not set and no `connector run` is running for {instance}: set "
        "REDIS_URL (e.g. redis://localhost:6379/0), or use `connector run`, which starts an "
        "embedded Redis and a worker"
    ]


# -- the instance folder and .env --------------------------------------------------------------


def test_a_command_in_the_wrong_folder_names_the_database_it_opened(tmp_path):
    result = connector("stores", "list", cwd=tmp_path, env=clean_environment())
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    database = tmp_path.resolve() / "instance" / "connector.sqlite3"
    assert line.startswith(f"Error: sqlite:///{database} has no connector tables (no such table")
    assert "it is a new database, or not the connector's" in line
    assert "cd to the folder where `connector run` was started" in line
    assert "CONNECTOR_INSTANCE_PATH" in line


def test_a_postgresql_database_without_the_tables_is_named_too(postgres_url, tmp_path):
    """PostgreSQL says "relation does not exist" (a ProgrammingError), not "no such table"."""
    empty_schema = f"{postgres_url}?options=-csearch_path%3Dnothing_here"
    env = clean_environment(DATABASE_URL=empty_schema, CONNECTOR_INSTANCE_PATH=str(tmp_path))
    result = connector("stores", "list", cwd=tmp_path, env=env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: postgresql+psycopg://")
    assert 'has no connector tables (relation "stores" does not exist' in line


def test_dotenv_is_read_without_overriding_the_environment(tmp_path):
    instance = tmp_path / "from-dotenv"
    (tmp_path / ".env").write_text(f"CONNECTOR_INSTANCE_PATH={instance}\nPORT=not-a-number\n")
    folder = tmp_path / "sub"  # found in a parent folder, as Flask finds it
    folder.mkdir()
    result = connector("db", "upgrade", cwd=folder, env=clean_environment(PORT="8000"))
    assert result.returncode == 0, result.stderr
    assert (instance / "connector.sqlite3").exists()


# -- quiet when nothing is wrong ---------------------------------------------------------------


def test_building_the_plugin_prints_only_its_path(tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "platforms.woocommerce.build_plugin",
         "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert Path(result.stdout.strip()).parent == tmp_path


def test_an_unreachable_redis_is_logged_by_exception_name(settings, caplog):
    """``LOG_FORMAT=json`` splits fields on spaces: ``<class '...'>`` would break the line."""
    closed = build_services(settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with caplog.at_level(logging.WARNING, logger="connector.jobs"):
        assert request_delivery(closed, 1) is False
    assert [r.getMessage() for r in caplog.records] == [
        "queue.unavailable destination=1 error=ConnectionError"
    ]
