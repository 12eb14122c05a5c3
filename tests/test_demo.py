"""The README's "Try it locally": `connector demo` in a fresh folder, as a newcomer runs it.

Real processes all the way: the installed `connector` command with REDIS_URL unset (so its
embedded Redis starts), `connector run`'s web server and worker, the strict TikTok stand-in,
HTTP to the webhook route and to the merchant pages.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import csrf_of

CONNECTOR = Path(sys.executable).with_name("connector")
README = Path(__file__).resolve().parent.parent / "README.md"
# What the demo's caller must not inherit: the demo runs on embedded defaults.
UNSET = ("REDIS_URL", "DATABASE_URL", "CONNECTOR_INSTANCE_PATH", "TIKTOK_API_BASE", "PORT")


def demo_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in UNSET}


def try_it_locally() -> list[str]:
    """The shell blocks of the README's "Try it locally": the demo, then sending by hand."""
    section = README.read_text().split("\n## Try it locally\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def documented_demo_command() -> list[str]:
    program, *args = shlex.split(try_it_locally()[0])
    assert Path(program).name == "connector"
    return [str(CONNECTOR), *args]


def start_demo(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*documented_demo_command(), *args],
        cwd=folder,
        env=demo_environment(),
        stdout=subprocess.PIPE,
        stderr=(folder / "demo-stderr.txt").open("w"),
        text=True,
        start_new_session=True,  # so a failed test can end the whole group
    )


def first_line(process: subprocess.Popen[str], timeout: float = 60.0) -> dict:
    """The demo's JSON summary, the first line it prints on stdout."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"the demo printed nothing within {timeout} s"
    line = process.stdout.readline()
    assert line, f"the demo exited with {process.wait()} before printing its summary"
    return json.loads(line)


def end(process: subprocess.Popen[str]) -> None:
    """Stop a demo a failed test left running: SIGTERM lets it stop its Redis, which runs in
    a session of its own; SIGKILL for the rest of the group if that does not do."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def running_demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict]]:
    process = start_demo(tmp_path)
    try:
        yield process, first_line(process)
    finally:
        end(process)


def delivered_rows(summary: dict) -> list[tuple[str, str, str | None]]:
    database = Path(summary["instance"]) / "connector.sqlite3"
    with sqlite3.connect(database) as connection:
        query = "SELECT event_name, status, last_error FROM events WHERE store_id = ?"
        return connection.execute(query, (summary["store_id"],)).fetchall()


def test_the_demo_delivers_to_the_stand_in_and_its_login_link_opens_the_status_page(
    running_demo: tuple[subprocess.Popen[str], dict], tmp_path: Path
) -> None:
    process, summary = running_demo

    assert summary["events"] == {"delivered": 3, "skipped": 2}
    assert summary["tiktok_events_received"] == 3
    assert summary["unreadable_kept"] == 1
    rows = delivered_rows(summary)
    delivered = sorted(name for name, status, _ in rows if status == "delivered")
    assert delivered == ["CompletePayment", "CompletePayment", "InitiateCheckout"]
    reasons = sorted(error for _, status, error in rows if status == "skipped")
    assert reasons[0] == "bot user agent" and reasons[1].startswith("test order")

    browser = requests.Session()
    login = browser.get(summary["login_url"], timeout=10)
    assert login.status_code == 200
    form = {"csrf_token": csrf_of(login.text)}
    page = browser.post(summary["login_url"], data=form, timeout=10)  # the Continue button
    assert page.status_code == 200
    assert page.url == f"{summary['connector_url']}/settings/{summary['store_id']}/"
    assert "All good." in page.text and summary["tiktok_pixel"] in page.text
    assert "1 webhook from your store could not be read." in page.text
    log_page = browser.get(f"{page.url}log", timeout=10).text
    assert "bot user agent" in log_page and "test order" in log_page

    by_hand = try_it_locally()[1].replace("127.0.0.1:PORT", summary["connector_url"][7:])
    sent = subprocess.run(["bash", "-c", by_hand], cwd=tmp_path, capture_output=True)
    assert json.loads(sent.stdout) == {
        "status": "accepted",
        "events": 1,
        "duplicates": 0,
        "skipped": 0,
    }
    sent = subprocess.run(["bash", "-c", summary["curl"]], capture_output=True)  # the same order
    assert json.loads(sent.stdout)["duplicates"] == 1

    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(timeout=30) == 0
    log = Path(summary["log"]).read_text()
    redis_port = re.search(r"embedded Redis on 127\.0\.0\.1:(\d+)", log)
    assert redis_port and redis_port.group(1) != "6379"
    with pytest.raises(requests.ConnectionError):
        requests.get(summary["connector_url"], timeout=5)


def test_demo_exit_stops_by_itself_after_printing(tmp_path: Path) -> None:
    process = start_demo(tmp_path, "--exit")
    try:
        summary = first_line(process)
        assert process.wait(timeout=30) == 0
    finally:
        end(process)
    assert summary["events"]["delivered"] == 3
    with pytest.raises(requests.ConnectionError):
        requests.get(summary["connector_url"], timeout=5)
