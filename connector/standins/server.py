"""The HTTP server every stand-in runs on: a real, threaded WSGI server on 127.0.0.1 that can
be stopped with its connections cut, so a test sees what a client sees when a platform goes
away."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without access logs, registering its socket with the server."""

    def setup(self) -> None:
        super().setup()
        self.server.stand_in_connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.stand_in_connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LocalServer:
    """Serves one Flask app in a thread of its own; ``close`` also cuts open connections."""

    def __init__(self, app: Flask, name: str) -> None:
        self.app, self.name = app, name
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def serving(self) -> bool:
        return self._server is not None

    def listen(self, port: int = 0) -> None:
        """Serve on ``port`` (0: any free one, kept in :attr:`port`)."""
        try:
            server = make_server(
                "127.0.0.1", port, self.app, threaded=True, request_handler=QuietHandler
            )
        except SystemExit as exc:  # werkzeug exits when the port cannot be bound
            raise RuntimeError(f"{self.name} cannot listen on port {port}") from exc
        server.stand_in_connections = set()  # type: ignore[attr-defined]
        self._server, self.port = server, server.server_port
        # serve_forever checks for shutdown every poll_interval (0.5 s by default), which a
        # stop would wait out: the stand-ins start and stop once per test in the suites.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and cut every open connection; a no-op when not serving."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        for connection in server.stand_in_connections.copy():  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)


class ServedStandIn:
    """What every stand-in does with its :class:`LocalServer` (in ``self._http``): start and
    stop it, serve as a context manager, and say where it listens."""

    _http: LocalServer

    def start(self) -> Self:
        self._http.listen()
        return self

    def stop(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._http.base_url
