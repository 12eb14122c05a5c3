"""What the benchmarks share: the machine report, the connector as deployed, realistic webhooks.

Every benchmark runs the real processes (gunicorn through ``connector web``, ``connector
worker``, a real Redis, SQLite or PostgreSQL) and sends traffic only to 127.0.0.1. A
PostgreSQL run never touches the database named in ``--database-url``: it creates its own
(``bench`` by default) on that server and drops it afterwards, because the test suite uses
the named one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.config import load_settings  # noqa: E402
from connector.db import upgrade_database  # noqa: E402
from connector.embedded_redis import EmbeddedRedis, free_port, start_redis  # noqa: E402
from connector.services import Services, build_services  # noqa: E402
from connector.stores import add_store, set_destination  # noqa: E402
from tests.support import sign  # noqa: E402

T = TypeVar("T")

SHOP = "bench-store.myshopify.com"
SECRET = "bench-secret"
TOKEN = "bench-token"
PIXEL = "CBENCHPIXEL00001"
ORDER_FIXTURE = ROOT / "tests/platforms/shopify/fixtures/orders_create.json"
WEBHOOK_PATH = "/webhooks/shopify"
ORDER_TOPIC = "orders/create"
PACKAGES = ("flask", "werkzeug", "gunicorn", "sqlalchemy", "psycopg", "rq", "redis", "requests")
FIRST_ORDER_ID = 5_000_000_000_000


# -- the machine ---------------------------------------------------------------------------


def machine_lines(database_url: str | None = None) -> list[str]:
    """Where a figure was measured: cores, CPU model, Python, and the versions that matter."""
    versions = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    lines = [
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{cpu_model()}, {_memory_gb():.0f} GB RAM, Linux {platform.release()}",
        f"python: {platform.python_implementation()} {platform.python_version()}; {versions}",
        f"servers: {_command_version(['redis-server', '--version'])}; "
        f"{_command_version(['wrk', '-v'])}; SQLite {sqlite3.sqlite_version}",
    ]
    if database_url and database_url.startswith("postgresql"):
        lines.append(f"database: PostgreSQL {postgres_version(database_url)}")
    lines.append(f"code: {code_version()}")
    return lines


def code_version() -> str:
    """The commit measured, and how many files differed from it (others edit the tree)."""
    git = ["git", "--no-optional-locks", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()  # fmt: skip
        changed = subprocess.run([*git, "status", "--porcelain"], capture_output=True,
                                 text=True, timeout=10).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    outside = [line for line in changed if not line[3:].startswith("bench/")]
    return f"commit {head or '?'}, {len(outside)} files changed or new outside bench/ at start"


def print_machine(database_url: str | None = None) -> None:
    for line in machine_lines(database_url):
        print(line)


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return int(first.split()[1]) / 1024 / 1024
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _command_version(argv: list[str]) -> str:
    """First line of a tool's version output (wrk prints it and exits 1)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return f"{argv[0]} not found"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0][:80] if text else argv[0]


# -- numbers and tables ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile by nearest rank (what wrk and most load tools report)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(headers)
    )
    print(line)
    print("-" * len(line))
    for row in cells:
        print(
            "  ".join(
                c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
            )
        )


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# -- databases -------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(tmp: Path, database_url: str | None, name: str = "bench") -> Iterator[str]:
    """A fresh, empty database for one measurement; dropped (or left in ``tmp``) after.

    SQLite: a new file. PostgreSQL: ``CREATE DATABASE <name>`` on the server of
    ``database_url`` (whose own database is never touched), dropped on the way out.
    """
    if not database_url or database_url.startswith("sqlite"):
        path = tmp / f"{name}-{time.monotonic_ns()}.sqlite3"
        yield f"sqlite:///{path}"
        return
    url = postgres_url(database_url, name)
    _recreate_postgres_database(database_url, name)
    try:
        yield url
    finally:
        _drop_postgres_database(database_url, name)


