"""Where a running ``connector run`` listens, so other commands on the machine can find it.

``connector run`` writes ``runtime.json`` in the instance folder when it starts (its pid, the
embedded Redis URL, the web server's URL) and removes it when it stops. :func:`load_settings`
reads it when ``REDIS_URL`` is unset, so a command in a second terminal queues its deliveries
on the embedded Redis instead of leaving them for the sweep. A file whose pid is no longer
alive (after a crash or ``kill -9``) is ignored, and so is one whose pid now belongs to another
program (after a reboot), where the system says what each process runs (Linux's ``/proc``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

RUNTIME_FILE = "runtime.json"


@dataclass(frozen=True)
class Runtime:
    """What one running ``connector run`` recorded."""

    pid: int
    redis_url: str | None
    web_url: str


def write_runtime(instance: Path, runtime: Runtime) -> Path:
    """Record ``runtime`` atomically: a reader never sees half a file."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / RUNTIME_FILE
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(runtime)))
    os.replace(partial, path)
    return path


def running_connector(instance: Path) -> Runtime | None:
    """The ``connector run`` recorded in ``instance`` if its process is alive, else None."""
    try:
        runtime = Runtime(**json.loads((instance / RUNTIME_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return runtime if _alive(runtime.pid) and _runs_connector(runtime.pid) else None


def remove_runtime(instance: Path, pid: int) -> None:
    """Remove the record, if it is still the one process ``pid`` wrote."""
    current = running_connector(instance)
    if current is not None and current.pid == pid:
        (instance / RUNTIME_FILE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def _runs_connector(pid: int) -> bool:
    """Whether ``pid`` runs ``connector run``; True where the system does not say."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists()
    named = any(arg == b"connector.cli" or Path(arg.decode()).name == "connector" for arg in args)
    return named and b"run" in args
