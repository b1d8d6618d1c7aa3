"""app/core/redis_line.py against a real Redis: a script sent without waiting runs before the
same thread's next call, its answer reaches its sender then, a script Redis lost is sent again
whole (run once, not dropped), and a broken connection reports what it may have lost and is
replaced for the next call."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from app.core import broker
from app.core.redis_line import Line, Script, lines
from tests.support.env import reset_process_state

INCR = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
GET = Script("return redis.call('GET', KEYS[1])")


@pytest.fixture
def line(clean_env, redis_db_url, monkeypatch) -> Line:
    monkeypatch.setenv("OPSGATE_REDIS_URL", redis_db_url)
    reset_process_state()
    broker.client().flushdb()
    return lines().line()


class Answers:
    """What a sent script's sender was told."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.errors: list[Exception] = []

    def send(self, line: Line, script: Script, keys: list[str], args: list[Any]) -> None:
        line.send(script, keys, args, self.answers.append, self.errors.append)


def test_a_script_sent_without_waiting_runs_before_the_threads_next_call(line: Line) -> None:
    told = Answers()
    told.send(line, INCR, ["n"], [2])
    told.send(line, INCR, ["n"], [3])
    # Nothing read yet: the sender has not waited
    assert told.answers == [] and len(line.unread) == 2
    # The next call on the line sees both writes, and their answers reach the sender in order
    assert line.call(GET, ["n"], []) == b"5"
    assert told.answers == [2, 5] and told.errors == [] and line.unread == []
    # Another connection sees them too
    assert broker.client().get("n") == b"5"


def test_the_line_is_this_threads_own() -> None:
    import threading

    found: list[Line] = []
    thread = threading.Thread(target=lambda: found.append(lines().line()))
    thread.start()
    thread.join()
    assert found[0] is not lines().line()
    assert lines().line() is lines().line()


def test_a_script_redis_lost_is_sent_again_whole_and_runs_once(line: Line) -> None:
    told = Answers()
    line.call(INCR, ["n"], [1])  # loaded on the server
    broker.client().script_flush()
    told.send(line, INCR, ["n"], [10])  # NOSCRIPT: not run
    # The call after it runs too, though its own script is gone as well
    assert line.call(INCR, ["n"], [100]) == 111
    assert told.answers == [11] and told.errors == []
    assert broker.client().get("n") == b"111"


def _kill(line: Line) -> None:
    """Close the line's connection from the server's side, as a restart does."""
    client = broker.client()
    line.connection.send_command("CLIENT", "ID")
    mine = line.connection.read_response()
    assert client.client_kill_filter(_id=mine) == 1


def test_a_connection_the_server_closed_is_replaced_for_the_next_call(line: Line) -> None:
    line.call(INCR, ["n"], [1])
    _kill(line)
    assert line.call(INCR, ["n"], [1]) == 2


def test_what_was_sent_on_a_closed_connection_is_reported_lost(line: Line) -> None:
    told = Answers()
    _kill(line)
    try:
        told.send(line, INCR, ["n"], [5])
    except redis.ConnectionError as exc:
        told.errors.append(exc)  # refused at once: reported to the sender by the caller
    # The next call finds the connection closed: the script is reported, the call goes ahead
    assert line.call(INCR, ["n"], [1]) == 1
    assert told.answers == [] and len(told.errors) == 1
    assert broker.client().get("n") == b"1"


def test_collect_reads_the_oldest_answers_and_leaves_the_newest(line: Line) -> None:
    told = Answers()
    told.send(line, INCR, ["n"], [1])
    told.send(line, INCR, ["n"], [2])
    line.collect(keep=1)
    assert told.answers == [1] and len(line.unread) == 1
    line.collect()
    assert told.answers == [1, 3] and line.unread == []
