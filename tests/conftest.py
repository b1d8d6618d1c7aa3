"""Shared fixtures: isolated settings, a real database, real Redis, real processes.

The helpers they use (and tests import) live in tests/support/."""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support import browser as browsers
from tests.support import console as console_keys
from tests.support.env import OPSGATE_VARS, PG_ADMIN_URL, REDIS_BASE_URL, reset_process_state
from tests.support.model_server import ModelServer
from tests.support.postgres import PostgresServer, postgres_bin_dir
from tests.support.processes import Proc, free_port, wait_for
from tests.support.redis_server import RedisServer
from tests.support.sandbox import Sandbox


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

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if not t.info.get("view"))
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


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis the test can stop for real without touching the shared one."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


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


@pytest.fixture
def console(pg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API app (with the reviewer console) under FastAPI's test client, on PostgreSQL,
    with the reviewer, requester and admin keys of tests/support/console.py."""
    monkeypatch.setenv("OPSGATE_API_KEYS", console_keys.KEYS)
    reset_process_state()
    from app.api.main import create_app

    with TestClient(create_app()) as client:
        yield client


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


@pytest.fixture
def models(
    pg_env: dict[str, str],
    model_server: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> ModelServer:
    """The model server over real PostgreSQL, with short model timeouts and closed breakers."""
    from tests.support.model_server import quick_models

    quick_models(tmp_path, monkeypatch)
    return model_server


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium through Playwright, for the session; closed at the end."""
    with sync_playwright() as playwright:
        launched = browsers.launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh browser context (1280x900); if the test fails, a screenshot of it
    under $OPSGATE_TEST_ARTIFACTS (default /tmp/opsgate-test-artifacts)."""
    context = browser.new_context(viewport=browsers.VIEWPORT)
    opened = context.new_page()
    # The session counts a failed test when its call is reported, before fixtures tear down.
    failed_before = request.session.testsfailed
    yield opened
    try:
        if request.session.testsfailed > failed_before:
            browsers.save_screenshot(opened, request.node.nodeid)
    finally:
        context.close()
