"""gunicorn's access log without secrets: ``connector web`` runs gunicorn with
``--logger-class connector.web.accesslog.RedactingLogger``.

Our URLs carry secrets a log must not keep: login links have their token in the path
(``/login/<token>``), the embedded pages their grant in the query (``?session=``), and Shopify
opens the app with a session token (``?id_token=``). So every path and request line is logged
with its query string dropped and its login token replaced, and the Referer (another page's
URL, with whatever that carries), cookies and ``Authorization`` are left out, whatever
``--access-logformat`` asks for (``connector web`` asks for the combined format without
query string and Referer). gunicorn builds each line from the ``atoms`` of
:meth:`gunicorn.glogging.Logger.atoms`
(https://docs.gunicorn.org/en/stable/settings.html#access-log-format,
https://docs.gunicorn.org/en/stable/settings.html#logger-class).
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
_LOGIN_TOKEN = re.compile(r"^(/login/)[^/?]+")
_SECRET_HEADERS = ("{cookie}i", "{authorization}i", "{referer}i")


def redact_path(path: str) -> str:
    """The path without its query string, and without the token of a login link."""
    return _LOGIN_TOKEN.sub(rf"\g<1>{REDACTED}", path.split("?", 1)[0])


class RedactingLogger(Logger):
    """gunicorn's logger, whose access-log atoms hold no token, grant or cookie."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        path = redact_path(environ.get("PATH_INFO", ""))
        atoms["U"] = path
        atoms["r"] = f"{environ['REQUEST_METHOD']} {path} {environ['SERVER_PROTOCOL']}"
        atoms["q"] = REDACTED if environ.get("QUERY_STRING") else ""
        atoms["f"] = "-"
        for key in list(atoms):
            if key in _SECRET_HEADERS or key.endswith("}e"):
                atoms[key] = "-"
        return atoms
