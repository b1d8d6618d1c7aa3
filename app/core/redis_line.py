"""A thread's own Redis connection, on which a script can be sent without waiting for its
answer: the answer is read later (`collect`), at the latest when the thread next calls a
script on it.

Redis runs one connection's commands in the order they were sent, so a thread that sends a
write this way and later calls a script on the same line sees its own write, and the write
costs the calling thread no round trip. What a caller may send this way is its own business
(app/llm/admission.py says why the model call's after-call record may be): a script sent
here is lost only if the connection breaks before Redis reads it, and each such loss is
reported to its sender (`on_error`) when the next call finds the connection broken. A
script the server no longer knows (NOSCRIPT: it did not run) is sent again whole, not lost.

Hand-written: redis-py pipelines wait for their answers when executed, and its pooled
connections refuse a connection with an unread answer; nothing in it leaves an answer to be
read by a later command.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError

from app.core import broker
from app.core.clients import per_process

Args = Sequence[str | int | float | bytes]


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA-1 (EVALSHA), computed once."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass
class _Unread:
    """A script sent without waiting: what was sent, and who to tell its answer."""

    script: Script
    keys: Args
    args: Args
    on_answer: Callable[[Any], None]
    on_error: Callable[[Exception], None]
    resent: bool = False


class Line:
    """One thread's connection and the answers still to be read on it."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.unread: list[_Unread] = []

    def send(
        self,
        script: Script,
        keys: Args,
        args: Args,
        on_answer: Callable[[Any], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Send `script` now; `on_answer` (or `on_error`) runs when its answer is read (at
        this line's next `collect` or `call`). Raises redis.ConnectionError if it could not
        be sent."""
        if len(self.unread) >= 64:
            # A thread that only sends: read what has long arrived rather than pile it up.
            self.collect()
        item = _Unread(script, keys, args, on_answer, on_error)
        self._send(item)
        self.unread.append(item)

    def collect(self, keep: int = 0) -> None:
        """Read answers, oldest first, until at most `keep` are unread (waiting for those not
        arrived yet); a broken connection reports what it may have lost to their senders."""
        try:
            while len(self.unread) > keep:
                self._read_one()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self.connection.disconnect()
            self._lost(exc)

    def call(self, script: Script, keys: Args, args: Args) -> Any:
        """Run `script` and return its answer, once the answers of what was sent before are
        read (they have arrived by then, unless they were sent just now)."""
        self.collect()
        try:
            # As redis-py's pool at checkout: a connection the server has closed (a restart)
            # reads as end of file; make a new one rather than fail the call.
            if self.connection.can_read():
                self.connection.disconnect()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.connection.disconnect()
        try:
            self.connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return self.connection.read_response()
            except NoScriptError:
                # Not run (the server lost its scripts: a restart, SCRIPT FLUSH): send it whole.
                self.connection.send_command("EVAL", script.source, len(keys), *keys, *args)
                return self.connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.connection.disconnect()
            raise

    def _send(self, item: _Unread) -> None:
        try:
            self.connection.send_command(
                "EVALSHA", item.script.sha, len(item.keys), *item.keys, *item.args
            )
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.connection.disconnect()
            raise

    def _read_one(self) -> None:
        """Read the oldest unread answer and hand it to its sender."""
        item = self.unread.pop(0)
        try:
            answer = self.connection.read_response()
        except NoScriptError:
            # Not run, so not counted: send it again whole, once (its answer comes last).
            if item.resent:
                item.on_error(RuntimeError("script not loaded"))
                return
            item.resent = True
            self.unread.append(item)
            self.connection.send_command(
                "EVAL", item.script.source, len(item.keys), *item.keys, *item.args
            )
            return
        except redis.ResponseError as exc:
            item.on_error(exc)
            return
        except BaseException:
            self.unread.insert(0, item)
            raise
        item.on_answer(answer)

    def _lost(self, exc: Exception) -> None:
        """The connection broke: what was sent and not answered may not have run."""
        unread, self.unread = self.unread, []
        for item in unread:
            item.on_error(exc)


class _Lines(threading.local):
    """Each thread's line, made on first use; closed with the process's clients."""

    line: Line | None = None


class Lines:
    """This process's lines, one per thread, to the configured Redis."""

    def __init__(self) -> None:
        self._local = _Lines()
        self._made: list[Line] = []
        self._lock = threading.Lock()

    def line(self) -> Line:
        """This thread's line."""
        line = self._local.line
        if line is None:
            pool = broker.client().connection_pool
            line = Line(pool.connection_class(**pool.connection_kwargs))
            self._local.line = line
            with self._lock:
                self._made.append(line)
        return line

    def close(self) -> None:
        """Close every thread's connection (tests change Redis URLs between runs)."""
        with self._lock:
            made, self._made = self._made, []
        for line in made:
            line.connection.disconnect()


def lines() -> Lines:
    """This process's lines (made after fork, as every client)."""
    return per_process("redis-lines", Lines)
