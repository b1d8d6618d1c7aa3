"""What one bench/saturation.py run owns (processes, a PostgreSQL database, a Redis database,
a temp dir) and how it is always cleaned up."""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.pipeline import ROOT, drop_database
from bench.procs import Children

SENTINEL = "bench:saturation:run"


@dataclass
class SatRun:
    """One run: its id, children, databases and temp dir."""

    args: argparse.Namespace
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    started: float = field(default_factory=time.monotonic)
    tmp: Path = Path()
    children: Children = field(default_factory=lambda: Children(cwd=ROOT))
    redis_client: Any = None
    redis_claimed: bool = False
    db_created: bool = False

    @property
    def dbname(self) -> str:
        return f"opsgate_bench_sat_{self.run_id}"

    def claim_redis(self) -> None:
        """FLUSHDB the run's Redis database and mark it ours; refuse one that holds keys
        (another process may be using it) unless --force-flush. A liveness check then notices
        if something else flushes it during the run (the test suite's random-db fixture can)."""
        import redis

        args = self.args
        self.redis_client = redis.Redis.from_url(args.redis_url)
        keys = self.redis_client.dbsize()
        if keys and not args.force_flush:
            raise RuntimeError(
                f"{args.redis_url} holds {keys} keys: another process may be using it; pick "
                "another --redis-url, or pass --force-flush to flush it anyway"
            )
        self.reset_redis()
        self.redis_claimed = True
        watchdogs = getattr(self.children, "watchdogs", None)
        if isinstance(watchdogs, list):
            watchdogs.append(self.check_redis)

    def reset_redis(self) -> None:
        """Empty the run's Redis database (between the two sides) and mark it ours again."""
        self.redis_client.flushdb()
        self.redis_client.set(SENTINEL, self.run_id)

    def redis_is_ours(self) -> bool:
        return bool(self.redis_client.get(SENTINEL) == self.run_id.encode())

    def check_redis(self) -> None:
        if not self.redis_is_ours():
            raise RuntimeError(
                f"{self.args.redis_url} was flushed or taken over by another process during "
                "the run (queued messages are lost); rerun with another --redis-url"
            )

    def cleanup(self) -> None:
        """Stop every child, flush Redis (if still ours), drop the database, remove the temp
        dir. Each step runs even if an earlier one failed."""
        args = self.args
        self.children.stop_all()
        try:
            from app.core.db import dispose_engine

            dispose_engine()
        except Exception:
            pass
        if self.redis_client is not None and self.redis_claimed:
            try:
                if self.redis_is_ours():
                    self.redis_client.flushdb()
                else:
                    print(
                        f"bench: {args.redis_url} is no longer ours; not flushing it",
                        file=sys.stderr,
                    )
            except Exception as exc:
                print(f"bench: could not flush {args.redis_url}: {exc}", file=sys.stderr)
        if self.db_created:
            try:
                drop_database(args.pg_admin_url, self.dbname)
            except Exception as exc:
                print(f"bench: could not drop database {self.dbname}: {exc}", file=sys.stderr)
        if args.keep_temp:
            print(f"bench: temp dir kept at {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
