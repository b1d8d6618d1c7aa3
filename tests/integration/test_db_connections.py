"""The connection pool against a real PostgreSQL: no statement beyond the transaction's own on
a healthy pool, connections the server closed replaced before the caller's first statement,
and nothing retried once a transaction has sent a statement (a COMMIT least of all, even one
the server applied and whose answer was lost)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.core.db import get_engine, make_engine, session_scope
from app.settings import get_settings

pytestmark = pytest.mark.integration

POOL = 3


class Counter:
    """Every statement a pooled connection sends, at the driver: unlike SQLAlchemy's
    before_cursor_execute, this also sees the dialect's own statements (a pre-ping's SELECT 1)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.connects = 0

    def install(self, engine: Engine) -> None:
        """Count on every connection the engine opens from now on (closes the pooled ones)."""
        counter = self

        class CountingCursor(psycopg.Cursor[Any]):
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                counter.statements.append(str(query))
                return super().execute(query, *args, **kwargs)

        def connected(dbapi_conn: Any, _record: Any) -> None:
            self.connects += 1
            dbapi_conn.cursor_factory = CountingCursor

        event.listen(engine, "connect", connected)
        engine.dispose()

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        """The statements sent inside the block."""
        start = len(self.statements)
        seen: list[str] = []
        yield seen
        seen.extend(self.statements[start:])


def admin_url() -> str:
    return get_settings().resolved_database_url().replace("postgresql+psycopg://", "postgresql://")


def backend_pid(session: Session) -> int:
    """The server process behind the session's connection (psycopg knows it; no query)."""
    dbapi = session.connection().connection.dbapi_connection
    assert dbapi is not None
    return int(dbapi.info.backend_pid)


def terminate(pids: list[int]) -> None:
    """Have the server close these connections, as a restart or a failover does; returns once
    each backend has exited (pg_terminate_backend's timeout), so each socket is closed."""
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        for pid in pids:
            row = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()
            assert row == (True,), pid


def fill_pool(size: int) -> list[int]:
    """Open `size` connections at once and return them to the pool; their backend pids."""
    with ExitStack() as stack:
        sessions = [stack.enter_context(session_scope()) for _ in range(size)]
        for session in sessions:
            session.execute(text("SELECT 1"))
        return [backend_pid(s) for s in sessions]


@pytest.fixture
def counter(pg_env: dict[str, str]) -> Iterator[Counter]:
    counter = Counter()
    counter.install(get_engine())
    yield counter


@pytest.fixture
def probe(pg_env: dict[str, str]) -> Iterator[str]:
    """A table of the test's own to write to."""
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS pool_probe (id text PRIMARY KEY)")
        admin.execute("TRUNCATE pool_probe")
    yield "pool_probe"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute("DROP TABLE pool_probe")


def test_a_transaction_on_a_healthy_pool_sends_only_its_own_statements(counter: Counter) -> None:
    fill_pool(1)
    # When a session_scope transaction runs one statement on a pooled connection
    with counter.counting() as ours, session_scope() as session:
        session.execute(text("SELECT 1 AS work"))
        session.commit()
    # Then the server received that statement and nothing else (no pre-ping)
    assert ours == ["SELECT 1 AS work"]

    # The counter does see a pre-ping: the same transaction with pool_pre_ping sends two
    pinging = create_engine(get_settings().resolved_database_url(), pool_pre_ping=True)
    try:
        counter.install(pinging)
        with pinging.connect() as conn:
            conn.execute(text("SELECT 1 AS warm"))
        with counter.counting() as pinged, Session(pinging) as session:
            session.execute(text("SELECT 1 AS work"))
            session.commit()
        assert len(pinged) == 2, pinged
        assert pinged[-1] == "SELECT 1 AS work"
    finally:
        pinging.dispose()