def postgres_url(database_url: str, name: str) -> str:
    """The same server and user as ``database_url``, database ``name``, psycopg 3 driver."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _admin_conninfo(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


def _recreate_postgres_database(database_url: str, name: str) -> None:
    import psycopg

    if make_safe_name(name) != name:
        raise SystemExit(f"refusing database name {name!r}")
    with psycopg.connect(_admin_conninfo(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_postgres_database(database_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_admin_conninfo(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_safe_name(name: str) -> str:
    """Only lowercase letters, digits and underscores: the name goes into DDL unquoted-safe."""
    return "".join(ch for ch in name if ch.isascii() and (ch.isalnum() or ch == "_")).lower()


def postgres_version(database_url: str) -> str:
    import psycopg

    try:
        with psycopg.connect(_admin_conninfo(database_url)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        return f"unreachable ({type(exc).__name__})"
    return str(row[0]) if row else "?"


def database_bytes(database_url: str) -> int:
    """Bytes the data takes: SQLite pages in use (WAL folded in), or PostgreSQL's own figure."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size
    import psycopg

    conninfo = postgres_url(database_url, _database_name(database_url)).replace(
        "postgresql+psycopg", "postgresql"
    )
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _database_name(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).database or "postgres"


# -- the connector stack ---------------------------------------------------------------------


@dataclass
class Stack:
    """A migrated database with one Shopify store and its TikTok destination, and a Redis."""

    database_url: str
    redis: EmbeddedRedis
    services: Services
    store_id: str
    destination_id: int
    env: dict[str, str]


def prepare_stack(
    tmp: Path,
    database_url: str,
    redis: EmbeddedRedis,
    tiktok_base: str,
    **extra_env: str,
) -> Stack:
    """Migrate, add the store and its TikTok destination, and the environment processes use."""
    env = {
        **os.environ,
        "CONNECTOR_INSTANCE_PATH": str(tmp / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "SECRET_KEY": "bench-secret-key",
        "TIKTOK_API_BASE": tiktok_base,
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    settings = load_settings(env)
    upgrade_database(settings.database_url)
    services = build_services(settings)
    store = add_store(services, platform="shopify", domain=SHOP, webhook_secret=SECRET)
    destination = set_destination(
        services,
        store.id,
        kind="tiktok",
        values={"pixel_code": PIXEL, "access_token": TOKEN},
    )
    return Stack(settings.database_url, redis, services, store.id, destination.id, env)


@contextlib.contextmanager
def running_redis(tmp: Path) -> Iterator[EmbeddedRedis]:
    """A private redis-server on a free port (never 6379), without persistence."""
    redis = start_redis(tmp / "redis", persist=False)
    try:
        yield redis
    finally:
        redis.stop()


def redis_memory(redis: EmbeddedRedis) -> tuple[int, int]:
    """(used_memory bytes, number of keys) of a Redis."""
    from redis import Redis

    client = Redis.from_url(redis.url)
    try:
        return int(client.info("memory")["used_memory"]), int(client.dbsize())
    finally:
        client.close()


class Outbox:
    """Counts in the outbox, over one connection pool kept for the whole measurement."""

    def __init__(self, database_url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(database_url, pool_size=1)

    def count(self, status: str | None = None) -> int:
        from sqlalchemy import text

        query = "SELECT count(*) FROM events" + (" WHERE status = :status" if status else "")
        with self.engine.connect() as conn:
            return int(conn.execute(text(query), {"status": status}).scalar() or 0)

    def any_pending(self) -> bool:
        """Whether any row is still pending: the first row of the delivery queue answers,
        where counting the delivered rows walked all of them on every poll, on the cores the
        worker being measured needs."""
        from sqlalchemy import text

        query = "SELECT EXISTS (SELECT 1 FROM pending_events)"
        with self.engine.connect() as conn:
            return bool(conn.execute(text(query)).scalar())

    def requests(self) -> int:
        """Delivery attempts recorded: one per HTTP request the worker made."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM attempts")).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()


def count_events(database_url: str, status: str | None = None) -> int:
    """Rows in the outbox (of one status), through a short-lived pool."""
    outbox = Outbox(database_url)
    try:
        return outbox.count(status)
    finally:
        outbox.close()


# -- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebConfig:
    """A gunicorn setting to try: worker processes, and threads per process (gthread if > 1)."""

    workers: int
    threads: int = 1

    @property
    def label(self) -> str:
        return f"sync x{self.workers}" if self.threads == 1 else (
            f"gthread {self.workers}x{self.threads}"
        )  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> WebConfig:
        """``sync:2`` or ``gthread:2x4`` (2 processes of 4 threads)."""
        kind, _, shape = text.partition(":")
        if kind == "sync":
            return cls(int(shape))
        if kind == "gthread":
            workers, _, threads = shape.partition("x")
            return cls(int(workers), int(threads))
        raise ValueError(f"unknown web config {text!r}: use sync:N or gthread:NxT")

    def environment(self) -> dict[str, str]:
        """How the Procfile's command is tuned without editing it: WEB_CONCURRENCY, and
        gunicorn's own GUNICORN_CMD_ARGS for threads (threads > 1 turns sync into gthread)."""
        env = {"WEB_CONCURRENCY": str(self.workers)}
        if self.threads > 1:
            env["GUNICORN_CMD_ARGS"] = f"--worker-class gthread --threads {self.threads}"
        return env


def start_connector_web(
    env: dict[str, str], config: WebConfig, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """``connector web``, the Procfile's web process (it execs gunicorn; same pid)."""
    return _spawn(
        [sys.executable, "-m", "connector.cli", "web", "--port", str(port)],
        {**env, **config.environment()},
        log,
    )


def start_bare_web(
    env: dict[str, str], config: WebConfig, port: int, log: Path, app: str = "bare_app:create_app()"
) -> subprocess.Popen[bytes]:
    """The bare app under the same gunicorn argv ``connector web`` builds (cli.py)."""
    argv = [
        sys.executable, "-m", "gunicorn", app,
        "--pythonpath", str(BENCH),
        "--bind", f"0.0.0.0:{port}",
        "--workers", str(config.workers),
        "--access-logfile", "-",
        "--graceful-timeout", "25",
    ]  # fmt: skip
    return _spawn(argv, {**env, **config.environment()}, log)


@dataclass
class StandIn:
    """A bench/standin_server.py process: the TikTok the worker sends to."""

    process: subprocess.Popen[str]
    port: int
    kind: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> dict[str, int]:
        """SIGTERM; returns what it counted: ``{"requests": R, "events": E}``."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def start_standin(kind: str, log: Path, receipts: Path | None = None) -> StandIn:
    """Start a strict or lean TikTok stand-in process and wait until it listens."""
    argv = [sys.executable, str(BENCH / "standin_server.py"), "--kind", kind]
    if receipts:
        argv += ["--receipts", str(receipts)]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True
    )
    first = process.stdout.readline() if process.stdout else ""
    if not first.startswith("{"):
        process.kill()
        raise SystemExit(f"the TikTok stand-in did not start; see {log}")
    return StandIn(process, int(json.loads(first)["port"]), kind)


def read_receipts(path: Path) -> dict[str, float]:
    """event_id -> when the stand-in first received it (monotonic seconds)."""
    first: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            event_id, _, stamp = line.partition(" ")
            first.setdefault(event_id, float(stamp))
    return first


def start_worker(env: dict[str, str], log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    """``connector worker``, the Procfile's worker process."""
    return _spawn([sys.executable, "-m", "connector.cli", "worker"], {**env, **extra_env}, log)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM (gunicorn and the worker finish what they do), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


def wait_for_rq_worker(stack: Stack, timeout: float = 30.0) -> None:
    """Until a worker has registered with the queue (so a job is picked up at once)."""
    from rq import Worker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Worker.all(connection=stack.services.redis):
            return
        time.sleep(0.05)
    raise SystemExit("connector worker did not register with Redis")


def children_of(pid: int) -> list[int]:
    """Direct children of a process (gunicorn's workers are its master's)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _process_cpu() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used) for every process on the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def _our_pids(table: dict[int, tuple[int, float]]) -> set[int]:
    """This process and its descendants."""
    ours = {os.getpid()}
    grew = True
    while grew:
        before = len(ours)
        ours |= {pid for pid, (ppid, _) in table.items() if ppid in ours}
        grew = len(ours) > before
    return ours


def _database_pids(table: dict[int, tuple[int, float]], database: str | None) -> set[int]:
    """PostgreSQL backends serving the bench database (their title names it)."""
    found: set[int] = set()
    if database:
        marker = f" {database} ".encode()
        for pid in table:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if cmdline.startswith(b"postgres:") and marker in cmdline:
                    found.add(pid)
    return found


class CpuMeter:
    """CPU used during a measurement: by us (the bench and everything it started, and the
    bench database's PostgreSQL backends) and by everything else on the machine.

    Other people's test suites share this machine; a figure taken while they ran is not a
    figure about our code, so every table shows the foreign load next to it.
    """

    def __init__(self, database: str | None = None) -> None:
        self.database = database
        self.ours = self.foreign = self.seconds = 0.0
        self.deltas: dict[int, float] = {}
        self.database_pids: set[int] = set()

    def __enter__(self) -> CpuMeter:
        self._table = _process_cpu()
        self._busy = machine_busy_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        table = _process_cpu()
        busy = machine_busy_seconds() - self._busy
        self.seconds = time.monotonic() - self._started
        self.database_pids = _database_pids(table, self.database)
        ours = _our_pids(table) | self.database_pids
        self.deltas = {
            pid: max(0.0, cpu - self._table.get(pid, (0, 0.0))[1])
            for pid, (_, cpu) in table.items()
            if pid in ours
        }
        self.ours = sum(self.deltas.values())
        self.foreign = max(0.0, busy - self.ours)

    def cpu_of(self, pids: Iterable[int]) -> float:
        """CPU seconds these processes of ours used during the measurement."""
        return sum(self.deltas.get(pid, 0.0) for pid in pids)

    @property
    def foreign_cores(self) -> float:
        """Average cores busy with other people's work during the measurement."""
        return self.foreign / self.seconds if self.seconds else 0.0

    @property
    def our_cores(self) -> float:
        return self.ours / self.seconds if self.seconds else 0.0


QUIET_LIMIT = 0.15  # cores others may use while we measure


def cleanest(attempts: int, measure: Callable[[], T], foreign: Callable[[T], float]) -> T:
    """Measure up to ``attempts`` times until others used under QUIET_LIMIT cores meanwhile;
    returns the attempt they disturbed least."""
    best: T | None = None
    for attempt in range(max(1, attempts)):
        result = measure()
        if best is None or foreign(result) < foreign(best):
            best = result
        if foreign(result) <= QUIET_LIMIT:
            break
        if attempt + 1 < attempts:
            print(f"  others used {foreign(result):.2f} cores meanwhile; measuring again",
                  file=sys.stderr, flush=True)  # fmt: skip
    assert best is not None
    return best


def wait_for_quiet(
    database: str | None = None, *, limit: float = QUIET_LIMIT, timeout: float = 900.0
) -> float:
    """Wait until other processes use under ``limit`` cores (1 s samples); returns the last
    sample. Gives up after ``timeout`` and says so: the figures that follow are then noisy."""
    if timeout <= 0:
        return 0.0
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        with CpuMeter(database) as meter:
            time.sleep(1.0)
        if meter.foreign_cores < limit:
            return meter.foreign_cores
        if time.monotonic() > deadline:
            print(f"  machine still busy ({meter.foreign_cores:.2f} cores); measuring anyway",
                  file=sys.stderr)  # fmt: skip
            return meter.foreign_cores
        if not announced:
            print(
                f"  waiting for a quiet machine (others use {meter.foreign_cores:.2f} cores)",
                file=sys.stderr,
                flush=True,
            )
            announced = True


@dataclass(frozen=True)
class Memory:
    """Resident memory of one process: RSS, and what is its own (USS) or its share (PSS)."""

    rss: int
    pss: int
    uss: int


def memory_of(pid: int) -> Memory:
    """From /proc/<pid>/smaps_rollup, in bytes."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[name] = int(parts[0]) * 1024
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return Memory(values.get("Rss", 0), values.get("Pss", 0), uss)


# -- profiling -------------------------------------------------------------------------------


class PySpy:
    """``py-spy record`` on a process (and its children) while a measurement runs.

    Writes py-spy's raw (collapsed) stacks to ``output`` and, on exit, prints where the time
    went: the share of samples spent inside each of our functions (connector/, platforms/,
    app.py): ``incl`` counts everything below it, ``own+lib`` the samples where it is the
    innermost of our functions (its own code and the libraries it calls). Off when ``binary``
    is None.
    """

    OURS = re.compile(r"\((?:connector|platforms)/|\(app\.py")

    def __init__(self, binary: str | None, pid: int, output: Path, title: str) -> None:
        self.binary, self.pid, self.output, self.title = binary, pid, output, title
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        if self.binary:
            argv = [
                self.binary, "record", "--pid", str(self.pid), "--subprocesses",
                "--rate", "200", "--format", "raw", "--output", str(self.output), "--nonblocking",
            ]  # fmt: skip
            self.process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(0.5)  # attached before the load starts
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        print(f"py-spy: {self.title} ({self.output})")
        for line in summarise_stacks(self.output):
            print(f"  {line}")


def summarise_stacks(path: Path, top: int = 25) -> list[str]:
    """Inclusive and self shares of our functions in py-spy raw output."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    if not path.exists():
        return ["no samples"]
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [
            re.sub(r":\d+\)$", ")", f)
            for f in stack.split(";")
            if not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        samples = int(count)
        total += samples
        for frame in dict.fromkeys(frames):
            if PySpy.OURS.search(frame):
                inclusive[frame] = inclusive.get(frame, 0) + samples
        ours = [f for f in frames if PySpy.OURS.search(f)]
        if ours:
            own[ours[-1]] = own.get(ours[-1], 0) + samples
    if not total:
        return ["no samples"]
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return [f"{'incl':>6} {'own+lib':>7}  function (of {total} samples)"] + [
        f"{count / total:6.1%} {own.get(frame, 0) / total:7.1%}  {frame}" for frame, count in ranked
    ]


# -- webhooks --------------------------------------------------------------------------------


def order_template(line_items: int) -> dict[str, Any]:
    """The fixture order grown to ``line_items`` distinct lines, dated now.

    The fixture has two lines; a real Shopify ``orders/create`` body is 10-20 KB compact
    for an order of about 8 lines (each line is ~1 KB of ids, money sets and taxes).
    """
    order = json.loads(ORDER_FIXTURE.read_bytes())
    originals = order["line_items"]
    lines = []
    for index in range(line_items):
        line = json.loads(json.dumps(originals[index % len(originals)]))
        line["id"] = 866550311766439020 + index
        line["variant_id"] = 808950810 + index
        line["sku"] = f"{line.get('sku') or 'SKU'}-{index}"
        line["admin_graphql_api_id"] = f"gid://shopify/LineItem/{line['id']}"
        lines.append(line)
    order["line_items"] = lines
    now = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    order.update(processed_at=now, created_at=now, updated_at=now)
    return order


class OrderBodies:
    """Signed, compact order bodies that differ only in the order id (and so in signature).

    Serialising once and substituting the id keeps generating 100,000 bodies cheap.
    """

    MARKER = b"999999999999999999"

    def __init__(self, line_items: int) -> None:
        order = order_template(line_items)
        order["id"] = int(self.MARKER)
        order["admin_graphql_api_id"] = f"gid://shopify/Order/{self.MARKER.decode()}"
        self._template = json.dumps(order, separators=(",", ":")).encode()
        self.size = len(self.body(FIRST_ORDER_ID))

    def body(self, order_id: int) -> bytes:
        return self._template.replace(self.MARKER, str(order_id).encode())

    def signed(self, order_id: int) -> tuple[bytes, str]:
        body = self.body(order_id)
        return body, sign(SECRET, body)


def webhook_headers(signature: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": ORDER_TOPIC,
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Hmac-Sha256": signature,
    }


def write_bodies_file(path: Path, bodies: OrderBodies, first_id: int, count: int) -> None:
    """``signature<TAB>body`` per line, for bench/wrk_bodies.lua."""
    with path.open("wb") as out:
        for order_id in range(first_id, first_id + count):
            body, signature = bodies.signed(order_id)
            out.write(signature.encode() + b"\t" + body + b"\n")


def pick_port() -> int:
    return free_port()