def test_after_the_server_closes_every_pooled_connection_the_next_transactions_succeed(
    counter: Counter, probe: str
) -> None:
    # Given a pool of connections the server has since closed (as a restart does)
    before = fill_pool(POOL)
    connects = counter.connects
    terminate(before)
    # When as many transactions as there were connections run at once
    with counter.counting() as sent, ExitStack() as stack:
        sessions = [stack.enter_context(session_scope()) for _ in range(POOL)]
        for n, session in enumerate(sessions):
            session.execute(text(f"INSERT INTO {probe} (id) VALUES (:id)"), {"id": f"row-{n}"})
            session.commit()
        after = [backend_pid(s) for s in sessions]
    # Then none saw an error: each was handed a fresh connection before its first statement,
    # and each statement was sent once
    assert not set(after) & set(before)
    assert counter.connects - connects == POOL
    assert len(sent) == POOL, sent
    with session_scope() as session:
        assert session.scalar(text(f"SELECT count(*) FROM {probe}")) == POOL


@pytest.mark.parametrize("dies_before", ["the second statement", "COMMIT"])
def test_a_transaction_whose_connection_dies_once_it_has_begun_is_not_retried(
    counter: Counter, probe: str, dies_before: str
) -> None:
    fill_pool(1)
    # Given a transaction that has sent its first statement
    with counter.counting() as sent, pytest.raises(OperationalError), session_scope() as session:
        session.execute(text(f"INSERT INTO {probe} (id) VALUES ('first')"))
        # When the server closes its connection before the next statement, or before COMMIT
        terminate([backend_pid(session)])
        if dies_before == "the second statement":
            session.execute(text(f"INSERT INTO {probe} (id) VALUES ('second')"))
        session.commit()
    # Then the caller sees the error (its owner decides: a stage's message is re-sent, the API
    # answers 503), and nothing was sent again on another connection
    assert sent[0].startswith(f"INSERT INTO {probe}")
    assert len(sent) == (2 if dies_before == "the second statement" else 1), sent
    # And the pool serves the next transaction on a fresh connection, where nothing was kept
    with session_scope() as session:
        assert session.scalar(text(f"SELECT count(*) FROM {probe}")) == 0


class LosesCommitAnswer:
    """A TCP proxy in front of PostgreSQL that forwards a COMMIT, lets the server apply it, and
    then cuts the client's connection instead of passing the answer on: the COMMIT whose
    outcome the client cannot know."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commit_sent = threading.Event()
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
                # psycopg sends COMMIT as a simple query: 'Q', length, "COMMIT\0".
                if b"COMMIT\x00" in data:
                    self.commit_sent.set()

    def _to_client(self, server: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if self.commit_sent.is_set() and not self.cut.is_set():
                    self.cut.set()
                    # shutdown, not only close: the other thread's recv() holds the socket
                    # open, and only shutdown sends the FIN the client must see.
                    for sock in (client, server):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_commit_whose_answer_is_lost_is_not_sent_again(
    pg_env: dict[str, str], probe: str
) -> None:
    url = make_url(get_settings().resolved_database_url())
    proxy = LosesCommitAnswer((url.host or "127.0.0.1", url.port or 5432))
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), 2)
    counter = Counter()
    counter.install(engine)
    try:
        # Given a transaction whose COMMIT reaches the server, and whose answer never arrives
        with counter.counting() as sent, pytest.raises(OperationalError):  # noqa: SIM117
            with Session(engine) as session:
                session.execute(text(f"INSERT INTO {probe} (id) VALUES ('once')"))
                session.commit()
        # Then the caller sees the error, and nothing of the transaction was sent again
        assert proxy.cut.is_set()
        assert sent == [f"INSERT INTO {probe} (id) VALUES ('once')"]
        # While the server did apply it: the outcome the caller could not know
        with session_scope() as session:
            assert session.scalar(text(f"SELECT count(*) FROM {probe}")) == 1
    finally:
        engine.dispose()
        proxy.close()
